"""One forward and a few backward passes: activations and readout gradients at hook points.

The engine side of attribution patching. Parameters are frozen for the pass, and a zero
tensor that requires grad is added at each requested hook point, so autograd keeps activations
only downstream of the earliest swept point and computes gradients only where they are read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nnsight
import torch

from .hookpoints import POINT_ORDER, RESID_MID, HookPoints, Key
from .modellock import model_lock

GRADIENT_FIELDS = ("logit_correct", "logit_incorrect", "lse")
ATTENTION_CALL = "attention"  # key point name for the attention function's (query, key, mask)


@dataclass(frozen=True)
class GradientPass:
    """Base-run unit views (pairs, pos, unit, width) and, per readout field, their gradients.

    ``dropped[l]`` holds the gradients with the backward pass blocked through layer ``l``'s
    writes to the residual stream (GradDrop); empty unless asked for. ``attention[layer]`` holds
    the attention function's inputs (query, key, mask, scaling, softcap) for the QK fix.
    """

    base: dict[Key, torch.Tensor]
    grads: dict[Key, torch.Tensor]  # (pairs, pos, unit, width, len(GRADIENT_FIELDS))
    dropped: dict[int, dict[Key, torch.Tensor]]
    attention: dict[int, dict[str, Any]]


class _Gate(torch.autograd.Function):
    """Identity forward; backward passes the gradient unless its layer is being dropped."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: int, state: dict) -> torch.Tensor:
        ctx.layer, ctx.state = layer, state
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None]:
        return (torch.zeros_like(grad) if ctx.state["drop"] == ctx.layer else grad), None, None


@contextlib.contextmanager
def frozen_parameters(module: torch.nn.Module) -> Iterator[None]:
    """Parameters need no gradients for attribution; restore their flags afterwards."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def gradient_pass(
    hooks: HookPoints,
    device: torch.device,
    ids: torch.Tensor,
    noise: torch.Tensor | None,
    keys: frozenset[Key],
    correct: torch.Tensor,
    incorrect: torch.Tensor,
    grad_drop: bool = False,
    attention_layers: frozenset[int] = frozenset(),
) -> GradientPass:
    """Run ``ids`` (+ embedding ``noise``) once and backpropagate each readout field.

    ``keys`` are (hook point, layer) pairs, ``resid_mid`` included. ``correct``/``incorrect``
    hold each row's answer token ids.
    """
    n_layers = hooks.dims.n_layers
    layers = sorted({layer for _, layer in keys} | set(attention_layers))
    gated = range(layers[0] if layers else n_layers, n_layers) if grad_drop else range(0)
    if any(point == "pattern" for point, _ in keys) or attention_layers:
        hooks.pattern_call()
    state: dict[str, int | None] = {"drop": None}
    base: dict[Key, Any] = {}
    deltas: dict[Key, Any] = {}
    attention: dict[int, Any] = {}
    with (
        model_lock(hooks.model),
        frozen_parameters(hooks.model._module),
        torch.enable_grad(),
        hooks.model.trace(ids.to(device), logits_to_keep=1, use_cache=False),
    ):
        if noise is not None:
            embed = hooks.embed()
            clean = embed.output
            embed.output = clean + noise.to(clean.device, clean.dtype)
        for layer in sorted(set(layers) | set(gated)):
            block = hooks.block(layer)
            mid_key = (RESID_MID, layer)
            x_in = None
            for point in POINT_ORDER:
                key = (point, layer)
                wanted = key in keys or (mid_key in keys and point in ("block_in", "attn_contrib"))
                gate = layer in gated and point in ("attn_contrib", "mlp_contrib")
                if point == "pattern" and layer in attention_layers:
                    call = getattr(hooks.attention(layer).source, hooks.pattern_call())
                    attention[layer] = nnsight.save(call.inputs)
                if not (wanted or gate):
                    continue
                envoy = hooks.envoy(block, point)
                raw, tensor = hooks.read(envoy, point)
                units = hooks.to_units(point, tensor)
                if wanted:
                    delta = torch.zeros_like(units, requires_grad=True)
                    base[key] = nnsight.save(units.detach())
                    deltas[key] = nnsight.save(delta)
                    units = units + delta
                if point == "block_in":
                    x_in = units
                if point == "attn_contrib" and mid_key in keys:
                    assert x_in is not None  # block_in is read whenever resid_mid is
                    base[mid_key] = nnsight.save((x_in + units).detach())
                    deltas[mid_key] = deltas[key]
                if gate:
                    units = _Gate.apply(units, layer, state)
                hooks.write(envoy, point, raw, hooks.from_units(point, units, tensor))
        logits = nnsight.save(hooks.model.output.logits[:, -1])
    readouts = _readout_sums(logits.float(), correct, incorrect)
    wanted_keys = sorted(keys)
    grads = _backward(readouts, [deltas[k] for k in wanted_keys])
    dropped = {}
    for layer in gated:
        state["drop"] = layer
        dropped[layer] = dict(
            zip(wanted_keys, _backward(readouts, [deltas[k] for k in wanted_keys]), strict=True)
        )
    state["drop"] = None
    return GradientPass(
        base={k: base[k] for k in wanted_keys},
        grads=dict(zip(wanted_keys, grads, strict=True)),
        dropped=dropped,
        attention={layer: _attention_inputs(v) for layer, v in attention.items()},
    )


def attention_inputs(
    hooks: HookPoints,
    device: torch.device,
    ids: torch.Tensor,
    noise: torch.Tensor | None,
    layers: frozenset[int],
) -> dict[int, dict[str, Any]]:
    """The attention function's (query, key, mask, scaling, softcap) per layer of one run."""
    call_name = hooks.pattern_call()
    saved = {}
    with (
        model_lock(hooks.model),
        torch.no_grad(),
        hooks.model.trace(ids.to(device), logits_to_keep=1, use_cache=False),
    ):
        if noise is not None:
            embed = hooks.embed()
            clean = embed.output
            embed.output = clean + noise.to(clean.device, clean.dtype)
        for layer in sorted(layers):
            call = getattr(hooks.attention(layer).source, call_name)
            saved[layer] = nnsight.save(call.inputs)
    return {layer: _attention_inputs(v) for layer, v in saved.items()}


def _attention_inputs(inputs: Any) -> dict[str, Any]:
    args, kwargs = inputs
    _, query, key, _, mask = args[:5]
    return {
        "query": query.detach(),
        "key": key.detach(),
        "mask": None if mask is None else mask.detach(),
        "scaling": kwargs.get("scaling"),
        "softcap": kwargs.get("softcap"),
    }


def _readout_sums(
    logits: torch.Tensor, correct: torch.Tensor, incorrect: torch.Tensor
) -> list[torch.Tensor]:
    """Each gradient field summed over rows (rows are independent, so one backward serves all)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return [
        logits[rows, correct].sum(),
        logits[rows, incorrect].sum(),
        torch.logsumexp(logits, dim=-1).sum(),
    ]


def _backward(outputs: list[torch.Tensor], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of every output w.r.t. every input, stacked on a last axis of fields."""
    per_field = [
        torch.autograd.grad(out, inputs, retain_graph=True, allow_unused=True) for out in outputs
    ]
    return [
        torch.stack(
            [torch.zeros_like(x) if g[i] is None else g[i] for g in per_field], dim=-1
        ).detach()
        for i, x in enumerate(inputs)
    ]
