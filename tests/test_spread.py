"""Standard errors and bootstrap intervals against a direct computation from per-pair values."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from patchwidget.readouts import READOUT_FIELDS
from patchwidget.result import PatchResult

N_PAIRS = 40


def _result(n_pairs: int = N_PAIRS, seed: int = 0) -> PatchResult:
    rng = np.random.default_rng(seed)
    readouts = rng.normal(size=(3, 4, n_pairs, len(READOUT_FIELDS))).astype(np.float32)
    readouts[..., 0] += np.arange(4)[:, None]  # logit_correct: an effect that grows along pos
    clean = rng.normal(size=(n_pairs, len(READOUT_FIELDS))).astype(np.float32)
    clean[:, 0] += 5
    corrupted = rng.normal(size=(n_pairs, len(READOUT_FIELDS))).astype(np.float32)
    return PatchResult(
        site="resid_pre",
        direction="denoising",
        axes=("layer", "pos"),
        coords={"layer": (0, 1, 2), "pos": (0, 1, 2, 3)},
        labels={"layer": ("L0", "L1", "L2"), "pos": ("IO", "S1", "S2", "END")},
        readouts=readouts,
        clean_readouts=clean,
        corrupted_readouts=corrupted,
        metadata={"named_positions": {"S2": list(range(10, 10 + n_pairs)), "END": [14] * n_pairs}},
    )


def _logit_diffs(r: np.ndarray) -> np.ndarray:
    return r[..., 0].astype(np.float64) - r[..., 1]


def test_stderr_is_the_sample_std_over_sqrt_n() -> None:
    res = _result()
    se = np.asarray(res.stderr("logit_diff"))
    diffs = _logit_diffs(res.readouts)
    for i in range(3):
        for j in range(4):
            want = statistics.stdev(diffs[i, j].tolist()) / N_PAIRS**0.5
            assert se[i, j] == pytest.approx(want, rel=1e-9)
    clean = _logit_diffs(res.clean_readouts).mean()
    corrupted = _logit_diffs(res.corrupted_readouts).mean()
    normalized = np.asarray(res.stderr("logit_diff", normalized=True))
    effects = diffs - _logit_diffs(res.corrupted_readouts)  # each pair against its own baseline
    for i, j in [(0, 0), (2, 3)]:
        want = statistics.stdev(effects[i, j].tolist()) / N_PAIRS**0.5 / abs(clean - corrupted)
        assert normalized[i, j] == pytest.approx(want, rel=1e-9)
    assert res.stderr("logit_diff").axes == ("layer", "pos")


def test_stderr_of_one_pair_is_nan() -> None:
    assert np.isnan(np.asarray(_result(n_pairs=1).stderr("prob"))).all()


def test_ci_is_a_seeded_percentile_bootstrap_over_pairs() -> None:
    res = _result()
    low, high = res.ci("logit_diff", level=0.9, n_resamples=300, seed=7)
    again = res.ci("logit_diff", level=0.9, n_resamples=300, seed=7)
    np.testing.assert_array_equal(np.asarray(low), np.asarray(again[0]))
    draws = np.random.default_rng(7).integers(0, N_PAIRS, size=(300, N_PAIRS))
    diffs = _logit_diffs(res.readouts)
    clean, corrupted = _logit_diffs(res.clean_readouts), _logit_diffs(res.corrupted_readouts)
    n_low, n_high = res.ci("logit_diff", normalized=True, level=0.9, n_resamples=300, seed=7)
    for i, j in [(0, 0), (2, 3), (1, 2)]:
        means = [diffs[i, j, d].mean() for d in draws]
        assert low.data[i, j] == pytest.approx(np.quantile(means, 0.05), rel=1e-9)
        assert high.data[i, j] == pytest.approx(np.quantile(means, 0.95), rel=1e-9)
        ratios = [
            (diffs[i, j, d].mean() - corrupted[d].mean()) / (clean[d].mean() - corrupted[d].mean())
            for d in draws
        ]
        assert n_low.data[i, j] == pytest.approx(np.quantile(ratios, 0.05), rel=1e-9)
        assert n_high.data[i, j] == pytest.approx(np.quantile(ratios, 0.95), rel=1e-9)


def test_ci_brackets_the_mean_about_as_wide_as_the_normal_interval() -> None:
    res = _result(n_pairs=400)
    low, high = res.ci("logit_diff")
    mean, se = np.asarray(res.values("logit_diff")), np.asarray(res.stderr("logit_diff"))
    assert (np.asarray(low) < mean).all() and (mean < np.asarray(high)).all()
    np.testing.assert_allclose(np.asarray(high) - np.asarray(low), 2 * 1.96 * se, rtol=0.15)


def test_ci_rejects_bad_levels() -> None:
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        _result().ci(level=95)


def test_per_pair_table_carries_pair_and_named_positions() -> None:
    res = _result()
    df = res.to_pandas(per_pair=True)
    assert len(df) == 3 * 4 * N_PAIRS
    row = df[(df.layer == 2) & (df.pos_label == "S2") & (df.pair == 7)].iloc[0]
    assert row.pos_S2 == 17 and row.pos_END == 14
    assert row.logit_diff == pytest.approx(_logit_diffs(res.readouts)[2, 2, 7], rel=1e-6)
    assert "pos_S2" not in res.to_pandas().columns


def test_plot_dims_cells_whose_interval_includes_zero_and_shows_one_pair() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from patchwidget.plotting import includes_zero, result_panel

    res = _result()
    mean, se = np.asarray(res.values()), np.asarray(res.stderr())
    pale = includes_zero(res, "logit_diff", False)
    np.testing.assert_array_equal(pale, np.abs(mean) <= 1.959963984540054 * se)
    assert pale.any() and not pale.all()  # the effect grows along pos: some cells are clear
    fig = res.plot("logit_diff", normalized=False, dim=True)
    veil = fig.axes[0].images[1].get_array()
    np.testing.assert_array_equal(veil[..., 3] > 0, pale)
    panel = result_panel(res, "logit_diff", False, pair=7)
    np.testing.assert_allclose(panel.values, _logit_diffs(res.readouts)[..., 7], rtol=1e-6)
    assert "(pair 7)" in res.plot(pair=7).axes[0].get_title()
    with pytest.raises(ValueError, match="pair 40 is out of range"):
        res.plot(pair=40)
