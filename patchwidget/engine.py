"""Batched activation patching through nnsight: many patches per forward pass.

Row ``r`` of a batch carries one patch set; a boolean mask per hook point says which
(position, unit) cells of that row take the source activation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nnsight
import numpy as np
import torch

from .hookpoints import POINT_ORDER, RESID_MID, HookPoints, Key, Target
from .modellock import model_lock
from .units import patch_units

log = logging.getLogger(__name__)
INTERFERENCE_RETRIES = 5
# Hook points of a layer that come before its attention's output projection.
BEFORE_OUTPUT_PROJECTION = frozenset({"block_in", "q", "k", "v", "qkv", "pattern"})


@dataclass(frozen=True)
class Packed:
    """What a pass of packed rows (:mod:`packing`) hands the model: position ids (rows, width),
    the additive attention mask (rows, 1, width, cached + width), and the (row, slot) of each
    answer to read."""

    position_ids: torch.Tensor
    mask: torch.Tensor
    readout: tuple[torch.Tensor, torch.Tensor]
    starts: tuple[int, ...]  # each segment's first position


@dataclass(frozen=True)
class Plan:
    """Per hook point: mask (rows, pos, unit, 1) and source values (rows, pos, unit, width)."""

    masks: Mapping[Key, torch.Tensor]
    sources: Mapping[Key, torch.Tensor]


class Engine:
    """Runs plain, patched and capturing forward passes of an nnsight model."""

    def __init__(self, hooks: HookPoints, device: torch.device) -> None:
        self.hooks = hooks
        self.device = device

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict[Key, Any]]:
        """``_forward`` holding the model's lock: traces of one model never overlap.

        A trace of the same model that does not take the lock (a user's ``model.trace`` in
        another thread) can still break ours: then it is retried a few times.
        """
        for attempt in range(INTERFERENCE_RETRIES + 1):
            try:
                with model_lock(self.hooks.model):
                    return self._forward(*args, **kwargs)
            except Exception as error:
                if not _interference(error):
                    raise
                if attempt == INTERFERENCE_RETRIES:
                    raise RuntimeError(
                        "another trace of this model ran at the same time in another thread and "
                        f"broke this one ({type(error).__name__}: {error}). Wrap your own "
                        "model.trace(...) in `with pw.model_lock(model):`"
                    ) from error
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _forward(
        self,
        ids: torch.Tensor,
        noise: torch.Tensor | None = None,
        plan: Plan | None = None,
        save: frozenset[Key] = frozenset(),
        skip: Sequence[Any] = (),
        skip_after: Sequence[Any] = (),
        save_blocks: bool = False,
        last: torch.Tensor | None = None,
        cache: Any = None,
        packed: Packed | None = None,
        hidden_only: bool = False,
        answers_only: bool = False,
    ) -> tuple[torch.Tensor, dict[Key, Any]]:
        """Last-position logits (rows, vocab) and the unit views of the ``save`` hook points.

        ``last`` gives each row's own last token for right-padded rows of different lengths
        (None: every row ends at the last column). Causal attention keeps every real token from
        seeing the padding after it, and its position ids are those of the prompt run alone.

        ``skip[k]`` replaces block ``k``'s output without running it (rows' base-run outputs, for
        layers before the first patch); ``skip_after`` does the same for the last
        ``len(skip_after)`` blocks (a pass that needs one layer's output only). ``save_blocks``
        also returns every block's raw output under the key ``("block_raw", layer)``. ``cache`` is
        a transformers key/value cache the model reads and fills: an empty one collects every
        layer's keys and values; one holding the first positions makes ``ids`` (and ``noise``,
        ``plan``, ``skip``) the positions after them. ``packed`` runs rows that hold several
        segments (:mod:`packing`): their position ids and attention mask, and the (row, slot)
        of each answer to read; the logits then come one per answer. ``hidden_only`` returns
        the final hidden states the answers would be read from (answers, d_model) instead of
        logits, and runs no vocabulary projection (see ``Architecture.plain_logits``).
        ``answers_only`` runs the last layer's attention output projection and MLP at the
        answer positions only (``HookPoints.per_position``; nothing reads their outputs
        elsewhere), unless a hook point of that layer from the projection's input on is patched
        or saved.
        """
        hooks = self.hooks
        masks = plan.masks if plan else {}
        sources = plan.sources if plan else {}
        final = hooks.dims.n_layers - 1
        answers_only = answers_only and all(
            point in BEFORE_OUTPUT_PROJECTION for point, layer in [*masks, *save] if layer == final
        )
        layers = sorted({layer for _, layer in [*masks, *save]})
        if save_blocks:
            layers = list(range(hooks.dims.n_layers))
        if any(point == "pattern" for point, _ in [*masks, *save]):
            hooks.pattern_call()  # instruments the attention source; can't happen inside a trace
        saved: dict[Key, Any] = {}
        readout = None if last is None else (torch.arange(len(ids)), last)
        if packed is not None:
            readout = packed.readout
            options: dict[str, Any] = {
                "logits_to_keep": 0,
                "use_cache": False,
                "position_ids": packed.position_ids,
                "attention_mask": packed.mask,
            }
            if cache is not None:
                options["cache"] = cache
        else:
            options = {"logits_to_keep": 1 if last is None else 0, "use_cache": False}
        if cache is not None and packed is None:
            # Padded rows (``last``) never get here: schedule.start_of runs them from position 0.
            assert last is None, "a key/value prefix cache needs rows of one length"
            # The mask covers the cached positions too (nnsight would make one for ``ids`` only).
            width = cache.get_seq_length() + ids.shape[1]
            options["cache"] = cache
            options["attention_mask"] = torch.ones(ids.shape[0], width, dtype=torch.long)
        log.debug(
            "forward: %d rows, %d patched and %d saved hook points, %d layers skipped",
            len(ids),
            len(masks),
            len(save),
            len(skip),
        )
        with torch.no_grad(), hooks.model.trace(ids.to(self.device), **options):
            if noise is not None:
                embed = hooks.embed()
                clean = embed.output
                embed.output = clean + noise.to(clean.device, clean.dtype)
            for layer, replacement in enumerate(skip):
                hooks.block(layer).skip(replacement)
            for layer in layers:
                block = hooks.block(layer)
                mid_key = (RESID_MID, layer)
                needs_mid = mid_key in masks or mid_key in save
                x_in = None
                for point in POINT_ORDER:
                    key = (point, layer)
                    wanted = key in masks or key in save
                    if needs_mid and point in ("block_in", "attn_contrib"):
                        wanted = True
                    if not wanted:
                        continue
                    envoy = hooks.envoy(block, point)
                    raw, tensor = hooks.read(envoy, point)
                    units = hooks.to_units(point, tensor)
                    changed = key in masks
                    if changed:
                        units = patch_units(masks[key], sources[key], units)
                    if point == "block_in":
                        x_in = units
                    if point == "attn_contrib" and needs_mid:
                        assert x_in is not None, "block_in is read before attn_contrib"
                        mid = x_in + units
                        if mid_key in masks:
                            mid = patch_units(masks[mid_key], sources[mid_key], mid)
                            units = mid - x_in
                            changed = True
                        if mid_key in save:
                            saved[mid_key] = nnsight.save(mid)
                    if changed:
                        hooks.write(envoy, point, raw, hooks.from_units(point, units, tensor))
                    if key in save:
                        saved[key] = nnsight.save(units)
                if save_blocks:
                    saved[("block_raw", layer)] = nnsight.save(block.output)
            for layer, replacement in enumerate(skip_after, start=final + 1 - len(skip_after)):
                hooks.block(layer).skip(replacement)
            if answers_only:
                every = torch.arange(len(ids))
                answers = readout or (every, torch.full_like(every, ids.shape[1] - 1))
                at_answers(hooks.per_position(final), answers)
            # The answer position's hidden state arrives as a strided view; a contiguous copy
            # makes the vocabulary projection ~10x faster on CPU.
            unembed = hooks.unembed()
            if readout is None:
                picked = unembed.input.contiguous()
            else:
                hidden = unembed.input
                rows, slots = (index.to(hidden.device) for index in readout)
                picked = hidden[rows, slots][:, None]
            if hidden_only:  # named logits all the same: see _interference
                logits = nnsight.save(picked[:, -1])
                unembed.input = picked[:0]
            else:
                unembed.input = picked
                logits = nnsight.save(hooks.model.output.logits[:, -1])
        return logits, dict(saved)

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (rows, vocab) of final hidden states (rows, d_model) saved by
        ``forward(..., hidden_only=True)``: the unembedding module, run directly, holding the
        model's lock (nnsight would hand the call to a trace running in another thread)."""
        module = self.hooks.unembed()._module
        with model_lock(self.hooks.model), torch.no_grad():
            return module(hidden[:, None])[:, 0]

    def plan(
        self,
        patch_sets: Sequence[Sequence[Target]],
        pair_of_row: np.ndarray,
        source_values: Mapping[Key, torch.Tensor],
        length: int,
        position_table: np.ndarray | None = None,
        start: int = 0,
    ) -> Plan:
        """Masks and gathered sources for rows = patch sets repeated over their pairs, over
        positions ``start .. length - 1`` (no patch may touch an earlier position).

        ``pair_of_row`` has ``len(patch_sets) * n_pairs`` entries; row ``i * n_pairs + p`` is
        patch set ``i`` on pair ``p``. With ``position_table`` (names, pairs), a target's
        positions are names: name ``k`` is token ``position_table[k, pair]`` of each pair.
        """
        n_rows = len(pair_of_row)
        per_set = n_rows // max(len(patch_sets), 1)
        masks: dict[Key, np.ndarray] = {}
        for i, targets in enumerate(patch_sets):
            rows = slice(i * per_set, (i + 1) * per_set)
            for t in targets:
                key = (t.point, t.layer)
                if key not in masks:
                    units = self.hooks.n_units(t.point)
                    masks[key] = np.zeros((n_rows, length - start, units), dtype=bool)
                if t.positions is None or position_table is None:
                    pos = slice(None) if t.positions is None else [p - start for p in t.positions]
                    masks[key][rows, pos, t.unit] = True
                    continue
                row_ids = np.arange(rows.start, rows.stop)
                for name in t.positions:
                    columns = position_table[name, pair_of_row[row_ids]] - start
                    masks[key][row_ids, columns, t.unit] = True
        rows_t = torch.as_tensor(pair_of_row, device=self.device)
        return Plan(
            masks={k: torch.from_numpy(m).to(self.device)[..., None] for k, m in masks.items()},
            sources={k: source_values[k][:, start:].to(self.device)[rows_t] for k in masks},
        )


