"""The one figure builder (res.plot, CLI figure, widget Save figure): fixed or shared colour
scales, values beyond the scale circled, the largest effect in words; the widget's PNG and CSV."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

from patchwidget.demo import demo_model, demo_prompts
from patchwidget.experiment import Experiment
from patchwidget.plotting import HeatPanel, draw_panels, format_percent, largest_effect
from patchwidget.widget import PatchingWidget
from tests.test_widget_protocol import final, recording_comm, send  # noqa: F401

matplotlib.use("Agg")


@functools.cache
def _exp() -> Experiment:
    return Experiment(demo_model(), **demo_prompts("flip_s2", n=2))


@functools.cache
def _sweep(site: str, direction: str) -> Any:
    return _exp().sweep(site, direction, progress=False)


def _panel(values: list[list[float]], base: float = 0.0) -> HeatPanel:
    grid = np.asarray(values, dtype=np.float64)
    rows = tuple(f"L{i}" for i in range(grid.shape[0]))
    cols = tuple(f"H{i}" for i in range(grid.shape[1]))
    return HeatPanel("t", grid, rows, cols, "layer", "head", base)


def test_normalised_plot_uses_the_whole_gap_as_its_scale() -> None:
    res = _sweep("head", "denoising")
    fig = res.plot("logit_diff", normalized=True)
    image = fig.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (-1.0, 1.0)
    fitted = res.plot("logit_diff", normalized=True, scale="fit").axes[0].images[0]
    largest = np.nanmax(np.abs(np.asarray(res.values("logit_diff", True))))
    assert fitted.norm.vmax == pytest.approx(largest)
    assert "largest effect:" in fig.axes[0].get_title() and "of the gap" in fig.axes[0].get_title()


def test_tiny_effects_are_stated_and_not_saturated() -> None:
    panel = _panel([[0.0001, -0.00005], [0.0, 0.00002]])
    assert largest_effect(panel, True, "logit_diff") == (
        "largest effect: 0.01 % of the gap, at L0 H0"
    )
    fig = draw_panels([panel], "logit_diff", normalized=True)
    rgba = fig.axes[0].images[0].to_rgba(np.float64(0.0001))
    assert min(rgba[:3]) > 0.9  # near the neutral centre, not saturated red
    assert format_percent(0.5) == "50 %" and format_percent(-0.034) == "-3.4 %"


def test_values_beyond_the_scale_are_circled_and_the_bar_extends() -> None:
    panel = _panel([[1.6, 0.2], [-0.1, 0.9]])
    fig = draw_panels([panel], "logit_diff", normalized=True)
    marks = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(marks), [[0, 0]])  # column 0, row 0
    assert fig.axes[-1].get_ylabel().endswith("circled: beyond the scale")


def test_raw_panels_share_one_symmetric_scale(tmp_path: Path) -> None:
    den, noi = _sweep("resid_pre", "denoising"), _sweep("resid_pre", "noising")
    from patchwidget.cli.report import write_figure

    out = tmp_path / "f.png"
    write_figure([den, noi], "logit_diff", False, out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    from patchwidget.plotting import result_panel, scale_limit

    panels = [result_panel(r, "logit_diff", False) for r in (den, noi)]
    largest = max(np.nanmax(np.abs(np.asarray(r.values("logit_diff")))) for r in (den, noi))
    assert scale_limit(panels, False) == pytest.approx(largest)
    fig = draw_panels(panels, "logit_diff", False)
    limits = [im.norm.vmax for ax in fig.axes[:2] for im in ax.images]
    assert limits == pytest.approx([largest, largest])
    with pytest.raises(ValueError, match="needs normalized=True"):
        scale_limit(panels, False, "gap")


def _widget() -> PatchingWidget:
    return PatchingWidget(_exp(), model_expr="pw.demo_model()")


def test_saving_twice_in_one_second_keeps_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    w = _widget()
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "both"})
    final(w, 1)
    msg = {"type": "save_figure", "view_id": 1, "metric": "logit_diff", "normalized": True}
    send(w, {**msg, "id": 2})
    send(w, {**msg, "id": 3, "scale": "fit", "drop": True})
    paths = {final(w, 2)["path"], final(w, 3)["path"]}
    assert len(paths) == 2
    for path in paths:
        assert Path(path).parent == tmp_path and Path(path).read_bytes()[:4] == b"\x89PNG"
    send(w, {**msg, "id": 4, "scale": -1})
    assert final(w, 4)["field"] == "scale"


def test_a_drill_view_is_saved_as_its_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    from patchwidget.widget.exports import view_panels

    w = _widget()
    request = {"kind": "head_parts", "site": "head", "layers": [2], "heads": [1]}
    send(w, {"type": "sweep", "id": 1, "direction": "noising", **request})
    final(w, 1)
    (panel,) = view_panels(w._views[1], "logit_diff", True, drop=True)
    n_pos = len(w.experiment.position_labels)
    assert panel.values.shape == (4, n_pos) and panel.rows == ("q", "k", "v", "pattern")
    q = np.asarray(w.results[0].values("logit_diff", True)).reshape(-1)
    np.testing.assert_allclose(panel.values[0], 1 - q, rtol=1e-5, atol=1e-6)
    assert panel.base == 0.0


def test_csv_has_a_row_per_cell_and_pair_and_a_column_per_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    w = _widget()
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "denoising"})
    final(w, 1)
    send(w, {"type": "export_csv", "id": 2, "view_id": 1})
    path = Path(final(w, 2)["path"])
    with path.open() as f:
        rows = list(csv.DictReader(f))
    res = w.result
    n_layers, n_heads = res.shape
    assert len(rows) == n_layers * n_heads * res.n_pairs
    row = next(r for r in rows if r["layer"] == "2" and r["head"] == "1" and r["pair"] == "1")
    expected = np.asarray(res.values("logit_diff", True, per_pair=True))[2, 1, 1]
    assert float(row["logit_diff_normalized"]) == pytest.approx(expected, rel=1e-5)
    assert row["direction"] == "denoising" and row["site"] == "head" and row["pos"] == ""
    assert {"prob", "kl_normalized", "rank", "accuracy"} <= set(row)
