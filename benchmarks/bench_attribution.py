"""Time and memory of attribution estimates against exact sweeps (GPT-2-small shape, random init).

Model and prompts as in bench_sweep.py (12 layers, 12 heads, d_model 768, vocabulary 50,257,
15 tokens). Per site: the exact engine sweep and the attribution estimate (one forward on each
prompt, three backward passes), medians of --repeats after one warm-up each; the bytes autograd
kept for the backward pass (activations saved by the gradient pass); and, with --memory, the
growth of the process's peak resident memory during one estimate (Linux: the peak is reset
through /proc/self/clear_refs just before it).
Run: python benchmarks/bench_attribution.py --threads 1 [--device cuda] [--exact head_by_pos]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_sweep import build, prompts, sync

import patchwidget as pw


def timed(device: str, fn) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def rss_kb(field: str) -> int:
    """A memory figure of this process from /proc (Linux), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def saved_bytes(model: torch.nn.Module, fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn`` runs, not counting the
    model's own weights (saved by reference to backpropagate through a layer, never copied)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.untyped_storage().data_ptr() not in weights:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--sites", nargs="+", default=["head_by_pos", "neuron", "resid_pre"])
    parser.add_argument("--exact", nargs="*", default=["head_by_pos", "resid_pre"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory", action="store_true", help="only the peak-memory growth")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = build(args.device)
    exp = pw.Experiment(pw.load_model(model, tokenizer=tokenizer), **prompts(args.pairs))
    if args.memory:
        site = args.sites[0]
        # The first estimate in this process (it also captures the source activations): later
        # ones reuse memory the allocator kept, and would show no growth at all.
        before = rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
        exp.sweep(site, method="attribution")
        growth = (rss_kb("VmHWM") - before) / 1024
        print(json.dumps({"site": site, "peak_rss_growth_mb": round(growth, 1)}))
        return
    for site in args.sites:
        estimate = lambda site=site: exp.sweep(site, method="attribution")  # noqa: E731
        estimate()  # warm-up
        row = {
            "device": args.device,
            "site": site,
            "pairs": args.pairs,
            "cells": int(torch.tensor(estimate().shape).prod()),
            "estimate_s": round(
                statistics.median(timed(args.device, estimate) for _ in range(args.repeats)), 3
            ),
            "saved_for_backward_mb": round(saved_bytes(model, estimate) / 2**20, 1),
        }
        if site in args.exact:
            exact = lambda site=site: exp.sweep(site, progress=False)  # noqa: E731
            exact()
            row["exact_s"] = round(
                statistics.median(timed(args.device, exact) for _ in range(args.repeats)), 3
            )
            row["exact_vs_estimate"] = round(row["exact_s"] / row["estimate_s"], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
