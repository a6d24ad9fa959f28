"""Sweeps over datasets of many pairs: mixed-length templates (padded, named positions) against
one-template prompts of the same number of pairs, on the bundled demo model.

    python benchmarks/bench_datasets.py --pairs 64 1000 --device cpu
"""

from __future__ import annotations

import argparse
import json
import time

import patchwidget as pw


def timed_sweep(exp: pw.Experiment, site: str) -> dict:
    rows: list[int] = []
    forward = exp.engine.forward

    def counting(ids, *args, **kwargs):
        rows.append(len(ids))
        return forward(ids, *args, **kwargs)

    exp.engine.forward = counting
    start = time.perf_counter()
    res = exp.sweep(site, progress=False)
    seconds = time.perf_counter() - start
    exp.engine.forward = forward
    return {
        "seconds": round(seconds, 3),
        "forwards": len(rows),
        "max_rows": max(rows),
        "cells": res.readouts[..., 0, 0].size,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, nargs="+", default=[64, 1000])
    parser.add_argument("--device", default=None)
    parser.add_argument("--sites", nargs="+", default=["resid_pre", "head"])
    args = parser.parse_args()
    model = pw.demo_model(device=args.device)
    for n in args.pairs:
        setups = {
            "mixed lengths, named": lambda n=n: pw.Experiment.from_dataset(
                model, pw.demo_dataset(n=n)
            ),
            "one template": lambda n=n: pw.Experiment(model, **pw.demo_prompts(n=n, template=0)),
        }
        for name, make in setups.items():
            start = time.perf_counter()
            exp = make()
            setup = time.perf_counter() - start
            for site in args.sites:
                out = {"pairs": n, "prompts": name, "site": site, "setup_s": round(setup, 3)}
                out |= timed_sweep(exp, site)
                out["lengths"] = sorted(set(exp.prompts.lengths))
                print(json.dumps(out))


if __name__ == "__main__":
    main()
