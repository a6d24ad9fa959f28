"""The fixture that js/tests/spread.test.ts checks spread.ts against, made by patchwidget.

Standard errors come from ``PatchResult.stderr`` and one pair's values from
``PatchResult.values(per_pair=True)``. Set PW_UPDATE_FIXTURES=1 to rewrite it after a deliberate
change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from test_widget_metrics_fixture import _json_floats

from patchwidget.metrics import METRICS
from patchwidget.result import PatchResult

FIXTURE = Path(__file__).resolve().parents[1] / "js" / "tests" / "fixtures" / "spread.json"


def _result() -> PatchResult:
    rng = np.random.default_rng(3)
    n_cells, n_pairs = 5, 4
    readouts = rng.normal(0, 3, size=(n_cells, n_pairs, 6)).astype(np.float32)
    readouts[..., 2] = np.abs(readouts[..., 2]) + 8
    readouts[..., 3:5] = np.abs(readouts[..., 3:5])
    readouts[..., 5] = rng.integers(0, 3, size=(n_cells, n_pairs))
    readouts[1] = np.nan  # a cell that has not run
    clean, corrupted = readouts[2].copy(), readouts[3].copy()
    clean[:, 5], corrupted[:, 5] = 0, 2
    return PatchResult(
        site="resid_pre",
        direction="denoising",
        axes=("pos",),
        coords={"pos": tuple(range(n_cells))},
        labels={"pos": tuple(map(str, range(n_cells)))},
        readouts=readouts,
        clean_readouts=clean,
        corrupted_readouts=corrupted,
    )


def _fixture() -> dict:
    res = _result()
    expected = {}
    for metric in METRICS:
        for norm in (False, True):
            suffix = "_norm" if norm else ""
            expected[f"stderr_{metric}{suffix}"] = _json_floats(
                np.asarray(res.stderr(metric, norm))
            )
            pair = np.asarray(res.values(metric, norm, per_pair=True))[:, 1]
            expected[f"pair1_{metric}{suffix}"] = _json_floats(pair)
    return {
        "source": "tests/test_widget_spread_fixture.py",
        "n_pairs": res.n_pairs,
        "readouts": _json_floats(res.readouts),
        "clean": _json_floats(res.clean_readouts),
        "corrupted": _json_floats(res.corrupted_readouts),
        "expected": expected,
    }


def test_spread_fixture_is_current() -> None:
    fixture = _fixture()
    if os.environ.get("PW_UPDATE_FIXTURES") == "1" or not FIXTURE.exists():
        FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    stored = json.loads(FIXTURE.read_text())
    assert stored == json.loads(json.dumps(fixture)), (
        "js/tests/fixtures/spread.json is out of date: rerun with PW_UPDATE_FIXTURES=1"
    )
