"""One lock per model: traces of one model never overlap, whoever runs them.

nnsight instruments the model's own modules during a trace, so two traces of one model in two
threads (two widgets, or a widget sweep while a cell runs another Experiment) break each other.
Every forward pass patchwidget runs holds the model's lock. A ``model.trace`` of your own in
another thread can't be locked by patchwidget; wrap it::

    with pw.model_lock(model):
        with model.trace("..."):
            ...
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """The re-entrant lock shared by everything that runs ``model`` (an nnsight model or the
    transformers model inside it)."""
    key = getattr(model, "_module", model)  # nnsight wrappers share their module's lock
    with _GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
        return lock
