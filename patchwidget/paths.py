"""Path patching on an experiment: senders whose patched output reaches only chosen receivers.

A receiver is ``pw.Component("head_q" | "head_k" | "head_v", layer, head, pos=None)`` (that
head's query / key / value input), ``pw.Component("mlp_in", layer, pos=None)`` (that layer's
MLP input) or ``"logits"`` (the direct path through the residual stream to the unembedding,
with the final norm recomputed). Receivers read the run's residual stream with the senders'
output swapped for its source value; every other reader sees the senders' run value. Patching
every downstream receiver is therefore the ordinary patch, and patching none changes nothing.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .batching import batches, rows_of
from .components import Component
from .engine import rows_per_batch
from .hookpoints import Target
from .path_engine import PathPlan, View, path_forward
from .readouts import READOUT_FIELDS
from .result import PatchResult
from .sites import indices, sweep_axes, target

if TYPE_CHECKING:
    from .experiment import Experiment

SENDER_SITES = ("head", "head_by_pos", "attn_out", "mlp_out")
RECEIVER_SITES = ("head_q", "head_k", "head_v", "mlp_in")
LOGITS = "logits"
Receiver = Component | str
_RECEIVER_TEXT = re.compile(
    r"(?P<kind>q|k|v|mlp):L(?P<layer>\d+)(?:H(?P<head>\d+))?(?:@(?P<pos>\d+))?"
)
_RECEIVER_HELP = (
    "a receiver is pw.Component('head_q' | 'head_k' | 'head_v', layer=..., head=..., pos=None), "
    "pw.Component('mlp_in', layer=..., pos=None) or 'logits'"
)


@dataclass(frozen=True)
class Path:
    """One edge: ``sender``'s patched output reaches ``receiver`` only."""

    sender: Component
    receiver: Receiver

    @property
    def label(self) -> str:
        return f"{receiver_label(self.receiver)} ← {self.sender.label}"


@dataclass(frozen=True)
class _Edges:
    """One patch set: per view, senders and the receivers they reach."""

    views: tuple[tuple[tuple[Target, ...], tuple[Target, ...]], ...]
    to_logits: int | None


def receiver_label(receiver: Receiver) -> str:
    return receiver if isinstance(receiver, str) else receiver.label


def receivers_from_text(text: str) -> list[Receiver]:
    """Receivers written as on the command line: ``logits``, ``q:L2H1``, ``k:L2H1@5``,
    ``v:L1H0``, ``mlp:L1`` or ``mlp:L1@14``, comma-separated."""
    out: list[Receiver] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _RECEIVER_TEXT.fullmatch(item)
        if item == LOGITS:
            out.append(LOGITS)
        elif match is None or (match["kind"] == "mlp") != (match["head"] is None):
            raise ValueError(
                f"can't read receiver {item!r}: write logits, q:L2H1, k:L2H1@5, v:L1H0, mlp:L1 "
                "or mlp:L1@14 (comma-separated)"
            )
        else:
            site = "mlp_in" if match["kind"] == "mlp" else f"head_{match['kind']}"
            head = None if match["head"] is None else int(match["head"])
            pos = None if match["pos"] is None else int(match["pos"])
            out.append(Component(site, int(match["layer"]), head=head, pos=pos))
    return out


def check_receivers(exp: Experiment, receivers: Iterable[Receiver]) -> tuple[Receiver, ...]:
    """Receivers validated against the model, or a ValueError that says how to write them."""
    if isinstance(receivers, (str, Component)):
        receivers = [receivers]
    out: list[Receiver] = []
    for r in receivers:
        if r == LOGITS:
            out.append(LOGITS)
            continue
        if not isinstance(r, Component) or r.site not in RECEIVER_SITES:
            raise ValueError(f"{r!r} is not a receiver: {_RECEIVER_HELP}")
        _receiver_target(exp, r)  # checks its layer, head and position
        out.append(r)
    return tuple(out)


