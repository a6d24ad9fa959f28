"""Time path-patching sweeps against ordinary sweeps of the same senders.

Model: GPT-2-small shape (bench_sweep.py's: 12 layers, 12 heads, d_model 768, vocab 50257),
random init, 15-token prompts. Senders: every head (144, all positions). Timings:
  ordinary   exp.sweep("head")                     one batch row per sender and pair
  logits     exp.sweep("head", receivers=["logits"])
  queries    exp.sweep("head", receivers=[every layer-11 head's query])
Path sweeps run two rows per sender and pair (main + view) and cannot skip the layers after
the first sender, so the cost per sender is about twice the ordinary sweep's.
Run: python benchmarks/bench_paths.py [--device cuda] [--pairs 1 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_sweep import build, prompts, sync

import patchwidget as pw


def timed(device: str, fn) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = build(args.device)
    loaded = pw.load_model(model, tokenizer=tokenizer)
    queries = [pw.Component("head_q", 11, head=h) for h in range(12)]
    runs = {
        "ordinary": {},
        "logits": {"receivers": ["logits"]},
        "queries": {"receivers": queries},
    }
    for n_pairs in args.pairs:
        exp = pw.Experiment(loaded, **prompts(n_pairs))
        times: dict[str, list[float]] = {name: [] for name in runs}
        for kw in runs.values():  # warm-up: caches sources and base runs
            exp.sweep("head", progress=False, **kw)
        for _ in range(args.repeats):
            for name, kw in runs.items():
                times[name].append(
                    timed(
                        args.device, lambda kw=kw, exp=exp: exp.sweep("head", progress=False, **kw)
                    )
                )
        senders = 144
        row = {"device": args.device, "pairs": n_pairs, "senders": senders}
        for name, ts in times.items():
            row[f"{name}_s"] = round(statistics.median(ts), 4)
            row[f"{name}_ms_per_sender"] = round(1000 * statistics.median(ts) / senders, 2)
        row["logits_over_ordinary"] = round(row["logits_s"] / row["ordinary_s"], 2)
        row["queries_over_ordinary"] = round(row["queries_s"] / row["ordinary_s"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
