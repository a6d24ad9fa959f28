"""Time patchwidget sweeps against one-forward-per-patch patching and the batched floor.

Model: GPT-2-small shape (12 layers, 12 heads, d_model 768, vocab 50257), random init,
15-token prompts (or --lengths), logit-difference readouts. Three timings per (site, pairs, length):
  engine    patchwidget's Experiment.sweep (batched rows, logits at the answer position, passes
            starting at their first patched layer and position); its peak memory is the most
            the process's resident memory (CPU) or allocated CUDA memory rose during the sweep
  per_patch one forward pass per patch with a plain torch hook and full logits, then .item()
            (how TransformerLens's patching functions run); timed on a sample of patches and
            scaled to the whole sweep when --sample is given
  floor     the same number of unpatched rows in batches of 64 (CPU) or 512 rows (GPU; the best
            fixed sizes measured before the engine chose its own), logits at the
            last position only, from a contiguous hidden state (a strided one makes the
            vocabulary projection ~10x slower on CPU), reduced on the device as the engine's are
Run: python benchmarks/bench_sweep.py [--device cuda] [--pairs 1 8] [--sites resid_pre head_by_pos]
     [--lengths 15 60]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import threading
import time

import psutil
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

import patchwidget as pw

FLOOR_ROWS = {"cpu": 64, "cuda": 512}


def build(device: str) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    torch.manual_seed(0)
    vocab = {f"w{i}": i for i in range(50257)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", pad_token="w0")
    config = GPT2Config(attn_implementation="eager")
    model = GPT2LMHeadModel(config).eval().to(device)
    model.requires_grad_(False)
    return model, tokenizer


def prompts(n_pairs: int, length: int, differ_at: int | None) -> dict:
    gen = torch.Generator().manual_seed(1)
    clean, corrupted = [], []
    for _ in range(n_pairs):
        ids = torch.randint(100, 50000, (length,), generator=gen).tolist()
        bad = list(ids)
        at = length - 4 if differ_at is None else differ_at
        bad[at] = ids[0] if at == 3 else ids[3]
        clean.append(" ".join(f"w{i}" for i in ids))
        corrupted.append(" ".join(f"w{i}" for i in bad))
    return {"clean": clean, "corrupted": corrupted, "answers": [(" w7", " w9")]}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_engine(exp: pw.Experiment, site: str, device: str) -> tuple[float, float]:
    """Seconds of one sweep, and its peak memory above the start in MiB."""
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    peak = RssPeak() if device == "cpu" else None
    start = time.perf_counter()
    exp.sweep(site, "denoising", progress=False)
    sync(device)
    elapsed = time.perf_counter() - start
    if peak is not None:
        return elapsed, peak.stop() / 2**20
    return elapsed, (torch.cuda.max_memory_allocated() - before) / 2**20


class RssPeak:
    """The most the process's resident memory rose above its level at creation (sampled)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return max(self.peak, self.process.memory_info().rss) - self.base


def patch_hooks(model: GPT2LMHeadModel, site: str, length: int) -> list:
    """(module, layer, head, pos) per patch, in sweep order, for the per-patch baseline."""
    blocks = model.transformer.h
    if site == "resid_pre":
        return [(blocks[layer], None, pos) for layer in range(12) for pos in range(length)]
    return [
        (blocks[layer].attn.c_proj, head, pos)
        for layer in range(12)
        for head in range(12)
        for pos in range(length)
    ]


