"""The PatchingWidget's DOM hooks (data-testid, see the contract) as a small page object."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from playwright.sync_api import Locator, Page

RUN_TIMEOUT = 120.0


class WidgetPage:
    """One rendered PatchingWidget inside a notebook page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.root = page.get_by_test_id("pw-root")

    def hook(self, testid: str) -> Locator:
        return self.root.get_by_test_id(testid)

    @property
    def status(self) -> str | None:
        return self.root.get_attribute("data-status")

    def heatmap(self, direction: str | None = None) -> Locator:
        maps = self.hook("pw-heatmap")
        if direction is not None:
            maps = maps.and_(self.page.locator(f'[data-direction="{direction}"]'))
        return maps.first

    def heatmap_values(self, direction: str | None = None) -> list[list[float | None]]:
        """data-values, checked against data-rows x data-cols."""
        heatmap = self.heatmap(direction)
        rows = int(heatmap.get_attribute("data-rows") or -1)
        cols = int(heatmap.get_attribute("data-cols") or -1)
        values = json.loads(heatmap.get_attribute("data-values") or "null")
        assert isinstance(values, list) and len(values) == rows, (rows, values)
        assert all(len(row) == cols for row in values), (cols, values)
        return values

    def wait_for(self, condition: Any, timeout: float = RUN_TIMEOUT, what: str = "") -> None:
        """Poll condition() (a DOM read) until true."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = condition()
                if last:
                    return
            except (AssertionError, json.JSONDecodeError, TypeError, ValueError) as exc:
                last = exc
            self.page.wait_for_timeout(150)
        raise AssertionError(f"timed out waiting for {what or condition}: last {last!r}")

    def wait_settled(self, timeout: float = RUN_TIMEOUT) -> list[list[float | None]]:
        """Wait until the widget is idle with a fully computed heatmap; return its values."""
        self.root.wait_for(timeout=timeout * 1000)
        self.wait_for(
            lambda: self.status == "idle" and all_finite(self.heatmap_values()),
            timeout,
            "an idle widget with a complete heatmap",
        )
        return self.heatmap_values()

    def select(self, testid: str, value: str) -> None:
        self.hook(testid).select_option(value)

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """Centre of heatmap cell (row, col) relative to the heatmap canvas (data-grid)."""
        grid = json.loads(self.heatmap().get_attribute("data-grid") or "null")
        return grid["x0"] + (col + 0.5) * grid["cw"], grid["y0"] + (row + 0.5) * grid["ch"]

    def click_cell(self, row: int, col: int, shift: bool = False) -> None:
        x, y = self.cell_center(row, col)
        canvas = self.heatmap().get_by_test_id("pw-heatmap-canvas")
        canvas.click(position={"x": x, "y": y}, modifiers=["Shift"] if shift else None)


def all_finite(values: list[list[float | None]]) -> bool:
    return bool(values) and all(v is not None and math.isfinite(v) for row in values for v in row)


def as_grid(kernel_values: Any, rows: int, cols: int) -> list[list[Any]]:
    """The kernel's array as the heatmap lays it out: columns = last axis, rows = the rest."""
    import numpy as np

    arr = np.array(kernel_values, dtype=float)
    assert arr.size == rows * cols and arr.shape[-1] == cols, (arr.shape, rows, cols)
    return arr.reshape(rows, cols).tolist()


def assert_values_match(shown: list[list[Any]], kernel_values: Any, rel: float = 1e-3) -> None:
    """Heatmap numbers equal the kernel's (NaN/None where nothing ran), up to display rounding."""
    rows, cols = len(shown), len(shown[0])
    expected = as_grid(kernel_values, rows, cols)
    for r in range(rows):
        for c in range(cols):
            got, want = shown[r][c], expected[r][c]
            if want is None or (isinstance(want, float) and math.isnan(want)):
                assert got is None, f"cell ({r}, {c}): shown {got}, kernel has no value"
                continue
            assert got is not None, f"cell ({r}, {c}): shown nothing, kernel {want}"
            assert math.isclose(got, want, rel_tol=rel, abs_tol=rel), (r, c, got, want)
