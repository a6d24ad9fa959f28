"""Readouts: what every patched run records per prompt pair at the answer position."""

from __future__ import annotations

from dataclasses import dataclass

import torch

READOUT_FIELDS = ("logit_correct", "logit_incorrect", "lse", "kl_clean", "kl_corrupted", "rank")


@dataclass(frozen=True)
class Baseline:
    """A baseline run's answer-position distribution, precomputed for KL divergences against it:
    log-probabilities and probabilities (pairs, vocab), and per pair ``sum p log p`` and
    ``sum p`` (which float rounding keeps from being exactly 1)."""

    logprobs: torch.Tensor
    probs: torch.Tensor
    neg_entropy: torch.Tensor
    mass: torch.Tensor

    @classmethod
    def of(cls, logits: torch.Tensor) -> Baseline:
        logprobs = torch.log_softmax(logits.float(), -1)
        probs = logprobs.exp()
        return cls(logprobs, probs, (probs * logprobs).sum(-1), probs.sum(-1))

    def rows(self, index: torch.Tensor) -> Baseline:
        """The distributions of pairs ``index``: views, not copies, where every row has one pair
        (a sweep of one prompt pair)."""
        if len(index) > 1 and bool((index == index[0]).all()):
            one, n = index[:1], len(index)
            return Baseline(
                self.logprobs[one].expand(n, -1),
                self.probs[one].expand(n, -1),
                self.neg_entropy[one].expand(n),
                self.mass[one].expand(n),
            )
        return Baseline(
            self.logprobs[index], self.probs[index], self.neg_entropy[index], self.mass[index]
        )

    def kl_to(self, logits: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        """KL(baseline || softmax(logits)) per row, in nats, from the logits and their
        log-normaliser: ``sum p log p - sum p logits + lse sum p``, one pass over the logits
        (a matrix-vector product where every row has one pair)."""
        if len(self.probs) > 1 and self.probs.stride(0) == 0:
            dot = logits @ self.probs[0]
        else:
            dot = (logits * self.probs).sum(-1)
        return self.neg_entropy - dot + lse * self.mass


# On a CPU, readouts run over chunks of about this many bytes of logits, so that each chunk
# stays in cache across its reductions (~4x faster than whole-matrix passes at GPT-2's vocabulary).
CPU_CHUNK_BYTES = 2 * 2**20


def compute_readouts(
    logits: torch.Tensor,
    correct: torch.Tensor,
    incorrect: torch.Tensor,
    clean: Baseline,
    corrupted: Baseline,
    pairs: torch.Tensor,
) -> torch.Tensor:
    """Readouts (rows, 6) from last-position logits (rows, vocab).

    ``correct``/``incorrect`` hold each row's answer token ids; row ``i`` is compared with the
    baseline distributions ``clean`` and ``corrupted`` of pair ``pairs[i]``.
    """
    logits = logits.float()
    size = max(1, len(logits))
    if logits.device.type == "cpu":
        size = max(1, CPU_CHUNK_BYTES // (4 * logits.shape[-1]))
    parts = []
    for lo in range(0, len(logits), size):
        part = slice(lo, lo + size)
        pair = pairs[part]
        parts.append(
            _readouts(
                logits[part],
                correct[part],
                incorrect[part],
                clean.rows(pair.to(clean.probs.device)),
                corrupted.rows(pair.to(corrupted.probs.device)),
            )
        )
    return torch.cat(parts) if parts else logits.new_zeros(0, len(READOUT_FIELDS))


def _readouts(
    logits: torch.Tensor,
    correct: torch.Tensor,
    incorrect: torch.Tensor,
    clean: Baseline,
    corrupted: Baseline,
) -> torch.Tensor:
    rows = torch.arange(logits.shape[0], device=logits.device)
    logit_correct = logits[rows, correct]
    logit_incorrect = logits[rows, incorrect]
    lse = torch.logsumexp(logits, dim=-1)
    rank = (logits > logit_correct[:, None]).sum(dim=-1).float()
    return torch.stack(
        [
            logit_correct,
            logit_incorrect,
            lse,
            clean.kl_to(logits, lse),
            corrupted.kl_to(logits, lse),
            rank,
        ],
        dim=-1,
    )
