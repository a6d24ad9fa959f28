"""On the demo model, the path walked back from the logits is the one the workshop describes:
logits <- MLP L1 @14 <- L1H3 (its values at S2). Values measured with 16 flip_s2 pairs."""

from __future__ import annotations

import numpy as np

import patchwidget as pw


def _values(res: pw.PatchResult) -> np.ndarray:
    return np.asarray(res.values("logit_diff", normalized=True))


def test_walking_back_from_the_logits_finds_mlp1_then_l1h3() -> None:
    exp = pw.Experiment(pw.demo_model(), **pw.demo_prompts("flip_s2", n=16))
    # step 1: the direct effect on the logits sits in the MLPs at the last position
    mlps = _values(exp.sweep("mlp_out", receivers=["logits"], progress=False))
    assert np.unravel_index(np.abs(mlps).argmax(), mlps.shape) == (1, 14)
    np.testing.assert_allclose(mlps[1:, 14], [0.52, 0.28], atol=0.01)
    heads = _values(exp.sweep("head", receivers=["logits"], progress=False))
    assert abs(heads[1, 3] - 0.17) < 0.01  # L1H3's direct path: a small part of its 0.89
    # step 2: what feeds MLP 1's input at position 14 is L1H3
    mlp1 = pw.Component("mlp_in", layer=1, pos=14)
    feeds = _values(exp.sweep("head", receivers=[mlp1], progress=False))
    assert feeds.shape == (2, 4)  # only layers 0 and 1 come before MLP 1
    assert np.unravel_index(np.abs(feeds).argmax(), feeds.shape) == (1, 3)
    assert abs(feeds[1, 3] - 0.54) < 0.01 and abs(feeds[1, 2] - 0.08) < 0.01
    # step 3: nothing before it feeds L1H3's query or key; MLP 0 at S2 feeds its values a little
    for part, want in (("head_q", 0.0), ("head_k", 0.01), ("head_v", 0.15)):
        receiver = [pw.Component(part, layer=1, head=3)]
        by_mlp0 = _values(exp.sweep("mlp_out", layers=[0], receivers=receiver, progress=False))
        assert abs(by_mlp0[0, 10] - want) < 0.01, part
        assert np.abs(np.delete(by_mlp0[0], 10)).max() < 0.01, part
        by_heads = _values(exp.sweep("head", layers=[0], receivers=receiver, progress=False))
        assert np.abs(by_heads).max() < 0.01, part
    # it looks at S2 in both prompts
    att = exp.attention(1, 3)
    assert att.pattern("clean").data[14].argmax() == 10
    assert att.pattern("clean").data[14, 10] > 0.98
    assert abs(att.pattern("difference").data[14, 10]) < 0.01
    # the three routes from L1H3 to the answer carry its whole effect
    L1H3 = pw.Component("head", layer=1, head=3)
    routes = [pw.Path(L1H3, mlp1), pw.Path(L1H3, pw.Component("mlp_in", 2, pos=14))]
    routes.append(pw.Path(L1H3, "logits"))
    for direction, want in (("denoising", 0.88), ("noising", 0.15)):
        paths = _values(exp.patch_paths(routes, direction)).item()
        node = _values(exp.patch([L1H3], direction)).item()
        assert abs(paths - want) < 0.01 and abs(paths - node) < 0.02, direction
