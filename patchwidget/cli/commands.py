"""Command line: ``patchwidget sweep`` (a sweep to a figure, a summary and JSON) and
``patchwidget demo`` (the quickstart notebook in JupyterLab)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..datasets import load_dataset
from .attribution_report import check_attribution_args, verify_summary
from .quickstart import QUICKSTART_NAME, lab_command, quickstart_notebook
from .report import summary, to_json, write_figure

DIRECTION_CHOICES = ("denoising", "noising", "both")
DEMO_DEFAULT_PAIRS = 32


class CliError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``patchwidget`` console script and ``python -m patchwidget``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        with warnings.catch_warnings():
            from ..checks import PatchingWarning

            # The command line always shows patchwidget's notes, whatever the caller's filters.
            warnings.simplefilter("always", PatchingWarning)
            warnings.showwarning = _note_printer(args.command, warnings.showwarning)
            return args.run(args)
    except (CliError, ValueError, TypeError, OSError, FloatingPointError) as err:
        print(f"patchwidget {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"patchwidget {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from ..components import SITES
    from ..demo import DEMO_CORRUPTIONS
    from ..metrics import METRICS

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
        metavar="FILE",
        help="a .csv or .json dataset, one pair per row: columns clean, corrupted, correct, "
        "incorrect and one per named position (a token index or a word), e.g. IO,S2,END "
        '(JSON: a list of rows, or {"clean": [...], "corrupted": [...], "answers": [...]})',
    )
    atp = sweep.add_argument_group("attribution patching (a first-order estimate, one pass)")
    atp.add_argument(
        "--method",
        default="exact",
        choices=("exact", "attribution"),
        help="exact patching (default) or its attribution estimate",
    )
    atp.add_argument("--qk-fix", action="store_true", help="AtP* QK fix (q/k sites)")
    atp.add_argument("--grad-drop", action="store_true", help="AtP* GradDrop scores")
    atp.add_argument(
        "--verify",
        type=_positive_int,
        default=None,
        metavar="K",
        help="patch the K largest estimates exactly and print the agreement",
    )
    where = sweep.add_argument_group("restrict the sweep (comma-separated indices)")
    for axis in ("layers", "heads", "positions", "neurons"):
        kind = _position_list if axis == "positions" else _int_list
        where.add_argument(f"--{axis}", type=kind, metavar="I,J,...", default=None)
    where.add_argument(
        "--receivers",
        type=_receivers,
        metavar="R,...",
        default=None,
        help="path patching: each component of --site (head, head_by_pos, attn_out, mlp_out) "
        "reaches only these: logits, q:L2H1, k:L2H1@5, v:L1H0, mlp:L1, mlp:L1@14",
    )
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
        "--device-map",
        default=None,
        help="spread a large model's layers: 'auto' (GPUs, then CPU); needs accelerate",
    )
    run.add_argument(
        "--remote",
        choices=["ndif", "local"],
        default=None,
        help="run on NDIF (ndif; needs an API key) or through nnsight's local simulation of it",
    )
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
    from ..experiment import DIRECTIONS, Experiment

    out = args.out or Path(f"{args.site}.png")
    _check_outputs(out, args.json, args.save_path)
    check_attribution_args(args)
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
                method=args.method,
                qk_fix=args.qk_fix,
                grad_drop=args.grad_drop,
                receivers=args.receivers,
            )
        )
        seconds.append(time.perf_counter() - start)
    normalized = args.normalized and results[0].normalization_ok(args.metric)
    name = "patchwidget demo model" if args.model == "demo" else args.model
    print(summary(exp, results, seconds, args.metric, args.normalized, args.top, about, name))
    if args.verify:
        print(verify_summary(exp, results, args.verify, args.metric, not args.quiet))
    write_figure(results, args.metric, normalized, out)
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


def _remote(args: argparse.Namespace) -> bool | str:
    modes: dict[str | None, bool | str] = {"ndif": True, "local": "local", None: False}
    return modes[args.remote]


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
        from ..demo import DEMO_CORRUPTIONS, demo_prompts, load_demo_hf
        from ..models import load_model

        if args.remote == "ndif" or args.device_map:
            raise CliError(
                "the demo model is not served on NDIF and needs no device map: use --remote "
                "local, or --model NAME"
            )
        hf, tokenizer = load_demo_hf()
        model = load_model(
            hf, tokenizer=tokenizer, device=args.device, dtype=args.dtype, remote=_remote(args)
        )
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
    from ..models import load_model

    try:
        model = load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            remote=_remote(args),
            device_map=args.device_map,
        )
    except Exception as err:  # hub, network, file and config errors come in many types
        raise CliError(f"cannot load model {args.model!r}: {_one_line(err)}") from err
    return model, own, "your prompts"


def _own_prompts(args: argparse.Namespace) -> dict[str, Any] | None:
    given = [f"--{k}" for k in ("clean", "corrupted", "answers") if getattr(args, k)]
    if args.prompts is not None:
        if given:
            raise CliError(f"give --prompts or {', '.join(given)}, not both")
        try:
            return load_dataset(args.prompts)
        except (OSError, ValueError, TypeError) as err:
            raise CliError(f"--prompts {args.prompts}: {_one_line(err)}") from err
    if not given:
        return None
    missing = [f"--{k}" for k in ("clean", "corrupted", "answers") if not getattr(args, k)]
    if missing:
        raise CliError(f"{', '.join(given)} also need(s) {', '.join(missing)}")
    return {"clean": args.clean, "corrupted": args.corrupted, "answers": args.answers}


def _prompts_from_file(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The file's prompts, checked for shape: lists of strings, answers as string pairs."""
    for key in ("clean", "corrupted"):
        value = data[key]
        if isinstance(value, str):
            value = data[key] = [value]
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise CliError(f'{path}: "{key}" must be a list of prompts (strings)')
    answers = data["answers"]
    if isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers):
        answers = [answers]
    if not isinstance(answers, list) or not all(
        isinstance(a, list) and len(a) == 2 and all(isinstance(t, str) for t in a) for a in answers
    ):
        raise CliError(
            f'{path}: "answers" must be a list of [correct, incorrect] pairs, e.g. '
            f'[[" Mary", " John"]], got {json.dumps(answers)[:80]}'
        )
    return {
        "clean": data["clean"],
        "corrupted": data["corrupted"],
        "answers": [tuple(a) for a in answers],
    }


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
        if path is not None and path.is_dir():
            raise CliError(f"cannot write {path}: it is a folder; give a file name")


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


