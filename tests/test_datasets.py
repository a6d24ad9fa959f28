"""Datasets as tables: loading from DataFrames and files, round trips, and 1,000 pairs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import engine_model

import patchwidget as pw
from patchwidget.datasets import dataset_frame, load_dataset

ROWS = {
    "clean": ["w5 w17 w3 w40 w8", "w11 w2 w33 w40 w7 w50 w61", "w1 w2 w3 NA"],
    "corrupted": ["w5 w17 w4 w40 w8", "w11 w2 w34 w40 w7 w50 w61", "w1 w2 w4 NA"],
    "correct": [" w7", " w12", " NA"],
    "incorrect": [" w9", " w30", " w1"],
    "X": [3, "w33", -2],
    "END": [-1, -1, -1],
}
WANT = {
    "clean": ROWS["clean"],
    "corrupted": ROWS["corrupted"],
    "answers": [(" w7", " w9"), (" w12", " w30"), (" NA", " w1")],
    "positions": {"X": [3, "w33", -2], "END": [-1, -1, -1]},
}


@pytest.mark.parametrize("form", ["frame", "columns", "rows", "csv", "json_rows", "json_columns"])
def test_every_form_reads_the_same(form: str, tmp_path) -> None:
    frame = pd.DataFrame(ROWS)
    source = {
        "frame": frame,
        "columns": ROWS,
        "rows": frame.to_dict(orient="records"),
        "csv": tmp_path / "d.csv",
        "json_rows": tmp_path / "r.json",
        "json_columns": tmp_path / "c.json",
    }[form]
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_json(tmp_path / "r.json", orient="records")
    (tmp_path / "c.json").write_text(json.dumps(ROWS))
    assert load_dataset(source) == WANT


def test_demo_dataset_round_trips_through_csv_and_json(tmp_path) -> None:
    frame = pw.demo_dataset(n=10)
    assert sorted(set(frame.clean.str.split().map(len))) == [13, 14, 15, 17, 18]
    frame.to_csv(tmp_path / "ioi.csv", index=False)
    frame.to_json(tmp_path / "ioi.json", orient="records", indent=1)
    want = load_dataset(frame)
    assert load_dataset(tmp_path / "ioi.csv") == want == load_dataset(tmp_path / "ioi.json")
    again = dataset_frame(**want)
    pd.testing.assert_frame_equal(again, frame)


def test_older_answers_form_and_marks_are_read() -> None:
    got = load_dataset(
        {"clean": ["[A:w1] w2"], "corrupted": ["w3 w2"], "answers": [[" w4", " w5"]]}
    )
    assert got == {
        "clean": ["[A:w1] w2"],
        "corrupted": ["w3 w2"],
        "answers": [(" w4", " w5")],
        "positions": "marked",
    }


def test_bad_datasets_say_what_is_wrong(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no column 'incorrect'.*has clean, correct"):
        load_dataset({"clean": ["a"], "correct": ["b"]})
    with pytest.raises(ValueError, match=r"row 1 has no 'corrupted' value"):
        load_dataset({**ROWS, "corrupted": ["a", None, "b"]})
    with pytest.raises(ValueError, match=r"row 2, position 'X': nan is neither"):
        load_dataset({**ROWS, "X": [1, 2, float("nan")]})
    with pytest.raises(FileNotFoundError, match="no dataset file"):
        load_dataset(tmp_path / "missing.csv")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        load_dataset(tmp_path / "d.txt")
    with pytest.raises(TypeError, match="a dataset is a pandas DataFrame"):
        load_dataset(42)


def test_experiment_from_dataset_equals_the_keywords() -> None:
    columns = {k: v[:2] for k, v in ROWS.items()}
    exp = pw.Experiment.from_dataset(engine_model("gpt2"), columns)
    assert exp.named_positions == {"X": (3, 3), "END": (5, 7)}


def test_a_thousand_pairs_run_in_batches_capped_by_rows() -> None:
    """1,002 pairs (three pairs of different lengths repeated) give the three pairs' readouts,
    and no forward pass holds more rows than the batch size."""
    frame = pd.DataFrame({k: v[:2] for k, v in ROWS.items()})
    clean, corrupted = "w9 w8 w7 w66 w5 w4 w3 w2 w1 w0", "w9 w8 w7 w67 w5 w4 w3 w2 w1 w0"
    frame.loc[2] = [clean, corrupted, " w3", " w4", "w66", -1]
    small = pw.Experiment.from_dataset(engine_model("gpt2"), frame, batch_size=16)
    big = pw.Experiment.from_dataset(
        engine_model("gpt2"), pd.concat([frame] * 334, ignore_index=True), batch_size=16
    )
    assert big.n_pairs == 1002
    rows_seen = []
    forward = big.engine.forward

    def counting(ids, *args, **kwargs):
        rows_seen.append(len(ids))
        return forward(ids, *args, **kwargs)

    big.engine.forward = counting
    got = big.sweep("resid_pre", progress=False)
    want = small.sweep("resid_pre", progress=False)
    assert max(rows_seen) == 16
    np.testing.assert_allclose(got.readouts, np.tile(want.readouts, (1, 1, 334, 1)), atol=1e-4)
    assert np.asarray(got.stderr()).shape == (2, 2)
