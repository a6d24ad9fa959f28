"""The fixture that js/tests/metrics.test.ts checks metrics.ts against, made by patchwidget.metrics.

Set PW_UPDATE_FIXTURES=1 to rewrite it after a deliberate change to the metrics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from patchwidget.metrics import METRICS, compute

FIXTURE = Path(__file__).resolve().parents[1] / "js" / "tests" / "fixtures" / "metrics.json"


def _cases() -> list[dict]:
    rng = np.random.default_rng(7)
    cases = []
    for name, n_cells, n_pairs in (("grid", 6, 3), ("single_pair", 4, 1)):
        readouts = rng.normal(0, 3, size=(n_cells, n_pairs, 6)).astype(np.float32)
        readouts[..., 2] = np.abs(readouts[..., 2]) + 8  # lse above the logits
        readouts[..., 3:5] = np.abs(readouts[..., 3:5])
        readouts[..., 5] = rng.integers(0, 3, size=(n_cells, n_pairs))
        readouts[1] = np.nan  # a cell that has not run
        clean = readouts[2, :, :].copy()
        clean[:, 5] = 0
        corrupted = readouts[3, :, :].copy()
        corrupted[:, 5] = 2
        cases.append({"name": name, "readouts": readouts, "clean": clean, "corrupted": corrupted})
    same = cases[0]
    cases.append({**same, "name": "equal_baselines", "corrupted": same["clean"].copy()})
    return cases


def _fixture() -> dict:
    out = []
    for case in _cases():
        expected = {
            f"{metric}{'_norm' if norm else ''}": _json_floats(
                compute(metric, case["readouts"], case["clean"], case["corrupted"], norm)
            )
            for metric in METRICS
            for norm in (False, True)
        }
        out.append(
            {
                "name": case["name"],
                "n_pairs": int(case["readouts"].shape[1]),
                "readouts": _json_floats(case["readouts"].reshape(-1)),
                "clean": _json_floats(case["clean"].reshape(-1)),
                "corrupted": _json_floats(case["corrupted"].reshape(-1)),
                "expected": expected,
            }
        )
    return {"source": "tests/test_widget_metrics_fixture.py", "cases": out}


def _json_floats(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def test_metrics_fixture_is_current() -> None:
    fixture = _fixture()
    if os.environ.get("PW_UPDATE_FIXTURES") == "1":
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    assert FIXTURE.exists(), f"{FIXTURE} is missing: create it with PW_UPDATE_FIXTURES=1"
    stored = json.loads(FIXTURE.read_text())
    assert stored["cases"] == json.loads(json.dumps(fixture))["cases"], (
        "js/tests/fixtures/metrics.json is out of date: rerun with PW_UPDATE_FIXTURES=1"
    )
