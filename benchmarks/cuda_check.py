"""CUDA check: the engine on a GPU agrees with the CPU (float32) and runs in bfloat16.

Run on a machine with a GPU: python benchmarks/cuda_check.py
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

import patchwidget as pw

CONFIGS = {
    "gpt2": dict(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32),
    "llama": dict(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
    ),
}
PROMPTS = dict(
    clean=["w5 w6 w7 w8 w9 w10", "w15 w16 w17 w18 w19 w20"],
    corrupted=["w5 w6 w11 w8 w9 w10", "w15 w16 w21 w18 w19 w20"],
    answers=[(" w3", " w4")],
)


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<bos>": 0, "<unk>": 1, **{f"w{i}": i for i in range(2, 100)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 0)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", unk_token="<unk>")


def sweep_all(model_type: str, device: str, dtype: torch.dtype) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **CONFIGS[model_type])
    hf = AutoModelForCausalLM.from_config(config)
    model = pw.load_model(hf, tokenizer=tokenizer(), device=device, dtype=dtype)
    exp = pw.Experiment(model, **PROMPTS)
    return {
        f"{site}/{direction}": exp.sweep(site, direction, progress=False).readouts
        for site in pw.SITES
        for direction in ("denoising", "noising")
        if exp.available_sites()[site] is None
    }


def main() -> None:
    assert torch.cuda.is_available(), "no GPU"
    for model_type in CONFIGS:
        cpu = sweep_all(model_type, "cpu", torch.float32)
        gpu = sweep_all(model_type, "cuda", torch.float32)
        worst = max(float(np.nanmax(np.abs(cpu[k] - gpu[k]))) for k in cpu)
        bf16 = sweep_all(model_type, "cuda", torch.bfloat16)
        finite = all(np.isfinite(v).all() for v in bf16.values())
        print(
            f"{model_type}: {len(cpu)} sweeps, max |cpu - cuda| float32 = {worst:.2e}, "
            f"bfloat16 finite = {finite}"
        )
    demo = pw.Experiment(pw.demo_model(device="cuda"), **pw.demo_prompts("flip_s2", n=16))
    heads = demo.sweep("head", progress=False).values("logit_diff", normalized=True)
    print("demo on cuda, flip_s2 heads (normalised):\n", np.round(np.asarray(heads), 3))


if __name__ == "__main__":
    main()