def time_per_patch(
    model: GPT2LMHeadModel, exp: pw.Experiment, site: str, device: str, sample: int | None
) -> float:
    clean = torch.tensor(exp.prompts.clean_ids, device=device)
    corrupted = torch.tensor(exp.prompts.corrupted_ids, device=device)
    correct, incorrect = exp.prompts.answer_ids[0]
    patches = patch_hooks(model, site, exp.length)
    cache: dict = {}

    def saver(module, args):
        cache[module] = args[0].detach().clone()

    with torch.no_grad():
        handles = [m.register_forward_pre_hook(saver) for m in {p[0] for p in patches}]
        model(clean)
        for h in handles:
            h.remove()
        chosen = patches if sample is None else patches[:: max(1, len(patches) // sample)]
        sync(device)
        start = time.perf_counter()
        for module, head, pos in chosen:

            def hook(mod, args, head=head, pos=pos):
                x = args[0].clone()
                cols = slice(None) if head is None else slice(head * 64, (head + 1) * 64)
                x[:, pos, cols] = cache[mod][:, pos, cols]
                return (x,)

            handle = module.register_forward_pre_hook(hook)
            logits = model(corrupted).logits[:, -1]
            (logits[:, correct] - logits[:, incorrect]).mean().item()
            handle.remove()
        sync(device)
        elapsed = time.perf_counter() - start
    return elapsed * len(patches) / len(chosen)


def time_floor(
    model: GPT2LMHeadModel, exp: pw.Experiment, site: str, device: str, sample: int | None
) -> float:
    """Seconds of the floor; with ``sample``, of its first ``sample`` batches, scaled."""
    n_rows = len(patch_hooks(model, site, exp.length)) * exp.n_pairs
    batch = max(exp.n_pairs, FLOOR_ROWS[device] // exp.n_pairs * exp.n_pairs)
    firsts = list(range(0, n_rows, batch))
    chosen = firsts if sample is None else firsts[:sample]
    ids = torch.tensor(exp.prompts.corrupted_ids, device=device)
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        for first in chosen:
            rows = min(batch, n_rows - first)
            block = ids.repeat(rows // exp.n_pairs + 1, 1)[:rows]
            hidden = model.transformer(block, use_cache=False).last_hidden_state
            logits = model.lm_head(hidden[:, -1].contiguous()).float()
            torch.logsumexp(logits, -1).cpu()
        sync(device)
    elapsed = time.perf_counter() - start
    return elapsed * n_rows / sum(min(batch, n_rows - first) for first in chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sites", nargs="+", default=["resid_pre", "head_by_pos"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[15])
    parser.add_argument(
        "--differ-at",
        type=int,
        default=None,
        help="the one position where corrupted prompts differ (default: length - 4); patches "
        "before it change nothing, and the engine runs them as such",
    )
    parser.add_argument("--sample", type=int, default=None, help="per-patch baseline sample size")
    parser.add_argument("--floor-sample", type=int, default=None, help="floor batches timed")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = build(args.device)
    nn_model = pw.load_model(model, tokenizer=tokenizer)
    rows = []
    for length, n_pairs in itertools.product(args.lengths, args.pairs):
        exp = pw.Experiment(nn_model, **prompts(n_pairs, length, args.differ_at))
        for site in args.sites:
            time_engine(exp, site, args.device)  # warm-up: caches sources, first-call costs
            timings: dict[str, list[float]] = {"engine": [], "floor": [], "per_patch": []}
            memory = []
            for _ in range(args.repeats):
                elapsed, peak = time_engine(exp, site, args.device)
                timings["engine"].append(elapsed)
                memory.append(peak)
                floor = time_floor(model, exp, site, args.device, args.floor_sample)
                timings["floor"].append(floor)
                timings["per_patch"].append(
                    time_per_patch(model, exp, site, args.device, args.sample)
                )
            med = {k: statistics.median(v) for k, v in timings.items()}
            row = {
                "device": args.device,
                "site": site,
                "pairs": n_pairs,
                "length": length,
                "differ_at": length - 4 if args.differ_at is None else args.differ_at,
                "patches": len(patch_hooks(model, site, length)),
                **{f"{k}_s": round(v, 3) for k, v in med.items()},
                "engine_peak_mib": round(max(memory)),
                "engine_vs_floor": round(med["engine"] / med["floor"], 2),
                "per_patch_vs_engine": round(med["per_patch"] / med["engine"], 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
