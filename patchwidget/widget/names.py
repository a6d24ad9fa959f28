"""How generated code names the widget's model and experiment: the notebook's own variables when
they exist, ``pw.demo_model()`` for the demo, a loadable name or path otherwise."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any


def caller_name(obj: Any) -> str | None:
    """The global name bound to ``obj`` where the first caller outside patchwidget runs (a
    notebook's namespace); names local to a function are not visible to the user's code."""
    frame = inspect.currentframe()
    try:
        while frame is not None and frame.f_globals.get("__name__", "").startswith("patchwidget"):
            frame = frame.f_back
        if frame is None:
            return None
        for name, value in list(frame.f_globals.items()):
            if value is obj and name.isidentifier() and not name.startswith("_"):
                return name
        return None
    finally:
        del frame


def model_expr(experiment: Any) -> str:
    """Python that loads the experiment's model again."""
    from ..demo.loading import MODEL_DIR

    config = getattr(getattr(experiment.model, "_module", None), "config", None)
    source = str(getattr(config, "_name_or_path", "") or "")
    if source and Path(source).resolve() == MODEL_DIR.resolve():
        return "pw.demo_model()"
    if source:
        return f"pw.load_model({source!r})"
    kind = dict(experiment.info).get("architecture", "model")
    return f"None  # TODO: this {kind} model was built in memory: load or build it here"