def at_answers(envoys: Sequence[Any], answers: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Inside a trace: each envoy (a module that works position by position) runs on the
    (row, slot) ``answers`` only; its output elsewhere is zero."""
    for envoy in envoys:
        x = envoy.input
        rows, slots = (index.to(x.device) for index in answers)
        envoy.input = x[rows, slots][None]
        y = envoy.output
        full = y.new_zeros((*x.shape[:-1], y.shape[-1]))
        full[rows, slots] = y[0]
        envoy.output = full


def rows_per_batch(
    dims: Any, length: int, device: torch.device, dtype: torch.dtype, budget: int | None
) -> int:
    """How many rows fit one forward pass within a memory budget (bytes)."""
    elem = torch.finfo(dtype).bits // 8
    activations = elem * length * (10 * dims.d_model + 3 * dims.d_mlp + 4 * dims.n_heads * length)
    per_row = activations + 16 * dims.vocab_size
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cap, budget = 512, budget or free // 2
    else:
        cap, budget = 64, budget or 512 * 2**20
    return int(max(1, min(cap, budget // per_row)))


def _interference(error: BaseException) -> bool:
    """Whether an nnsight failure comes from another thread tracing the same model."""
    text = str(error)
    return (
        "different thread" in text
        or "Cannot switch to a different thread" in text
        or (isinstance(error, UnboundLocalError) and "logits" in text)
    )
