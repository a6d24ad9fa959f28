"""Attribution patching: exact where first order is exact, gradients against finite differences,
agreement with exact patching on the demo model, and verification."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import ANSWERS, CLEAN, CORRUPTED, engine_model, make_model, make_tokenizer

import patchwidget as pw
from patchwidget.attribution import attention_pattern, grad_drop_scores
from patchwidget.engine import Plan
from patchwidget.gradients import attention_inputs, gradient_pass
from patchwidget.hookpoints import RESID_MID


@functools.cache
def _linear_readout_model():
    """A GPT-2 without its final layer norm: the last layer's residual stream, MLP output and
    neurons reach the logits through linear maps only, so first order is exact there."""
    model = make_model("gpt2")
    model.transformer.ln_f = torch.nn.Identity()
    return pw.load_model(model, tokenizer=make_tokenizer())


@functools.cache
def _float64_model(family: str):
    return pw.load_model(make_model(family).double(), tokenizer=make_tokenizer())


def _experiment(model, **kwargs):
    kwargs.setdefault("corrupted", CORRUPTED)
    return pw.Experiment(model, clean=CLEAN, answers=ANSWERS, **kwargs)


@pytest.mark.parametrize(
    "corruption",
    [None, pw.GaussianNoise(std=0.5), pw.MeanAblation(), pw.ZeroAblation()],
    ids=["counterfactual", "noise", "mean", "zero"],
)
def test_first_order_is_exact_where_the_readout_is_linear(corruption) -> None:
    model = _linear_readout_model()
    exp = (
        _experiment(model)
        if corruption is None
        else _experiment(model, corrupted=None, corruption=corruption)
    )
    last = exp.dims.n_layers - 1
    directions = exp.directions
    for direction in directions:
        for site, kwargs in (("resid_post", {}), ("mlp_out", {}), ("neuron", {})):
            exact = exp.sweep(site, direction, layers=[last], progress=False, **kwargs)
            est = exp.sweep(site, direction, layers=[last], method="attribution", **kwargs)
            assert est.method == "attribution" and exact.method == "exact"
            assert est.axes == exact.axes and est.labels == exact.labels
            np.testing.assert_allclose(
                est.values("logit_diff"), exact.values("logit_diff"), atol=2e-4, err_msg=site
            )
            # the answer logits are linear too; the log-normaliser is not
            for field in (0, 1):
                np.testing.assert_allclose(
                    est.readouts[..., field], exact.readouts[..., field], atol=2e-4
                )
            base = exact.baselines()["corrupted" if direction == "denoising" else "clean"]
            moved = np.abs(np.asarray(exact.values("logit_diff")) - base)
            assert moved.max() > 0.1, site  # the patches do something


def _keys(exp) -> list[tuple[str, int]]:
    points = ["block_in", "attn_contrib", "mlp_contrib", "block_out", "z", "pattern", "neurons"]
    layout = exp.arch.qkv_layout
    points += ["q", "k", "v"] if layout == "separate" else ["qkv"]
    if not exp.arch.parallel(exp._hf.config):
        points.append(RESID_MID)
    return [(p, layer) for p in points for layer in range(exp.dims.n_layers)]


def _readouts_with(exp, key, value) -> np.ndarray:
    """(logit_correct, logit_incorrect, lse) per pair, in float64, with ``key`` set to value."""
    mask = torch.ones(*value.shape[:-1], 1, dtype=torch.bool)
    plan = Plan(masks={key: mask}, sources={key: value})
    logits, _ = exp.engine.forward(exp._clean_ids, plan=plan)
    rows = torch.arange(exp.n_pairs)
    lse = torch.logsumexp(logits, -1)
    return torch.stack([logits[rows, exp._correct], logits[rows, exp._incorrect], lse], -1).numpy()


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa", "neox_sequential", "neox_parallel"])
def test_gradients_match_finite_differences_at_every_hook_point(family: str) -> None:
    exp = _experiment(_float64_model(family))
    keys = _keys(exp)
    gp = gradient_pass(
        exp.hooks, exp.device, exp._clean_ids, None, frozenset(keys), exp._correct, exp._incorrect
    )
    gen = torch.Generator().manual_seed(0)
    # Five-point central difference, error ~ h**4: the models run in float64, except that some
    # families take their attention softmax in float32, which limits how small h can be.
    h = 3e-4
    for key in keys:
        base = gp.base[key]
        direction = torch.randn(base.shape, generator=gen, dtype=base.dtype)
        f = {k: _readouts_with(exp, key, base + k * h * direction) for k in (-2, -1, 1, 2)}
        numeric = (8 * (f[1] - f[-1]) - (f[2] - f[-2])) / (12 * h)
        analytic = torch.einsum("bpuw,bpuwf->bf", direction, gp.grads[key]).numpy()
        np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-2, err_msg=str(key))


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa", "gemma2", "neox_sequential"])
def test_qk_fix_recomputes_the_models_own_attention_pattern(family: str) -> None:
    exp = _experiment(engine_model(family))
    layers = frozenset(range(exp.dims.n_layers))
    attn = attention_inputs(exp.hooks, exp.device, exp._clean_ids, None, layers)
    captured = exp.engine.forward(exp._clean_ids, save=frozenset(("pattern", i) for i in layers))[1]
    group = exp.dims.n_heads // exp.dims.n_kv_heads
    heads = list(range(exp.dims.n_heads))
    for layer in layers:
        a = attn[layer]
        ours = attention_pattern(a["query"], a["key"], a, heads, group)
        theirs = captured[("pattern", layer)].transpose(1, 2)  # (pairs, head, query, key)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)


def test_estimates_cover_every_site_with_the_exact_shape_and_labels() -> None:
    exp = _experiment(engine_model("gpt2"))
    for site in pw.SITES:
        for direction in ("denoising", "noising"):
            exact = exp.sweep(site, direction, neurons=[1, 2], progress=False)
            est = exp.sweep(site, direction, neurons=[1, 2], method="attribution")
            assert est.shape == exact.shape and est.labels == exact.labels, site
            assert np.isfinite(np.asarray(est.values("logit_diff"))).all()
            for metric in ("kl", "rank", "accuracy"):
                assert np.isnan(np.asarray(est.values(metric))).all()
            assert est.metadata["not_estimable"] == ["kl", "rank", "accuracy"]
    est = exp.sweep("head_q", by_pos=True, method="attribution", qk_fix=True)
    assert est.axes == ("layer", "head", "pos") and est.metadata["qk_fix"] is True


def test_attribution_leaves_exact_results_and_parameters_unchanged(tmp_path) -> None:
    exp = _experiment(engine_model("llama_gqa"))
    before = exp.sweep("head_by_pos", "noising", progress=False)
    flags = [p.requires_grad for p in exp._hf.parameters()]
    est = exp.sweep("head_by_pos", "noising", method="attribution", qk_fix=True, grad_drop=True)
    est = exp.sweep("head_k", "denoising", method="attribution", qk_fix=True, grad_drop=True)
    after = exp.sweep("head_by_pos", "noising", progress=False)
    np.testing.assert_array_equal(before.readouts, after.readouts)
    assert [p.requires_grad for p in exp._hf.parameters()] == flags
    loaded = pw.PatchResult.load(est.save(tmp_path / "est.npz"))
    assert loaded.method == "attribution"
    np.testing.assert_array_equal(loaded.readouts, est.readouts)


def test_bad_method_options_say_how_to_fix_them() -> None:
    exp = _experiment(engine_model("gpt2"))
    with pytest.raises(ValueError, match="'exact' or 'attribution'"):
        exp.sweep("head", method="atp")
    with pytest.raises(ValueError, match="method='attribution'"):
        exp.sweep("head", qk_fix=True)
    ablated = _experiment(engine_model("gpt2"), corrupted=None, corruption=pw.ZeroAblation())
    with pytest.raises(ValueError, match="only direction='noising'"):
        ablated.sweep("head", "denoising", method="attribution")
    with pytest.raises(ValueError, match="no source run"):
        ablated.sweep("head_k", "noising", method="attribution", qk_fix=True)


def test_verify_runs_exact_patching_on_the_largest_estimates_first() -> None:
    exp = _experiment(engine_model("gpt2"))
    est = exp.sweep("head_by_pos", "denoising", method="attribution")
    exact = exp.sweep("head_by_pos", "denoising", progress=False)
    seen: list[int] = []
    ver = exp.verify(est, top=6, on_progress=lambda done, total, v: seen.append(v.n_verified))
    effect = np.abs(np.asarray(est.values()) - est.baselines()["corrupted"]).reshape(-1)
    assert set(ver.verified.tolist()) == set(np.argsort(-effect)[:6].tolist())
    assert seen[-1] == 6 and seen == sorted(seen)
    got = ver.exact.readouts.reshape(-1, *est.readouts.shape[-2:])
    want = exact.readouts.reshape(got.shape)
    np.testing.assert_allclose(got[ver.verified], want[ver.verified], atol=1e-5)
    rest = np.setdiff1d(np.arange(len(got)), ver.verified)
    assert np.isnan(got[rest]).all()
    full = exp.verify(est, progress=False)
    np.testing.assert_allclose(full.exact.readouts, exact.readouts, atol=1e-5)
    agreement = full.agreement("logit_diff", k=5)
    assert agreement.n_verified == len(got) and 0 <= agreement.top_k_hits <= 5
    _, e, x = agreement.disagreements[0]
    diffs = np.abs(np.asarray(est.values()) - np.asarray(exact.values())).reshape(-1)
    assert abs(e - x) == pytest.approx(diffs.max(), abs=1e-5)
    with pytest.raises(ValueError, match="cannot be estimated"):
        full.agreement("kl")
    with pytest.raises(ValueError, match="method='attribution'"):
        exp.verify(exact)


def test_rank_correlation_against_hand_computed_values() -> None:
    from patchwidget.verification import rank_correlation

    assert rank_correlation(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == 1.0
    assert rank_correlation(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == -1.0
    # ties take the average rank: ranks (0.5, 0.5, 2) vs (0, 1, 2) -> r = 0.866...
    got = rank_correlation(np.array([1.0, 1, 2]), np.array([1.0, 2, 3]))
    assert got == pytest.approx(np.sqrt(3) / 2)


# Measured on the demo model (flip_s2, 8 prompt pairs, seed 0), logit difference, Spearman:
# head 0.776 (denoising) / 0.972 (noising); head_by_pos 0.860 / 0.865.
DEMO_AGREEMENT = {
    ("head", "denoising"): 0.776,
    ("head", "noising"): 0.972,
    ("head_by_pos", "denoising"): 0.860,
    ("head_by_pos", "noising"): 0.865,
}
MARGIN = 0.05


def test_demo_model_estimate_agrees_with_exact_patching_as_measured() -> None:
    exp = pw.Experiment(pw.demo_model(), **pw.demo_prompts("flip_s2", n=8))
    for (site, direction), measured in DEMO_AGREEMENT.items():
        est = exp.sweep(site, direction, method="attribution")
        agreement = exp.verify(est, progress=False).agreement("logit_diff")
        assert agreement.rank_correlation >= measured - MARGIN, (site, direction, agreement)


def test_grad_drop_scores_follow_their_definition() -> None:
    """Two layers: a last-layer cell's only path is direct (score = |AtP|); a first-layer cell
    scores |its direct effect| (its own layer dropped gives 0, layer 1 dropped leaves the direct
    path), which is (source - base) · the final residual stream's gradient."""
    exp = _experiment(engine_model("gpt2"))
    assert exp.dims.n_layers == 2
    est = exp.sweep("mlp_out", "denoising", method="attribution", grad_drop=True)
    scores = grad_drop_scores(est, "logit_diff")
    delta = np.asarray(est.values("logit_diff")) - est.baselines()["corrupted"]
    np.testing.assert_allclose(scores[1], np.abs(delta[1]), rtol=1e-4, atol=1e-5)
    run = exp._base_run("denoising")
    key, final = ("mlp_contrib", 0), ("block_out", 1)
    keys = frozenset([key, final])
    gp = gradient_pass(
        exp.hooks, exp.device, run.ids, run.noise, keys, exp._correct, exp._incorrect
    )
    diff = exp._source_values("denoising", [key])[key] - gp.base[key]
    direct = torch.einsum("bpuw,bpuwf->bpf", diff, gp.grads[final]).numpy()
    want = np.abs((direct[..., 0] - direct[..., 1]).mean(axis=0))
    np.testing.assert_allclose(scores[0], want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(scores[0], np.abs(delta[0]), atol=1e-3)  # indirect paths matter


# Measured on the demo model (flip_s2, 8 pairs), head_k, logit difference, Spearman and the
# largest |estimate - exact|: plain AtP 0.650 / 0.035 (denoising), 0.846 / 0.031 (noising);
# with the QK fix 0.993 / 0.0039 and 0.937 / 0.0044.
QK_FIX_AGREEMENT = {"denoising": (0.993, 0.0039), "noising": (0.937, 0.0044)}


def test_qk_fix_brings_key_estimates_close_to_exact_on_the_demo_model() -> None:
    exp = pw.Experiment(pw.demo_model(), **pw.demo_prompts("flip_s2", n=8))
    for direction, (rho, worst) in QK_FIX_AGREEMENT.items():
        plain = exp.verify(exp.sweep("head_k", direction, method="attribution"), progress=False)
        fixed = exp.verify(
            exp.sweep("head_k", direction, method="attribution", qk_fix=True), progress=False
        )
        got = fixed.agreement("logit_diff")
        assert got.rank_correlation >= rho - MARGIN
        assert got.rank_correlation > plain.agreement("logit_diff").rank_correlation
        error = np.abs(np.asarray(fixed.estimate.values()) - np.asarray(fixed.exact.values()))
        plain_error = np.abs(np.asarray(plain.estimate.values()) - np.asarray(plain.exact.values()))
        assert error.max() <= 2 * worst and error.max() < plain_error.max() / 4


def test_remote_models_refuse_attribution_and_say_what_to_do() -> None:
    model = pw.load_model(make_model("gpt2"), tokenizer=make_tokenizer(), remote="local")
    exp = _experiment(model)
    with pytest.raises(ValueError, match="local backward pass"):
        exp.sweep("head", method="attribution")
