"""One-layer passes: the first layer's outputs of own-position patch sets (:mod:`own_layer`),
and the store that runs them just before the packed passes that read them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .batching import gather_positions
from .engine import Packed, Plan
from .hookpoints import Key, Target
from .own_layer import MAX_WIDTH
from .packing import additive
from .passes import base_run
from .prefix import prefix_cache
from .schedule import over_pair_slices

if TYPE_CHECKING:
    from .experiment import Experiment
    from .schedule import Schedule


def own_layer_pass(
    exp: Experiment,
    direction: str,
    layer: int,
    sets: Sequence[Sequence[Target]],
    positions: Sequence[tuple[int, ...]],
    sources: dict[Key, torch.Tensor],
    pairs: np.ndarray,
) -> torch.Tensor:
    """Block ``layer``'s outputs (slots, pairs, d_model) on the base run's ``pairs`` with each
    set's cells of that layer patched, at each set's ``positions`` (slots set-major).

    One row per pair holds every slot, each a segment of one position; a slot sees the base
    run's keys and values up to its position (its own are the base run's too: its cells come
    after them), and its input is the base run's: the output of the layer below, or for layer 0
    the embedding (and noise). Every other layer is skipped."""
    run_input, base = exp._base_run(direction), base_run(exp, direction)
    assert base.kv is not None, "one-layer passes run only where keys and values were kept"
    owner = np.asarray([o for o, p in enumerate(positions) for _ in p])
    position = np.asarray([q for p in positions for q in p])
    k, width, length = len(pairs), len(position), exp.length
    rows = torch.as_tensor(pairs)
    slots = torch.as_tensor(position).expand(k, width)
    masks: dict[Key, np.ndarray] = {}
    for o, targets in enumerate(sets):
        for t in targets:
            if t.layer != layer:
                continue
            key = (t.point, t.layer)
            if key not in masks:
                masks[key] = np.zeros((width, exp.engine.hooks.n_units(t.point)), dtype=bool)
            mine = owner == o
            if t.positions is not None:
                mine &= np.isin(position, t.positions)
            masks[key][mine, t.unit] = True
    device = exp.device
    plan = Plan(
        masks={
            key: torch.from_numpy(m).to(device)[None, :, :, None].expand(k, -1, -1, -1)
            for key, m in masks.items()
        },
        sources={key: sources[key][rows[:, None], slots].to(device) for key in masks},
    )
    allowed = np.zeros((width, length + width), dtype=bool)
    allowed[:, :length] = np.arange(length)[None, :] <= position[:, None]
    mask = additive(allowed, exp.dtype)
    below = base.blocks[max(layer - 1, 0)]
    filler = gather_positions(below, rows, slots)
    noise = None if run_input.noise is None else run_input.noise[rows[:, None], slots]
    packed = Packed(
        position_ids=slots.to(device),
        mask=mask.to(device)[None, None].expand(k, -1, -1, -1),
        readout=(torch.arange(k), torch.zeros(k, dtype=torch.long)),
        starts=tuple(int(q) for q in position),
    )
    key = ("block_out", layer)
    _, saved = exp.engine.forward(
        run_input.ids[rows[:, None], slots],
        noise,
        plan,
        save=frozenset([key]),
        skip=[filler] * layer,
        skip_after=[filler] * (exp.dims.n_layers - layer - 1),
        # Every position, even in sliding-window layers: the mask keeps each slot to its own
        # window (packing_blocker: no window is shorter than the prompt here).
        cache=prefix_cache(base.kv, rows, length, None),
        packed=packed,
        hidden_only=True,
    )
    return saved[key].reshape(k, width, -1).transpose(0, 1)


class OwnOutputs:
    """First-layer outputs of a request's own-position sets (``Schedule.own``), computed by
    one-layer passes of up to a pass's positions just before the packed passes that read them,
    in the order those run, and dropped once read."""

    def __init__(
        self, exp: Experiment, direction: str, plan: Schedule, sources: dict[Key, torch.Tensor]
    ) -> None:
        self.exp, self.direction, self.plan, self.sources = exp, direction, plan, sources
        self.queue: dict[int, list[int]] = {}
        for members in plan.groups:
            for i in self.readers(members):
                self.queue.setdefault(plan.starts[i][0] - 1, []).append(i)
        self.ready: dict[int, torch.Tensor] = {}

    def readers(self, members: Sequence[int]) -> list[int]:
        """The sets of a pass that read a one-layer pass's output: those whose packed pass
        starts right after their own-position layer (a pass that starts earlier computes that
        layer itself)."""
        plan = self.plan
        first = min(plan.starts[i][0] for i in members)
        return [i for i in members if i in plan.own and plan.starts[i][0] == first]

    def take(self, members: Sequence[int]) -> dict[int, torch.Tensor]:
        """Per reader of the pass ``members``: its layer's outputs (pairs, |P|, d_model)."""
        out = {}
        for i in self.readers(members):
            if i not in self.ready:
                self._run(self.plan.starts[i][0] - 1)
            out[i] = self.ready.pop(i)
        return out

    def _run(self, layer: int) -> None:
        """The next sets of ``layer``'s queue, up to one pass's positions, on every pair."""
        plan, n_pairs = self.plan, self.exp.n_pairs
        width = max(1, min(MAX_WIDTH, plan.cost.max_tokens // n_pairs))
        queue, used = self.queue[layer], 0
        batch: list[int] = []
        while queue and (not batch or used + len(plan.own[queue[0]]) <= width):
            batch.append(queue.pop(0))
            used += len(plan.own[batch[-1]])
        sets = [plan.patch_sets[i] for i in batch]
        positions = [plan.own[i] for i in batch]
        slots = over_pair_slices(
            n_pairs,
            used,
            plan.cost,
            lambda some: own_layer_pass(
                self.exp, self.direction, layer, sets, positions, self.sources, some
            ),
        )
        offsets = np.cumsum([0, *(len(p) for p in positions)])
        for n, i in enumerate(batch):
            self.ready[i] = slots[offsets[n] : offsets[n + 1]].transpose(0, 1)
