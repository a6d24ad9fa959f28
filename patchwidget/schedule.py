"""Which passes a request's patch sets run in: each set's first changed layer and position,
the sets that change nothing, packed or rectangular passes, and their grouping under the cost
model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from .batching import BatchCost, first_layer, group_bands, group_batches, split_runs
from .costs import batch_cost, memory_rows, memory_tokens
from .hookpoints import Key, Target
from .own_layer import own_positions, worthwhile
from .packing import packing_blocker
from .prefix import changed_cells, changes_nothing, first_change, read_cells, reuse_blocker

if TYPE_CHECKING:
    from .experiment import Experiment
    from .runner import RunRequest


@dataclass(frozen=True)
class Schedule:
    """How a request's patch sets run: the cells that can change a readout (``patch_sets``),
    each set's first (layer, position), the sets that change nothing, and the passes."""

    patch_sets: list[list[Target]]
    starts: list[tuple[int, int]]
    unchanged: list[int]
    groups: list[list[int]]
    packs: bool
    cost: BatchCost  # the cost model the passes were grouped by; pair slices follow it too
    deferred: bool  # passes return final hidden states; logits are computed per publish
    publish_rows: int  # answers (sets x pairs) gathered before their readouts are computed
    # Sets whose first layer changes only its own positions P (:mod:`own_layer`): set -> P.
    # Their starts are one layer later; a pass that starts there reads that layer's output.
    own: dict[int, tuple[int, ...]]


def schedule(exp: Experiment, request: RunRequest, sources: dict[Key, torch.Tensor]) -> Schedule:
    """The passes of ``request``: where the base run's prefix can be reused, sets start at their
    first changed layer and position, sets that change nothing run no pass, and the others are
    grouped by the cost model (in order, for an ``ordered`` request)."""
    patch_sets = request.patch_sets
    starts = [(first_layer(targets), 0) for targets in patch_sets]
    unchanged: list[int] = []
    changed: dict[Key, torch.Tensor] | None = None
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
    own: dict[int, tuple[int, ...]] = {}
    if packs and changed is not None and not request.ordered:
        own = own_first_layers(exp, patch_sets, starts, todo, changed, cost)
        for i in own:
            starts[i] = (starts[i][0] + 1, starts[i][1])
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
        cost,
        deferred,
        publish_rows,
        own,
    )


def own_first_layers(
    exp: Experiment,
    patch_sets: list[list[Target]],
    starts: list[tuple[int, int]],
    todo: list[int],
    changed: dict[Key, torch.Tensor],
    cost: BatchCost,
) -> dict[int, tuple[int, ...]]:
    """The sets (of ``todo``) whose first layer runs in one-layer passes (:mod:`own_layer`),
    with the positions it changes, where that saves work under the cost model."""
    n_layers, length = exp.dims.n_layers, exp.length
    candidates = {}
    for i in todo:
        positions = own_positions(patch_sets[i], starts[i], changed, n_layers, length)
        if positions is not None:
            candidates[i] = positions
    return worthwhile(candidates, starts, exp.n_pairs, length, cost)


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


def over_pair_slices(
    n_pairs: int, width: int, cost: BatchCost, run: Callable[[np.ndarray], torch.Tensor]
) -> torch.Tensor:
    """``run(some)`` (items, len(some), ...) on each slice of the pairs that fits one pass of
    ``width`` positions (``pair_slices``), joined along the pairs: (items, n_pairs, ...)."""
    parts = [(some, run(some)) for some in pair_slices(n_pairs, width, cost)]
    if len(parts) == 1:
        return parts[0][1]
    like = parts[0][1]
    out = like.new_empty(like.shape[0], n_pairs, *like.shape[2:])
    for some, got in parts:
        out[:, torch.as_tensor(some)] = got
    return out


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


def batch_cost_of(exp: Experiment) -> BatchCost:
    """The cost model of the experiment's passes (``exp._batch_cost`` where one was set); the
    row cap follows ``batch_size`` / ``memory_budget`` as they are now."""
    max_rows = exp.batch_size or memory_rows(exp.dims, exp.device, exp.memory_budget)
    if exp._batch_cost is not None:
        return replace(exp._batch_cost, max_rows=max_rows)
    tokens = memory_tokens(exp.dims, exp.length, exp.device, exp.dtype, exp.memory_budget)
    return batch_cost(exp.dims, exp.length, exp.device, tokens, max_rows)
