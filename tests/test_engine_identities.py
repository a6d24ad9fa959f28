"""Identities the engine must satisfy exactly, and metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ANSWERS, CLEAN, CORRUPTED, FAMILIES, engine_model

import patchwidget as pw

TIGHT = 1e-5
FIELDS = ("logit_correct", "logit_incorrect", "lse", "kl_clean", "kl_corrupted", "rank")


def _experiment(family: str):
    return pw.Experiment(engine_model(family), clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS)


def _assert_rows(got: np.ndarray, want: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(want), atol=TIGHT, rtol=TIGHT, err_msg=what
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_everything_or_nothing_gives_the_baselines(family: str) -> None:
    exp = _experiment(family)
    everything = [pw.Component("resid_pre", 0, pos=None)]
    last = exp.info["n_layers"] - 1
    for direction, source, base in (
        ("denoising", "clean", "corrupted"),
        ("noising", "corrupted", "clean"),
    ):
        res = exp.patch(everything, direction=direction)
        baselines = {"clean": res.clean_readouts, "corrupted": res.corrupted_readouts}
        assert res.readouts.shape == (1, len(CLEAN), len(FIELDS))
        _assert_rows(
            res.readouts[0], baselines[source], f"{direction}: resid_pre L0, all positions"
        )
        res = exp.patch([pw.Component("resid_post", last)], direction=direction)
        _assert_rows(res.readouts[0], baselines[source], f"{direction}: resid_post L{last}")
        res = exp.patch([], direction=direction)
        _assert_rows(res.readouts[0], baselines[base], f"{direction}: nothing patched")
    # KL of a baseline to itself is zero; ranks are whole numbers.
    np.testing.assert_allclose(res.clean_readouts[:, 3], 0, atol=TIGHT)
    np.testing.assert_allclose(res.corrupted_readouts[:, 4], 0, atol=TIGHT)
    assert np.all(res.clean_readouts[:, 5] == np.round(res.clean_readouts[:, 5]))
    assert res.readouts.dtype == np.float32


@pytest.mark.parametrize("family", ["gpt2", "gemma2"])
def test_patching_where_nothing_differs_changes_nothing(family: str) -> None:
    """Positions before the first differing token are identical in both runs, at every layer."""
    exp = _experiment(family)
    first = min(exp.diff_positions)
    assert exp.diff_positions == [3, 4, 6, 7, 9]
    for site, direction in (("resid_post", "denoising"), ("attn_out", "noising")):
        res = exp.sweep(site, direction=direction, positions=range(first), progress=False)
        base = res.corrupted_readouts if direction == "denoising" else res.clean_readouts
        _assert_rows(res.readouts, np.broadcast_to(base, res.readouts.shape), site)


# ---- metrics ------------------------------------------------------------------------------------
# Two pairs; fields: logit_correct, logit_incorrect, lse, kl_clean, kl_corrupted, rank.
PATCHED = np.array([[2.0, 0.5, 3.0, 0.25, 1.0, 0.0], [-1.0, 1.0, 2.0, 1.5, 0.5, 3.0]])
CLEAN_R = np.array([[3.0, 0.0, 3.5, 0.0, 2.0, 0.0], [1.0, 0.0, 2.0, 0.0, 1.0, 0.0]])
CORRUPTED_R = np.array([[1.0, 1.0, 2.5, 2.0, 0.0, 1.0], [-1.0, 0.0, 3.0, 1.0, 0.0, 5.0]])
# metric: (per pair, mean, normalised mean, normalised per pair), worked out by hand
HAND = {
    "logit_diff": ([1.5, -2.0], -0.25, (-0.25 - -0.5) / (2.0 - -0.5), [0.5, -0.5]),
    "logprob": ([-1.0, -3.0], -2.0, (-2.0 - -2.75) / (-0.75 - -2.75), [0.5, 1 / 3]),
    "kl": ([0.25, 1.5], 0.875, (0.875 - 1.5) / (0.0 - 1.5), [0.875, -0.5]),
    "rank": ([0.0, 3.0], 1.5, (1.5 - 3.0) / (0.0 - 3.0), [1.0, 0.4]),
    "accuracy": ([1.0, 0.0], 0.5, (0.5 - 0.0) / (1.0 - 0.0), [1.0, 0.0]),
}


@pytest.mark.parametrize("metric", list(HAND))
def test_metrics_against_hand_computed_values(metric: str) -> None:
    per_pair, mean, norm_mean, norm_per_pair = HAND[metric]
    compute = pw.metrics.compute
    args = (PATCHED[None], CLEAN_R, CORRUPTED_R)
    np.testing.assert_allclose(compute(metric, *args, per_pair_values=True)[0], per_pair)
    np.testing.assert_allclose(compute(metric, *args)[0], mean)
    np.testing.assert_allclose(compute(metric, *args, normalized=True)[0], norm_mean)
    got = compute(metric, *args, normalized=True, per_pair_values=True)[0]
    np.testing.assert_allclose(got, norm_per_pair)


def test_prob_metric_against_hand_computed_values() -> None:
    got = pw.metrics.compute("prob", PATCHED[None], CLEAN_R, CORRUPTED_R, per_pair_values=True)
    np.testing.assert_allclose(got[0], [np.exp(-1.0), np.exp(-3.0)])
    clean, corrupted = np.mean([np.exp(-0.5), np.exp(-1.0)]), np.mean([np.exp(-1.5), np.exp(-4.0)])
    want = (np.mean([np.exp(-1.0), np.exp(-3.0)]) - corrupted) / (clean - corrupted)
    norm = pw.metrics.compute("prob", PATCHED[None], CLEAN_R, CORRUPTED_R, normalized=True)
    np.testing.assert_allclose(norm[0], want)


def test_result_values_follow_the_readouts() -> None:
    exp = _experiment("gpt2")
    res = exp.sweep("head_by_pos", direction="noising", progress=False)
    r = res.readouts.astype(np.float64)
    ld = r[..., 0] - r[..., 1]
    clean_ld = res.clean_readouts[:, 0].astype(np.float64) - res.clean_readouts[:, 1]
    corr_ld = res.corrupted_readouts[:, 0].astype(np.float64) - res.corrupted_readouts[:, 1]
    assert res.baselines("logit_diff") == pytest.approx(
        {"clean": clean_ld.mean(), "corrupted": corr_ld.mean()}, abs=1e-5
    )
    values = res.values("logit_diff")
    assert values.axes == ("layer", "head", "pos")
    np.testing.assert_allclose(np.asarray(values), ld.mean(-1), atol=1e-5)
    norm = (ld.mean(-1) - corr_ld.mean()) / (clean_ld.mean() - corr_ld.mean())
    np.testing.assert_allclose(
        np.asarray(res.values("logit_diff", normalized=True)), norm, atol=1e-5
    )
    per = (ld - corr_ld) / (clean_ld - corr_ld)
    got = np.asarray(res.values("logit_diff", normalized=True, per_pair=True))
    np.testing.assert_allclose(got, per, atol=1e-5)
    logprob = r[..., 0] - r[..., 2]
    np.testing.assert_allclose(np.asarray(res.values("prob")), np.exp(logprob).mean(-1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.values("kl")), r[..., 3].mean(-1), atol=1e-6)
    acc = (r[..., 5] == 0).mean(-1)
    np.testing.assert_allclose(np.asarray(res.values("accuracy")), acc)


def test_normalised_values_are_not_clipped() -> None:
    """Random models over- and under-shoot: values outside [0, 1] must survive unchanged."""
    exp = _experiment("gpt2")
    below, above = 0, 0
    for site in ("head", "mlp_out"):
        for direction in ("denoising", "noising"):
            res = exp.sweep(site, direction=direction, progress=False)
            norm = np.asarray(res.values("logit_diff", normalized=True))
            b = res.baselines("logit_diff")
            raw = np.asarray(res.values("logit_diff"))
            np.testing.assert_allclose(
                norm, (raw - b["corrupted"]) / (b["clean"] - b["corrupted"]), rtol=1e-6, atol=1e-6
            )
            below += int((norm < -0.05).sum())
            above += int((norm > 1.05).sum())
    assert below > 0 and above > 0, (below, above)


def test_normalisation_is_nan_and_flagged_when_baselines_coincide() -> None:
    with pytest.warns(pw.PatchingWarning, match="the same in pair 1, 2, 3"):
        exp = pw.Experiment(engine_model("gpt2"), clean=CLEAN, corrupted=CLEAN, answers=ANSWERS)
    res = exp.sweep("head", progress=False)
    assert res.baselines("logit_diff")["clean"] == res.baselines("logit_diff")["corrupted"]
    assert np.all(np.isnan(np.asarray(res.values("logit_diff", normalized=True))))
    assert not res.normalization_ok("logit_diff")
    assert np.all(np.isfinite(np.asarray(res.values("logit_diff"))))
