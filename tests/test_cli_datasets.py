"""The command line reads dataset files with named positions (--prompts FILE.csv)."""

from __future__ import annotations

from test_cli import ranked, run_cli

import patchwidget as pw


def test_prompts_csv_with_named_positions(capsys, tmp_path):
    path = tmp_path / "ioi.csv"
    pw.demo_dataset(n=10).to_csv(path, index=False)
    code, out, err = run_cli(
        capsys,
        "sweep",
        "--site",
        "resid_pre",
        "--prompts",
        str(path),
        "--positions",
        "S2,END",
        "--quiet",
        "--out",
        str(tmp_path / "f.png"),
    )
    assert code == 0, err
    assert "10 pairs of 14-19 tokens" in out
    # flip_s2: the clean S2 token restores the answer early, the END position late.
    assert ranked(out)[:3] == ["L1 pos S2", "L0 pos S2", "L2 pos END"]


def test_prompts_file_errors_name_the_file(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("clean,correct\nWhen Mary,Mary\n")
    code, _, err = run_cli(
        capsys, "sweep", "--prompts", str(path), "--out", str(tmp_path / "f.png")
    )
    assert code != 0
    assert f"--prompts {path}: the dataset has no column 'incorrect'" in err
