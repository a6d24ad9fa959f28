"""Path patching in one forward pass: a sender's patched output reaches only its receivers.

Each patch set runs on two batch rows of the base run: a *main* row, which the readout comes
from, and a *view* row, which carries the residual stream as the receivers should see it. The
view row's every attention and MLP contribution is overwritten with the main row's, except the
senders', which take their source value; so at every layer ``view = main + (source − main
value of the senders)``. Receivers (q / k / v of chosen heads, MLP inputs) take their values
from the view row; ``"logits"`` reads the view row's final hidden state through the final norm
and unembedding. Everything else reads the main row, where the senders keep their run value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nnsight
import torch

from .hookpoints import POINT_ORDER, HookPoints
from .modellock import model_lock

Key = tuple[str, int]  # (hook point, layer)


@dataclass(frozen=True)
class View:
    """One view row per main row; masks over main rows ``(rows, pos, unit, 1)``.

    ``senders``: cells that take ``sources`` in this view (points ``z``, ``attn_contrib``,
    ``mlp_contrib``); ``receivers``: cells the main row takes from this view (q / k / v / qkv,
    ``mlp_contrib``).
    """

    senders: Mapping[Key, torch.Tensor]
    sources: Mapping[Key, torch.Tensor]
    receivers: Mapping[Key, torch.Tensor]


@dataclass(frozen=True)
class PathPlan:
    """Views of every main row; ``to_logits`` names the view whose final state is read out."""

    views: tuple[View, ...]
    to_logits: int | None
    first_layer: int


def path_forward(
    hooks: HookPoints,
    device: torch.device,
    ids: torch.Tensor,
    noise: torch.Tensor | None,
    plan: PathPlan,
    skip: Sequence[Any] = (),
) -> torch.Tensor:
    """Last-position logits (rows, vocab): the main rows', or the ``to_logits`` view's.

    ``skip`` holds block outputs for layers before ``plan.first_layer``, with rows repeated
    for the main rows and each view.
    """
    rows, n = ids.shape[0], len(plan.views) + 1
    options: dict[str, Any] = {"logits_to_keep": 1, "use_cache": False}
    with (
        model_lock(hooks.model),
        torch.no_grad(),
        hooks.model.trace(ids.repeat(n, 1).to(device), **options),
    ):
        if noise is not None:
            embed = hooks.embed()
            embed.output = embed.output + noise.repeat(n, 1, 1).to(device, embed.output.dtype)
        for layer, replacement in enumerate(skip):
            hooks.block(layer).skip(replacement)
        for layer in range(plan.first_layer, hooks.dims.n_layers):
            block = hooks.block(layer)
            for point in POINT_ORDER:
                key = (point, layer)
                contribution = point in ("attn_contrib", "mlp_contrib")
                if not (
                    contribution or any(key in v.senders or key in v.receivers for v in plan.views)
                ):
                    continue
                envoy = hooks.envoy(block, point)
                raw, tensor = hooks.read(envoy, point)
                parts = list(hooks.to_units(point, tensor).split(rows))
                main = parts[0]
                for view, value in zip(plan.views, parts[1:], strict=True):
                    if key in view.receivers:
                        main = torch.where(view.receivers[key], value, main)
                parts[0] = main
                for i, view in enumerate(plan.views, 1):
                    parts[i] = _view_value(view, key, main, parts[i])
                new = torch.cat(parts)
                hooks.write(envoy, point, raw, hooks.from_units(point, new, tensor))
        unembed = hooks.unembed()
        unembed.input = unembed.input.contiguous()
        logits = nnsight.save(hooks.model.output.logits[:, -1])
    index = 0 if plan.to_logits is None else plan.to_logits + 1
    return logits[index * rows : (index + 1) * rows]


def _view_value(view: View, key: Key, main: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """A view row's value at a hook point: the main row's contributions, the senders'
    source values; its own attention output where a head of this layer sends (its z were
    set to the main row's with the senders patched)."""
    point, layer = key
    value = own
    if point in ("attn_contrib", "mlp_contrib"):
        value = main
        if point == "attn_contrib" and ("z", layer) in view.senders:
            heads = view.senders[("z", layer)]
            value = torch.where(heads.flatten(1).any(1).view(-1, 1, 1, 1), own, main)
    elif point == "z":
        value = main
    if key in view.senders:
        value = torch.where(view.senders[key], view.sources[key].to(value.dtype), value)
    return value
