"""Without a live widget, a saved notebook still shows the last map: the PNG in the widget's output.

- an HTML export (`jupyter nbconvert --to html`), opened offline in Chromium;
- JupyterLab reopening an untrusted notebook (downloaded, cloned) without a kernel.

The notebook is the one `test_browser_saved_state` executes (a demo sweep, then the widget
displayed); its widget state is dropped, as JupyterLab saves notebooks by default.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .test_browser_saved_state import saved  # noqa: F401  (the executed notebook, a fixture)

pytestmark = pytest.mark.browser

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def without_widget_state(nb: Any) -> dict[str, Any]:
    """The notebook as JupyterLab saves it by default (no "Save Widget State Automatically")."""
    plain = json.loads(json.dumps(nb))
    plain["metadata"].pop("widgets", None)
    return plain


def widget_output(nb: dict[str, Any]) -> dict[str, Any]:
    ((out,),) = [
        [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        for cell in nb["cells"]
        if any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", []))
    ]
    return out["data"]


def offline(page: Any) -> list[str]:
    """Refuse every request that is not a local file; returns the refused URLs."""
    refused: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return refused


def shown_png(page: Any, img: Any) -> bytes:
    """The bytes of a displayed data-URL image, after checking that it decoded and laid out."""
    img.wait_for()
    width, height = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().height]")
    assert width > 200 and height > 50, (width, height)
    src = img.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,"), src[:40]
    return base64.b64decode(src.split(",", 1)[1])


def test_html_export_offline_shows_the_map(saved, tmp_path, page):  # noqa: F811
    nb = without_widget_state(saved["nb"])
    data = widget_output(nb)
    assert data["text/plain"].startswith("PatchingWidget: pw.demo_model(), 32 prompt pairs; ")
    assert "resid_pre denoising logit_diff (normalised): strongest L" in data["text/plain"]
    source = tmp_path / "executed.ipynb"
    source.write_text(json.dumps(nb))
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    refused = offline(page)
    page.goto(source.with_suffix(".html").as_uri())
    img = page.locator(".jp-OutputArea-output img").first
    assert shown_png(page, img) == base64.b64decode(data["image/png"])
    assert all(not u.startswith("file://") for u in refused)


def test_untrusted_notebook_without_a_kernel_shows_the_map(saved, lab_server, page):  # noqa: F811
    nb = without_widget_state(saved["nb"])
    for key in ("kernelspec", "language_info"):  # no kernelspec: Lab asks which kernel to start
        nb["metadata"].pop(key, None)
    path = f"untrusted-{uuid.uuid4().hex[:6]}.ipynb"
    (lab_server.root / path).write_text(json.dumps(nb))  # not signed: untrusted
    stem, token = Path(path).stem, lab_server.token
    page.goto(f"{lab_server.url}/lab/workspaces/{stem}/tree/{path}?token={token}")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=60_000)
    dialog.locator(".jp-mod-reject").click()  # "No Kernel"
    assert lab_server.session_for(path) is None
    img = page.locator(".jp-OutputArea-output img").first
    assert shown_png(page, img) == base64.b64decode(widget_output(nb)["image/png"])
