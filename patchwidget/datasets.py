"""Prompt datasets as tables: one row per pair with columns clean, corrupted, correct, incorrect,
and one column per named position (a token index, negative from the end, or a word to find).

Without position columns, prompts that mark words as ``[NAME:word]`` name their positions by
the marks. JSON files hold a list of rows or a dict of columns (the older
``{"clean", "corrupted", "answers"}`` form is read too); CSV files one row per pair.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .positions import MARK

REQUIRED = ("clean", "correct", "incorrect")
KNOWN = ("clean", "corrupted", "correct", "incorrect", "answers")
_INTEGER = re.compile(r"-?\d+")


def _is_answer_pair(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(t, str) for t in value)
    )


def load_dataset(source: Any) -> dict[str, Any]:
    """``pw.Experiment`` keywords (clean, corrupted, answers, positions) from a pandas DataFrame,
    a dict of columns, a list of rows, or a ``.json`` / ``.csv`` file."""
    frame = _frame(source)
    if "answers" in frame.columns and not {"correct", "incorrect"} <= set(frame.columns):
        bad = [a for a in frame["answers"] if not _is_answer_pair(a)]
        if bad:
            raise ValueError(
                '"answers" must be a list of [correct, incorrect] pairs, e.g. [[" Mary", " John"]]'
                f", got {bad[0]!r:.80}"
            )
        frame = frame.assign(
            correct=[a[0] for a in frame["answers"]], incorrect=[a[1] for a in frame["answers"]]
        )
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the dataset has no column {', '.join(map(repr, missing))}: it needs clean, correct "
            "and incorrect (and usually corrupted), plus one column per named position; it has "
            f"{', '.join(map(str, frame.columns)) or 'no columns'}"
        )
    if frame.empty:
        raise ValueError("the dataset has no rows: give one row per prompt pair")
    for column in ("clean", "corrupted", "correct", "incorrect"):
        if column in frame.columns and frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise ValueError(f"row {row} has no {column!r} value")
    names = [c for c in frame.columns if c not in KNOWN]
    out: dict[str, Any] = {
        "clean": [str(x) for x in frame["clean"]],
        "corrupted": [str(x) for x in frame["corrupted"]] if "corrupted" in frame else None,
        "answers": [
            (str(a), str(b)) for a, b in zip(frame["correct"], frame["incorrect"], strict=True)
        ],
    }
    if names:
        out["positions"] = {
            str(n): [_position(v, n, i) for i, v in enumerate(frame[n])] for n in names
        }
    elif any(MARK.search(p) for p in out["clean"]):
        out["positions"] = "marked"
    return out


def dataset_frame(
    clean: Sequence[str],
    corrupted: Sequence[str] | None,
    answers: Sequence[tuple[str, str]],
    positions: Mapping[str, Sequence[Any]] | None = None,
) -> Any:
    """The table ``load_dataset`` reads, from ``pw.Experiment`` keywords (write it with
    ``.to_csv(path, index=False)`` or ``.to_json(path, orient="records")``)."""
    import pandas as pd

    columns: dict[str, Any] = {"clean": list(clean)}
    if corrupted is not None:
        columns["corrupted"] = list(corrupted)
    columns["correct"] = [a for a, _ in answers]
    columns["incorrect"] = [b for _, b in answers]
    for name, values in (positions or {}).items():
        if name in KNOWN:
            raise ValueError(f"{name!r} can't name a position: it is a dataset column")
        columns[name] = list(values)
    return pd.DataFrame(columns)


def _frame(source: Any) -> Any:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no dataset file {path}")
        if path.suffix.lower() == ".csv":
            # keep_default_na=False: an answer or word such as "NA" stays text
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.suffix.lower() == ".json":
            try:
                source = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from err
        else:
            raise ValueError(f"{path}: datasets are .csv or .json files")
    if isinstance(source, Mapping) or (
        isinstance(source, list) and all(isinstance(r, Mapping) for r in source)
    ):
        try:
            return pd.DataFrame(source)
        except ValueError as err:
            raise ValueError(f"the dataset's columns must have one value per pair: {err}") from err
    raise TypeError(
        "a dataset is a pandas DataFrame, a dict of columns, a list of rows, or a .csv/.json "
        f"path, not {type(source).__name__}"
    )


def _position(value: Any, name: str, row: int) -> int | str:
    """A token index (integers, also as text) or a word to find."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip():
        return int(value) if _INTEGER.fullmatch(value.strip()) else value
    raise ValueError(
        f"row {row}, position {name!r}: {value!r} is neither a token index nor a word to find"
    )