# ---------------------------------------------------------------------------------- helpers
def _answers(text: str) -> tuple[str, str]:
    """``CORRECT|INCORRECT`` (as in the widget) or ``CORRECT,INCORRECT``; spaces are kept."""
    parts = text.split("|") if "|" in text else text.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(
            f"--answers {text!r} must be CORRECT|INCORRECT or CORRECT,INCORRECT, e.g. ' Mary| John'"
        )
    return parts[0], parts[1]


def _receivers(text: str) -> list[Any]:
    from ..paths import receivers_from_text

    try:
        return receivers_from_text(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 0,2,5") from None


def _position_list(text: str) -> list[int | str]:
    """Token indices, or names of named positions (S2,END)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return [int(p) if p.lstrip("-").isdigit() else p for p in parts]


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


def _note_printer(command: str, fallback: Any) -> Any:
    """``warnings.showwarning`` that prints patchwidget's warnings as one-line notes."""
    from ..checks import PatchingWarning

    def show(message: Any, category: type, *rest: Any, **kwargs: Any) -> None:
        if issubclass(category, PatchingWarning):
            print(f"patchwidget {command}: note: {_one_line(message)}", file=sys.stderr)
        else:
            fallback(message, category, *rest, **kwargs)

    return show


def _suffixed(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}_{tag}{path.suffix}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 600 else text[:597] + "..."
