"""``patchwidget sweep --receivers``: path patching from the command line."""

from __future__ import annotations

import json

import pytest
from test_cli import ranked, run_cli

import patchwidget as pw
from patchwidget.paths import receivers_from_text


def test_receivers_text() -> None:
    assert receivers_from_text("logits, q:L2H1,k:L2H1@5,mlp:L1@14,mlp:L0") == [
        "logits",
        pw.Component("head_q", 2, head=1),
        pw.Component("head_k", 2, head=1, pos=5),
        pw.Component("mlp_in", 1, pos=14),
        pw.Component("mlp_in", 0),
    ]
    for bad in ("q:L2", "mlp:L1H0", "resid:L1", "L2H1"):
        with pytest.raises(ValueError, match="can't read receiver"):
            receivers_from_text(bad)


def test_sweep_with_receivers_finds_what_feeds_mlp1(capsys, tmp_path) -> None:
    fig, out_json = tmp_path / "fig.png", tmp_path / "out.json"
    args = ["sweep", "--site", "head", "--corruption", "flip_s2", "--pairs", "16", "--quiet"]
    code, out, err = run_cli(
        capsys, *args, "--receivers", "mlp:L1@14", "--out", str(fig), "--json", str(out_json)
    )
    assert code == 0, err
    assert ranked(out)[0].startswith("L1 H3")
    data = json.loads(out_json.read_text())
    assert data["metadata"]["receivers"] == ["mlp_in L1 @14"]
    code, out, err = run_cli(capsys, *args, "--receivers", "q:L2", "--out", str(fig))
    assert code == 2 and "can't read receiver 'q:L2'" in err
