"""Engine sweeps and confirmatory patches against the hook-based reference (tests/reference.py).

The first block validates the reference on its own (no engine involved); the rest compares the
engine's readouts with the reference's, family by family and site by site.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import pytest
import torch
from conftest import (
    ANSWERS,
    CLEAN,
    CORRUPTED,
    FAMILIES,
    PARALLEL_FAMILIES,
    REFERENCE_PROMPTS,
    engine_model,
    make_model,
    make_tokenizer,
    reference_for,
)
from reference import KIND_OF_SITE, Comp, Scenario, Trace
from reference import readouts as reference_readouts

import patchwidget as pw

ATOL = 1e-4
NEURONS = (0, 5, 33, 63)
POSITIONS = (0, 4, 7, 9)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, msg: str | None = None) -> None:
    torch.testing.assert_close(a.double(), b.double(), atol=atol, rtol=1e-5, msg=msg)


# ---- the reference on its own ------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_reference_unpatched_matches_plain_model(family: str) -> None:
    ref = reference_for(family)
    ids = ref.encode(CLEAN)
    with torch.no_grad():
        want = make_model(family)(input_ids=ids).logits[:, -1]
    got, _ = ref.run(ids)
    _close(got, want, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_trace_is_consistent(family: str) -> None:
    """Captured activations add up the way the block computes them."""
    ref = reference_for(family)
    ids = ref.encode(CLEAN)
    norm_inputs = {}
    handles = []
    if not ref.parallel:
        for layer in range(ref.n_layers):
            norm = ref.layers[layer].get_submodule(ref.arch.mlp_norm)
            hook = lambda m, a, layer=layer: norm_inputs.__setitem__(layer, a[0].clone())  # noqa: E731
            handles.append(norm.register_forward_pre_hook(hook))
    try:
        _, tr = ref.run(ids, capture=True)
    finally:
        for h in handles:
            h.remove()
    groups = ref.n_heads // ref.n_kv_heads
    for layer in range(ref.n_layers):
        pre, attn, mlp = (tr[k, layer] for k in ("resid_pre", "attn_out", "mlp_out"))
        if layer + 1 < ref.n_layers:
            _close(tr["resid_post", layer], tr["resid_pre", layer + 1])
        if ref.parallel:
            assert ("resid_mid", layer) not in tr
            _close(tr["resid_post", layer], pre + attn + mlp, atol=1e-4)
        else:
            _close(tr["resid_mid", layer], pre + attn)
            _close(tr["resid_mid", layer], norm_inputs[layer])
            _close(tr["resid_post", layer], tr["resid_mid", layer] + mlp, atol=1e-4)
        # z of head h = pattern of head h applied to the values of its kv head
        v = tr["v", layer].repeat_interleave(groups, dim=2)  # (B, S, H, dh)
        z = torch.einsum("bhqk,bkhd->bqhd", tr["pattern", layer], v)
        _close(tr["z", layer], z, atol=1e-5)
        pat = tr["pattern", layer]
        _close(pat.sum(-1), torch.ones_like(pat.sum(-1)))
        assert torch.all(pat.triu(1) == 0), "causal pattern"
        if family != "gemma2":
            o_proj = ref.layers[layer].get_submodule(ref.arch.o_proj)
            down = ref.layers[layer].get_submodule(ref.arch.down_proj)
            with torch.no_grad():
                _close(attn, o_proj(tr["z", layer].flatten(-2)), atol=1e-5)
                _close(mlp, down(tr["neuron", layer]), atol=1e-5)
    assert tr["k", 0].shape[2] == ref.n_kv_heads and tr["q", 0].shape[2] == ref.n_heads


def _restoring_sets(ref, n_pos: int) -> dict[str, list[Comp]]:
    """Sets of clean activations that, patched into the corrupted run, reproduce the clean run."""
    last = ref.n_layers - 1
    sets = {
        "resid_pre 0": [Comp("resid_pre", 0)],
        "resid_pre last": [Comp("resid_pre", last)],
        "resid_post 0": [Comp("resid_post", 0)],
        "resid_pre by position": [Comp("resid_pre", last, pos=p) for p in range(n_pos)],
        "attn_out+mlp_out": [
            Comp("resid_pre", last),
            Comp("attn_out", last),
            Comp("mlp_out", last),
        ],
    }
    if not ref.parallel:
        sets["resid_mid"] = [Comp("resid_mid", last)]
    return sets


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_restores_clean_run_from_its_own_activations(family: str) -> None:
    ref = reference_for(family)
    sc = Scenario(ref, CLEAN, ANSWERS, corrupted=CORRUPTED)
    assert (sc.clean_logits - sc.corrupted_logits).abs().max() > 0.1
    sets = _restoring_sets(ref, sc.n_pos)
    for direction, want in (("denoising", sc.clean_logits), ("noising", sc.corrupted_logits)):
        expected = sc.readouts(want)[0]
        for name, got in zip(sets, sc.patched(direction, list(sets.values())), strict=True):
            _close(got, expected, atol=1e-4, msg=f"{direction} {name}")


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_component_patches_reproduce_downstream_activations(family: str) -> None:
    """Patching every head / unit of a layer reproduces what that layer computes from them."""
    ref = reference_for(family)
    sc = Scenario(ref, CLEAN, ANSWERS, corrupted=CORRUPTED)
    clean = sc.clean_trace
    layer = ref.n_layers - 1
    heads, kv = range(ref.n_heads), range(ref.n_kv_heads)
    cases = {
        "z -> attn_out": ([Comp("head", layer, head=h) for h in heads], "attn_out"),
        "q,k,v -> z": (
            [Comp("head_q", layer, head=h) for h in heads]
            + [Comp(s, layer, head=h) for s in ("head_k", "head_v") for h in kv],
            "z",
        ),
        "pattern,v -> z": (
            [Comp("head_pattern", layer, head=h) for h in heads]
            + [Comp("head_v", layer, head=h) for h in kv],
            "z",
        ),
        "neurons -> mlp_out": (
            [Comp("neuron", layer, neuron=n) for n in range(ref.d_mlp)],
            "mlp_out",
        ),
    }
    if not ref.parallel:
        cases["resid_mid -> mlp_out"] = ([Comp("resid_mid", layer)], "mlp_out")
        cases["resid_mid -> resid_post"] = ([Comp("resid_mid", layer)], "resid_post")
    for name, (comps, kind) in cases.items():
        _, tr = ref.run(sc.corrupted_ids, [comps] * sc.n_pairs, clean, capture=True)
        assert (sc.corrupted_trace[kind, layer] - clean[kind, layer]).abs().max() > 1e-3, name
        _close(tr[kind, layer], clean[kind, layer], atol=1e-4, msg=name)


@pytest.mark.parametrize("family", ["gpt2", "neox_sequential", "llama_gqa", "gemma", "gemma2"])
def test_reference_per_head_slices_align_with_the_pattern(family: str) -> None:
    """Patching q of head h with its kv head's k gives exactly head h's clean pattern."""
    ref = reference_for(family)
    sc = Scenario(ref, CLEAN, ANSWERS, corrupted=CORRUPTED)
    groups = ref.n_heads // ref.n_kv_heads
    layer = ref.n_layers - 1
    for h in range(ref.n_heads):
        comps = [Comp("head_q", layer, head=h), Comp("head_k", layer, head=h // groups)]
        rows = [comps] * sc.n_pairs
        _, tr = ref.run(sc.corrupted_ids, rows, sc.clean_trace, capture=True)
        pat, clean_pat = tr["pattern", layer], sc.clean_trace["pattern", layer]
        _close(pat[:, h], clean_pat[:, h])
        others = [o for o in range(ref.n_heads) if o // groups != h // groups]
        if others:
            assert (pat[:, others] - clean_pat[:, others]).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_reference_patches_only_the_selected_row_and_position(family: str) -> None:
    ref = reference_for(family)
    sc = Scenario(ref, CLEAN, ANSWERS, corrupted=CORRUPTED)
    last = sc.n_pos - 1
    rows = [[Comp("resid_post", 0, pos=4)], [], [Comp("head_v", 1, head=0, pos=last)]]
    logits, tr = ref.run(sc.corrupted_ids, rows, sc.clean_trace, capture=True)
    _close(logits[1], sc.corrupted_logits[1])
    assert (logits[0] - sc.corrupted_logits[0]).abs().max() > 1e-3
    post = tr["resid_post", 0]
    _close(post[0, 4], sc.clean_trace["resid_post", 0][0, 4])
    _close(post[0, 5:], sc.corrupted_trace["resid_post", 0][0, 5:])
    v = tr["v", 1]
    _close(v[2, last, 0], sc.clean_trace["v", 1][2, last, 0])
    _close(v[2, :last], sc.corrupted_trace["v", 1][2, :last])


def test_reference_noise_changes_the_run_only_where_added() -> None:
    ref = reference_for("gpt2")
    ids = ref.encode(CLEAN)
    noise = torch.zeros(*ids.shape, ref.d_model)
    noise[:, 2] = torch.randn(ids.shape[0], ref.d_model, generator=torch.Generator().manual_seed(0))
    base, clean_tr = ref.run(ids, capture=True)
    got, tr = ref.run(ids, noise=noise, capture=True)
    _close(tr["resid_pre", 0], clean_tr["resid_pre", 0] + noise)
    _close(tr["resid_post", 1][:, :2], clean_tr["resid_post", 1][:, :2])
    assert (got - base).abs().max() > 1e-2


def test_kind_of_site_covers_every_engine_site() -> None:
    assert set(pw.SITES) == set(KIND_OF_SITE)


def test_word_tokenizer() -> None:
    tok = make_tokenizer()
    assert tok.convert_ids_to_tokens(tok("w5 w17")["input_ids"]) == ["<bos>", "w5", "w17"]
    assert tok(" w7", add_special_tokens=False)["input_ids"] == [10]


# ---- engine vs reference ------------------------------------------------------------------------
SIMPLE_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("head", "head_by_pos", "head_q", "head_k", "head_v", "head_pattern")
BY_POS_SITES = ("head_q", "head_k", "head_v", "head_pattern")
DIRECTIONS = ("denoising", "noising")
FIELDS = ("logit_correct", "logit_incorrect", "lse", "kl_clean", "kl_corrupted", "rank")


@functools.cache
def counterfactual(family: str) -> tuple[Any, Scenario]:
    """The engine's experiment and the reference scenario on the same 3 counterfactual pairs."""
    exp = pw.Experiment(engine_model(family), clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS)
    return exp, Scenario(reference_for(family), CLEAN, ANSWERS, corrupted=CORRUPTED)


