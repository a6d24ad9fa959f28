"""``patchwidget sweep --method attribution`` and the widget's copied code for an estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest

import patchwidget as pw
from patchwidget.cli import commands as cli
from patchwidget.widget.codegen import ExperimentSource, view_code


def test_cli_attribution_estimate_with_verification(capsys, tmp_path) -> None:
    out_json = tmp_path / "est.json"
    code = cli.main(
        [
            "sweep",
            "--site", "head",
            "--method", "attribution",
            "--verify", "4",
            "--pairs", "4",
            "--quiet",
            "--raw",
            "--out", str(tmp_path / "est.png"),
            "--json", str(out_json),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "head sweep (attribution estimate), denoising" in out
    assert "4 cells verified" in out
    data = json.loads(out_json.read_text())
    assert data["results"]["denoising"]["method"] == "attribution"
    # the printed estimates are the engine's
    exp = pw.Experiment(pw.demo_model(), **pw.demo_prompts("flip_s2", n=4))
    est = exp.sweep("head", method="attribution")
    got = np.array(data["results"]["denoising"]["values"]["logit_diff"]["raw"], dtype=float)
    np.testing.assert_allclose(got, np.asarray(est.values("logit_diff")), atol=1e-4)
    assert data["results"]["denoising"]["values"]["kl"]["raw"][0][0] is None  # NaN -> null


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "kl", "--method", "attribution"], "cannot be estimated"),
        (["--qk-fix"], "refine --method attribution"),
    ],
)
def test_cli_refuses_what_an_estimate_cannot_do(capsys, tmp_path, args, message) -> None:
    code = cli.main(["sweep", "--out", str(tmp_path / "x.png"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_copied_code_reruns_the_estimate_and_verifies_it() -> None:
    source = ExperimentSource(
        model_expr="pw.demo_model()",
        clean=tuple(pw.demo_prompts("flip_s2", n=2)["clean"]),
        corrupted=tuple(pw.demo_prompts("flip_s2", n=2)["corrupted"]),
        answers=tuple(tuple(a) for a in pw.demo_prompts("flip_s2", n=2)["answers"]),
    )
    request = {"kind": "sweep", "site": "head", "direction": "noising", "method": "attribution"}
    code = view_code(source, request, "logprob", True)
    assert "exp.sweep('head', direction='noising', method=\"attribution\")" in code
    namespace: dict = {}
    exec(
        compile(code.replace("res.plot(", "(lambda *a, **k: None)("), "<copied>", "exec"), namespace
    )
    assert namespace["res"].method == "attribution"
