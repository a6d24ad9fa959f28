"""The run loop: patch sets grouped into batched forward passes, with progress and cancel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import checks
from .batching import (
    BatchCost,
    first_layer,
    gather_positions,
    group_bands,
    group_batches,
    rows_of,
    split_runs,
)
from .costs import batch_cost, memory_rows, memory_tokens
from .engine import Packed, Plan
from .hookpoints import Key, Target
from .packing import Packing, attention_mask, pack, packing_blocker
from .padding import by_rows
from .prefix import (
    BaseRun,
    changed_cells,
    changes_nothing,
    empty_cache,
    first_change,
    keys_values,
    prefix_cache,
    read_cells,
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
            pending.append((members, run_group(exp, request, plan, members, sources)))
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


@dataclass(frozen=True)
class Schedule:
    """How a request's patch sets run: the cells that can change a readout (``patch_sets``),
    each set's first (layer, position), the sets that change nothing, and the passes."""

    patch_sets: list[list[Target]]
    starts: list[tuple[int, int]]
    unchanged: list[int]
    groups: list[list[int]]
    packs: bool
    deferred: bool  # passes return final hidden states; logits are computed per publish
    publish_rows: int  # answers (sets x pairs) gathered before their readouts are computed


def schedule(exp: Experiment, request: RunRequest, sources: dict[Key, torch.Tensor]) -> Schedule:
    """The passes of ``request``: where the base run's prefix can be reused, sets start at their
    first changed layer and position, sets that change nothing run no pass, and the others are
    grouped by the cost model (in order, for an ``ordered`` request)."""
    patch_sets = request.patch_sets
    starts = [(first_layer(targets), 0) for targets in patch_sets]
    unchanged: list[int] = []
    if prefix_reuse_blocker(exp) is None:
        n_layers, length = exp.dims.n_layers, exp.length
        patch_sets = [read_cells(targets, n_layers, length) for targets in patch_sets]
        keys = set(sources)
        changed = changed_cells(sources, base_values(exp, request.direction, keys))
        starts = [start_of(exp, targets, changed) for targets in patch_sets]
        # A set that writes only values already there runs no pass: its readouts are the
        # base run's, exactly (a shorter pass would differ from them in the last float bits,
        # breaking the ties that rank comparisons such as verify() rely on).
        unchanged = [
            i
            for i, targets in enumerate(patch_sets)
            if reuse_blocker(targets) is None and changes_nothing(targets, changed, length)
        ]
    todo = sorted(set(range(len(patch_sets))) - set(unchanged))
    cost = batch_cost_of(exp)
    packs = packing_allowed(exp, [patch_sets[i] for i in todo])
    if request.ordered:
        starts_at = [starts[i][1] if packs else 0 for i in todo]
        tokens = [(exp.length - s) * exp.n_pairs for s in starts_at]
        groups = split_runs(list(range(len(todo))), tokens, exp.n_pairs, cost)
    else:
        grouping = group_bands if packs else group_batches
        todo_starts = [starts[i] for i in todo]
        groups = grouping(todo_starts, exp.n_pairs, exp.dims.n_layers, exp.length, cost)
    # Each pass's vocabulary projection reads every unembedding weight, however few answers it
    # has: where the model's logits are that projection's output, answers are gathered over
    # passes (up to ~64 MiB of logits, at most 1,024 rows) and projected at once.
    deferred = exp.arch.plain_logits(exp._hf.config)
    publish_rows = min(1024, max(1, 2**24 // exp.dims.vocab_size)) if deferred else 1
    return Schedule(
        patch_sets,
        starts,
        unchanged,
        [[todo[i] for i in g] for g in groups],
        packs,
        deferred,
        publish_rows,
    )


def run_group(
    exp: Experiment,
    request: RunRequest,
    plan: Schedule,
    members: list[int],
    sources: dict[Key, torch.Tensor],
) -> torch.Tensor:
    """The answers (sets, pairs, vocab) of the patch sets ``members`` run together (on slices of
    the pairs where they don't fit one pass): logits, or final hidden states (sets, pairs,
    d_model) where ``plan.deferred``."""
    n_pairs, length = exp.n_pairs, exp.length
    first = min(plan.starts[i][0] for i in members)
    start = 0 if plan.packs else min(plan.starts[i][1] for i in members)
    chunk = [trim(plan.patch_sets[i], first, start) for i in members]
    set_starts = [plan.starts[i][1] for i in members]
    packing = pack(set_starts, length, length)
    width = int(sum(length - s for s in set_starts)) if plan.packs else length - start
    parts = []
    for some in pair_slices(n_pairs, width, batch_cost_of(exp)):
        pairs = np.tile(some, len(chunk))
        masks = exp.engine.plan(chunk, pairs, sources, length, exp._position_table, start)
        if plan.packs:
            got = packed_pass(exp, request.direction, some, first, packing, masks, plan.deferred)
        else:
            got = patched_pass(exp, request.direction, pairs, first, start, masks, plan.deferred)
        parts.append((some, got.reshape(len(chunk), len(some), -1)))
    if len(parts) == 1:
        return parts[0][1]
    out = torch.empty(len(chunk), n_pairs, parts[0][1].shape[-1], dtype=parts[0][1].dtype)
    for some, got in parts:
        out[:, torch.as_tensor(some)] = got.to(out.device)
    return out


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


def prefix_reuse_blocker(exp: Experiment) -> str | None:
    """Why no pass of ``exp`` may start after position 0, or None when prefixes can be reused.

    Prompts of different lengths are right-padded, so one column holds different tokens'
    positions in different pairs and a patch set's first changed position differs by pair;
    their padding also makes clean and corrupted activations differ at columns that are no
    real token of one of them, and each row is read at its own last token (``exp._last``), which
    a pass over a suffix would have to re-index. Named positions (``exp._position_table``) are
    names, not columns, which ``first_change`` and ``trim`` read as columns. Rather than risk an
    inexact prefix for these, such experiments run every position (layers before a batch's first
    patch are still skipped, and batches still grouped by the cost model)."""
    if exp._last is not None:
        return "prompts of different lengths (right-padded, each read at its own last token)"
    if exp._position_table is not None:
        return "named positions (a name is a different column in each pair)"
    return None


def packing_allowed(exp: Experiment, patch_sets: list[list[Target]]) -> bool:
    """Whether these patch sets run in packed passes (:mod:`packing`): they need the base run's
    prefix (``prefix_reuse_blocker``), no set may need every position (``reuse_blocker``), and
    the model must take a 4-D attention mask (``packing_blocker``); otherwise passes are
    rectangles of rows from a common first position (``group_batches``)."""
    return (
        prefix_reuse_blocker(exp) is None
        and packing_blocker(exp._hf.config, exp.length) is None
        and all(reuse_blocker(targets) is None for targets in patch_sets)
    )


def pair_slices(n_pairs: int, width: int, cost: BatchCost) -> list[np.ndarray]:
    """The pairs split into slices that each fit one pass of ``width`` positions: at most
    ``cost.max_rows`` rows and ``cost.max_tokens`` rows x positions (one slice when a patch
    set's pairs fit)."""
    size = max(1, cost.max_tokens // max(1, width))
    if cost.max_rows is not None:
        size = min(size, cost.max_rows)
    if n_pairs <= size:
        return [np.arange(n_pairs)]
    return np.array_split(np.arange(n_pairs), -(-n_pairs // size))


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
    exp: Experiment,
    direction: str,
    pairs: np.ndarray,
    first: int,
    start: int,
    plan: Plan | None,
    hidden_only: bool = False,
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
    last = None if exp._last is None else exp._last[pairs]
    ids = run_input.ids[pairs][:, start:]
    return exp.engine.forward(
        ids, noise, plan, skip=skip, cache=cache, last=last, hidden_only=hidden_only
    )[0]


def packed_pass(
    exp: Experiment,
    direction: str,
    some: np.ndarray,
    first: int,
    packing: Packing,
    plan: Plan | None,
    hidden_only: bool = False,
) -> torch.Tensor:
    """Answer-position logits (segments x pairs, segment-major) of packed segments on the base
    run's ``some`` pairs under ``plan`` (laid out over every position, rows segment-major):
    row ``r * len(some) + j`` of the pass holds packing row ``r`` on pair ``some[j]``."""
    run_input, base = exp._base_run(direction), base_run(exp, direction)
    k, device = len(some), exp.device
    segment = np.repeat(packing.segment, k, axis=0)
    position = torch.as_tensor(np.repeat(packing.position, k, axis=0))
    pair_of_row = torch.as_tensor(np.tile(some, packing.rows))
    pair_index = np.tile(np.arange(k), packing.rows)[:, None]
    plan_row = torch.as_tensor(np.maximum(segment, 0) * k + pair_index)
    real = torch.as_tensor(segment >= 0).to(device)[..., None, None]
    packed_plan = None
    if plan is not None:
        rows, slots = plan_row.to(device), position.to(device)
        packed_plan = Plan(
            masks={key: m[rows, slots] & real for key, m in plan.masks.items()},
            sources={key: v[rows, slots] for key, v in plan.sources.items()},
        )
    skip = [gather_positions(out, pair_of_row, position) for out in base.blocks[:first]]
    noise = None
    if run_input.noise is not None:
        noise = run_input.noise[pair_of_row[:, None], position]
    cache = None
    if packing.cached:
        assert base.kv is not None, "packed passes run only where keys and values were kept"
        cache = prefix_cache(base.kv, pair_of_row, packing.cached, exp._hf.config)
    end_row, end_slot = packing.ends()
    packed = Packed(
        position_ids=position.to(device),
        mask=attention_mask(packing, exp.dtype).repeat_interleave(k, dim=0).to(device),
        readout=(
            torch.as_tensor((end_row[:, None] * k + np.arange(k)).ravel()),
            torch.as_tensor(np.repeat(end_slot, k)),
        ),
        starts=packing.starts,
    )
    ids = run_input.ids[pair_of_row[:, None], position]
    return exp.engine.forward(
        ids, noise, packed_plan, skip=skip, cache=cache, packed=packed, hidden_only=hidden_only
    )[0]


def base_blocks(exp: Experiment, direction: str) -> list[Any]:
    """Every block's output on the base run of a direction (to skip unpatched layers)."""
    return base_run(exp, direction).blocks


def base_run(exp: Experiment, direction: str) -> BaseRun:
    """Every block's output and every layer's keys and values on the base run of a direction."""
    if direction not in exp._block_outputs:
        run_input = exp._base_run(direction)
        noise = run_input.noise
        caches: list[Any] = []
        reuse = prefix_reuse_blocker(exp) is None

        def run_rows(rows: torch.Tensor) -> tuple[torch.Tensor, dict[Key, Any]]:
            # One cache per slice of rows (at most ``exp._rows()`` per pass, as every unpatched
            # run); their keys and values are joined along rows below.
            cache = empty_cache() if reuse else None
            if cache is not None:
                caches.append(cache)
            return exp.engine.forward(
                run_input.ids[rows],
                None if noise is None else noise[rows],
                save_blocks=True,
                cache=cache,
            )

        saved = by_rows(run_rows, len(run_input.ids), exp._rows())[1]
        blocks = [saved[("block_raw", layer)] for layer in range(exp.dims.n_layers)]
        kv = None
        if caches:
            parts = [keys_values(cache) for cache in caches]
            kv = [
                (torch.cat([p[i][0] for p in parts]), torch.cat([p[i][1] for p in parts]))
                for i in range(len(parts[0]))
            ]
        exp._block_outputs[direction] = BaseRun(blocks, kv)
    return exp._block_outputs[direction]


def batch_cost_of(exp: Experiment) -> BatchCost:
    """The cost model of the experiment's passes (``exp._batch_cost`` where one was set); the
    row cap follows ``batch_size`` / ``memory_budget`` as they are now."""
    max_rows = exp.batch_size or memory_rows(exp.dims, exp.device, exp.memory_budget)
    if exp._batch_cost is not None:
        return replace(exp._batch_cost, max_rows=max_rows)
    tokens = memory_tokens(exp.dims, exp.length, exp.device, exp.dtype, exp.memory_budget)
    return batch_cost(exp.dims, exp.length, exp.device, tokens, max_rows)


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
