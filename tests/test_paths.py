"""Path patching against the freeze-and-re-run reference (tests/path_reference.py), identities,
and errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import ANSWERS, CLEAN, CORRUPTED, engine_model, reference_for
from path_reference import Receiver, path_patched
from reference import Comp, Scenario

import patchwidget as pw

ATOL = 1e-4
PATH_FAMILIES = ("gpt2", "llama_gqa")
POSITIONS = (3, 7, 9)
# receivers (reference, engine) and the sender layers that reach them
CASES = {
    "q": ([Receiver("q", 1, head=1)], [pw.Component("head_q", 1, head=1)], (0,)),
    "k_at_pos": (
        [Receiver("k", 1, head=1, pos=7)], [pw.Component("head_k", 1, head=1, pos=7)], (0,)
    ),
    "v": ([Receiver("v", 1, head=0)], [pw.Component("head_v", 1, head=0)], (0,)),
    "mlp_same_layer": ([Receiver("mlp", 0, pos=9)], [pw.Component("mlp_in", 0, pos=9)], (0,)),
    "mlp": ([Receiver("mlp", 1)], [pw.Component("mlp_in", 1)], (0,)),
    "logits": ([Receiver("logits")], ["logits"], (0, 1)),
    "several": (
        [Receiver("q", 1, head=2), Receiver("v", 1, head=1, pos=9), Receiver("logits")],
        [pw.Component("head_q", 1, head=2), pw.Component("head_v", 1, head=1, pos=9), "logits"],
        (0,),
    ),
}  # fmt: skip


@functools.cache
def _experiment(family: str) -> pw.Experiment:
    return pw.Experiment(engine_model(family), clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS)


@functools.cache
def _scenario(family: str) -> Scenario:
    return Scenario(reference_for(family), CLEAN, ANSWERS, corrupted=CORRUPTED)


def _senders(site: str, layers: tuple[int, ...], n_heads: int) -> list[Comp]:
    if site == "head":
        return [Comp("head", layer, head=h) for layer in layers for h in range(n_heads)]
    if site == "head_by_pos":
        return [
            Comp("head_by_pos", layer, head=h, pos=p)
            for layer in layers
            for h in range(n_heads)
            for p in POSITIONS
        ]
    return [Comp(site, layer, pos=p) for layer in layers for p in POSITIONS]


@pytest.mark.parametrize("family", PATH_FAMILIES)
@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("case", list(CASES))
def test_path_sweeps_match_the_reference(family: str, direction: str, case: str) -> None:
    ref_receivers, receivers, layers = CASES[case]
    exp, scenario = _experiment(family), _scenario(family)
    sites = ("head", "head_by_pos", "attn_out", "mlp_out")
    if case == "mlp_same_layer":
        sites = ("head", "attn_out")  # an MLP does not feed its own input
    for site in sites:
        res = exp.sweep(
            site,
            direction=direction,
            receivers=receivers,
            layers=layers,
            positions=None if site == "head" else POSITIONS,
            progress=False,
        )
        got = torch.from_numpy(res.readouts.reshape(-1, *res.readouts.shape[-2:]))
        senders = _senders(site, layers, exp.dims.n_heads)
        assert got.shape[0] == len(senders)
        for cell, sender in zip(got, senders, strict=True):
            want = path_patched(scenario, direction, sender, ref_receivers)
            torch.testing.assert_close(
                cell.double(), want, atol=ATOL, rtol=1e-5, msg=f"{site} {sender}"
            )
        assert res.metadata["receivers"] == [pw.paths.receiver_label(r) for r in receivers]
        base = exp.corrupted_readouts if direction == "denoising" else exp.clean_readouts
        assert not np.allclose(res.readouts, np.broadcast_to(base, res.readouts.shape), atol=1e-4)
        if case not in ("logits", "several"):  # a path is not the whole effect
            kw = {"layers": layers, "positions": None if site == "head" else POSITIONS}
            ordinary = exp.sweep(site, direction=direction, progress=False, **kw).readouts
            assert not np.allclose(res.readouts, ordinary, atol=1e-4)


def _downstream(exp: pw.Experiment) -> list:
    d = exp.dims
    heads = [
        pw.Component(site, 1, head=h)
        for site, n in (("head_q", d.n_heads), ("head_k", d.n_kv_heads), ("head_v", d.n_kv_heads))
        for h in range(n)
    ]
    return [*heads, pw.Component("mlp_in", 0), pw.Component("mlp_in", 1), "logits"]


@pytest.mark.parametrize("family", PATH_FAMILIES)
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_identities(family: str, direction: str) -> None:
    exp = _experiment(family)
    base = exp.corrupted_readouts if direction == "denoising" else exp.clean_readouts
    kw = {"direction": direction, "progress": False}
    for site in ("head", "attn_out"):
        ordinary = exp.sweep(site, layers=[0], **kw).readouts
        everything = exp.sweep(site, layers=[0], receivers=_downstream(exp), **kw).readouts
        np.testing.assert_allclose(everything, ordinary, atol=1e-5, err_msg=site)
        nothing = exp.sweep(site, layers=[0], receivers=[], **kw).readouts
        np.testing.assert_allclose(nothing, np.broadcast_to(base, nothing.shape), atol=1e-5)
        assert not np.allclose(ordinary, np.broadcast_to(base, ordinary.shape), atol=1e-3)
    last = exp.dims.n_layers - 1
    ordinary = exp.sweep("mlp_out", layers=[last], **kw).readouts
    direct = exp.sweep("mlp_out", layers=[last], receivers=["logits"], **kw).readouts
    np.testing.assert_allclose(direct, ordinary, atol=1e-5)
    components = [pw.Component("head", 0, head=1), pw.Component("mlp_out", 0, pos=9)]
    together = exp.patch(components, direction, receivers=[*_downstream(exp)[:-2], "logits"])
    # the head also reaches MLP 0; leave that edge out and the result must change
    whole = exp.patch(components, direction, receivers=_downstream(exp))
    np.testing.assert_allclose(whole.readouts, exp.patch(components, direction).readouts, atol=1e-5)
    assert not np.allclose(together.readouts, whole.readouts, atol=1e-4)


@pytest.mark.parametrize("family", PATH_FAMILIES)
def test_patch_paths_gives_each_receiver_its_own_senders(family: str) -> None:
    """Edges with different senders: each receiver sees only its own sender patched; the same
    as patching each edge alone when the receivers cannot influence each other."""
    exp, scenario = _experiment(family), _scenario(family)
    a, b = pw.Component("head", 0, head=0), pw.Component("head", 0, head=3)
    res = exp.patch_paths(
        [pw.Path(a, pw.Component("head_q", 1, head=2)), pw.Path(b, "logits")], "denoising"
    )
    # reference: head 0 -> q of L1 H2 only, head 3 -> logits only
    ids = scenario.corrupted_ids
    from path_reference import _receiving, delta

    da = delta(scenario, "denoising", Comp("head", 0, head=0))
    db = delta(scenario, "denoising", Comp("head", 0, head=3))
    with (
        _receiving(scenario.ref, da, [Receiver("q", 1, head=2)], None),
        _receiving(scenario.ref, db, [Receiver("logits")], None),
    ):
        want = scenario.readouts(scenario.ref.model(input_ids=ids).logits[:, -1].float())[0]
    torch.testing.assert_close(torch.from_numpy(res.readouts[0]).double(), want, atol=ATOL, rtol=0)
    assert res.metadata["receivers"] == ["head_q L1 H2 ← head L0 H0", "logits ← head L0 H3"]


def test_bad_senders_and_receivers_say_how_to_fix() -> None:
    exp = _experiment("gpt2")
    with pytest.raises(ValueError, match="is not a receiver"):
        exp.sweep("head", receivers=[pw.Component("resid_pre", 1)])
    with pytest.raises(ValueError, match="sends from head, head_by_pos, attn_out, mlp_out"):
        exp.sweep("resid_pre", receivers=["logits"])
    with pytest.raises(ValueError, match="must come before its receivers"):
        exp.sweep("head", receivers=[pw.Component("head_q", 1, head=0)], layers=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        exp.sweep("head", receivers=[pw.Component("head_q", 1, head=9)])
    with pytest.raises(ValueError, match="cannot reach"):
        exp.patch_paths([pw.Path(pw.Component("mlp_out", 1), pw.Component("mlp_in", 1))])
    res = exp.sweep("head", receivers=[pw.Component("head_q", 1, head=0)], progress=False)
    assert res.coords["layer"] == (0,)  # layers=None: the layers that reach a receiver