def reaches(exp: Experiment, site: str, layer: int, receiver: Receiver) -> bool:
    """Whether a sender of ``site`` at ``layer`` writes to the stream ``receiver`` reads."""
    if receiver == LOGITS:
        return True
    assert isinstance(receiver, Component)
    r_layer = receiver.layer % exp.dims.n_layers
    same_layer_mlp = (
        receiver.site == "mlp_in"
        and site in ("head", "head_by_pos", "attn_out")
        and not exp.arch.parallel(exp._hf.config)
    )
    return r_layer > layer or (r_layer == layer and same_layer_mlp)


def every_receiver_after(exp: Experiment, site: str, layer: int) -> list[Receiver]:
    """Every receiver that a sender of ``site`` at ``layer`` writes to, ``"logits"`` last."""
    d = exp.dims
    out: list[Receiver] = []
    for later in range(d.n_layers):
        for part, n in (("head_q", d.n_heads), ("head_k", d.n_kv_heads), ("head_v", d.n_kv_heads)):
            out += [Component(part, later, head=h) for h in range(n)]
        out.append(Component("mlp_in", later))
    return [r for r in out if reaches(exp, site, layer, r)] + [LOGITS]


def path_sweep(
    exp: Experiment,
    site: str,
    direction: str,
    receivers: Iterable[Receiver],
    layers: Iterable[int] | None,
    heads: Iterable[int] | None,
    positions: Iterable[int] | None,
    on_progress: Callable[[int, int, PatchResult], None] | None,
    cancel: threading.Event | Callable[[], bool] | None,
    progress: bool,
) -> PatchResult:
    """Every component of ``site`` as a sender to ``receivers``; see ``Experiment.sweep``."""
    _check_sender_site(exp, site, direction)
    receivers = check_receivers(exp, receivers)
    chosen = indices(layers, exp.dims.n_layers, "layer")
    if receivers:
        reached = tuple(
            layer for layer in chosen if any(reaches(exp, site, layer, r) for r in receivers)
        )
        if layers is not None and reached != chosen:
            late = sorted(set(chosen) - set(reached))
            raise ValueError(
                f"no receiver reads what {site} of layer(s) {late} writes: a sender must come "
                "before its receivers; drop those layers (layers=None picks the ones that do)"
            )
        if not reached:
            raise ValueError(f"no layer's {site} comes before the receivers; receive later")
        chosen = reached
    axes = sweep_axes(site, by_pos=False)
    every = {
        "layer": chosen,
        "head": indices(heads, exp.dims.n_heads, "head"),
        "pos": indices(positions, exp.length, "position"),
    }
    coords = {a: every[a] for a in axes}
    together = None if positions is None or "pos" in axes else every["pos"]
    targets = [_receiver_target(exp, r) for r in receivers if r != LOGITS]
    to_logits = 0 if LOGITS in receivers else None
    sets = [
        _Edges(
            (
                (
                    (
                        target(
                            exp.hooks,
                            site,
                            **dict(zip(axes, values, strict=True)),
                            together=together,
                        ),
                    ),
                    tuple(targets),
                ),
            ),
            to_logits,
        )
        for values in itertools.product(*(coords[a] for a in axes))
    ]
    labels = {a: tuple(exp._label(a, v, site) for v in coords[a]) for a in axes}
    meta = {
        "layers": layers,
        "heads": heads,
        "positions": positions,
        "receivers": [receiver_label(r) for r in receivers],
    }
    return _run(
        exp, sets, site, direction, axes, coords, labels, meta, on_progress, cancel, progress
    )


def path_patch(
    exp: Experiment,
    components: Iterable[Component],
    direction: str,
    receivers: Iterable[Receiver],
    label: str = "",
) -> PatchResult:
    """Every component a sender at once, reaching only ``receivers``; see ``Experiment.patch``."""
    components = list(components)
    receivers = check_receivers(exp, receivers)
    for c in components:
        _check_sender_site(exp, c.site, direction)
    paths = [
        Path(c, r)
        for c in components
        for r in receivers
        if reaches(exp, c.site, exp._component_target(c).layer, r)
    ]  # a sender reaches only the receivers after it
    name = label or (
        " + ".join(c.label for c in components) + " → " + ", ".join(map(receiver_label, receivers))
    )
    return patch_paths(exp, paths, direction, name, components, receivers)


