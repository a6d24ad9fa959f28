"""Passes that start at a later position (reusing the base run's keys and values) and a later
layer stay exact, for every family, site, direction and corruption; and the grouping of patch
sets into passes covers every set once within its cost bounds.

The tiny test models cost little per token, so their measured cost model would put a whole sweep
into one pass from position 0; these tests set a cost model with no fixed cost per pass, which
gives every (first layer, first position) its own pass.
"""

from __future__ import annotations

import copy
from typing import Any

import conftest
import numpy as np
import pytest
import torch
from conftest import (
    ANSWERS,
    CLEAN,
    CORRUPTED,
    FAMILIES,
    PARALLEL_FAMILIES,
    engine_model,
    make_tokenizer,
    reference_for,
)
from reference import Comp, Reference, Scenario
from test_engine_reference import (
    _ablation_cases,
    _mixed_components,
    assert_baselines,
    assert_readouts_close,
    assert_sweep_matches,
    counterfactual,
)

import patchwidget as pw
from patchwidget.batching import BatchCost, group_bands, group_batches
from patchwidget.packing import attention_mask, pack
from patchwidget.prefix import reuse_blocker
from patchwidget.sites import target

LENGTH = 10
PER_START = BatchCost(overhead=0.0, per_row=0.0, max_tokens=10**6)


SLIDING = ("gemma2", "mistral")  # windows (4) shorter than the prompts: rectangular passes
ONE_LAYER: list[tuple[int, ...]] = []  # the positions of each one-layer pass (own_layer_pass)


