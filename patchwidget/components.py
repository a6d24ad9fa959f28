"""Patchable components: the sites a sweep can visit and a single patch target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """A kind of activation that can be patched, and the axes of its sweep."""

    name: str
    axes: tuple[str, ...]
    description: str


SITES: dict[str, Site] = {
    s.name: s
    for s in [
        Site("resid_pre", ("layer", "pos"), "residual stream entering the layer"),
        Site("resid_mid", ("layer", "pos"), "residual stream between attention and MLP"),
        Site("resid_post", ("layer", "pos"), "residual stream leaving the layer"),
        Site("attn_out", ("layer", "pos"), "what the attention block adds to the residual stream"),
        Site("mlp_out", ("layer", "pos"), "what the MLP adds to the residual stream"),
        Site("head", ("layer", "head"), "one attention head's output (z), all positions"),
        Site("head_by_pos", ("layer", "head", "pos"), "one head's output at one position"),
        Site("head_q", ("layer", "head"), "one head's queries"),
        Site(
            "head_k",
            ("layer", "head"),
            "one key head's keys (shared under grouped-query attention)",
        ),
        Site(
            "head_v",
            ("layer", "head"),
            "one value head's values (shared under grouped-query attention)",
        ),
        Site("head_pattern", ("layer", "head"), "one head's attention pattern"),
        Site("neuron", ("layer", "neuron"), "one MLP hidden unit"),
    ]
}

HEAD_PART_SITES = ("head_q", "head_k", "head_v", "head_pattern")
RECEIVER_ONLY_SITES = ("mlp_in",)  # a path-patching receiver: the input of a layer's MLP


@dataclass(frozen=True)
class Component:
    """One patch target: a site at a layer, optionally one head/neuron and one position.

    ``pos=None`` patches every position. ``head`` is required for head sites and ``neuron``
    for the neuron site. ``head_by_pos`` is the same as ``head`` with a position.
    """

    site: str
    layer: int
    head: int | None = None
    pos: int | None = None
    neuron: int | None = None

    def __post_init__(self) -> None:
        if self.site not in SITES and self.site not in RECEIVER_ONLY_SITES:
            raise ValueError(f"unknown site {self.site!r}; valid sites: {', '.join(SITES)}")
        needs_head = self.site.startswith("head")
        if needs_head and self.head is None:
            raise ValueError(f"Component({self.site!r}) needs head=<int>")
        if not needs_head and self.head is not None:
            raise ValueError(f"site {self.site!r} has no heads; drop head={self.head}")
        if self.site == "neuron" and self.neuron is None:
            raise ValueError("Component('neuron') needs neuron=<int>")
        if self.site != "neuron" and self.neuron is not None:
            raise ValueError(f"site {self.site!r} has no neurons; drop neuron={self.neuron}")
        if self.site == "head_by_pos" and self.pos is None:
            raise ValueError("Component('head_by_pos') needs pos=<int>; use site 'head' for all")

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``L2 H1 @5`` or ``mlp_out L0``."""
        parts = [f"L{self.layer}"]
        if self.head is not None:
            parts.append(f"H{self.head}")
        if self.neuron is not None:
            parts.append(f"N{self.neuron}")
        if self.pos is not None:
            parts.append(f"@{self.pos}")
        site = "head" if self.site == "head_by_pos" else self.site
        return f"{site} {' '.join(parts)}"