def reference_cells(
    res: Any, site: str, together: tuple[int, ...] | None = None
) -> list[list[Comp]]:
    """One reference patch set per sweep cell, in the row-major order of `res.axes`."""
    ref_site = "head" if site == "head_by_pos" else site
    cells = []
    for values in itertools.product(*(res.coords[a] for a in res.axes)):
        at = dict(zip(res.axes, values, strict=True))
        comp = Comp(
            ref_site, at["layer"], at.get("head"), at.get("pos", together), at.get("neuron")
        )
        cells.append([comp])
    return cells


def expected_readouts(
    sc: Scenario, res: Any, site: str, direction: str, together=None
) -> np.ndarray:
    shape = tuple(len(res.coords[a]) for a in res.axes)
    got = sc.patched(direction, reference_cells(res, site, together))
    return got.numpy().reshape(*shape, sc.n_pairs, len(FIELDS))


def assert_readouts_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Engine readouts equal the reference's to ATOL; the message names the worst field and cell."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    err = np.abs(got - want)
    if not np.all(err <= ATOL + 1e-4 * np.abs(want)):
        worst = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), err.shape)
        pytest.fail(
            f"{what}: max |engine - reference| = {np.nanmax(err):.3g} "
            f"({np.isnan(err).sum()} NaN) at index {worst} (field {FIELDS[worst[-1]]}): "
            f"engine {got[worst]:.6g}, reference {want[worst]:.6g}"
        )


