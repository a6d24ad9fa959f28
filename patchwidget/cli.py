"""Command line: ``patchwidget sweep`` (a sweep to a figure, a summary and JSON) and
``patchwidget demo`` (the quickstart notebook in JupyterLab)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DIRECTION_CHOICES = ("denoising", "noising", "both")
DEMO_DEFAULT_PAIRS = 32
QUICKSTART_NAME = "quickstart.ipynb"
NEGLIGIBLE = 0.01  # effects below 1% of the clean-corrupted gap are not listed


class CliError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``patchwidget`` console script and ``python -m patchwidget``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        return args.run(args)
    except (CliError, ValueError, TypeError, OSError, FloatingPointError) as err:
        print(f"patchwidget {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"patchwidget {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from .components import SITES
    from .demo import DEMO_CORRUPTIONS
    from .metrics import METRICS

    parser = _Parser(
        prog="patchwidget",
        description="Activation patching from the command line (the widget lives in notebooks).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sweep = commands.add_parser(
        "sweep",
        help="patch every component of one site; print the strongest, save a figure",
        description="Patch every component of a site, one at a time, and report the effects. "
        "With --model demo the bundled IOI model and its prompts are used; any other model "
        "needs prompts: --clean/--corrupted/--answers (repeat each per pair) or --prompts FILE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sweep.set_defaults(run=run_sweep)
    sweep.add_argument("--model", default="demo", help="'demo', a hub name or a local folder")
    sweep.add_argument("--site", default="resid_pre", choices=list(SITES))
    sweep.add_argument("--direction", default="denoising", choices=DIRECTION_CHOICES)
    sweep.add_argument("--metric", default="logit_diff", choices=list(METRICS))
    norm = sweep.add_mutually_exclusive_group()
    norm.add_argument(
        "--normalized",
        dest="normalized",
        action="store_true",
        default=True,
        help="(patched - corrupted) / (clean - corrupted): 1 = clean behaviour, 0 = corrupted",
    )
    norm.add_argument("--raw", dest="normalized", action="store_false", help="raw metric values")
    demo = sweep.add_argument_group("demo prompts (--model demo)")
    demo.add_argument(
        "--corruption",
        choices=list(DEMO_CORRUPTIONS),
        default=None,
        help="which counterfactual the demo prompts use (default flip_s2)",
    )
    demo.add_argument(
        "--pairs",
        type=_positive_int,
        default=None,
        help=f"number of demo prompt pairs (default {DEMO_DEFAULT_PAIRS})",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo prompts")
    own = sweep.add_argument_group("your own prompts (any model)")
    own.add_argument("--clean", action="append", metavar="TEXT", help="a clean prompt")
    own.add_argument(
        "--corrupted",
        action="append",
        metavar="TEXT",
        help="its corrupted counterpart, same token length",
    )
    own.add_argument(
        "--answers",
        action="append",
        metavar="CORRECT|INCORRECT",
        type=_answers,
        help="the two answer tokens, e.g. ' Mary| John' or ' Mary, John' (keep the leading "
        "spaces the tokenizer expects); give one for all pairs or one per pair",
    )
    own.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE.json",
        help='a JSON file {"clean": [...], "corrupted": [...], '
        '"answers": [["correct", "incorrect"], ...]}',
    )
    where = sweep.add_argument_group("restrict the sweep (comma-separated indices)")
    for axis in ("layers", "heads", "positions", "neurons"):
        where.add_argument(f"--{axis}", type=_int_list, metavar="I,J,...", default=None)
    out = sweep.add_argument_group("output")
    out.add_argument(
        "--out",
        type=Path,
        default=None,
        help="figure file (.png, .svg, .pdf, ...); default SITE.png",
    )
    out.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    out.add_argument(
        "--save",
        dest="save_path",
        type=Path,
        default=None,
        help="also save the PatchResult (.npz; PatchResult.load)",
    )
    out.add_argument("--top", type=_positive_int, default=8, help="components listed")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    run = sweep.add_argument_group("model loading")
    run.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1, mps")
    run.add_argument("--dtype", default=None, help="e.g. float32, bfloat16, float16")
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="patched runs per forward pass (default: from a memory budget)",
    )

    nb = commands.add_parser(
        "demo",
        help="open the quickstart notebook in JupyterLab",
        description=f"Write {QUICKSTART_NAME} into --dir (unless it is there already) and open it "
        "in JupyterLab.",
    )
    nb.set_defaults(run=run_demo)
    nb.add_argument("--dir", type=Path, default=Path("."), help="where the notebook goes")
    nb.add_argument("--no-browser", action="store_true", help="start JupyterLab, open no browser")
    nb.add_argument(
        "--dry-run",
        action="store_true",
        help="write the notebook and print the JupyterLab command, start nothing",
    )
    return parser


# ---------------------------------------------------------------------------------- sweep
def run_sweep(args: argparse.Namespace) -> int:
    """``patchwidget sweep``: run, print a summary, write the figure and optional files."""
    from .experiment import DIRECTIONS, Experiment

    out = args.out or Path(f"{args.site}.png")
    _check_outputs(out, args.json, args.save_path)
    _quiet_loading()
    model, prompts, about = _model_and_prompts(args)
    exp = Experiment(model, **prompts, batch_size=args.batch_size)
    directions = DIRECTIONS if args.direction == "both" else (args.direction,)
    results, seconds = [], []
    for direction in directions:
        start = time.perf_counter()
        results.append(
            exp.sweep(
                args.site,
                direction,
                layers=args.layers,
                heads=args.heads,
                positions=args.positions,
                neurons=args.neurons,
                progress=not args.quiet,
            )
        )
        seconds.append(time.perf_counter() - start)
    normalized = args.normalized and results[0].normalization_ok(args.metric)
    name = "patchwidget demo model" if args.model == "demo" else args.model
    print(summary(exp, results, seconds, args.metric, args.normalized, args.top, about, name))
    _write_figure(results, args.metric, normalized, out)
    print(f"figure: {out}")
    if args.json:
        args.json.write_text(json.dumps(to_json(exp, results, args.metric, normalized), indent=1))
        print(f"json: {args.json}")
    if args.save_path:
        for res in results:
            path = args.save_path
            path = path if len(results) == 1 else _suffixed(path, res.direction)
            res.save(path)
            print(f"result: {path}")
    return 0


def _model_and_prompts(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str]:
    """The model, the Experiment's prompt keywords, and a line saying where prompts came from."""
    own = _own_prompts(args)
    demo_options = args.corruption or args.pairs
    if demo_options and (own is not None or args.model != "demo"):
        raise CliError(
            "--corruption and --pairs choose the demo's prompts: use them with --model demo "
            "and without --clean/--corrupted/--answers/--prompts"
        )
    if args.model == "demo":
        from .demo import DEMO_CORRUPTIONS, demo_prompts, load_demo_hf
        from .models import load_model

        hf, tokenizer = load_demo_hf()
        model = load_model(hf, tokenizer=tokenizer, device=args.device, dtype=args.dtype)
        if own is not None:
            return model, own, "your prompts on the demo model"
        corruption = args.corruption or "flip_s2"
        n = args.pairs or DEMO_DEFAULT_PAIRS
        about = f"demo prompts, corruption {corruption}: {DEMO_CORRUPTIONS[corruption]}"
        return model, demo_prompts(corruption, n=n, seed=args.seed), about
    if own is None:
        raise CliError(
            f"--model {args.model} needs prompts: --clean TEXT --corrupted TEXT "
            "--answers ' correct| incorrect' (repeat per pair), or --prompts FILE.json"
        )
    from .models import load_model

    try:
        model = load_model(args.model, device=args.device, dtype=args.dtype)
    except Exception as err:  # hub, network, file and config errors come in many types
        raise CliError(f"cannot load model {args.model!r}: {_one_line(err)}") from err
    return model, own, "your prompts"


