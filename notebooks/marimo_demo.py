"""patchwidget in marimo: the widget, and a cell that follows whatever it shows.

    pip install patchwidget marimo
    marimo edit marimo_demo.py      # or: marimo run marimo_demo.py
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full")


@app.cell
def _():
    import marimo as mo
    import numpy as np

    import patchwidget as pw

    return mo, np, pw


@app.cell
def _(mo):
    mo.md("""
    # patchwidget in marimo

    Activation patching on the bundled demo model (3 layers, 4 heads, trained on Indirect Object
    Identification). Click a cell of the map to look inside it; switch the metric; the cell below
    the widget follows whatever the widget shows.
    """)
    return


@app.cell
def _(mo, pw):
    exp = pw.Experiment(pw.demo_model(), **pw.demo_prompts("flip_s2", n=16))
    widget = mo.ui.anywidget(pw.PatchingWidget(exp, model_expr="pw.demo_model()"))
    widget
    return (widget,)


@app.cell
def _(mo, np, widget):
    # Reruns whenever the widget shows a new result or changes metric, site or direction:
    # `widget.value` holds its synced settings, `widget.widget.result` the PatchResult on screen.
    settings = widget.value
    result = widget.widget.result
    if result is None:
        summary = mo.md("Waiting for the widget's first sweep…")
    else:
        metric, normalized = settings.get("metric", "logit_diff"), settings.get("normalized", True)
        values = np.asarray(result.values(metric, normalized))
        strongest = np.unravel_index(np.nanargmax(np.abs(values)), values.shape)
        where = ", ".join(
            f"{axis} {result.labels[axis][i]}"
            for axis, i in zip(result.axes, strongest, strict=True)
        )
        scale = " (normalised)" if normalized else ""
        sweeps = sum(entry["kind"] == "sweep" for entry in widget.widget.history)
        summary = mo.md(
            f"**<span data-testid='site'>{result.site}</span>**, {result.direction}, "
            f"<code data-testid='metric'>{metric}</code>{scale}: strongest effect at "
            f"{where} = <span data-testid='strongest'>{values[strongest]:.4f}</span> "
            f"(sweeps run: <span data-testid='sweeps'>{sweeps}</span>)"
        )
    summary
    return


if __name__ == "__main__":
    app.run()