def assert_baselines(res: Any, sc: Scenario, what: str) -> None:
    clean, corrupted = sc.baselines()
    assert_readouts_close(res.clean_readouts, clean.numpy(), f"{what} clean baseline")
    assert_readouts_close(res.corrupted_readouts, corrupted.numpy(), f"{what} corrupted baseline")


def assert_sweep_matches(sc: Scenario, res: Any, site: str, direction: str, **kw: Any) -> None:
    want = expected_readouts(sc, res, site, direction.split()[0], kw.get("together"))
    assert np.ptp(want[..., 0]) > 1e-2, "test is vacuous: no cell moves the correct logit"
    assert_baselines(res, sc, f"{site} {direction}")
    assert_readouts_close(res.readouts, want, f"{site} {direction} readouts")


LLAMA_LIKE = ("mistral", "qwen2")  # same hook points as Llama: a few sites suffice


def _sweep_cases() -> list:
    cases = []
    for family in FAMILIES:
        sites = (*SIMPLE_SITES, *HEAD_SITES, "neuron")
        if family in LLAMA_LIKE:
            sites = ("head", "head_k", "mlp_out")
        for site in sites:
            if site == "resid_mid" and family in PARALLEL_FAMILIES:
                continue
            cases += [pytest.param(family, site, d, id=f"{family}-{site}-{d}") for d in DIRECTIONS]
    return cases


