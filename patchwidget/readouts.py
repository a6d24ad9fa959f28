"""Readouts: what every patched run records per prompt pair at the answer position."""

from __future__ import annotations

from dataclasses import dataclass

import torch

READOUT_FIELDS = ("logit_correct", "logit_incorrect", "lse", "kl_clean", "kl_corrupted", "rank")


@dataclass(frozen=True)
class Baseline:
    """A baseline run's answer-position distribution, precomputed for KL divergences against it
    (not ``exp()`` of its log-probabilities in every batch): log-probabilities and probabilities
    (pairs, vocab)."""

    logprobs: torch.Tensor
    probs: torch.Tensor

    @classmethod
    def of(cls, logits: torch.Tensor) -> Baseline:
        logprobs = torch.log_softmax(logits.float(), -1)
        return cls(logprobs, logprobs.exp())

    def rows(self, index: torch.Tensor) -> Baseline:
        """The distributions of pairs ``index``: views, not copies, where every row has one pair
        (a sweep of one prompt pair)."""
        if len(index) > 1 and bool((index == index[0]).all()):
            one, n = index[:1], len(index)
            return Baseline(self.logprobs[one].expand(n, -1), self.probs[one].expand(n, -1))
        return Baseline(self.logprobs[index], self.probs[index])

    def kl_to(self, logprobs: torch.Tensor) -> torch.Tensor:
        """KL(baseline || patched) per row, in nats."""
        return (self.probs * (self.logprobs - logprobs)).sum(-1)


def compute_readouts(
    logits: torch.Tensor,
    correct: torch.Tensor,
    incorrect: torch.Tensor,
    clean: Baseline,
    corrupted: Baseline,
) -> torch.Tensor:
    """Readouts (rows, 6) from last-position logits (rows, vocab).

    ``correct``/``incorrect`` hold each row's answer token ids; ``clean`` and ``corrupted``
    hold each row's baseline distribution.
    """
    logits = logits.float()
    rows = torch.arange(logits.shape[0], device=logits.device)
    logit_correct = logits[rows, correct]
    logit_incorrect = logits[rows, incorrect]
    lse = torch.logsumexp(logits, dim=-1)
    logprobs = logits - lse[:, None]
    rank = (logits > logit_correct[:, None]).sum(dim=-1).float()
    return torch.stack(
        [
            logit_correct,
            logit_incorrect,
            lse,
            clean.kl_to(logprobs),
            corrupted.kl_to(logprobs),
            rank,
        ],
        dim=-1,
    )