def patch_paths(
    exp: Experiment,
    paths: Iterable[Path],
    direction: str = "denoising",
    label: str = "",
    senders: Sequence[Component] = (),
    receivers: Sequence[Receiver] = (),
) -> PatchResult:
    """Confirmatory patch of a set of edges: each receiver sees exactly its own senders patched."""
    paths = list(paths)
    by_receiver: dict[Receiver, set[Component]] = {}
    for p in paths:
        if not isinstance(p, Path):
            raise TypeError(f"expected pw.Path(sender, receiver), got {type(p).__name__}: {p!r}")
        _check_sender_site(exp, p.sender.site, direction)
        (receiver,) = check_receivers(exp, [p.receiver])
        sender_layer = exp._component_target(p.sender).layer
        if not reaches(exp, p.sender.site, sender_layer, receiver):
            raise ValueError(
                f"{p.sender.label} cannot reach {receiver_label(receiver)}: a sender must come "
                "before its receiver"
            )
        by_receiver.setdefault(receiver, set()).add(p.sender)
    groups: dict[frozenset[Component], list[Receiver]] = {}
    for receiver, sending in by_receiver.items():
        groups.setdefault(frozenset(sending), []).append(receiver)
    views, to_logits = [], None
    for i, (group, reached) in enumerate(groups.items()):
        send = tuple(exp._component_target(c) for c in sorted(group, key=_order))
        views.append((send, tuple(_receiver_target(exp, r) for r in reached if r != LOGITS)))
        if LOGITS in reached:
            to_logits = i
    name = label or (" + ".join(p.label for p in paths) or "nothing")
    meta = {
        "components": [c.label for c in senders] or sorted({p.sender.label for p in paths}),
        "receivers": [receiver_label(r) for r in receivers] or [p.label for p in paths],
    }
    return _run(
        exp,
        [_Edges(tuple(views), to_logits)],
        "circuit",
        direction,
        ("patch",),
        {"patch": (0,)},
        {"patch": (name,)},
        meta,
        None,
        None,
        False,
    )


# ---------------------------------------------------------------------------------- internals
def _order(c: Component) -> tuple:
    return (c.layer, c.site, c.head or 0, -1 if c.pos is None else c.pos)


def _check_sender_site(exp: Experiment, site: str, direction: str) -> None:
    if site not in SENDER_SITES:
        raise ValueError(
            f"path patching sends from {', '.join(SENDER_SITES)}, not {site!r}: a sender is "
            "something that writes to the residual stream"
        )
    exp._check_site(site, direction)


def _receiver_target(exp: Experiment, r: Receiver) -> Target:
    assert isinstance(r, Component), r  # the logits are no hook point: callers skip them
    if r.site == "mlp_in":
        return exp._component_target(Component("mlp_out", r.layer, pos=r.pos))
    return exp._component_target(r)


def _masks(
    exp: Experiment, sets: Sequence[Sequence[Target]], n_pairs: int
) -> dict[tuple[str, int], torch.Tensor]:
    """(rows, pos, unit, 1) masks: set ``i`` fills rows ``i * n_pairs`` onwards."""
    masks: dict[tuple[str, int], np.ndarray] = {}
    n_rows = len(sets) * n_pairs
    for i, targets in enumerate(sets):
        for t in targets:
            key = (t.point, t.layer)
            if key not in masks:
                units = exp.hooks.n_units(t.point)
                masks[key] = np.zeros((n_rows, exp.length, units), dtype=bool)
            pos = slice(None) if t.positions is None else list(t.positions)
            masks[key][i * n_pairs : (i + 1) * n_pairs, pos, t.unit] = True
    return {k: torch.from_numpy(m).to(exp.device)[..., None] for k, m in masks.items()}