def passes_of(exp: Any) -> list[set[int]]:
    """Record the first positions computed by every patched pass of ``exp`` (not of the
    unpatched runs that capture sources and the base run): one per segment of a packed pass,
    the pass's own for a rectangular one (whose rows compute every position after the
    cached ones). One-layer passes go to ``ONE_LAYER`` instead."""
    exp._batch_cost = PER_START
    seen: list[set[int]] = []
    forward = exp.engine.forward
    ONE_LAYER.clear()

    def spy(ids: Any, noise: Any = None, plan: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("skip_after"):
            ONE_LAYER.append(tuple(kwargs["packed"].starts))
            assert len(kwargs["skip"]) + len(kwargs["skip_after"]) == exp.dims.n_layers - 1
        elif plan is not None:
            cache, packed = kwargs.get("cache"), kwargs.get("packed")
            cached = 0 if cache is None else cache.get_seq_length()
            if packed is None:
                assert ids.shape[1] + cached == LENGTH
                seen.append({cached})
            else:
                seen.append(set(packed.starts))
                assert cached == max(packed.starts) and ids.shape[1] <= LENGTH
        return forward(ids, noise, plan, **kwargs)

    exp.engine.forward = spy
    return seen


def starts_of(seen: list[set[int]]) -> set[int]:
    return {s for starts in seen for s in starts}


def sweep_cases() -> list:
    cases = []
    for family in FAMILIES:
        sites = ["resid_pre", "attn_out", "mlp_out", "head_by_pos", "head_q", "head_k"]
        if family not in PARALLEL_FAMILIES:
            sites.append("resid_mid")
        cases += [pytest.param(family, site, id=f"{family}-{site}") for site in sites]
    return cases


@pytest.mark.parametrize(("family", "site"), sweep_cases())
def test_sweeps_from_a_later_position_match_the_reference(family: str, site: str) -> None:
    exp, sc = counterfactual(family)
    seen = passes_of(exp)
    kw: dict[str, Any] = {"by_pos": True} if site in ("head_q", "head_k") else {}
    if site != "resid_pre":
        kw["positions"] = (0, 3, 6, 9)
    for direction in ("denoising", "noising"):
        res = exp.sweep(site, direction=direction, progress=False, **kw)
        assert_sweep_matches(sc, res, site, direction)
    assert starts_of(seen) >= {3, 6, 9}, "no pass reused the prefix"
    if family not in SLIDING:
        assert any(len(starts) > 1 for starts in seen), "no pass packed several starts"
    # a head's (or the MLP's) output at a position changes only that position in its layer:
    # that layer ran alone, at those positions only
    # (and a query, where the family has its own query projection)
    if site in ("attn_out", "mlp_out", "head_by_pos", "resid_mid") and family not in SLIDING:
        assert ONE_LAYER and {q for p in ONE_LAYER for q in p} <= {3, 6, 9}
    elif site in ("resid_pre", "head_k") or family in SLIDING:
        assert not ONE_LAYER


def test_patches_that_change_nothing_run_no_pass() -> None:
    exp, sc = counterfactual("gpt2")
    seen = passes_of(exp)
    res = exp.sweep("resid_pre", positions=[0, 1, 2], progress=False)
    assert_sweep_matches(sc, res, "resid_pre", "denoising")
    assert seen == []
    # Their readouts are the base run's, exactly (ties with it survive for rank comparisons).
    np.testing.assert_array_equal(
        res.readouts, np.broadcast_to(exp.corrupted_readouts, res.readouts.shape)
    )


FIRST_DIFFERENCE = 3  # CLEAN and CORRUPTED share <bos> and two words in every pair


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa", "gemma2"])
def test_patches_at_all_positions_start_where_clean_and_corrupted_first_differ(
    family: str,
) -> None:
    exp, sc = counterfactual(family)
    seen = passes_of(exp)
    for site, kw in (("head", {}), ("neuron", {"neurons": [3, 40]}), ("head_v", {})):
        for direction in ("denoising", "noising"):
            res = exp.sweep(site, direction=direction, progress=False, **kw)
            assert_sweep_matches(sc, res, site, direction)
    assert seen and starts_of(seen) <= {FIRST_DIFFERENCE, LENGTH - 1}
    assert FIRST_DIFFERENCE in starts_of(seen)


def test_patches_at_all_positions_of_an_ablation_start_at_position_zero() -> None:
    ref = reference_for("gpt2")
    corruption, values = _ablation_cases(pw, ref, len(CLEAN))["zero"]
    exp = pw.Experiment(engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    seen = passes_of(exp)
    res = exp.sweep("head", direction="noising", progress=False)
    assert_sweep_matches(Scenario(ref, CLEAN, ANSWERS, ablation=values), res, "head", "noising")
    # the last layer's heads reach the readout only at the last position
    assert seen == [{0}, {LENGTH - 1}]


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa", "gemma2"])
def test_attention_pattern_patches_run_every_position(family: str) -> None:
    exp, sc = counterfactual(family)
    seen = passes_of(exp)
    res = exp.sweep("head_pattern", by_pos=True, heads=[1], progress=False)
    assert_sweep_matches(sc, res, "head_pattern", "denoising")
    assert seen and starts_of(seen) == {0}


def test_reuse_is_off_for_pattern_patches() -> None:
    hooks = counterfactual("gpt2")[0].hooks
    resid = target(hooks, "resid_pre", layer=1, pos=5)
    pattern = target(hooks, "head_pattern", layer=1, head=0, pos=5)
    assert reuse_blocker([resid]) is None
    assert "pattern" in (reuse_blocker([resid, pattern]) or "")


@pytest.mark.parametrize("family", FAMILIES)
def test_confirmatory_patches_from_a_later_position(family: str) -> None:
    exp, sc = counterfactual(family)
    seen = passes_of(exp)
    comps = [c for c in _mixed_components(pw, family) if c.pos is not None and c.pos >= 4]
    comps = [c for c in comps if c.site != "head_pattern"]
    ref_comps = [Comp(c.site, c.layer, c.head, c.pos, c.neuron) for c in comps]
    for direction in ("denoising", "noising"):
        res = exp.patch(comps, direction=direction)
        assert_baselines(res, sc, f"patch {direction}")
        want = sc.patched(direction, [ref_comps]).numpy()
        assert_readouts_close(res.readouts, want, f"{family} patch {direction}")
    assert starts_of(seen) == {min(c.pos for c in comps)}


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa", "gemma2", "gptj"])
def test_gaussian_noise_from_a_later_position(family: str) -> None:
    corruption = pw.GaussianNoise(std=0.8, positions=(2, 3, 4), seed=5)
    exp = pw.Experiment(engine_model(family), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    seen = passes_of(exp)
    sc = Scenario(reference_for(family), CLEAN, ANSWERS, noise=exp.noise.float())
    for direction in ("denoising", "noising"):
        res = exp.sweep("resid_pre", direction=direction, progress=False)
        assert_sweep_matches(sc, res, "resid_pre", direction)
    # Passes start after the noised positions 2-4 too (the last positions only where the noise
    # reaches them: Gemma 2's sliding window keeps it from positions 8 and 9 of layer 1, cells
    # that change nothing and run no pass).
    assert min(starts_of(seen)) == 2
    assert max(starts_of(seen)) > 4


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_ablations_from_a_later_position(family: str) -> None:
    ref = reference_for(family)
    for name, (corruption, values) in _ablation_cases(pw, ref, len(CLEAN)).items():
        exp = pw.Experiment(
            engine_model(family), clean=CLEAN, answers=ANSWERS, corruption=corruption
        )
        seen = passes_of(exp)
        sc = Scenario(ref, CLEAN, ANSWERS, ablation=values)
        for site in ("resid_pre", "mlp_out"):
            res = exp.sweep(site, direction="noising", progress=False)
            assert_sweep_matches(sc, res, site, f"noising ({name})")
        assert max(starts_of(seen)) == LENGTH - 1


def test_circuit_from_a_later_position() -> None:
    exp, _ = counterfactual("gpt2")
    comps = [pw.Component("resid_pre", 1, pos=7), pw.Component("head_by_pos", 0, head=2, pos=5)]
    fine = exp.circuit(comps)
    passes_of(exp)
    reuse = exp.circuit(comps)
    for key, res in fine.results.items():
        assert_readouts_close(reuse.results[key].readouts, res.readouts, f"circuit {key}")


# ---- grouping --------------------------------------------------------------------------------
STARTS = [(layer, pos) for layer in range(4) for pos in range(6)] * 2


def cost_of(groups: list[list[int]], cost: BatchCost, n_pairs: int) -> float:
    total = 0.0
    for members in groups:
        layer = min(STARTS[i][0] for i in members)
        pos = min(STARTS[i][1] for i in members)
        rows = len(members) * n_pairs
        total += cost.overhead + rows * ((4 - layer) * (6 - pos) + cost.per_row)
    return total


@pytest.mark.parametrize("overhead", [0.0, 30.0, 400.0, 1e9])
@pytest.mark.parametrize("max_tokens", [12, 60, 10**6])
def test_grouping_covers_every_set_once_within_its_bounds(overhead: float, max_tokens: int) -> None:
    cost = BatchCost(overhead=overhead, per_row=2.0, max_tokens=max_tokens)
    groups = group_batches(STARTS, 2, 4, 6, cost)
    assert sorted(i for g in groups for i in g) == list(range(len(STARTS)))
    for members in groups:
        suffix = 6 - min(STARTS[i][1] for i in members)
        assert len(members) == 1 or len(members) * 2 * suffix <= max_tokens
    if overhead == 0.0:
        assert all(len({STARTS[i] for i in g}) == 1 for g in groups)
    if max_tokens == 10**6:
        one_pass = cost_of([list(range(len(STARTS)))], cost, 2)
        per_start = cost_of([[i, i + 24] for i in range(24)], cost, 2)
        assert cost_of(groups, cost, 2) <= min(one_pass, per_start) + 1e-9
    if overhead == 1e9 and max_tokens == 10**6:
        assert len(groups) == 1


def test_grouping_keeps_to_a_row_limit() -> None:
    groups = group_batches(STARTS, 2, 4, 6, BatchCost(1e9, 0.0, 10**6, max_rows=6))
    assert sorted(i for g in groups for i in g) == list(range(len(STARTS)))
    assert max(len(g) for g in groups) == 3 and len(groups) == len(STARTS) // 3


def test_grouping_merges_when_passes_cost_more_than_the_work_they_save() -> None:
    cheap = group_batches(STARTS, 1, 4, 6, BatchCost(1.0, 0.0, 10**6))
    dear = group_batches(STARTS, 1, 4, 6, BatchCost(100.0, 0.0, 10**6))
    assert len(cheap) == 24 and 1 < len(dear) < 24
    assert np.all(np.diff([min(g) for g in dear]) > 0), "passes follow the sweep's order"


@pytest.mark.parametrize("family", ["gpt2", "neox_parallel", "llama_gqa"])
def test_last_layer_outputs_before_the_last_position_read_the_base_run_exactly(
    family: str,
) -> None:
    exp, sc = counterfactual(family)
    last = exp.dims.n_layers - 1
    for site in ("head_by_pos", "mlp_out", "resid_post"):
        res = exp.sweep(site, layers=[last], progress=False)
        assert_sweep_matches(sc, res, site, "denoising")
        before = res.readouts[..., : LENGTH - 1, :, :]  # (..., position, pair, field)
        np.testing.assert_array_equal(before, np.broadcast_to(exp.corrupted_readouts, before.shape))


@pytest.mark.parametrize("family", FAMILIES)
def test_one_pair_sweeps_match_the_reference(family: str) -> None:
    """One pair: the prefix cache's rows are views of that pair, own-position layers run alone,
    and the last layer's MLP runs at the answers only."""
    exp = pw.Experiment(
        engine_model(family), clean=CLEAN[:1], corrupted=CORRUPTED[:1], answers=ANSWERS[:1]
    )
    sc = Scenario(reference_for(family), CLEAN[:1], ANSWERS[:1], corrupted=CORRUPTED[:1])
    passes_of(exp)
    for site, kw in (("resid_pre", {}), ("head_by_pos", {"positions": (0, 3, 6, 9)})):
        for direction in ("denoising", "noising"):
            res = exp.sweep(site, direction=direction, progress=False, **kw)
            assert_sweep_matches(sc, res, site, direction)
    assert bool(ONE_LAYER) == (family not in SLIDING)


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_passes_over_slices_of_the_pairs_match_the_reference(family: str) -> None:
    exp, sc = counterfactual(family)
    seen = passes_of(exp)
    exp.batch_size = 1  # one pair per pass: every pass, one-layer ones too, runs pair by pair
    for direction in ("denoising", "noising"):
        res = exp.sweep("head_by_pos", direction=direction, positions=(0, 3, 6, 9), progress=False)
        assert_sweep_matches(sc, res, "head_by_pos", direction)
    assert ONE_LAYER and len(seen) > len({frozenset(starts) for starts in seen})


@pytest.mark.parametrize("family", SLIDING)
def test_sliding_windows_as_long_as_the_prompt_pack_and_run_layers_alone(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = conftest._config(family)
    config.sliding_window = LENGTH  # every position in the window: packing is exact
    monkeypatch.setattr(conftest, "_config", lambda family: config)
    model = conftest.make_model(family)
    exp = pw.Experiment(
        pw.load_model(copy.deepcopy(model), tokenizer=make_tokenizer()),
        clean=CLEAN,
        corrupted=CORRUPTED,
        answers=ANSWERS,
    )
    sc = Scenario(Reference(model, make_tokenizer()), CLEAN, ANSWERS, corrupted=CORRUPTED)
    seen = passes_of(exp)
    for direction in ("denoising", "noising"):
        res = exp.sweep("head_by_pos", direction=direction, positions=(0, 3, 6, 9), progress=False)
        assert_sweep_matches(sc, res, "head_by_pos", direction)
    assert any(len(starts) > 1 for starts in seen) and ONE_LAYER


@pytest.mark.parametrize("family", ["gpt2", "neox_parallel", "llama_gqa", "gemma2"])
def test_the_last_layer_runs_its_mlp_at_the_answers_only(family: str) -> None:
    exp, sc = counterfactual(family)
    last = exp.dims.n_layers - 1
    down = exp.hooks.envoy(exp.hooks.block(last), "neurons")._module  # called by the MLP
    shapes: list[tuple[int, ...]] = []
    handle = down.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape[:-1]))
    try:
        res = exp.sweep("resid_pre", progress=False)
    finally:
        handle.remove()
    assert_sweep_matches(sc, res, "resid_pre", "denoising")
    rows = exp.n_pairs * res.readouts[..., 0, 0].size  # every (set, pair): at most
    patched = [shape for shape in shapes if shape[0] == 1]  # (1, answers): the patched passes
    assert patched and sum(shape[1] for shape in patched) <= rows
    assert all(shape == (exp.n_pairs, LENGTH) for shape in shapes if shape[0] != 1)


# ---- packing ---------------------------------------------------------------------------------
def test_packed_rows_hold_each_suffix_once_and_see_only_their_own_prefix() -> None:
    starts = [3, 6, 9, 0, 7]
    packing = pack(starts, LENGTH, LENGTH)
    assert packing.rows == 3 and packing.cached == 9  # sizes 10 | 7+3 | 4+1, first fit
    for i, s in enumerate(starts):
        row, slot = packing.row_of[i], packing.slot_of[i]
        np.testing.assert_array_equal(packing.position[row, slot : slot + LENGTH - s], range(s, 10))
        assert (packing.segment[row, slot : slot + LENGTH - s] == i).all()
    mask = attention_mask(packing, torch.float32)[:, 0] == 0  # (rows, slots, cached + slots)
    for row, slot in np.ndindex(packing.segment.shape):
        i, q = packing.segment[row, slot], packing.position[row, slot]
        seen = set(np.flatnonzero(mask[row, slot]))
        if i < 0:  # padding sees itself alone
            assert seen == {packing.cached + slot}
            continue
        own = {
            packing.cached + t
            for t in range(packing.segment.shape[1])
            if packing.segment[row, t] == i and packing.position[row, t] <= q
        }
        assert seen == set(range(starts[i])) | own
    rows, slots = packing.ends()
    assert (packing.position[rows, slots] == LENGTH - 1).all()


@pytest.mark.parametrize("overhead", [0.0, 30.0, 1e9])
@pytest.mark.parametrize("max_tokens", [12, 60, 10**6])
def test_bands_cover_every_set_once_within_their_bounds(overhead: float, max_tokens: int) -> None:
    cost = BatchCost(overhead=overhead, per_row=2.0, max_tokens=max_tokens, max_rows=20)
    groups = group_bands(STARTS, 2, 4, 6, cost)
    assert sorted(i for g in groups for i in g) == list(range(len(STARTS)))
    for members in groups:
        tokens = sum(2 * (6 - STARTS[i][1]) for i in members)
        assert len(members) == 1 or (tokens <= max_tokens and len(members) * 2 <= 20)
    layers = [{STARTS[i][0] for i in g} for g in groups]
    if overhead == 0.0:  # merging layers only adds work
        assert all(len(seen) == 1 for seen in layers)
    if overhead == 1e9 and max_tokens == 10**6:  # as few passes as the row limit allows
        assert len(groups) == -(-len(STARTS) * 2 // 20)


def test_bands_merge_layers_when_a_pass_costs_more_than_the_layers_it_repeats() -> None:
    cheap = group_bands(STARTS, 1, 4, 6, BatchCost(1.0, 0.0, 10**6))
    dear = group_bands(STARTS, 1, 4, 6, BatchCost(1000.0, 0.0, 10**6))
    assert len(cheap) == 4 and len(dear) == 1
