"""Drive one notebook in JupyterLab or Notebook 7 (same DOM classes) with Playwright."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .lab_server import LabServer
from .notebook_files import PROBE_PREFIX

_DONE_PROMPT = re.compile(r"\[\d+\]")
KERNEL_READY_TIMEOUT = 120.0


class NotebookPage:
    """One open notebook: waits for a connected idle kernel, runs cells, reads their output."""

    def __init__(self, page: Page, server: LabServer, nb_path: str, ui: str) -> None:
        self.page = page
        self.server = server
        self.nb_path = nb_path
        self.ui = ui

    def open(self, workspace: str) -> None:
        nb = quote(self.nb_path)
        if self.ui == "lab":  # a named workspace per test: no tabs restored from other tests
            path = f"/lab/workspaces/{quote(workspace)}/tree/{nb}"
        else:
            path = f"/notebooks/{nb}"
        self.page.goto(f"{self.server.url}{path}?token={self.server.token}")
        self.cell(0).wait_for(timeout=60_000)
        self.wait_kernel_ready()

    def cell(self, i: int) -> Locator:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(i)

    def wait_kernel_ready(self, timeout: float = KERNEL_READY_TIMEOUT) -> None:
        """Poll /api/sessions until this notebook's kernel is idle with a live connection.

        The toolbar says "idle" before the kernel is attached; a cell run then is dropped.
        """
        deadline = time.monotonic() + timeout
        state: Any = None
        while time.monotonic() < deadline:
            self._accept_kernel_dialog()
            session = self.server.session_for(self.nb_path)
            kernel = (session or {}).get("kernel") or {}
            state = (kernel.get("execution_state"), kernel.get("connections"))
            if state[0] == "idle" and (state[1] or 0) >= 1:
                return
            time.sleep(0.25)
        raise AssertionError(f"kernel for {self.nb_path} not ready (state, connections = {state})")

    def _accept_kernel_dialog(self) -> None:
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            dialog.locator(".jp-mod-accept").first.click()

    def prompt(self, i: int) -> str:
        return self.cell(i).locator(".jp-InputPrompt").first.inner_text().strip()

    def run_cell(self, i: int, timeout: float = 120.0) -> str:
        """Run cell i and wait for it to finish; returns its output text.

        A run can be dropped silently (cold kernel); if the prompt does not change to [*]/[n]
        within a few seconds, press Shift+Enter again (a queued run never runs twice).
        """
        before = self.prompt(i)
        for _attempt in range(5):
            self.cell(i).locator(".jp-InputPrompt").first.click()
            self.page.keyboard.press("Shift+Enter")
            if self._wait(lambda: self.prompt(i) != before, 5.0):
                break
            self._accept_kernel_dialog()
        else:
            raise AssertionError(f"cell {i} never started (prompt stays {before!r})")
        if not self._wait(lambda: bool(_DONE_PROMPT.search(self.prompt(i))), timeout):
            raise AssertionError(f"cell {i} did not finish in {timeout:.0f} s")
        text = self.output_text(i)
        if "Traceback (most recent call last)" in text:
            raise AssertionError(f"cell {i} raised:\n{text}")
        return text

    def output_text(self, i: int) -> str:
        return "\n".join(self.cell(i).locator(".jp-OutputArea-output").all_inner_texts())

    def probe(self, i: int, timeout: float = 15.0) -> Any:
        """Run cell i, which calls kernel_probe (it prints PROBE:<file>); return the file's JSON.

        The prompt's [n] comes with the shell reply; the printed line on iopub may come later.
        """
        self.run_cell(i)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output_text(i)
            for line in text.splitlines():
                if line.startswith(PROBE_PREFIX):
                    name = line[len(PROBE_PREFIX) :].strip()
                    return json.loads((self.server.root / name).read_text())
            if time.monotonic() > deadline:
                raise AssertionError(f"cell {i} printed no {PROBE_PREFIX} line:\n{text}")
            self.page.wait_for_timeout(100)

    def probe_until(self, i: int, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """Re-run probe cell i until predicate(result) holds (state syncs are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.probe(i)
            if predicate(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def _wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return True
            except PlaywrightTimeout:
                pass
            self.page.wait_for_timeout(100)
        return False
