"""Shared fixtures: tiny random-init transformers models of several families and a word tokenizer.

Every model is float32, eval mode, eager attention, with a large init range so that patches move
the readouts far more than the comparison tolerance.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

# The models are tiny: one intra-op thread is several times faster than two on a shared 2-core box.
torch.set_num_threads(1)

VOCAB_WORDS = 97  # "w0" .. "w96"; with <bos>, <unk>, <pad> the vocabulary has 100 entries
D_MODEL, N_HEADS, D_HEAD, D_MLP, N_LAYERS = 64, 4, 16, 64, 2

FAMILIES = (
    "gpt2",
    "neox_parallel",
    "neox_sequential",
    "llama_gqa",
    "gemma",
    "gemma2",
    "mistral",
    "qwen2",
    "gptj",
)
CORE_FAMILIES = ("gpt2", "neox_parallel", "neox_sequential", "llama_gqa", "gemma", "gemma2")
PARALLEL_FAMILIES = ("neox_parallel", "gptj")

# Prompt pairs of 10 tokens each (<bos> + 9 words); corrupted differs at 2-3 positions.
CLEAN = [
    "w5 w17 w3 w40 w8 w22 w61 w9 w14",
    "w11 w2 w33 w40 w7 w50 w61 w19 w14",
    "w90 w17 w3 w44 w8 w22 w6 w9 w70",
]
CORRUPTED = [
    "w5 w17 w3 w41 w8 w22 w62 w9 w14",
    "w11 w2 w34 w40 w7 w50 w63 w19 w14",
    "w90 w17 w3 w45 w8 w29 w6 w9 w71",
]
ANSWERS = [(" w7", " w9"), (" w12", " w30"), (" w55", " w1")]
REFERENCE_PROMPTS = [
    "w60 w61 w62 w63 w64 w65 w66 w67 w68",
    "w1 w3 w5 w7 w9 w11 w13 w15 w17",
    "w20 w30 w40 w50 w60 w70 w80 w90 w2",
]


@functools.cache
def make_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """Word-level tokenizer over "w0".."w96", whitespace split, <bos> prepended."""
    vocab = {"<bos>": 0, "<unk>": 1, "<pad>": 2}
    vocab.update({f"w{i}": i + 3 for i in range(VOCAB_WORDS)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 0)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", unk_token="<unk>", pad_token="<pad>"
    )


def _config(family: str) -> transformers.PretrainedConfig:
    vocab = VOCAB_WORDS + 3
    common = {"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 2}
    llama_like = {
        **common,
        "hidden_size": D_MODEL,
        "intermediate_size": D_MLP,
        "num_hidden_layers": N_LAYERS,
        "num_attention_heads": N_HEADS,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "initializer_range": 0.4,
    }
    if family == "gpt2":
        return transformers.GPT2Config(
            **common,
            n_embd=D_MODEL,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            n_inner=D_MLP,
            n_positions=64,
            initializer_range=0.4,
        )
    if family.startswith("neox"):
        return transformers.GPTNeoXConfig(
            **common,
            hidden_size=D_MODEL,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            intermediate_size=D_MLP,
            max_position_embeddings=64,
            initializer_range=0.4,
            use_parallel_residual=family == "neox_parallel",
            attention_bias=True,
        )
    if family == "llama_gqa":
        return transformers.LlamaConfig(**llama_like)
    if family == "gemma":
        return transformers.GemmaConfig(
            **{**llama_like, "num_key_value_heads": 1, "head_dim": D_HEAD}
        )
    if family == "gemma2":
        return transformers.Gemma2Config(
            **llama_like,
            head_dim=D_HEAD,
            query_pre_attn_scalar=D_HEAD,
            sliding_window=4,
            attn_logit_softcapping=20.0,
            final_logit_softcapping=10.0,
        )
    if family == "mistral":
        return transformers.MistralConfig(**llama_like, sliding_window=4)
    if family == "qwen2":
        return transformers.Qwen2Config(**llama_like)
    if family == "gptj":
        return transformers.GPTJConfig(
            **common,
            n_embd=D_MODEL,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            n_inner=D_MLP,
            rotary_dim=8,
            n_positions=64,
            initializer_range=0.4,
        )
    raise ValueError(f"unknown family {family!r}")


def make_model(family: str, seed: int = 0) -> transformers.PreTrainedModel:
    """A fresh tiny random-init causal LM of `family` (float32, eval, eager attention)."""
    config = _config(family)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    _spread_norm_weights(model)
    return model.float().eval()


def _spread_norm_weights(model: torch.nn.Module) -> None:
    """Give norm weights and biases non-trivial values (they are initialised to constants)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or ".ln_" in name or name.endswith(("ln_f.weight", "ln_f.bias")):
                param.add_(0.2 * torch.randn(param.shape, generator=gen))


@functools.cache
def _cached_model(family: str) -> transformers.PreTrainedModel:
    return make_model(family)


def pristine_model(family: str) -> transformers.PreTrainedModel:
    """An independent copy of the session's model of `family` (for the reference)."""
    return copy.deepcopy(_cached_model(family))


@functools.cache
def engine_model(family: str):
    """The session's model of `family`, loaded through the engine (shared across tests)."""
    import patchwidget as pw

    return pw.load_model(copy.deepcopy(_cached_model(family)), tokenizer=make_tokenizer())


@functools.cache
def reference_for(family: str):
    from tests.reference import Reference

    return Reference(pristine_model(family), make_tokenizer())


@pytest.fixture(scope="session")
def tokenizer() -> transformers.PreTrainedTokenizerFast:
    return make_tokenizer()
