"""Fixtures for end-to-end tests: a JupyterLab server, headless Chromium, one notebook per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser_env import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, artifact_name, in_ci
from .lab_server import LabServer

VIEWPORT = {"width": 1400, "height": 1000}
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip browser tests only where no browser is installed and this is not CI."""
    if CHROMIUM.exists() or in_ci():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} not found: run `bash scripts/install.sh --browser` (CI=true: fails)"
    )
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[LabServer]:
    server = LabServer(tmp_path_factory.mktemp("jupyter"), artifacts / "jupyterlab.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"CI=true but {CHROMIUM} is missing: run `bash scripts/install.sh --browser`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def capture_failure(page: Any, node: pytest.Item, artifacts: Path) -> None:
    """If the test failed: a full-page screenshot and the browser console, once per test."""
    report = getattr(node, "rep_call", None)
    if report is None or not report.failed or getattr(node, "failure_captured", False):
        return
    node.failure_captured = True  # type: ignore[attr-defined]
    name = artifact_name(node.name)
    console: list[str] = getattr(node, "browser_console", [])
    try:
        page.screenshot(path=str(artifacts / f"FAILED-{name}.png"), full_page=True)
    except Exception as exc:  # a dead page must not hide the test's own error
        console.append(f"[screenshot failed] {exc}")
    (artifacts / f"FAILED-{name}.console.txt").write_text("\n".join(console))


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, artifacts: Path) -> Iterator[Any]:
    """A fresh browser context per test; on failure, a screenshot and the console log."""
    context = browser.new_context(viewport=VIEWPORT)
    # The widget writes every cell value into the DOM (data-values) only when tests ask for it.
    context.add_init_script(
        "document.addEventListener('DOMContentLoaded', () => "
        "{ document.body.dataset.pwTestValues = '1'; });"
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    console: list[str] = []
    request.node.browser_console = console
    page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
    try:
        yield page
    finally:
        capture_failure(page, request.node, artifacts)
        context.close()


@pytest.fixture
def open_notebook(
    lab_server: LabServer, page: Any, request: pytest.FixtureRequest, artifacts: Path
) -> Iterator[Callable[..., Any]]:
    """open_notebook(sources, ui="lab"|"notebook") -> NotebookPage, with its own kernel.

    Each call writes a uniquely named notebook (kernels are per notebook path) and opens it in a
    workspace of its own; the kernels are shut down after the test.
    """
    from .lab_driver import NotebookPage
    from .notebook_files import write_notebook

    shutil.copy(HERE / "kernel_probe.py", lab_server.root / "kernel_probe.py")
    opened: list[NotebookPage] = []

    def _open(sources: list[str], ui: str = "lab") -> NotebookPage:
        name = f"{artifact_name(request.node.name)}-{uuid.uuid4().hex[:6]}"
        write_notebook(lab_server.root / f"{name}.ipynb", sources)
        nb = NotebookPage(page, lab_server, f"{name}.ipynb", ui)
        opened.append(nb)
        nb.open(workspace=name)
        return nb

    yield _open
    capture_failure(page, request.node, artifacts)  # while the kernels still run
    for nb in opened:
        session = lab_server.session_for(nb.nb_path)
        if session:
            lab_server.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