def _plan(exp: Experiment, chunk: Sequence[_Edges], direction: str) -> PathPlan:
    n_pairs = exp.n_pairs
    rows = torch.as_tensor(np.tile(np.arange(n_pairs), len(chunk)), device=exp.device)
    views = []
    for k in range(len(chunk[0].views)):
        senders = _masks(exp, [e.views[k][0] for e in chunk], n_pairs)
        values = exp._source_values(direction, senders)
        views.append(
            View(
                senders=senders,
                sources={key: values[key].to(exp.device)[rows] for key in senders},
                receivers=_masks(exp, [e.views[k][1] for e in chunk], n_pairs),
            )
        )
    first = min(t.layer for e in chunk for send, _ in e.views for t in send)
    return PathPlan(tuple(views), chunk[0].to_logits, first)


def _run(
    exp: Experiment,
    sets: list[_Edges],
    site: str,
    direction: str,
    axes: tuple[str, ...],
    coords: dict[str, tuple[int, ...]],
    labels: dict[str, tuple[str, ...]],
    meta: dict[str, Any],
    on_progress: Callable[[int, int, PatchResult], None] | None,
    cancel: threading.Event | Callable[[], bool] | None,
    progress: bool,
) -> PatchResult:
    """Readouts of every patch set, many sets per forward pass (rows: main, then each view)."""
    from .passes import base_blocks
    from .runner import _progress_bar, cancelled

    if exp.remote:
        # The remote runner sends a fixed program of patch steps (remote.py); path patching's
        # two-copy forward is not one of them yet.
        raise NotImplementedError(
            "path patching runs on local models only for now; load the model without remote="
        )

    shape = tuple(len(coords[a]) for a in axes)
    n_sets, n_pairs = len(sets), exp.n_pairs
    n_copies = max((len(e.views) for e in sets), default=0) + 1
    readouts = np.full((n_sets, n_pairs, len(READOUT_FIELDS)), np.nan, dtype=np.float32)
    metadata = exp._metadata(site, direction, meta)

    def result(complete: bool) -> PatchResult:
        return PatchResult(
            site=site,
            direction=direction,
            axes=axes,
            coords=coords,
            labels=labels,
            readouts=readouts.reshape(*shape, n_pairs, -1).copy(),
            clean_readouts=exp.clean_readouts,
            corrupted_readouts=exp.corrupted_readouts,
            metadata=metadata,
            complete=complete,
        )

    with exp._lock:
        base = exp._base_run(direction)
        ids, noise = base.ids, base.noise
        rows = exp.batch_size or rows_per_batch(
            exp.dims, exp.length, exp.device, exp.dtype, exp.memory_budget
        )
        per_batch = max(1, rows // (n_pairs * n_copies))
        bar = _progress_bar(n_sets, site, direction) if progress and n_sets > per_batch else None
        done = 0
        senders = [[t for send, _ in e.views for t in send] for e in sets]
        # as in runner.run: batches end where the first sending layer changes once they are big
        # enough, so each pass starts at its own first sender
        min_size = per_batch if exp.device.type == "cuda" else max(1, per_batch // 4)
        for start, stop in batches(senders, per_batch, min_size):
            if cancelled(cancel):
                break
            chunk = sets[start:stop]
            pairs = np.tile(np.arange(n_pairs), len(chunk))
            if all(not e.views for e in chunk):
                unpatched = (
                    exp.corrupted_readouts if direction == "denoising" else exp.clean_readouts
                )
                readouts[start : start + len(chunk)] = unpatched  # no paths: the base run
            else:
                plan = _plan(exp, chunk, direction)
                skip_rows = np.tile(pairs, len(plan.views) + 1)
                skip = [
                    rows_of(o, skip_rows) for o in base_blocks(exp, direction)[: plan.first_layer]
                ]
                logits = path_forward(
                    exp.hooks,
                    exp.device,
                    ids[pairs],
                    None if noise is None else noise[pairs],
                    plan,
                    skip,
                )
                batch = exp._readouts(logits, pairs).reshape(len(chunk), n_pairs, -1)
                if not np.isfinite(batch).all():
                    raise FloatingPointError(
                        f"path patching {site} ({direction}) gave NaN or inf in the model's "
                        "output; check the model's dtype (float16 overflow?)"
                    )
                readouts[start : start + len(chunk)] = batch
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            if on_progress is not None:
                on_progress(done, n_sets, result(done == n_sets))
        if bar is not None:
            bar.close()
    return result(done == n_sets)
