"""Independent path-patching reference: freeze and re-run with plain torch hooks, no engine code.

Freeze: run the base input with only the sender patched (tests/reference.py); the sender's
change to the residual stream is ``delta`` = its patched minus its base contribution, at its
layer, while everything upstream is still the base run. Re-run: the base input again, where
each receiver recomputes its own input from the run's residual stream plus ``delta`` (calling
the model's norm and projection modules directly), and nothing else sees ``delta``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from reference import Comp, Reference, Scenario

# (norm before attention, final norm) per model class
NORMS = {
    "GPT2LMHeadModel": ("ln_1", "transformer.ln_f"),
    "LlamaForCausalLM": ("input_layernorm", "model.norm"),
}


@dataclass(frozen=True)
class Receiver:
    """``kind``: "q", "k", "v", "mlp" or "logits"; ``pos`` None for every position."""

    kind: str
    layer: int = 0
    head: int = 0
    pos: int | None = None


def delta(scenario: Scenario, direction: str, sender: Comp) -> torch.Tensor:
    """(pairs, pos, d_model): what patching ``sender`` alone adds to the residual stream."""
    s = scenario
    ids, noise, source = (
        (s.corrupted_ids, s.noise, s.clean_trace)
        if direction == "denoising"
        else (s.clean_ids, None, s.corrupted_trace)
    )
    _, base = s.ref.run(ids, noise=noise, capture=True)
    _, patched = s.ref.run(ids, [[sender]] * s.n_pairs, source, noise, capture=True)
    kind = "mlp_out" if sender.site == "mlp_out" else "attn_out"
    return patched[kind, sender.layer] - base[kind, sender.layer]


def path_patched(
    scenario: Scenario, direction: str, sender: Comp, receivers: Sequence[Receiver]
) -> torch.Tensor:
    """Readouts (pairs, 6) of the base run where only ``receivers`` see ``sender`` patched."""
    s = scenario
    ids, noise = (s.corrupted_ids, s.noise) if direction == "denoising" else (s.clean_ids, None)
    d = delta(s, direction, sender)
    with _receiving(s.ref, d, receivers, noise):
        logits = s.ref.model(input_ids=ids).logits[:, -1].float()
    return s.readouts(logits)[0]


@contextmanager
def _receiving(
    ref: Reference, d: torch.Tensor, receivers: Sequence[Receiver], noise: torch.Tensor | None
) -> Iterator[None]:
    model, arch = ref.model, ref.arch
    attn_norm, final_norm = NORMS[type(model).__name__]
    resid_pre: dict[int, torch.Tensor] = {}
    attn_out: dict[int, torch.Tensor] = {}
    inside = [False]  # True while a hook recomputes a receiver (its own hooks stand aside)
    handles = []

    def first(x: Any) -> torch.Tensor:
        return x[0] if isinstance(x, tuple) else x

    def recompute(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        inside[0] = True
        try:
            return first(module(x))
        finally:
            inside[0] = False

    def at(pos: int | None) -> Any:
        return slice(None) if pos is None else pos

    if noise is not None:
        embed = model.get_submodule(arch.embed)
        handles.append(embed.register_forward_hook(lambda m, i, o: o + noise.to(o.dtype)))
    for layer, block in enumerate(ref.layers):

        def pre(module, args, kwargs, layer=layer):
            resid_pre[layer] = (args[0] if args else kwargs["hidden_states"]).clone()

        def keep_attn(module, args, output, layer=layer):
            attn_out[layer] = first(output).clone()

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.get_submodule(arch.attn_out).register_forward_hook(keep_attn))
    for r in receivers:
        if r.kind == "logits":
            norm = model.get_submodule(final_norm)
            handles.append(norm.register_forward_pre_hook(lambda m, a: (a[0] + d, *a[1:])))
            continue
        block = ref.layers[r.layer]
        if r.kind == "mlp":
            mlp = block.get_submodule(arch.mlp_out)
            norm = block.get_submodule(arch.mlp_norm)

            def mlp_hook(module, args, output, r=r, mlp=mlp, norm=norm):
                if inside[0]:
                    return output
                mid = resid_pre[r.layer] + attn_out[r.layer]
                alt = recompute(mlp, norm(mid + d))
                out = first(output).clone()
                out[:, at(r.pos)] = alt[:, at(r.pos)]
                return (out, *output[1:]) if isinstance(output, tuple) else out

            handles.append(mlp.register_forward_hook(mlp_hook))
            continue
        fused = len(arch.qkv) == 1
        proj = block.get_submodule(arch.qkv[0 if fused else "qkv".index(r.kind)])
        norm = block.get_submodule(attn_norm)
        dh = ref.d_head
        block_start = "qkv".index(r.kind) * ref.n_heads * dh if fused else 0
        cols = slice(block_start + r.head * dh, block_start + (r.head + 1) * dh)

        def proj_hook(module, args, output, r=r, proj=proj, norm=norm, cols=cols):
            if inside[0]:
                return output
            alt = recompute(proj, norm(resid_pre[r.layer] + d))
            out = output.clone()
            out[:, at(r.pos), cols] = alt[:, at(r.pos), cols]
            return out

        handles.append(proj.register_forward_hook(proj_hook))
    try:
        with torch.no_grad():
            yield
    finally:
        for h in handles:
            h.remove()
