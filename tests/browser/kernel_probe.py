"""Imported inside the test notebooks' kernels: dumps kernel state as JSON for the tests.

Copied next to the notebooks by the `open_notebook` fixture. The state goes to a file beside
the notebook (results can be large); the cell prints one line PROBE:<file name>.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

PREFIX = "PROBE:"
METRICS = ("logit_diff", "logprob", "prob", "kl", "rank", "accuracy")
_counter = itertools.count()


def _clean(x: Any) -> Any:
    """NaN/inf -> None, recursively, so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def show(obj: Any) -> None:
    path = Path(f"probe-{os.getpid()}-{next(_counter)}.json")  # one kernel per notebook
    path.write_text(json.dumps(_clean(obj), default=_default))
    print(PREFIX + path.name)


def _default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return _clean(x.tolist())
    return str(x)


def result_state(result: Any) -> dict[str, Any] | None:
    """Site, direction, axes, coords and every metric's values (raw and normalised)."""
    if result is None:
        return None
    import numpy as np

    values = {
        f"{metric}{'_norm' if norm else ''}": np.asarray(result.values(metric, normalized=norm))
        for metric in METRICS
        for norm in (False, True)
    }
    return {
        "site": result.site,
        "direction": result.direction,
        "axes": list(result.axes),
        "coords": {k: list(v) for k, v in result.coords.items()},
        "complete": bool(result.complete),
        "values": values,
    }


def widget_state(w: Any) -> None:
    """Print the widget's request history and its current result."""
    show({"history": list(w.history), "result": result_state(w.result)})
