"""One patched pass over a direction's base run: rows from a common first position
(``patched_pass``) or packed rows (``packed_pass``, :mod:`packing`), and what they reuse of the
base run (``base_run``: every block's output and every layer's keys and values)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .batching import gather_positions, rows_of
from .engine import Packed, Plan
from .hookpoints import Key
from .packing import Packing, attention_mask
from .padding import by_rows
from .prefix import BaseRun, empty_cache, keys_values, prefix_cache
from .schedule import prefix_reuse_blocker

if TYPE_CHECKING:
    from .experiment import Experiment


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
        ids,
        noise,
        plan,
        skip=skip,
        cache=cache,
        last=last,
        hidden_only=hidden_only,
        answers_only=True,
    )[0]


def packed_pass(
    exp: Experiment,
    direction: str,
    some: np.ndarray,
    first: int,
    packing: Packing,
    plan: Plan | None,
    hidden_only: bool = False,
    below: dict[int, tuple[tuple[int, ...], torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Answer-position logits (segments x pairs, segment-major) of packed segments on the base
    run's ``some`` pairs under ``plan`` (laid out over every position, rows segment-major):
    row ``r * len(some) + j`` of the pass holds packing row ``r`` on pair ``some[j]``.
    ``below`` maps segments to the positions where the layer below ``first`` differs from the
    base run for them, and its outputs there (every pair, positions, d_model: ``own_layer``)."""
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
    if below:
        skip[first - 1] = written(skip[first - 1], below, packing, some)
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
        ids,
        noise,
        packed_plan,
        skip=skip,
        cache=cache,
        packed=packed,
        hidden_only=hidden_only,
        answers_only=True,
    )[0]


def written(
    value: Any,
    below: dict[int, tuple[tuple[int, ...], torch.Tensor]],
    packing: Packing,
    some: np.ndarray,
) -> Any:
    """A packed pass's block output (a tensor, or a tuple led by one) with ``below``'s outputs
    written into their segments' slots (rows segment-major over the pairs ``some``)."""
    head = value[0] if isinstance(value, tuple) else value
    k, pairs = len(some), torch.as_tensor(some)
    for segment, (positions, outputs) in below.items():
        rows = torch.as_tensor(packing.row_of[segment] * k + np.arange(k))
        slots = torch.as_tensor(packing.slot_of[segment] + np.asarray(positions))
        slots -= packing.starts[segment]
        head[rows[:, None], slots] = outputs[pairs].to(head.device, head.dtype)
    return value


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
