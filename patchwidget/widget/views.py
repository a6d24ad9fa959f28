"""The arrays of one heatmap view, filled in as sweeps report, and their wire format.

A view is one request: a sweep of one site (or the q/k/v/pattern parts of one head) in one or
both directions. On the wire it is a JSON ``meta`` dict plus one little-endian float32 buffer:
for each direction in ``meta["directions"]``, the readouts (``*shape, n_pairs, 6``), then the
clean and the corrupted baseline readouts (``n_pairs, 6`` each).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..components import HEAD_PART_SITES
from ..readouts import READOUT_FIELDS
from ..sites import KV_SITES
from .messages import ViewRequest, writer_layers

PART_LABELS = {"head_q": "q", "head_k": "k", "head_v": "v", "head_pattern": "pattern"}
_F32 = np.dtype("<f4")


class ViewData:
    """Readouts of one view; slots are filled from (partial) PatchResults."""

    def __init__(
        self, request_id: int, request: ViewRequest, n_pairs: int, kv_group: int = 1
    ) -> None:
        self.id = request_id
        self.request = request
        self.n_pairs = n_pairs
        self.kv_group = kv_group
        self.started = time.monotonic()
        self.axes: list[str] = []
        self.labels: dict[str, list[str]] = {}
        self.coords: dict[str, list[Any]] = {}
        self.fixed: dict[str, int] = {}
        self.shape: list[int] = []
        self.panels: dict[str, dict[str, np.ndarray]] = {}
        self.results: list[tuple[str, str, Any]] = []
        self.done = 0
        self.total = 0

    def put(self, direction: str, site: str, result: Any) -> None:
        """Copy a (partial) result's readouts into the view."""
        readouts = np.asarray(result.readouts, dtype=np.float32)
        if not self.panels:
            self._allocate(result, readouts)
        panel = self.panels[direction]
        if self.request.kind == "writers":
            target = panel["readouts"]
            n_heads = target.shape[1] - 1
            rows = [self.coords["layer"].index(layer) for layer in result.coords["layer"]]
            if site == "mlp_out":
                target[rows, n_heads] = readouts.reshape(len(rows), *target.shape[2:])
            else:
                target[rows, :n_heads] = readouts.reshape(len(rows), n_heads, *target.shape[2:])
        elif self.request.kind == "head_parts":
            panel["readouts"][HEAD_PART_SITES.index(site)] = readouts.reshape(
                panel["readouts"].shape[1:]
            )
        else:
            panel["readouts"][...] = readouts
        panel["clean"][...] = np.asarray(result.clean_readouts, dtype=np.float32)
        panel["corrupted"][...] = np.asarray(result.corrupted_readouts, dtype=np.float32)

    def finish(self, direction: str, site: str, result: Any) -> None:
        """A sweep ended (complete or cancelled): keep the result for figures and code."""
        self.put(direction, site, result)
        self.results.append((direction, site, result))

    def _allocate(self, result: Any, readouts: np.ndarray) -> None:
        if self.request.kind == "writers":
            head_layers, mlp_layers = writer_layers(self.request.site, _single(self.request.layers))
            layers = sorted(set(head_layers) | set(mlp_layers))
            pos = _single(self.request.positions)
            n_heads = len(result.coords["head"]) if result.site == "head_by_pos" else 0
            self.axes = ["layer", "writer"]
            self.shape = [len(layers), n_heads + 1]
            self.labels = {
                "layer": [f"L{layer}" for layer in layers],
                "writer": [*(f"H{h}" for h in range(n_heads)), "MLP"],
            }
            writers: list[Any] = [{"site": "head_by_pos", "head": h} for h in range(n_heads)]
            self.coords = {"layer": layers, "writer": [*writers, {"site": "mlp_out"}]}
            self.fixed = {"pos": pos}
        elif self.request.kind == "head_parts":
            pos_axis = list(result.axes).index("pos")
            n_pos = readouts.shape[pos_axis]
            self.axes = ["site", "pos"]
            self.shape = [len(HEAD_PART_SITES), n_pos]
            self.labels = {
                "site": [PART_LABELS[s] for s in HEAD_PART_SITES],
                "pos": list(result.labels["pos"]),
            }
            self.coords = {"site": list(HEAD_PART_SITES), "pos": list(result.coords["pos"])}
            head = _single(self.request.heads)
            self.fixed = {
                "layer": _single(self.request.layers),
                "head": head,
                "kv_head": head // self.kv_group,
            }
        else:
            # The head axis of a k/v sweep counts key/value heads: named so on the wire.
            kv = result.site in KV_SITES
            self.axes = ["kv_head" if kv and a == "head" else a for a in result.axes]
            self.shape = list(readouts.shape[:-2])
            self.labels = {
                a: list(result.labels[r]) for a, r in zip(self.axes, result.axes, strict=True)
            }
            self.coords = {
                a: [int(c) for c in result.coords[r]]
                for a, r in zip(self.axes, result.axes, strict=True)
            }
        full = (*self.shape, self.n_pairs, len(READOUT_FIELDS))
        base = (self.n_pairs, len(READOUT_FIELDS))
        for direction in self.request.directions:
            self.panels[direction] = {
                "readouts": np.full(full, np.nan, dtype=np.float32),
                "clean": np.full(base, np.nan, dtype=np.float32),
                "corrupted": np.full(base, np.nan, dtype=np.float32),
            }

    def components(self) -> list[dict[str, Any]]:
        """Each cell's component in row-major order, named as the front end names it."""
        out = []
        for index in np.ndindex(*self.shape):
            comp: dict[str, Any] = {"site": self.request.site, **self.fixed}
            for axis, i in zip(self.axes, index, strict=True):
                value = self.coords[axis][i]
                if isinstance(value, dict):
                    comp.update(value)
                else:
                    comp[axis] = value
            kv = comp["site"] in KV_SITES
            comp.pop("head" if kv else "kv_head", None)
            out.append(comp)
        return out

    @property
    def ready(self) -> bool:
        return bool(self.panels)

    def meta(self, status: str) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        eta = None
        if 0 < self.done < self.total:
            eta = elapsed / self.done * (self.total - self.done)
        return {
            "id": self.id,
            "status": status,
            "request": self.request.to_json(),
            "site": self.request.site,
            "kind": self.request.kind,
            "directions": list(self.request.directions),
            "axes": self.axes,
            "shape": self.shape,
            "labels": self.labels,
            "coords": self.coords,
            "fixed": self.fixed,
            "n_pairs": self.n_pairs,
            "fields": list(READOUT_FIELDS),
            "done": self.done,
            "total": self.total,
            "elapsed_s": round(elapsed, 3),
            "eta_s": None if eta is None else round(eta, 1),
        }

    def buffer(self) -> bytes:
        parts = []
        for direction in self.request.directions:
            panel = self.panels[direction]
            parts += [panel["readouts"], panel["clean"], panel["corrupted"]]
        return b"".join(np.ascontiguousarray(p, dtype=_F32).tobytes() for p in parts)


def _single(values: tuple[int, ...] | None) -> int:
    """The one index of a drill view's restriction (validated to hold exactly one)."""
    if values is None or len(values) != 1:
        raise ValueError(f"expected one index, got {values!r}")
    return values[0]


def circuit_payload(
    request_id: int,
    components: list[dict[str, Any]],
    results: dict[tuple[str, str], Any],
    complement_note: str | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Meta and buffer of a circuit check: per entry, readouts then clean and corrupted."""
    entries, parts, n_pairs = [], [], 0
    for (direction, which), result in results.items():
        readouts = np.asarray(result.readouts, dtype=_F32)
        n_pairs = readouts.shape[-2]
        entries.append({"direction": direction, "which": which})
        parts += [
            readouts.reshape(n_pairs, len(READOUT_FIELDS)),
            np.asarray(result.clean_readouts, dtype=_F32),
            np.asarray(result.corrupted_readouts, dtype=_F32),
        ]
    meta = {
        "id": request_id,
        "components": components,
        "entries": entries,
        "n_pairs": n_pairs,
        "fields": list(READOUT_FIELDS),
        "complement_note": complement_note,
    }
    return meta, b"".join(np.ascontiguousarray(p, dtype=_F32).tobytes() for p in parts)