@pytest.mark.parametrize(("family", "site", "direction"), _sweep_cases())
def test_sweep_matches_reference(family: str, site: str, direction: str) -> None:
    exp, sc = counterfactual(family)
    kw = {"neuron": {"neurons": NEURONS}, "head_by_pos": {"positions": POSITIONS}}.get(site, {})
    res = exp.sweep(site, direction=direction, progress=False, **kw)
    want_axes = {"head_by_pos": ("layer", "head", "pos"), "neuron": ("layer", "neuron")}
    assert res.axes == want_axes.get(
        site, ("layer", "head") if "head" in site else ("layer", "pos")
    )
    assert res.site == site and res.direction == direction and res.complete
    assert_sweep_matches(sc, res, site, direction)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in LLAMA_LIKE])
@pytest.mark.parametrize("site", BY_POS_SITES)
def test_by_pos_sweep_matches_reference(family: str, site: str) -> None:
    exp, sc = counterfactual(family)
    for direction in DIRECTIONS:
        res = exp.sweep(site, direction=direction, by_pos=True, progress=False)
        assert res.axes == ("layer", "head", "pos")
        assert tuple(res.coords["pos"]) == tuple(range(sc.n_pos))
        assert_sweep_matches(sc, res, site, direction)


def _mixed_components(pw: Any, family: str) -> list[Any]:
    """A confirmatory set touching every kind of hook point, overlapping in layers."""
    comps = [
        pw.Component("head", 0, head=1),
        pw.Component("head_by_pos", 1, head=2, pos=6),
        pw.Component("mlp_out", 0, pos=4),
        pw.Component("attn_out", 1, pos=9),
        pw.Component("head_v", 1, head=0),
        pw.Component("head_pattern", 1, head=3, pos=9),
        pw.Component("neuron", 1, neuron=7),
        pw.Component("neuron", 0, neuron=12, pos=6),
        pw.Component("head_q", 1, head=0, pos=9),
        pw.Component("head_k", 0, head=0),
    ]
    if family not in PARALLEL_FAMILIES:
        comps.append(pw.Component("resid_mid", 0, pos=3))
    return comps


@pytest.mark.parametrize("family", FAMILIES)
def test_confirmatory_patch_matches_reference(family: str) -> None:
    exp, sc = counterfactual(family)
    comps = _mixed_components(pw, family)
    ref_comps = [Comp(c.site, c.layer, c.head, c.pos, c.neuron) for c in comps]
    for direction in DIRECTIONS:
        res = exp.patch(comps, direction=direction)
        want = sc.patched(direction, [ref_comps]).numpy()
        assert np.ptp(want[..., 0] - sc.baselines()[1].numpy()[:, 0]) > 1e-3
        assert_baselines(res, sc, f"patch {direction}")
        assert_readouts_close(res.readouts, want, f"{family} patch {direction}")


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_first_patch_of_a_fresh_model_with_values_and_pattern(family: str) -> None:
    """A fresh model's first request touches q/k/v and the pattern of one layer."""
    model = pw.load_model(make_model(family), tokenizer=make_tokenizer())
    exp = pw.Experiment(model, clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS)
    _, sc = counterfactual(family)
    comps = [pw.Component("head_v", 1, head=1), pw.Component("head_pattern", 1, head=3, pos=9)]
    res = exp.patch(comps, direction="denoising")
    want = sc.patched("denoising", [[Comp(c.site, c.layer, c.head, c.pos) for c in comps]])
    assert_readouts_close(res.readouts, want.numpy(), "head_v + head_pattern")


