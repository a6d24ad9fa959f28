"""The run loop: patch sets grouped into batched forward passes, with progress and cancel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .batching import BatchCost, first_layer, group_batches, rows_of
from .costs import batch_cost, memory_rows, memory_tokens, timed
from .engine import Plan
from .hookpoints import Key, Target
from .prefix import (
    BaseRun,
    changed_cells,
    empty_cache,
    first_change,
    keys_values,
    prefix_cache,
    reuse_blocker,
    trim,
)
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
            # shortcuts below (skipping unpatched layers and, through the base run's key/value
            # cache, unpatched positions: that cache is a local object the model fills in place,
            # which a remote session neither fills nor sends back) need the model's activations
            # here.
            # shortcuts below (skipping unpatched layers, cached base-run blocks) need the
            # model's activations here.
            return exp._remote.run(request, lambda values, complete: _result(values, complete))
        keys = {(t.point, t.layer) for targets in patch_sets for t in targets}
        sources = exp._source_values(direction, keys)
        changed = changed_cells(sources, base_values(exp, direction, keys))
        starts = [start_of(exp, targets, changed) for targets in patch_sets]
        groups = group_batches(
            starts, n_pairs, exp.dims.n_layers, exp.length, batch_cost_of(exp, direction)
        )
        log.debug("%s (%s): %d sets in %d passes", request.site, direction, n_sets, len(groups))
        bar = (
            _progress_bar(n_sets, request.site, direction)
            if request.progress and len(groups) > 1
            else None
        )
        done = 0
        for members in groups:
            if cancelled(request.cancel):
                log.info("%s (%s) cancelled after %d of %d", request.site, direction, done, n_sets)
                break
            first = min(starts[i][0] for i in members)
            start = min(starts[i][1] for i in members)
            chunk = [trim(patch_sets[i], first, start) for i in members]
            pairs = np.tile(np.arange(n_pairs), len(chunk))
            plan = exp.engine.plan(chunk, pairs, sources, exp.length, start)
            logits = patched_pass(exp, direction, pairs, first, start, plan)
            batch = exp._readouts(logits, pairs).reshape(len(chunk), n_pairs, -1)
            if not np.isfinite(batch).all():
                bad = members[int(np.argwhere(~np.isfinite(batch))[0][0])]
                raise FloatingPointError(
                    f"patching {describe(request, bad)} ({direction}) "
                    "gave NaN or inf in the model's output; nothing was plotted. Check the "
                    "model's dtype (float16 overflow?) and the corruption's scale."
                )
            readouts[members] = batch
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            if request.on_progress is not None:
                request.on_progress(done, n_sets, result(done == n_sets))
        if bar is not None:
            bar.close()
    return result(done == n_sets)


def start_of(
    exp: Experiment, targets: list[Target], changed: dict[Key, torch.Tensor]
) -> tuple[int, int]:
    """The first layer and first position a patch set's pass must compute."""
    if reuse_blocker(targets) is not None:
        return first_layer(targets), 0
    return first_change(targets, changed, exp.dims.n_layers, exp.length)


def base_values(exp: Experiment, direction: str, keys: set[Key]) -> dict[Key, torch.Tensor]:
    """The base run's own values at ``keys``: the clean run's (the sources denoising patches in)
    for noising, the corrupted run's (the sources noising patches in) for denoising."""
    return exp._source_values("noising" if direction == "denoising" else "denoising", keys)


def patched_pass(
    exp: Experiment, direction: str, pairs: np.ndarray, first: int, start: int, plan: Plan | None
) -> torch.Tensor:
    """Answer-position logits of the base run's ``pairs`` rows under ``plan``, computing only
    layers ``first ..`` and positions ``start ..``: the base run supplies the block outputs
    before ``first`` and the keys and values before ``start``."""
    run_input, base = exp._base_run(direction), base_run(exp, direction)
    skip = [rows_of(out, pairs, start) for out in base.blocks[:first]]
    noise = None if run_input.noise is None else run_input.noise[pairs][:, start:]
    cache = None
    if start:
        assert base.kv is not None, "start_of gives position 0 where keys and values are absent"
        cache = prefix_cache(base.kv, torch.as_tensor(pairs), start, exp._hf.config)
    ids = run_input.ids[pairs][:, start:]
    return exp.engine.forward(ids, noise, plan, skip=skip, cache=cache)[0]


def base_blocks(exp: Experiment, direction: str) -> list[Any]:
    """Every block's output on the base run of a direction (to skip unpatched layers)."""
    return base_run(exp, direction).blocks


def base_run(exp: Experiment, direction: str) -> BaseRun:
    """Every block's output and every layer's keys and values on the base run of a direction."""
    if direction not in exp._block_outputs:
        run_input = exp._base_run(direction)
        cache = empty_cache()
        saved = exp.engine.forward(run_input.ids, run_input.noise, save_blocks=True, cache=cache)
        blocks = [saved[1][("block_raw", layer)] for layer in range(exp.dims.n_layers)]
        exp._block_outputs[direction] = BaseRun(blocks, keys_values(cache))
    return exp._block_outputs[direction]


def batch_cost_of(exp: Experiment, direction: str) -> BatchCost:
    """The experiment's measured cost model of a pass (timed once, on the first sweep)."""
    if exp._batch_cost is None:
        length = exp.length
        tokens = memory_tokens(exp.dims, length, exp.device, exp.dtype, exp.memory_budget)

        def timer(rows: int, first: int, start: int) -> float:
            pairs = np.arange(rows) % exp.n_pairs
            return timed(
                partial(patched_pass, exp, direction, pairs, first, start, None), exp.device
            )

        cost = batch_cost(exp.dims, length, exp.device, tokens, timer)
        rows = exp.batch_size or memory_rows(exp.dims, exp.device, exp.memory_budget)
        exp._batch_cost = replace(cost, max_rows=rows)
        log.debug("batch cost: %s", exp._batch_cost)
    return exp._batch_cost


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
