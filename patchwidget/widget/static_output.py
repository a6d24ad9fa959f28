"""The map on screen as an output of its own, kept current so that a saved notebook holds it.

Displayed through IPython (``w``, ``display(w)``), the widget makes two outputs: the live view and,
right after it, the picture of its map with a one-line summary (``text/html`` with the PNG inline,
and ``text/plain``) under a display id. When the map on screen changes (a sweep finished, another
metric or scale) the picture is redrawn and that output replaced (``update_display``): saved from
JupyterLab, executed by nbclient or exported to HTML, the notebook keeps the map last shown.
Where the widget renders, its CSS hides the picture (``.pw-static-map`` in ``js/src/widget.css``);
where it cannot (no kernel, an untrusted notebook, an offline HTML export, GitHub), it shows.
"""

from __future__ import annotations

import html
import threading
import weakref
from collections.abc import Callable
from typing import Any

DEBOUNCE_S = 0.4  # a burst of changes (metric, then scale) is drawn once, after the last
CSS_CLASS = "pw-static-map"

Bundle = Callable[[], dict[str, str]]  # {"text/plain": summary, "image/png": base64 (optional)}


def static_bundle(data: dict[str, str]) -> dict[str, str]:
    """The output's mime bundle: HTML (picture and summary) for notebooks, the summary as text."""
    summary = html.escape(data["text/plain"])
    png = data.get("image/png")
    img = f'<img src="data:image/png;base64,{png}" alt="{summary}">' if png else ""
    page = f'<div class="{CSS_CLASS}">{img}<div class="pw-static-summary">{summary}</div></div>'
    return {"text/html": page, "text/plain": data["text/plain"]}


def _kept_outputs(shell: Any) -> bool:
    """Whether the shell keeps displayed outputs, so that one can be replaced (a kernel does; a
    terminal would print the summary again on each change)."""
    from IPython.core.displaypub import DisplayPublisher

    return shell is not None and type(shell.display_pub) is not DisplayPublisher


class StaticOutput:
    """One widget's picture output: displayed after its view, replaced when its map changes."""

    def __init__(self, bundle: Bundle, display_id: str) -> None:
        self._bundle = bundle
        self.display_id = display_id
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._shown: dict[str, str] | None = None  # last published; None: nothing to replace
        self._dirty = False

    def display(self) -> None:
        """Publish the picture output (call right after the widget's view)."""
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        with self._lock:
            data = static_bundle(self._bundle())
            if not _kept_outputs(shell):
                display(data, raw=True)
                return
            display(data, raw=True, display_id=self.display_id)
            self._shown, self._dirty = data, False
        _watch(shell, self)

    def changed(self) -> None:
        """The map or its reading changed: redraw once things are quiet for ``DEBOUNCE_S``."""
        with self._lock:
            if self._shown is None:
                return
            self._dirty = True
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(DEBOUNCE_S, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        """Replace the output now if the map changed since it was published."""
        from IPython.display import update_display

        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._dirty or self._shown is None:
                return
            self._dirty = False
            data = static_bundle(self._bundle())
            if data != self._shown:
                update_display(data, raw=True, display_id=self.display_id)
                self._shown = data

    def close(self) -> None:
        """Stop replacing the output (the widget was closed): it keeps the last picture."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._shown, self._dirty = None, None, False


# Outputs with a change still to publish at the end of the running cell: the debounce timer
# would fire after the cell's reply, when nbclient no longer records the cell's messages.
_displayed: weakref.WeakSet[StaticOutput] = weakref.WeakSet()
_hooked: weakref.WeakSet[Any] = weakref.WeakSet()  # shells with the post_execute hook


def _watch(shell: Any, output: StaticOutput) -> None:
    _displayed.add(output)
    if shell not in _hooked:
        shell.events.register("post_execute", _flush_all)
        _hooked.add(shell)


def _flush_all() -> None:
    for output in list(_displayed):
        output.flush()
