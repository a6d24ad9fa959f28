"""Where things live in each model family: the one place with per-architecture knowledge.

Paths are attribute paths on the Hugging Face model (``layers``, ``embed``) or relative to one
decoder block (the rest). Register a new family with :func:`register_architecture`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

QKV_SEPARATE = "separate"  # q_proj, k_proj, v_proj
QKV_SPLIT = "split"  # one projection, output [q | k | v] (GPT-2's c_attn)
QKV_PER_HEAD = "per_head"  # one projection, output per head [q k v] (GPT-NeoX)


@dataclass(frozen=True)
class Architecture:
    """Module paths of one model family."""

    layers: str
    embed: str
    attn: str
    attn_contribution: str
    mlp_contribution: str
    attn_out_proj: str
    mlp_down_proj: str
    qkv: tuple[str, ...]
    qkv_layout: str
    parallel: Callable[[Any], bool] = field(default=lambda config: False)
    unembed: str = "lm_head"
    # Whether the model's logits are its unembedding's output, untouched (no soft-capping or
    # scale after it): then answers can be read from saved final hidden states, many passes'
    # rows in one vocabulary projection. Unknown for a registered family, so False.
    plain_logits: Callable[[Any], bool] = field(default=lambda config: False)
    # The MLP module, whose output at a position depends only on its first argument there: the
    # last layer of a patched pass runs it and the attention's output projection at the answer
    # positions only, as nothing reads the others. None (a registered family's default): both
    # run whole.
    mlp: str | None = None


@dataclass(frozen=True)
class ModelDims:
    """Sizes read from a model's config."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    vocab_size: int


_LLAMA_LIKE = Architecture(
    layers="model.layers",
    embed="model.embed_tokens",
    attn="self_attn",
    attn_contribution="self_attn",
    mlp_contribution="mlp",
    attn_out_proj="self_attn.o_proj",
    mlp_down_proj="mlp.down_proj",
    qkv=("q_proj", "k_proj", "v_proj"),
    qkv_layout=QKV_SEPARATE,
    plain_logits=lambda config: True,
    mlp="mlp",
)

ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture(
        layers="transformer.h",
        embed="transformer.wte",
        attn="attn",
        attn_contribution="attn",
        mlp_contribution="mlp",
        attn_out_proj="attn.c_proj",
        mlp_down_proj="mlp.c_proj",
        qkv=("c_attn",),
        qkv_layout=QKV_SPLIT,
        plain_logits=lambda config: True,
        mlp="mlp",
    ),
    "gpt_neox": Architecture(
        layers="gpt_neox.layers",
        embed="gpt_neox.embed_in",
        attn="attention",
        attn_contribution="attention",
        mlp_contribution="mlp",
        attn_out_proj="attention.dense",
        mlp_down_proj="mlp.dense_4h_to_h",
        qkv=("query_key_value",),
        qkv_layout=QKV_PER_HEAD,
        parallel=lambda config: bool(getattr(config, "use_parallel_residual", True)),
        plain_logits=lambda config: True,
        mlp="mlp",
    ),
    "gptj": Architecture(
        layers="transformer.h",
        embed="transformer.wte",
        attn="attn",
        attn_contribution="attn",
        mlp_contribution="mlp",
        attn_out_proj="attn.out_proj",
        mlp_down_proj="mlp.fc_out",
        qkv=("q_proj", "k_proj", "v_proj"),
        qkv_layout=QKV_SEPARATE,
        parallel=lambda config: True,
        plain_logits=lambda config: True,
        mlp="mlp",
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": Architecture(
        layers="model.layers",
        embed="model.embed_tokens",
        attn="self_attn",
        attn_contribution="post_attention_layernorm",
        mlp_contribution="post_feedforward_layernorm",
        attn_out_proj="self_attn.o_proj",
        mlp_down_proj="mlp.down_proj",
        qkv=("q_proj", "k_proj", "v_proj"),
        qkv_layout=QKV_SEPARATE,
        plain_logits=lambda config: getattr(config, "final_logit_softcapping", None) is None,
        mlp="mlp",
    ),
}


def register_architecture(model_type: str, architecture: Architecture) -> None:
    """Teach patchwidget a new model family, keyed by ``config.model_type``."""
    ARCHITECTURES[model_type] = architecture


def architecture_for(config: Any) -> Architecture:
    """The architecture of a transformers config, or a ValueError that says how to add one."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"patchwidget does not know where heads and MLPs live in model_type {model_type!r}. "
            f"Known: {', '.join(sorted(ARCHITECTURES))}. Register it with "
            "pw.register_architecture(model_type, pw.Architecture(layers=..., embed=..., attn=..., "
            "attn_contribution=..., mlp_contribution=..., attn_out_proj=..., mlp_down_proj=..., "
            "qkv=(...), qkv_layout='separate'|'split'|'per_head')), with module paths taken from "
            "print(model)."
        )
    return ARCHITECTURES[model_type]


def dims_of(config: Any) -> ModelDims:
    """Layer, head and width sizes of a transformers config."""
    d_model = config.hidden_size
    n_heads = config.num_attention_heads
    d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    return ModelDims(
        n_layers=config.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
        d_model=d_model,
        d_head=getattr(config, "head_dim", None) or d_model // n_heads,
        d_mlp=d_mlp or 4 * d_model,
        vocab_size=config.vocab_size,
    )
