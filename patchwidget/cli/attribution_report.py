"""``patchwidget sweep --method attribution``: argument checks and the verification summary."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..attribution import NOT_ESTIMABLE


def check_attribution_args(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work, before loading anything."""
    if args.method == "exact" and (args.qk_fix or args.grad_drop or args.verify):
        raise ValueError("--qk-fix, --grad-drop and --verify refine --method attribution; add it")
    if args.method == "attribution" and args.metric in NOT_ESTIMABLE:
        raise ValueError(
            f"--metric {args.metric} cannot be estimated to first order; use logit_diff, "
            "logprob or prob with --method attribution, or --method exact"
        )


def verify_summary(exp: Any, results: Sequence[Any], top: int, metric: str, progress: bool) -> str:
    """Exact patching of each estimate's ``top`` largest cells, and how well they agree."""
    lines = []
    for res in results:
        verification = exp.verify(res, top=top, metric=metric, progress=progress)
        lines.append(f"\nexact check of the {top} largest estimates ({res.direction}):")
        lines.append(str(verification.agreement(metric, k=min(top, 10))))
    return "\n".join(lines)
