"""The run loop: patch sets grouped into batched forward passes, with progress and cancel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checks
from .batching import batches, first_layer, rows_of
from .hookpoints import Target
from .readouts import READOUT_FIELDS
from .result import PatchResult

if TYPE_CHECKING:
    from .experiment import Experiment

log = logging.getLogger(__name__)

Progress = Callable[[int, int, PatchResult], None]
Cancel = threading.Event | Callable[[], bool]


@dataclass(frozen=True)
class RunRequest:
    """Patch sets to run in one direction, and how their readouts are labelled.

    ``patch_sets[i]`` is patched together in one run per pair; the sets fill the grid of
    ``axes`` (sizes from ``coords``) in row-major order.
    """

    patch_sets: list[list[Target]]
    site: str
    direction: str
    axes: tuple[str, ...]
    coords: dict[str, tuple[int, ...]]
    labels: dict[str, tuple[str, ...]]
    meta: dict[str, Any] = field(default_factory=dict)
    on_progress: Progress | None = None
    cancel: Cancel | None = None
    progress: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[a]) for a in self.axes)


def run(exp: Experiment, request: RunRequest) -> PatchResult:
    """Readouts of every patch set of ``request`` on every pair of ``exp``."""
    patch_sets, direction, n_pairs = request.patch_sets, request.direction, exp.n_pairs
    n_sets = len(patch_sets)
    readouts = np.full((n_sets, n_pairs, len(READOUT_FIELDS)), np.nan, dtype=np.float32)
    metadata = exp._metadata(request.site, direction, request.meta)

    def _result(values: np.ndarray, complete: bool) -> PatchResult:
        return PatchResult(
            site=request.site,
            direction=direction,
            axes=request.axes,
            coords=request.coords,
            labels=request.labels,
            readouts=values.reshape(*request.shape, n_pairs, -1).copy(),
            clean_readouts=exp.clean_readouts,
            corrupted_readouts=exp.corrupted_readouts,
            metadata=metadata,
            complete=complete,
        )

    def result(complete: bool) -> PatchResult:
        return _result(readouts, complete)

    with exp._lock:
        if exp._remote is not None:
            # Remote models run through nnsight session requests (remote.py); the local
            # shortcuts below (skipping unpatched layers, cached base-run blocks) need the
            # model's activations here.
            return exp._remote.run(request, lambda values, complete: _result(values, complete))
        keys = {(t.point, t.layer) for targets in patch_sets for t in targets}
        sources = exp._source_values(direction, keys)
        base = exp._base_run(direction)
        rows = exp._rows()
        per_batch = max(1, rows // n_pairs)
        # More pairs than a batch holds: each patch set runs on slices of the pairs.
        pair_slices = np.array_split(np.arange(n_pairs), -(-n_pairs // rows))
        bar = (
            _progress_bar(n_sets, request.site, direction)
            if request.progress and n_sets > per_batch
            else None
        )
        done = 0
        # A GPU pass costs launches more than arithmetic: keep its batches full.
        min_size = per_batch if exp.device.type == "cuda" else max(1, per_batch // 4)
        for start, stop in batches(patch_sets, per_batch, min_size):
            if cancelled(request.cancel):
                log.info("%s (%s) cancelled after %d of %d", request.site, direction, done, n_sets)
                break
            chunk = patch_sets[start:stop]
            first = min(first_layer(targets) for targets in chunk)
            batch = np.empty((len(chunk), n_pairs, len(READOUT_FIELDS)), dtype=np.float32)
            for some in pair_slices:
                pairs = np.tile(some, len(chunk))
                plan = exp.engine.plan(chunk, pairs, sources, exp.length, exp._position_table)
                skip = [rows_of(out, pairs) for out in base_blocks(exp, direction)[:first]]
                noise = None if base.noise is None else base.noise[pairs]
                last = None if exp._last is None else exp._last[pairs]
                logits, _ = exp.engine.forward(base.ids[pairs], noise, plan, skip=skip, last=last)
                some_readouts = exp._readouts(logits, pairs)
                batch[:, some] = some_readouts.reshape(len(chunk), len(some), -1)
            if not np.isfinite(batch).all():
                _mark_nonfinite(batch, request, start, metadata)
            readouts[start : start + len(chunk)] = batch
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            if request.on_progress is not None:
                request.on_progress(done, n_sets, result(done == n_sets))
        if bar is not None:
            bar.close()
    if metadata.get("nonfinite"):
        cells = metadata["nonfinite"]
        shown = "; ".join(cells[:5]) + (" ..." if len(cells) > 5 else "")
        which = "that cell is" if len(cells) == 1 else f"those {len(cells)} cells are"
        checks.warn(
            f"patching {shown} ({direction}) gave NaN or inf in the model's output: {which} "
            "NaN (listed in result.metadata['nonfinite']); every other patch is kept. Check the "
            "model's dtype (float16 overflow?) and the corruption's scale."
        )
    return result(done == n_sets)


def _mark_nonfinite(
    batch: np.ndarray, request: RunRequest, start: int, metadata: dict[str, Any]
) -> None:
    """NaN where a patch gave NaN or inf, and the cell named in ``metadata["nonfinite"]``."""
    bad = ~np.isfinite(batch)
    batch[bad] = np.nan
    for i in np.flatnonzero(bad.any(axis=(1, 2))):
        pairs = np.flatnonzero(bad[i].any(axis=-1)) + 1
        cell = f"{describe(request, start + int(i))} (pair {', '.join(map(str, pairs))})"
        metadata.setdefault("nonfinite", []).append(cell)
        log.warning("non-finite readouts: %s, %s", request.site, cell)


def base_blocks(exp: Experiment, direction: str) -> list[Any]:
    """Every block's output on the base run of a direction (to skip unpatched layers)."""
    if direction not in exp._block_outputs:
        base = exp._base_run(direction)
        saved = exp._forward(base.ids, base.noise, save_blocks=True)[1]
        exp._block_outputs[direction] = [
            saved[("block_raw", layer)] for layer in range(exp.dims.n_layers)
        ]
    return exp._block_outputs[direction]


def cancelled(cancel: Cancel | None) -> bool:
    """Whether a cancel event is set or a cancel callable says so."""
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


def describe(request: RunRequest, flat: int) -> str:
    """The component at flat index ``flat`` of a request's grid, e.g. ``layer 2, head 1``."""
    index = np.unravel_index(flat, request.shape)
    return ", ".join(
        f"{a} {request.coords[a][i]}" for a, i in zip(request.axes, index, strict=True)
    )


def _progress_bar(total: int, site: str, direction: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{site} ({direction})", unit="patch", leave=False)
