"""Without a live widget, a saved notebook still shows the last map: the picture output that
follows the widget's view (see patchwidget/widget/static_output.py). With a live widget, the
picture is hidden (the map shows once) and kept current: the saved file holds the map on screen.

- an HTML export (plain `jupyter nbconvert --to html`), with or without the widget state, offline;
- JupyterLab reopening a trusted notebook with widget state, or an untrusted one (downloaded,
  cloned) without it, with no kernel;
- JupyterLab with a kernel: the live map once; after a metric switch, a new sweep, a drill-down
  and the way back, the file saved from JupyterLab holds the kernel's summary of the map shown.

The executed notebook is the one `test_browser_saved_state` makes (a demo sweep with nbclient,
then the widget displayed; widget state stored).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .test_browser_saved_state import saved, write_trusted  # noqa: F401  (saved: a fixture)
from .widget_page import WidgetPage

pytestmark = pytest.mark.browser

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PICTURE = ".jp-OutputArea-output .pw-static-map img"
LIVE = """\
import kernel_probe
import patchwidget as pw

w = pw.PatchingWidget.demo()
w"""
SUMMARY_PROBE = "w.wait(120)\nkernel_probe.show({'summary': w._static_data()['text/plain']})"


def without_widget_state(nb: Any) -> dict[str, Any]:
    """The notebook as JupyterLab saves it by default (no "Save Widget State Automatically")."""
    plain = json.loads(json.dumps(nb))
    plain["metadata"].pop("widgets", None)
    return plain


def without_kernelspec(nb: Any) -> dict[str, Any]:
    """No kernelspec: JupyterLab asks which kernel to start, and the test answers "No Kernel"."""
    nb = json.loads(json.dumps(nb))
    for key in ("kernelspec", "language_info"):
        nb["metadata"].pop(key, None)
    return nb


def picture_output(nb: dict[str, Any]) -> dict[str, Any]:
    """The data of the output right after the widget's view: the picture and the summary."""
    ((stored,),) = [
        [outs[i + 1]["data"] for i, o in enumerate(outs) if WIDGET_VIEW in o.get("data", {})]
        for outs in (cell.get("outputs", []) for cell in nb["cells"])
        if any(WIDGET_VIEW in o.get("data", {}) for o in outs)
    ]
    # A file saved by JupyterLab keeps multi-line text as a list of lines.
    data = {k: "".join(v) if isinstance(v, list) else v for k, v in stored.items()}
    assert 'class="pw-static-map"' in data["text/html"], data
    return data


def png_of(data: dict[str, Any]) -> bytes:
    (png,) = re.findall(r'src="data:image/png;base64,([^"]+)"', data["text/html"])
    return base64.b64decode(png)


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


def shown_png(page: Any) -> bytes:
    """The one picture of the map on the page, after checking that it decoded and is visible."""
    img = page.locator(PICTURE)
    img.first.wait_for()
    assert img.count() == 1, "the map is shown more than once"
    width, height = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().height]")
    assert width > 200 and height > 50, (width, height)
    assert img.is_visible()
    src = img.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,"), src[:40]
    return base64.b64decode(src.split(",", 1)[1])


def open_without_kernel(page: Any, server: Any, path: str) -> None:
    stem, token = Path(path).stem, server.token
    page.goto(f"{server.url}/lab/workspaces/{stem}/tree/{path}?token={token}")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=60_000)
    dialog.locator(".jp-mod-reject").click()  # "No Kernel"
    assert server.session_for(path) is None


@pytest.mark.parametrize("state", ["with widget state", "without widget state"])
def test_html_export_offline_shows_the_map(saved, tmp_path, page, artifacts, state):  # noqa: F811
    nb = json.loads(json.dumps(saved["nb"]))
    if state == "without widget state":
        nb = without_widget_state(nb)
    else:
        assert nb["metadata"]["widgets"]  # the HTML page loads the widget manager from a CDN
    data = picture_output(nb)
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
    assert shown_png(page) == png_of(data)
    assert page.get_by_text(data["text/plain"]).is_visible()
    assert all(not u.startswith("file://") for u in refused)
    if state == "with widget state":
        assert any("html-manager" in u for u in refused), refused  # what stays blank offline
    page.screenshot(path=str(artifacts / f"static-html-export-{state.split()[0]}-state.png"))