def _own_prompts(args: argparse.Namespace) -> dict[str, Any] | None:
    given = [f"--{k}" for k in ("clean", "corrupted", "answers") if getattr(args, k)]
    if args.prompts is not None:
        if given:
            raise CliError(f"give --prompts or {', '.join(given)}, not both")
        try:
            data = json.loads(args.prompts.read_text())
        except json.JSONDecodeError as err:
            raise CliError(f"{args.prompts} is not valid JSON: {err}") from err
        if not isinstance(data, dict) or not {"clean", "corrupted", "answers"} <= set(data):
            raise CliError(f'{args.prompts} must hold {{"clean", "corrupted", "answers"}}')
        answers = [tuple(a) for a in data["answers"]]
        return {"clean": data["clean"], "corrupted": data["corrupted"], "answers": answers}
    if not given:
        return None
    missing = [f"--{k}" for k in ("clean", "corrupted", "answers") if not getattr(args, k)]
    if missing:
        raise CliError(f"{', '.join(given)} also need(s) {', '.join(missing)}")
    return {"clean": args.clean, "corrupted": args.corrupted, "answers": args.answers}


def _check_outputs(figure: Path, *others: Path | None) -> None:
    """Fail before the sweep, not after it, on an unknown figure format or a missing folder."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = figure.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise CliError(
            f"--out {figure}: unknown figure format {suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(formats))}"
        )
    for path in (figure, *others):
        if path is not None and not path.parent.is_dir():
            raise CliError(f"cannot write {path}: folder {path.parent} does not exist")


# ---------------------------------------------------------------------------------- reports
def strongest(res: Any, metric: str, normalized: bool, top: int) -> list[dict[str, Any]]:
    """The components whose patch moved the metric furthest from the unpatched base run
    (at most ``top``, none below 1% of the clean-corrupted gap)."""
    values = np.asarray(res.values(metric, normalized), dtype=np.float64)
    raw = np.asarray(res.values(metric, False), dtype=np.float64)
    base_run = "corrupted" if res.direction == "denoising" else "clean"
    if normalized:
        base = 0.0 if base_run == "corrupted" else 1.0
    else:
        base = res.baselines(metric)[base_run]
    effect = np.abs(values - base)
    effect[~np.isfinite(effect)] = -np.inf
    gap = res.baselines(metric)
    floor = NEGLIGIBLE * (1.0 if normalized else abs(gap["clean"] - gap["corrupted"]))
    order = np.argsort(-effect, axis=None, kind="stable")[:top]
    rows = []
    for flat in order:
        if not effect.flat[flat] >= floor:
            break
        index = np.unravel_index(flat, values.shape)
        rows.append(
            {
                "component": _cell_label(res, index),
                "coords": {a: int(res.coords[a][i]) for a, i in zip(res.axes, index, strict=True)},
                "value": float(values[index]),
                "raw": float(raw[index]),
            }
        )
    return rows


def summary(
    exp: Any,
    results: Sequence[Any],
    seconds: Sequence[float],
    metric: str,
    normalized: bool,
    top: int,
    about: str,
    model_name: str = "",
) -> str:
    """The text ``patchwidget sweep`` prints."""
    from .metrics import METRICS

    info, first = exp.info, results[0]
    name = model_name or info["model_name"]
    base = first.baselines(metric)
    answers = exp.answer_tokens[0]
    lines = [
        f"model: {name} ({info['architecture']}, {info['n_layers']} layers x "
        f"{info['n_heads']} heads, d_model {info['d_model']}) on {info['device']}, "
        f"{info['dtype']}",
        f"prompts: {exp.n_pairs} pairs of {exp.length} tokens; {about}",
        f"  clean:     {exp.prompts.clean[0]!r} -> {answers[0]!r} (not {answers[1]!r})",
    ]
    if exp.prompts.corrupted:
        lines.append(f"  corrupted: {exp.prompts.corrupted[0]!r}")
    lines.append(
        f"baselines, {metric} ({METRICS[metric]}), mean over pairs: "
        f"clean {base['clean']:.4g}, corrupted {base['corrupted']:.4g}"
    )
    use_norm = normalized and first.normalization_ok(metric)
    if normalized and not use_norm:
        lines.append(
            "note: the clean and corrupted baselines coincide, so normalised values are "
            "undefined; showing raw values"
        )
    elif use_norm:
        lines.append(
            "normalised = (patched - corrupted) / (clean - corrupted): 1 = clean behaviour, "
            "0 = corrupted; not clipped, so <0 or >1 are findings"
        )
    for res, secs in zip(results, seconds, strict=True):
        what = {
            "denoising": "corrupted run, clean activation patched in: is it sufficient?",
            "noising": "clean run, corrupted activation patched in: is it necessary?",
        }[res.direction]
        size = " x ".join(str(n) for n in res.shape)
        done = "" if res.complete else " (incomplete)"
        lines.append(f"\n{res.site} sweep, {res.direction} ({what}); {size} patches, {secs:.1f} s")
        lines.append(f"strongest effects ({'normalised ' if use_norm else ''}{metric}):")
        rows = strongest(res, metric, use_norm, top)
        width = max((len(r["component"]) for r in rows), default=0)
        for rank, row in enumerate(rows, 1):
            raw = f"   (raw {row['raw']:.4g})" if use_norm else ""
            lines.append(f"  {rank:2d}. {row['component']:<{width}}  {row['value']:8.3f}{raw}")
        if not rows:
            lines.append("  none: no patch moved the metric by 1% of the clean-corrupted gap")
        lines[-1] += done
    return "\n".join(lines)


def to_json(exp: Any, results: Sequence[Any], metric: str, normalized: bool) -> dict[str, Any]:
    """Everything the sweep produced as JSON-ready data (NaN becomes null)."""
    from .metrics import METRICS
    from .readouts import READOUT_FIELDS

    first = results[0]

    def field_means(readouts: np.ndarray) -> dict[str, float]:
        return {f: float(v) for f, v in zip(READOUT_FIELDS, readouts.mean(0), strict=True)}

    data = {
        "model": exp.info,
        "site": first.site,
        "metric": metric,
        "normalized": normalized,
        "n_pairs": exp.n_pairs,
        "n_tokens": exp.length,
        "prompts": {
            "clean": list(exp.prompts.clean),
            "corrupted": list(exp.prompts.corrupted or []),
            "answers": [list(a) for a in exp.answer_tokens],
        },
        "baselines": {m: first.baselines(m) for m in METRICS},
        "baseline_readouts": {
            "clean": field_means(first.clean_readouts),
            "corrupted": field_means(first.corrupted_readouts),
        },
        "results": {
            res.direction: {
                "axes": list(res.axes),
                "coords": {a: list(v) for a, v in res.coords.items()},
                "labels": {a: list(v) for a, v in res.labels.items()},
                "complete": res.complete,
                "strongest": strongest(res, metric, normalized, 10),
                "values": {
                    m: {
                        "raw": np.asarray(res.values(m, False)).tolist(),
                        "normalized": np.asarray(res.values(m, True)).tolist(),
                    }
                    for m in METRICS
                },
            }
            for res in results
        },
        "metadata": first.metadata,
    }
    return _finite(data)


def _write_figure(results: Sequence[Any], metric: str, normalized: bool, out: Path) -> None:
    import matplotlib

    from .metrics import METRICS

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(results) == 1:
        fig = results[0].plot(metric, normalized)
    else:
        cols = results[0].shape[-1]
        rows = int(np.prod(results[0].shape[:-1]))
        width = min(26.0, max(11.0, 2 * (2.5 + 0.45 * cols)))
        fig, axes = plt.subplots(
            1, 2, figsize=(width, min(24.0, 2.2 + 0.32 * rows)), layout="constrained"
        )
        for res, ax in zip(results, axes, strict=True):
            res.plot(metric, normalized, ax=ax, title=res.direction)
        scale = ", normalised: 1 = clean behaviour, 0 = corrupted" if normalized else ""
        fig.suptitle(f"{results[0].site}: {METRICS[metric]}{scale}", fontsize=10)
    fig.savefig(out, dpi=150)
    plt.close(fig)


# ---------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    """``patchwidget demo``: write the quickstart notebook and open it in JupyterLab."""
    folder = args.dir
    if not folder.is_dir():
        raise CliError(f"--dir {folder} is not a folder")
    path = folder / QUICKSTART_NAME
    if path.exists():
        print(f"using the existing {path}")
    else:
        path.write_text(json.dumps(quickstart_notebook(), indent=1) + "\n")
        print(f"wrote {path}")
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    command = lab_command(QUICKSTART_NAME, args.no_browser, as_root)
    if args.dry_run:
        print(f"(cd {shlex.quote(str(folder))} && {shlex.join(command)})")
        return 0
    if importlib.util.find_spec("jupyterlab") is None:
        raise CliError(
            f"JupyterLab is not installed here: pip install jupyterlab (or open {path} in "
            "VS Code, Colab or Notebook 7)"
        )
    return subprocess.call(command, cwd=folder)


def lab_command(notebook: str, no_browser: bool, as_root: bool = False) -> list[str]:
    """The command that opens ``notebook`` in JupyterLab with this Python. JupyterLab refuses
    to start as root (common in containers) without ``--allow-root``."""
    options = ["--no-browser"] * no_browser + ["--allow-root"] * as_root
    return [sys.executable, "-m", "jupyterlab", notebook, *options]


QUICKSTART_CELLS: tuple[tuple[str, str], ...] = (
    (
        "markdown",
        "# patchwidget quickstart\n"
        "\n"
        "Activation patching on a tiny model that solves Indirect Object Identification "
        '("When Mary and John went to the store, John gave a drink to" → " Mary"). '
        "Run the three cells below, then press **Run** in the widget.",
    ),
    ("code", "# %pip install patchwidget\nimport patchwidget as pw"),
    (
        "code",
        "model = pw.demo_model()  # 3 layers, 4 heads, bundled with the package\n"
        'prompts = pw.demo_prompts("flip_s2", n=32)  # S2, the repeated name, becomes the IO\n'
        "exp = pw.Experiment(model, **prompts)",
    ),
    ("code", "exp.widget()"),
    (
        "markdown",
        "## How to read it\n"
        "\n"
        "**Denoising** runs the corrupted prompt and restores one component's clean activation: "
        "a cell near 1 means that component alone is *sufficient* to bring the clean answer "
        "back. **Noising** runs the clean prompt and gives one component its corrupted "
        "activation: a cell near 0 means the component is *necessary*.\n"
        "\n"
        "Click a cell to look inside it (layer → heads → positions); shift-click to collect "
        "components into a circuit and test them together. Without a widget front end "
        "(plain Python, a terminal, CI), the same sweep draws with matplotlib:",
    ),
    ("code", 'exp.sweep("head", progress=False).plot();'),
)


def quickstart_notebook() -> dict[str, Any]:
    """The quickstart as nbformat 4 JSON (``notebooks/quickstart.ipynb`` holds the same cells)."""
    cells = []
    for i, (kind, source) in enumerate(QUICKSTART_CELLS):
        cell: dict[str, Any] = {
            "cell_type": kind,
            "id": f"quickstart-{i}",
            "metadata": {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# ---------------------------------------------------------------------------------- helpers
def _cell_label(res: Any, index: tuple[int, ...]) -> str:
    parts = []
    for axis, i in zip(res.axes, index, strict=True):
        label = res.labels[axis][i]
        parts.append(f"pos {label}" if axis == "pos" else label)
    return " ".join(parts)


def _answers(text: str) -> tuple[str, str]:
    """``CORRECT|INCORRECT`` (as in the widget) or ``CORRECT,INCORRECT``; spaces are kept."""
    parts = text.split("|") if "|" in text else text.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(
            f"--answers {text!r} must be CORRECT|INCORRECT or CORRECT,INCORRECT, e.g. ' Mary| John'"
        )
    return parts[0], parts[1]


def _int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 0,2,5") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _quiet_loading() -> None:
    """No weight-loading progress bars from transformers: the sweep has its own."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _suffixed(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}_{tag}{path.suffix}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value
