"""Readouts of many rows (over chunks of rows on a CPU) against their float64 definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchwidget.readouts import CPU_CHUNK_BYTES, Baseline, compute_readouts


def definitions(logits: torch.Tensor, row: int, clean: torch.Tensor, corrupted: torch.Tensor):
    x = logits[row].double()
    logp = torch.log_softmax(x, -1)

    def kl(base: torch.Tensor) -> float:
        p = torch.softmax(base.double(), -1)
        return float((p * (torch.log(p) - logp)).sum())

    return x, float(torch.logsumexp(x, -1)), kl(clean), kl(corrupted)


@pytest.mark.parametrize("n_pairs", [1, 3])
def test_readouts_over_chunks_of_rows_match_their_definitions(n_pairs: int) -> None:
    vocab = 5000
    per_chunk = CPU_CHUNK_BYTES // (4 * vocab)
    gen = torch.Generator().manual_seed(0)
    n_rows = 2 * per_chunk + 7  # three chunks, the last one short
    logits = torch.randn(n_rows, vocab, generator=gen) * 4
    clean, corrupted = (torch.randn(n_pairs, vocab, generator=gen) * 4 for _ in range(2))
    pairs = torch.randint(0, n_pairs, (n_rows,), generator=gen)
    correct = torch.randint(0, vocab, (n_rows,), generator=gen)
    incorrect = torch.randint(0, vocab, (n_rows,), generator=gen)
    got = compute_readouts(
        logits, correct, incorrect, Baseline.of(clean), Baseline.of(corrupted), pairs
    ).numpy()
    assert got.shape == (n_rows, 6)
    for row in range(n_rows):
        pair = int(pairs[row])
        x, lse, kl_clean, kl_corrupted = definitions(logits, row, clean[pair], corrupted[pair])
        right, wrong = int(correct[row]), int(incorrect[row])
        want = [x[right], x[wrong], lse, kl_clean, kl_corrupted, int((x > x[right]).sum())]
        np.testing.assert_allclose(got[row], np.asarray(want, dtype=np.float64), atol=2e-4)
        assert got[row, 5] == want[5], "ranks are counts: exact"


def test_no_rows_give_no_readouts() -> None:
    base = Baseline.of(torch.zeros(1, 10))
    empty = torch.zeros(0, dtype=torch.long)
    got = compute_readouts(torch.zeros(0, 10), empty, empty, base, base, empty)
    assert got.shape == (0, 6)
