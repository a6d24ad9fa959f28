"""JSON-ready copies of run metadata and report data."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """Plain JSON data: NaN and inf become None, numpy scalars plain numbers, iterables lists."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    return value
