"""Self-test of the browser plumbing with a trivial anywidget (no patchwidget needed).

Proves: the server starts offline, the kernel attaches, widgets render in JupyterLab and
Notebook 7, and state syncs both ways.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

CLICKER = '''\
import anywidget
import traitlets

import kernel_probe


class Clicker(anywidget.AnyWidget):
    _esm = """
    export default {
      render({ model, el }) {
        const b = document.createElement("button");
        b.dataset.testid = "clicker";
        const show = () => {
          b.textContent = `clicked ${model.get("count")}`;
          b.dataset.count = String(model.get("count"));
        };
        b.addEventListener("click", () => {
          model.set("count", model.get("count") + 1);
          model.save_changes();
        });
        model.on("change:count", show);
        show();
        el.appendChild(b);
      },
    };
    """
    count = traitlets.Int(0).tag(sync=True)


w = Clicker()
w'''


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_anywidget_roundtrip(open_notebook, ui):
    nb = open_notebook([CLICKER, "kernel_probe.show({'count': w.count})", "w.count = 100"], ui=ui)
    nb.run_cell(0)
    button = nb.page.get_by_test_id("clicker")
    button.wait_for()
    for _ in range(3):
        button.click()
    expect(button).to_have_attribute("data-count", "3")

    state = nb.probe_until(1, lambda s: s["count"] == 3)
    assert state == {"count": 3}

    nb.run_cell(2)
    nb.page.wait_for_selector('[data-testid="clicker"][data-count="100"]')