@pytest.mark.parametrize("family", ["gpt2", "neox_sequential", "llama_gqa", "gemma2"])
def test_restricted_sweeps_are_sub_arrays(family: str) -> None:
    exp, _ = counterfactual(family)
    restrictions = [
        ("resid_pre", {"layers": [1], "positions": [9, 4]}),
        ("head", {"layers": [1, 0], "heads": [3]}),
        ("head_by_pos", {"heads": [0, 2], "positions": [0, 5, 9]}),
        ("head_k", {"heads": [1], "by_pos": True, "positions": [8]}),
        ("neuron", {"layers": [0], "neurons": [3, 60]}),
    ]
    for site, kw in restrictions:
        full = exp.sweep(site, by_pos=kw.get("by_pos", False), progress=False)
        res = exp.sweep(site, progress=False, **kw)
        want_coords = dict(full.coords)
        for axis, arg in (("layer", "layers"), ("head", "heads"), ("neuron", "neurons")):
            if arg in kw:
                want_coords[axis] = tuple(kw[arg])
        if "pos" in res.axes and "positions" in kw:
            want_coords["pos"] = tuple(kw["positions"])
        assert res.axes == full.axes
        assert {a: tuple(v) for a, v in res.coords.items()} == want_coords, site
        index = np.ix_(*(
            [list(full.coords[a]).index(v) for v in want_coords[a]] for a in full.axes
        ))  # fmt: skip
        assert_readouts_close(res.readouts, full.readouts[index], f"restricted {site}")
        if site != "neuron":
            assert res.labels["layer"] == tuple(f"L{layer}" for layer in want_coords["layer"])


@pytest.mark.parametrize("family", ["gpt2", "gemma"])
def test_positions_without_a_pos_axis_are_patched_together(family: str) -> None:
    exp, sc = counterfactual(family)
    together = (4, 6, 9)
    for site, kw in (("head", {}), ("head_v", {}), ("neuron", {"neurons": [2, 40]})):
        for direction in DIRECTIONS:
            res = exp.sweep(
                site, direction=direction, positions=list(together), progress=False, **kw
            )
            assert "pos" not in res.axes
            want = expected_readouts(sc, res, site, direction, together)
            assert_readouts_close(res.readouts, want, f"{site} {direction} at positions {together}")


@pytest.mark.parametrize("family", ["gpt2", "gemma", "gptj"])
def test_pairs_are_independent(family: str) -> None:
    """Each pair of a 3-pair experiment reads out as if it were run alone."""
    exp, _ = counterfactual(family)
    multi = exp.sweep("head_by_pos", direction="noising", heads=[1], progress=False)
    assert multi.readouts.shape[-2:] == (3, 6)
    per_pair = np.asarray(multi.values("logit_diff", per_pair=True))
    assert per_pair.shape == (*multi.shape, 3)
    assert multi.values("logit_diff", per_pair=True).axes[-1] == "pair"
    for i in range(3):
        single = pw.Experiment(
            engine_model(family), clean=[CLEAN[i]], corrupted=[CORRUPTED[i]], answers=[ANSWERS[i]]
        )
        res = single.sweep("head_by_pos", direction="noising", heads=[1], progress=False)
        assert_readouts_close(res.readouts[..., 0, :], multi.readouts[..., i, :], f"pair {i}")
        np.testing.assert_allclose(
            per_pair[..., i], np.asarray(res.values("logit_diff")), atol=ATOL
        )


