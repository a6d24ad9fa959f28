"""End to end in marimo: notebooks/marimo_demo.py served by `marimo run`, driven in Chromium.

The widget (``mo.ui.anywidget(pw.PatchingWidget(exp))``) paints its first map, a metric switch
redraws without a sweep, a click drills down; after each, the notebook's next cell, which reads
``widget.widget.results`` in the kernel, has rerun and reports the kernel's strongest value,
which must be the heatmap's strongest cell.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser_env import REPO
from .marimo_server import MarimoServer
from .widget_page import WidgetPage

pytestmark = pytest.mark.browser

NOTEBOOK = REPO / "notebooks" / "marimo_demo.py"
MARIMO = Path(sys.executable).with_name("marimo")


@pytest.fixture(scope="module")
def marimo_server(tmp_path_factory: pytest.TempPathFactory, artifacts: Any) -> Iterator[Any]:
    # Not imported here: marimo runs in its own process (importing it after nnsight fails).
    if not MARIMO.exists():
        pytest.fail(f"{MARIMO} is missing: marimo is in the test extra (bash scripts/install.sh)")
    folder = tmp_path_factory.mktemp("marimo")
    shutil.copy(NOTEBOOK, folder / NOTEBOOK.name)
    server = MarimoServer(folder / NOTEBOOK.name, artifacts / "marimo.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def strongest(shown: list[list[float | None]]) -> float:
    """The heatmap's value with the largest magnitude."""
    return max((v for row in shown for v in row if v is not None), key=abs)


def reported(page: Any) -> dict[str, Any]:
    """What the kernel-side cell below the widget says (it reads ``widget.widget.results``)."""
    return {
        "site": page.get_by_test_id("site").inner_text(),
        "metric": page.get_by_test_id("metric").inner_text(),
        "strongest": float(page.get_by_test_id("strongest").inner_text()),
        "sweeps": int(page.get_by_test_id("sweeps").inner_text()),
    }


def wait_reported(widget: WidgetPage, **expected: Any) -> dict[str, Any]:
    """Wait until the dependent cell has rerun and reports `expected` (and the map's value)."""
    state: dict[str, Any] = {}

    def matches() -> bool:
        state.update(reported(widget.page))
        want = strongest(widget.heatmap_values())
        close = math.isclose(state["strongest"], want, rel_tol=1e-3, abs_tol=1e-3)
        return close and all(state[k] == v for k, v in expected.items())

    widget.wait_for(matches, 60, f"the dependent cell to report {expected}")
    return state


def test_marimo_widget_drives_other_cells(marimo_server, page, artifacts):
    page.goto(marimo_server.url)
    widget = WidgetPage(page)
    widget.wait_settled(timeout=180)  # marimo run executes the cells; the first sweep follows
    first = wait_reported(widget, site="resid_pre", metric="logit_diff", sweeps=1)
    page.screenshot(path=str(artifacts / "marimo.png"))

    before = widget.heatmap_values()
    widget.select("pw-metric", "prob")  # instant: the browser recomputes, the kernel reruns a cell
    widget.wait_for(lambda: widget.heatmap_values() != before, 10, "the map redrawn for prob")
    assert widget.status == "idle"
    wait_reported(widget, site="resid_pre", metric="prob", sweeps=1)

    rows = widget.heatmap_values()
    r, c = max(
        ((r, c) for r, row in enumerate(rows) for c, v in enumerate(row) if v is not None),
        key=lambda rc: abs(rows[rc[0]][rc[1]] or 0.0),
    )
    widget.click_cell(r, c)  # drill down into the strongest cell: a new sweep in the kernel
    widget.wait_for(lambda: reported(page)["sweeps"] == 2, 120, "the drill-down sweep")
    widget.wait_settled()
    drilled = wait_reported(widget, metric="prob", sweeps=2)
    assert drilled["site"] != first["site"], drilled
