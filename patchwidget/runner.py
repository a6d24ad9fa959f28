"""The run loop: patch sets grouped into batched forward passes, with progress and cancel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import checks
from .hookpoints import Key, Target
from .own_layer_pass import OwnOutputs
from .packing import pack
from .passes import packed_pass, patched_pass
from .prefix import trim
from .readouts import READOUT_FIELDS
from .result import PatchResult
from .schedule import Schedule, over_pair_slices, schedule

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
    ordered: bool = False  # sets finish in order: progress counts a finished prefix

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
            return exp._remote.run(request, lambda values, complete: _result(values, complete))
        keys = {(t.point, t.layer) for targets in patch_sets for t in targets}
        sources = exp._source_values(direction, keys)
        plan = schedule(exp, request, sources)
        log.debug(
            "%s (%s): %d sets in %d %s passes, %d unchanged",
            request.site,
            direction,
            n_sets,
            len(plan.groups),
            "packed" if plan.packs else "rectangular",
            len(plan.unchanged),
        )
        finished = np.zeros(n_sets, dtype=bool)
        if plan.unchanged:
            denoising = direction == "denoising"
            readouts[plan.unchanged] = exp.corrupted_readouts if denoising else exp.clean_readouts
            finished[plan.unchanged] = True
        bar = (
            _progress_bar(n_sets, request.site, direction)
            if request.progress and len(plan.groups) > 1
            else None
        )
        if bar is not None:
            bar.update(len(plan.unchanged))
        pending: list[tuple[list[int], torch.Tensor]] = []
        own = OwnOutputs(exp, direction, plan, sources)

        def publish() -> None:
            """Readouts of the pending groups (one vocabulary projection for all of them, when
            their answers came as hidden states), stored and reported."""
            members = [i for group, _ in pending for i in group]
            answers = torch.cat([rows.reshape(-1, rows.shape[-1]) for _, rows in pending])
            logits = exp.engine.unembed(answers) if plan.deferred else answers
            pairs = np.tile(np.arange(n_pairs), len(members))
            batch = exp._readouts(logits, pairs).reshape(len(members), n_pairs, -1)
            pending.clear()
            if not np.isfinite(batch).all():
                _mark_nonfinite(batch, request, members, metadata)
            readouts[members] = batch
            finished[members] = True
            if bar is not None:
                bar.update(len(members))
            if request.on_progress is not None:
                done = done_count(finished, request.ordered)
                request.on_progress(done, n_sets, result(bool(finished.all())))

        for members in plan.groups:
            if cancelled(request.cancel):
                log.info(
                    "%s (%s) cancelled after %d of %d",
                    request.site,
                    direction,
                    finished.sum() + sum(len(group) for group, _ in pending),
                    n_sets,
                )
                break
            pending.append((members, run_group(exp, request, plan, members, sources, own)))
            if sum(len(group) for group, _ in pending) * n_pairs >= plan.publish_rows:
                publish()
        if pending:
            publish()
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
    return result(bool(finished.all()))


def run_group(
    exp: Experiment,
    request: RunRequest,
    plan: Schedule,
    members: list[int],
    sources: dict[Key, torch.Tensor],
    own: OwnOutputs,
) -> torch.Tensor:
    """The answers (sets, pairs, vocab) of the patch sets ``members`` run together (on slices of
    the pairs where they don't fit one pass): logits, or final hidden states (sets, pairs,
    d_model) where ``plan.deferred``. Own-position sets that start here read their first
    layer's outputs from ``own``."""
    n_pairs, length = exp.n_pairs, exp.length
    first = min(plan.starts[i][0] for i in members)
    start = 0 if plan.packs else min(plan.starts[i][1] for i in members)
    chunk = [trim(plan.patch_sets[i], first, start) for i in members]
    width = length - start  # positions per pair of one pass
    packing, below = None, {}
    if plan.packs:
        set_starts = [plan.starts[i][1] for i in members]
        packing = pack(set_starts, length, length)
        width = sum(length - s for s in set_starts)
        outputs = own.take(members)
        below = {n: (plan.own[i], outputs[i]) for n, i in enumerate(members) if i in outputs}

    def run_pairs(some: np.ndarray) -> torch.Tensor:
        pairs = np.tile(some, len(chunk))
        masks = exp.engine.plan(chunk, pairs, sources, length, exp._position_table, start)
        if packing is not None:
            got = packed_pass(
                exp, request.direction, some, first, packing, masks, plan.deferred, below
            )
        else:
            got = patched_pass(exp, request.direction, pairs, first, start, masks, plan.deferred)
        return got.reshape(len(chunk), len(some), -1)

    return over_pair_slices(n_pairs, width, plan.cost, run_pairs)


def done_count(finished: np.ndarray, ordered: bool) -> int:
    """Patch sets done: all finished ones, or for an ordered request the finished ones before
    the first that is not."""
    if not ordered:
        return int(finished.sum())
    return int(np.argmin(finished)) if not finished.all() else len(finished)


def _mark_nonfinite(
    batch: np.ndarray, request: RunRequest, members: list[int], metadata: dict[str, Any]
) -> None:
    """NaN where a patch gave NaN or inf, and the cell named in ``metadata["nonfinite"]``;
    ``batch[i]`` holds patch set ``members[i]``."""
    bad = ~np.isfinite(batch)
    batch[bad] = np.nan
    for i in np.flatnonzero(bad.any(axis=(1, 2))):
        pairs = np.flatnonzero(bad[i].any(axis=-1)) + 1
        cell = f"{describe(request, members[int(i)])} (pair {', '.join(map(str, pairs))})"
        metadata.setdefault("nonfinite", []).append(cell)
        log.warning("non-finite readouts: %s, %s", request.site, cell)


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
