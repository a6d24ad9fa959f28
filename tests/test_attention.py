"""exp.attention against the hook-based reference's captured patterns."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ANSWERS, CLEAN, CORRUPTED, engine_model, reference_for
from reference import Scenario

import patchwidget as pw


@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_attention_patterns_match_the_reference(family: str) -> None:
    exp = pw.Experiment(engine_model(family), clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS)
    scenario = Scenario(reference_for(family), CLEAN, ANSWERS, corrupted=CORRUPTED)
    for layer, head in ((0, 2), (1, 3)):
        att = exp.attention(layer, head)
        clean = scenario.clean_trace["pattern", layer][:, head].numpy()
        corrupted = scenario.corrupted_trace["pattern", layer][:, head].numpy()
        np.testing.assert_allclose(att.clean.data, clean, atol=1e-5)
        np.testing.assert_allclose(att.corrupted.data, corrupted, atol=1e-5)
        np.testing.assert_allclose(
            att.pattern("difference").data, (clean - corrupted).mean(0), atol=1e-5
        )
        np.testing.assert_allclose(att.pattern("corrupted", pair=2).data, corrupted[2], atol=1e-5)
        assert att.clean.axes == ("pair", "dest", "src")
        assert att.pattern().labels["src"][4] == "4: w40/w41"
        assert att.corrupted_tokens[0][4] == "w41"
        assert not np.allclose(clean, corrupted, atol=1e-3)
    with pytest.raises(ValueError, match="pair must be None"):
        att.pattern("clean", pair=3)
    with pytest.raises(ValueError, match="which must be one of"):
        att.pattern("both")
    with pytest.raises(ValueError, match="out of range"):
        exp.attention(0, 4)
