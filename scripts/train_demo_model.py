"""Train the bundled demo model (patchwidget/demo/model/) on the synthetic IOI task.

Run from the repository root: `PYTHONPATH=. python scripts/train_demo_model.py`. Deterministic on
CPU for a fixed seed (one thread); writes weights, config, tokenizer and training_report.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from patchwidget.demo.loading import MODEL_DIR, load_demo_hf
from patchwidget.demo.prompts import (
    BOS,
    PAD,
    PROMPT_LEN,
    S2_POS,
    TEMPLATES,
    UNK,
    IOIPrompt,
    heldout_eval_prompts,
    name_pair_split,
    sample_prompt,
    vocabulary,
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: whitespace split, one token per word, `<bos>` prepended."""
    vocab = {tok: i for i, tok in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=32,
    )


def build_model(tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=32,
        n_embd=64,
        n_layer=3,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )
    return GPT2LMHeadModel(config)


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def train(
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    args: argparse.Namespace,
) -> float:
    """Whole-sequence next-token loss on fresh prompts from the training name pairs."""
    rng = random.Random(args.seed)
    train_pairs = name_pair_split()[0]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.warmup, args.steps))
    model.train()
    for step in range(args.steps):
        prompts = [sample_prompt(rng, train_pairs) for _ in range(args.batch)]
        ids = tokenizer([f"{p.text()} {p.io}" for p in prompts], return_tensors="pt").input_ids
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return loss.item()


@torch.no_grad()
def evaluate(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, prompts: list[IOIPrompt]
) -> dict:
    """Accuracy (IO is the top token) and logit difference IO - S at the last position."""
    ids = tokenizer([p.text() for p in prompts], return_tensors="pt").input_ids
    assert ids.shape[1] == PROMPT_LEN
    logits = model(input_ids=ids).logits[:, -1]
    io = torch.tensor(tokenizer.convert_tokens_to_ids([p.io for p in prompts]))
    s = torch.tensor(tokenizer.convert_tokens_to_ids([p.s for p in prompts]))
    rows = torch.arange(len(prompts))
    diff = logits[rows, io] - logits[rows, s]
    return {
        "n_prompts": len(prompts),
        "accuracy": (logits.argmax(-1) == io).float().mean().item(),
        "logit_diff_mean": diff.mean().item(),
        "logit_diff_min": diff.min().item(),
    }


@torch.no_grad()
def attention_to_s2(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, prompts: list[IOIPrompt]
) -> list[list[float]]:
    """Mean attention from the last position to S2, per layer and head (forward hooks)."""
    patterns: list[torch.Tensor] = []
    hooks = [
        block.attn.register_forward_hook(lambda _m, _i, out: patterns.append(out[1]))
        for block in model.transformer.h
    ]
    try:
        model(input_ids=tokenizer([p.text() for p in prompts], return_tensors="pt").input_ids)
    finally:
        for h in hooks:
            h.remove()
    return [[round(v, 4) for v in a[:, :, -1, S2_POS].mean(0).tolist()] for a in patterns]


def save(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config_file = out / "config.json"  # transformers does not save the attention implementation
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "attn_implementation": "eager"}, indent=2) + "\n")
    for f in out.iterdir():
        os.chmod(f, 0o644)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    start = time.perf_counter()
    final_loss = train(model, tokenizer, args)
    seconds = time.perf_counter() - start
    save(model.eval(), tokenizer, args.out)

    shipped, shipped_tok = load_demo_hf() if args.out == MODEL_DIR else (model, tokenizer)
    heldout = heldout_eval_prompts()
    report = {
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "torch_threads": 1,
        "training_seconds": round(seconds, 1),
        "final_train_loss": round(final_loss, 4),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "heldout": evaluate(shipped, shipped_tok, heldout),
        "heldout_pairs": [list(p) for p in name_pair_split()[1]],
        "templates": list(TEMPLATES),
        "positions": {"first_name": 2, "second_name": 4, "s2": S2_POS, "answer": PROMPT_LEN - 1},
        "attention_last_to_s2_by_layer_head": attention_to_s2(shipped, shipped_tok, heldout),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (args.out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    os.chmod(args.out / "training_report.json", 0o644)
    print(json.dumps(report["heldout"], indent=2))


if __name__ == "__main__":
    main()
