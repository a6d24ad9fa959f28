"""Readouts: what every patched run records per prompt pair at the answer position."""

from __future__ import annotations

import torch

READOUT_FIELDS = ("logit_correct", "logit_incorrect", "lse", "kl_clean", "kl_corrupted", "rank")


def compute_readouts(
    logits: torch.Tensor,
    correct: torch.Tensor,
    incorrect: torch.Tensor,
    clean_logprobs: torch.Tensor,
    corrupted_logprobs: torch.Tensor,
) -> torch.Tensor:
    """Readouts (rows, 6) from last-position logits (rows, vocab).

    ``correct``/``incorrect`` hold each row's answer token ids; ``clean_logprobs`` and
    ``corrupted_logprobs`` hold each row's baseline log-probabilities (rows, vocab).
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
            _kl(clean_logprobs.float(), logprobs),
            _kl(corrupted_logprobs.float(), logprobs),
            rank,
        ],
        dim=-1,
    )


def _kl(reference_logprobs: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """KL(reference || patched) per row, in nats."""
    return (reference_logprobs.exp() * (reference_logprobs - logprobs)).sum(dim=-1)
