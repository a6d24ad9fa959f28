"""The kernel's side of the request/reply channel: replies, the bounded request history, errors.

A request's failure reaches the browser as one ``error`` reply; an unexpected (kernel-side)
failure also goes to the module logger with its stack trace.
"""

from __future__ import annotations

import logging
import reprlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_HISTORY = 500
MAX_ERROR_CHARS = 2_000

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any], "list[bytes] | None"], None]

_short = reprlib.Repr()
_short.maxlevel = 3
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = _short.maxdict = _short.maxtuple = 6


def short_repr(value: Any) -> str:
    """A bounded repr for error texts (huge or deeply nested values are cut)."""
    try:
        return _short.repr(value)
    except (ValueError, RecursionError):  # e.g. an int too long to print
        return f"<{type(value).__name__}>"


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RequestLog:
    """Sends replies and keeps the last ``MAX_HISTORY`` requests, newest last."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=MAX_HISTORY)

    @property
    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def reply(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self._send(content, buffers)

    def record(self, request_id: int | None, kind: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": request_id,
            "kind": kind,
            "site": None,
            "direction": None,
            "layers": None,
            "heads": None,
            "positions": None,
            "status": "running",
            "error": None,
            "time": time.time(),
        }
        entry.update(fields)
        with self._lock:
            self._entries.append(entry)
        return entry

    def fail(self, entry: dict[str, Any], error: Exception, field: str | None = None) -> None:
        message = clip(str(error) or type(error).__name__)
        entry.update(status="error", error=message)
        self.reply(
            {
                "type": "error",
                "id": entry["id"],
                "kind": entry["kind"],
                "message": message,
                "field": field,
            }
        )

    def internal_error(self, entry: dict[str, Any], error: Exception) -> None:
        """A failure the request did not cause: stack trace to the log, message to the browser."""
        log.error("patchwidget %s request %s failed", entry["kind"], entry["id"], exc_info=error)
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        self.fail(entry, RuntimeError(f"{entry['kind']} failed: {detail}"))
