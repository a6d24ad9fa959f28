"""The ``patchwidget`` command line: sweeps on the demo model, outputs, errors, ``demo``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from patchwidget.cli import commands as cli
from patchwidget.cli import quickstart

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


RANKED = re.compile(r"^ +\d+\. (?P<label>.+?) +(?P<value>-?[\d.]+(e[+-]?\d+)?)( +\(raw .*\))?$")


def ranked(out: str) -> list[str]:
    """Component labels of the ranked lines in a summary, in order."""
    return [m["label"] for m in map(RANKED.match, out.splitlines()) if m]


def test_resid_pre_flip_s2_finds_s2_early_and_the_answer_position_late(capsys, tmp_path):
    fig, out_json = tmp_path / "fig.png", tmp_path / "out.json"
    code, out, err = run_cli(
        capsys,
        "sweep",
        "--model",
        "demo",
        "--site",
        "resid_pre",
        "--corruption",
        "flip_s2",
        "--pairs",
        "16",
        "--out",
        str(fig),
        "--json",
        str(out_json),
        "--quiet",
    )
    assert code == 0, err
    assert "baselines, logit_diff" in out and "normalised = (patched - corrupted)" in out
    top = ranked(out)
    assert len(top) == 3, out  # S2 at layers 0 and 1, the answer position at layer 2
    assert {t.split(" pos ")[1].split(":")[0] for t in top} == {"10", "14"}
    assert any(t.startswith("L0 pos 10:") for t in top)
    assert any(t.startswith("L2 pos 14:") for t in top)

    image = matplotlib.image.imread(fig)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    data = json.loads(out_json.read_text())
    assert data["site"] == "resid_pre" and data["metric"] == "logit_diff" and data["normalized"]
    assert data["n_pairs"] == 16 and data["n_tokens"] == 15
    assert (
        data["baselines"]["logit_diff"]["clean"]
        > 5
        > -5
        > data["baselines"]["logit_diff"]["corrupted"]
    )
    assert set(data["baselines"]) == {"logit_diff", "logprob", "prob", "kl", "rank", "accuracy"}
    den = data["results"]["denoising"]
    assert den["axes"] == ["layer", "pos"] and den["complete"]
    values = den["values"]["logit_diff"]["normalized"]
    assert len(values) == 3 and len(values[0]) == 15
    assert values[0][10] == pytest.approx(1.0, abs=0.05)
    assert values[2][14] == pytest.approx(1.0, abs=0.05)
    assert abs(values[0][3]) < 0.05
    assert den["strongest"][0]["coords"]["pos"] in (10, 14)
    assert set(data["baseline_readouts"]["clean"]) == {
        "logit_correct",
        "logit_incorrect",
        "lse",
        "kl_clean",
        "kl_corrupted",
        "rank",
    }


def test_head_sweep_both_directions_raw_with_saved_results(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "sweep",
        "--site",
        "head",
        "--direction",
        "both",
        "--raw",
        "--pairs",
        "8",
        "--out",
        str(tmp_path / "heads.svg"),
        "--save",
        str(tmp_path / "heads.npz"),
        "--quiet",
    )
    assert code == 0, err
    assert "head sweep, denoising" in out and "head sweep, noising" in out
    assert ranked(out)[0] == "L1 H3"  # the head that reads S2 (flip_s2 is the default)
    assert "normalised =" not in out
    assert (tmp_path / "heads.svg").read_text().lstrip().startswith("<?xml")
    from patchwidget import PatchResult

    noising = PatchResult.load(tmp_path / "heads_noising.npz")
    assert noising.direction == "noising" and noising.axes == ("layer", "head")


def test_own_prompts_on_the_demo_model(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "sweep",
        "--site",
        "head",
        "--layers",
        "1",
        "--quiet",
        "--clean",
        "When Mary and John went to the store , John gave a drink to",
        "--corrupted",
        "When Mary and John went to the store , Mary gave a drink to",
        "--answers",
        " Mary| John",
        "--out",
        str(tmp_path / "own.png"),
    )
    assert code == 0, err
    assert "your prompts on the demo model" in out
    assert "1 pairs of 15 tokens" in out
    assert ranked(out)[0] == "L1 H3"


def test_prompts_file(capsys, tmp_path):
    import patchwidget as pw

    prompts = pw.demo_prompts("new_io", n=4)
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(prompts))
    code, out, err = run_cli(
        capsys,
        "sweep",
        "--site",
        "head",
        "--prompts",
        str(path),
        "--quiet",
        "--out",
        str(tmp_path / "f.png"),
    )
    assert code == 0, err
    assert ranked(out)[0] == "L0 H1"  # new_io: the IO path starts in layer 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--site", "nope"], "invalid choice: 'nope'"),
        (["sweep", "--out", "fig.txt"], "unknown figure format 'txt'"),
        (["sweep", "--out", "/no/such/folder/fig.png"], "does not exist"),
        (["sweep", "--answers", "Mary"], "must be CORRECT|INCORRECT"),
        (["sweep", "--pairs", "0"], "not a positive integer"),
        (["sweep", "--model", "gpt2"], "needs prompts"),
        (["sweep", "--model", "gpt2", "--corruption", "abc"], "use them with --model demo"),
        (
            ["sweep", "--pairs", "4", "--clean", "a", "--corrupted", "b", "--answers", "a|b"],
            "without",
        ),
        (["sweep", "--clean", "When Mary"], "also need(s) --corrupted, --answers"),
        (["sweep", "--layers", "9", "--out", "{tmp}/x.png"], "layer 9 is out of range"),
        (
            [
                "sweep",
                "--clean",
                "When Mary and John",
                "--corrupted",
                "When Mary",
                "--answers",
                " Mary, John",
                "--out",
                "{tmp}/x.png",
            ],
            "positions must line up",
        ),
        (
            [
                "sweep",
                "--clean",
                "When Mary and",
                "--corrupted",
                "When John and",
                "--answers",
                " Mary John, John",
                "--out",
                "{tmp}/x.png",
            ],
            "not a single token",
        ),
        (["demo", "--dir", "/no/such/folder"], "is not a folder"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_bad_model_name_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        capsys,
        "sweep",
        "--model",
        str(tmp_path / "no-such-model"),
        "--clean",
        "a",
        "--corrupted",
        "b",
        "--answers",
        "a,b",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert code == 2
    assert err.startswith("patchwidget sweep: error: cannot load model")
    assert len(err.strip().splitlines()) == 1


def test_console_entry_point_as_a_subprocess(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "patchwidget",
            "sweep",
            "--model",
            "demo",
            "--site",
            "head",
            "--pairs",
            "8",
            "--out",
            "fig.png",
            "--json",
            "out.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "strongest effects" in done.stdout and "L1 H3" in done.stdout
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out.json").read_text())["site"] == "head"
    bad = subprocess.run(
        [sys.executable, "-m", "patchwidget", "sweep", "--metric", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_demo_writes_the_quickstart_and_builds_the_lab_command(capsys, tmp_path, monkeypatch):
    launched = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, cwd: launched.append((cmd, cwd)) or 0)
    code, out, _ = run_cli(capsys, "demo", "--dir", str(tmp_path), "--no-browser")
    assert code == 0
    notebook = tmp_path / quickstart.QUICKSTART_NAME
    assert f"wrote {notebook}" in out
    [(cmd, cwd)] = launched
    assert cmd[:5] == [sys.executable, "-m", "jupyterlab", "quickstart.ipynb", "--no-browser"]
    assert cmd[5:] == (["--allow-root"] if os.geteuid() == 0 else [])
    assert cwd == tmp_path

    notebook.write_text(notebook.read_text().replace("flip_s2", "new_io"))  # the user's edits
    code, out, _ = run_cli(capsys, "demo", "--dir", str(tmp_path), "--dry-run")
    assert code == 0 and "using the existing" in out and "new_io" in notebook.read_text()
    assert "-m jupyterlab quickstart.ipynb" in out and "--no-browser" not in out
    assert len(launched) == 1


def test_quickstart_notebook_is_valid_and_matches_the_repository_copy():
    import nbformat

    generated = nbformat.reads(json.dumps(quickstart.quickstart_notebook()), as_version=4)
    nbformat.validate(generated)
    shipped = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in shipped.cells] == [
        (c.cell_type, c.source) for c in generated.cells
    ], (
        "notebooks/quickstart.ipynb drifted from quickstart.QUICKSTART_CELLS: regenerate it with "
        "`rm notebooks/quickstart.ipynb && python -m patchwidget demo --dry-run --dir notebooks`"
    )