# ---- corruptions other than counterfactual prompts --------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "neox_parallel", "llama_gqa", "gemma2", "gptj"])
def test_gaussian_noise_matches_reference(family: str) -> None:
    corruption = pw.GaussianNoise(std=0.8, positions=(2, 3, 4), seed=5)
    exp = pw.Experiment(engine_model(family), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    noise = exp.noise.float()
    ref = reference_for(family)
    assert noise.shape == (3, 10, ref.d_model)
    assert torch.all(noise[:, [0, 1, 5, 6, 7, 8, 9]] == 0) and noise[:, 2:5].abs().min() > 0
    assert 0.6 < float(noise[:, 2:5].std()) < 1.0
    sc = Scenario(ref, CLEAN, ANSWERS, noise=noise)
    for site, kw in (("resid_pre", {}), ("head", {}), ("mlp_out", {"layers": [0]})):
        for direction in DIRECTIONS:
            res = exp.sweep(site, direction=direction, progress=False, **kw)
            assert_sweep_matches(sc, res, site, direction)


def test_gaussian_noise_default_std_is_three_embedding_stds() -> None:
    exp = pw.Experiment(
        engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=pw.GaussianNoise(seed=1)
    )
    embed_std = float(reference_for("gpt2").model.get_input_embeddings().weight.detach().std())
    assert abs(float(exp.noise.std()) / (3 * embed_std) - 1) < 0.1
    again = pw.Experiment(
        engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=pw.GaussianNoise(seed=1)
    )
    assert torch.equal(exp.noise, again.noise), "same seed, same noise"


def _ablation_cases(pw: Any, ref: Any, n_pairs: int) -> dict[str, tuple[Any, Trace]]:
    """Engine corruption and the reference's patched-in values (one row per pair)."""
    _, clean_tr = ref.run(ref.encode(CLEAN), capture=True)
    _, mean_tr = ref.run(ref.encode(REFERENCE_PROMPTS), capture=True)
    _, one_tr = ref.run(ref.encode(REFERENCE_PROMPTS[:1]), capture=True)
    return {
        "zero": (pw.ZeroAblation(), clean_tr.zeros()),
        "mean": (pw.MeanAblation(reference=REFERENCE_PROMPTS), mean_tr.mean(n_pairs)),
        "resample": (
            pw.ResampleAblation(reference=REFERENCE_PROMPTS[:1], seed=3),
            one_tr.rows([0] * n_pairs),
        ),
    }


@pytest.mark.parametrize("family", ["gpt2", "neox_sequential", "llama_gqa", "gemma", "gptj"])
def test_ablations_match_reference(family: str) -> None:
    ref = reference_for(family)
    for name, (corruption, values) in _ablation_cases(pw, ref, len(CLEAN)).items():
        exp = pw.Experiment(
            engine_model(family), clean=CLEAN, answers=ANSWERS, corruption=corruption
        )
        sc = Scenario(ref, CLEAN, ANSWERS, ablation=values)
        for site, kw in (
            ("resid_pre", {"layers": [1]}),
            ("head", {"layers": [1]}),
            ("head_pattern", {"layers": [1], "heads": [0, 3]}),
            ("neuron", {"layers": [0], "neurons": [1, 30]}),
        ):
            res = exp.sweep(site, direction="noising", progress=False, **kw)
            assert_sweep_matches(sc, res, site, f"noising ({name})")


def test_mean_ablation_over_prompts_of_another_length_uses_the_token_mean() -> None:
    """Reference prompts of other lengths: the mean over all their tokens, at every position."""
    ref = reference_for("gpt2")
    prompts = ["w1 w2", "w3 w4 w5 w6 w7"]
    traces = [ref.run(ref.encode([p]), capture=True)[1] for p in prompts]
    n_pairs, n_pos = len(CLEAN), len(CLEAN[0].split()) + 1
    mean = Trace()
    for key, first in traces[0].items():
        if key[0] != "pattern":
            tokens = torch.cat([t[key] for t in traces], dim=1).mean(dim=(0, 1))
            mean[key] = tokens.expand(n_pairs, n_pos, *first.shape[2:])
    sc = Scenario(ref, CLEAN, ANSWERS, ablation=mean)
    corruption = pw.MeanAblation(reference=prompts)
    exp = pw.Experiment(engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    for site, kw in (("resid_pre", {"layers": [1]}), ("head", {}), ("neuron", {"neurons": [4]})):
        res = exp.sweep(site, direction="noising", progress=False, **kw)
        assert_sweep_matches(sc, res, site, "noising (token mean)")


def test_resample_ablation_draws_whole_reference_runs() -> None:
    """Each pair's resampled baseline is exactly the run of one of the reference prompts."""
    ref = reference_for("gpt2")
    sc = Scenario(ref, CLEAN, ANSWERS, corrupted=CORRUPTED)
    ref_logits, _ = ref.run(ref.encode(REFERENCE_PROMPTS))
    corruption = pw.ResampleAblation(reference=REFERENCE_PROMPTS, seed=7)
    exp = pw.Experiment(engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    got = exp.patch([], direction="noising").corrupted_readouts
    for pair in range(len(CLEAN)):
        options = [
            readouts_for(sc, pair, ref_logits[j]) for j in range(len(REFERENCE_PROMPTS))
        ]  # fmt: skip
        assert any(np.allclose(got[pair], o, atol=ATOL) for o in options), (pair, got[pair])
    again = pw.Experiment(engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    np.testing.assert_array_equal(again.patch([], "noising").corrupted_readouts, got)


def readouts_for(sc: Scenario, pair: int, logits: torch.Tensor) -> np.ndarray:
    """Readouts of pair `pair` for one row of last-position logits, with the pair's baselines."""
    r = reference_readouts(
        logits[None], sc.correct[[pair]], sc.incorrect[[pair]],
        sc.clean_logits[[pair]], logits[None],
    )  # fmt: skip
    return r[0].numpy()