def test_trusted_notebook_with_widget_state_without_a_kernel_shows_the_map(
    saved,  # noqa: F811
    lab_server,
    page,
    artifacts,
):
    """JupyterLab's widget manager waits for a kernel ("Loading widget..."); the picture shows."""
    import nbformat

    nb = without_kernelspec(saved["nb"])
    assert nb["metadata"]["widgets"]
    path = write_trusted(lab_server, nbformat.from_dict(nb), "trusted-no-kernel")
    open_without_kernel(page, lab_server, path)
    assert shown_png(page) == png_of(picture_output(nb))
    assert page.get_by_text(picture_output(nb)["text/plain"]).is_visible()
    page.screenshot(path=str(artifacts / "static-trusted-no-kernel.png"))


def test_untrusted_notebook_without_a_kernel_shows_the_map(saved, lab_server, page):  # noqa: F811
    nb = without_kernelspec(without_widget_state(saved["nb"]))
    path = f"untrusted-{uuid.uuid4().hex[:6]}.ipynb"
    (lab_server.root / path).write_text(json.dumps(nb))  # not signed: untrusted
    open_without_kernel(page, lab_server, path)
    assert shown_png(page) == png_of(picture_output(nb))  # the HTML sanitizer keeps the picture


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_live_map_shows_once_and_the_saved_file_holds_the_map_on_screen(
    open_notebook, lab_server, artifacts, ui
):
    nb = open_notebook([LIVE, SUMMARY_PROBE], ui=ui)
    nb.run_cell(0)
    widget = WidgetPage(nb.page)
    widget.wait_settled()
    page = nb.page
    picture = page.locator(PICTURE)
    # The picture output is in the page (replaced after the first sweep) but hidden.
    widget.wait_for(lambda: picture.count() == 1, 30, "the picture of the first map")
    assert picture.is_hidden() and widget.heatmap().is_visible()
    assert page.locator(".jp-OutputArea-child").filter(has=picture).is_hidden()
    page.screenshot(path=str(artifacts / f"static-live-once-{ui}.png"))

    file = lab_server.root / nb.nb_path

    def saved_summary() -> str:
        nb.cell(0).locator(".jp-InputPrompt").first.click()
        page.keyboard.press("Control+s")
        page.wait_for_timeout(500)
        return picture_output(json.loads(file.read_text()))["text/plain"]

    widget.select("pw-metric", "prob")  # a new reading of the same map: no sweep, no cell runs
    widget.wait_for(
        lambda: "; resid_pre denoising prob" in saved_summary(), 30, "the new reading saved"
    )
    assert saved_summary() == nb.probe(1)["summary"]

    widget.select("pw-site", "attn_out")  # a new sweep
    widget.wait_for(lambda: widget.hook("pw-site").input_value() == "attn_out", 10, "attn_out")
    widget.wait_settled()
    kernel = nb.probe_until(1, lambda s: "; attn_out denoising prob" in s["summary"], 60)
    widget.wait_for(lambda: saved_summary() == kernel["summary"], 30, "the new map saved")
    assert picture.count() == 1 and picture.is_hidden()

    # Drill into a cell, then back along the path: the kept map is on screen, and in the file.
    widget.click_cell(2, len(widget.heatmap_values()[0]) - 1)
    widget.wait_for(lambda: widget.hook("pw-crumb").count() == 2, 30, "the drill-down")
    widget.wait_settled()
    drill = nb.probe_until(1, lambda s: s["summary"] != kernel["summary"], 60)
    widget.wait_for(lambda: saved_summary() == drill["summary"], 30, "the drill-down saved")
    widget.hook("pw-crumb").first.click()
    widget.wait_for(lambda: widget.hook("pw-crumb").count() == 1, 10, "back at the top")
    widget.wait_for(lambda: saved_summary() == kernel["summary"], 30, "the kept map saved")
    assert nb.probe(1)["summary"] == kernel["summary"]
