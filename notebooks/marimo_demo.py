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
    # `widget.value` holds its synced settings, `widget.widget.results` the PatchResults on screen
    # (one per panel: a drill-down view may join several sites, "both" shows two directions).
    settings = widget.value
    results = widget.widget.results
    if not results:
        summary = mo.md("Waiting for the widget's first sweep…")
    else:
        metric, normalized = settings.get("metric", "logit_diff"), settings.get("normalized", True)
        best = None
        for result in results:
            values = np.asarray(result.values(metric, normalized))
            cell = np.unravel_index(np.nanargmax(np.abs(values)), values.shape)
            if best is None or abs(values[cell]) > abs(best[0]):
                best = (float(values[cell]), result, cell)
        value, strongest, cell = best
        where = ", ".join(
            f"{axis} {strongest.labels[axis][i]}"
            for axis, i in zip(strongest.axes, cell, strict=True)
        )
        sites = " + ".join(dict.fromkeys(r.site for r in results))
        directions = " + ".join(dict.fromkeys(r.direction for r in results))
        scale = " (normalised)" if normalized else ""
        sweeps = sum(entry["kind"] == "sweep" for entry in widget.widget.history)
        summary = mo.md(
            f"**<span data-testid='site'>{sites}</span>**, {directions}, "
            f"<code data-testid='metric'>{metric}</code>{scale}: strongest effect at "
            f"{strongest.site} {where} = <span data-testid='strongest'>{value:.4f}</span> "
            f"(sweeps run: <span data-testid='sweeps'>{sweeps}</span>)"
        )
    summary
    return


if __name__ == "__main__":
    app.run()
