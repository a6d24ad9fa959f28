"""The widget's fast-estimate mode, kernel side: the estimate arrives first, exact values
replace it largest estimate first, and the final view equals the exact sweep."""

from __future__ import annotations

import numpy as np
import pytest
from test_widget_protocol import final, make_widget, recording_comm, replies, send  # noqa: F401

from patchwidget.widget import estimates

FIELDS = 6


def decode_estimate(meta: dict, buffer) -> dict[str, dict[str, np.ndarray]]:
    """The usual panels, then per direction the estimate's readouts and the exact-cell flags."""
    data = np.frombuffer(bytes(buffer), dtype="<f4")
    shape, n_pairs = meta["shape"], meta["n_pairs"]
    cells = int(np.prod(shape))
    size, base = cells * n_pairs * FIELDS, n_pairs * FIELDS
    dirs = meta["directions"]
    assert data.size == len(dirs) * (size + 2 * base) + len(dirs) * (size + cells)
    out, offset = {}, 0
    for d in dirs:
        out[d] = {"readouts": data[offset : offset + size].reshape(*shape, n_pairs, FIELDS)}
        offset += size + 2 * base
    for d in dirs:
        out[d]["estimate"] = data[offset : offset + size].reshape(*shape, n_pairs, FIELDS)
        out[d]["exact"] = data[offset + size : offset + size + cells].reshape(shape)
        offset += size + cells
    return out


def test_estimate_paints_first_then_exact_cells_replace_it_largest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(estimates, "PROGRESS_INTERVAL_S", 0.0)  # every pass reports
    w = make_widget(batch_size=8)  # several batches, so exact values stream in
    exp = w.experiment
    send(w, {"type": "sweep", "id": 1, "site": "head_by_pos", "direction": "denoising",
             "method": "attribution"})  # fmt: skip
    reply = final(w, 1)
    assert reply["status"] == "done" and reply["meta"]["method"] == "attribution"
    progress = replies(w, 1, "progress")
    first = decode_estimate(progress[0][0]["meta"], progress[0][1][0])["denoising"]
    estimate = exp.sweep("head_by_pos", "denoising", method="attribution")
    np.testing.assert_allclose(first["estimate"], estimate.readouts, atol=1e-6)
    np.testing.assert_array_equal(first["readouts"], first["estimate"])  # nothing exact yet
    assert first["exact"].sum() == 0
    # exact cells arrive in the order of the estimate's effect
    effect = np.abs(np.asarray(estimate.values()) - estimate.baselines()["corrupted"]).reshape(-1)
    counts = []
    for content, buffers in progress[1:]:
        flags = decode_estimate(content["meta"], buffers[0])["denoising"]["exact"].reshape(-1)
        n = int(flags.sum())
        counts.append(n)
        assert set(np.flatnonzero(flags)) == set(np.argsort(-effect, kind="stable")[:n])
    assert len(counts) >= 1 and counts == sorted(counts)
    last = decode_estimate(reply["meta"], replies(w, 1, "result")[0][1][0])["denoising"]
    assert last["exact"].all()
    exact = exp.sweep("head_by_pos", "denoising", progress=False)
    np.testing.assert_allclose(last["readouts"], exact.readouts, atol=1e-5)
    np.testing.assert_allclose(last["estimate"], estimate.readouts, atol=1e-6)


def test_estimate_view_rejects_an_unknown_method_and_copies_estimate_code() -> None:
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "noising", "method": "fast"})
    reply = final(w, 1)
    assert reply["type"] == "error" and reply["field"] == "method"
    view = {"kind": "sweep", "site": "head", "direction": "noising", "method": "attribution"}
    send(w, {"type": "copy_code", "id": 2, "view": view, "metric": "logit_diff"})
    assert 'method="attribution"' in final(w, 2)["code"]
