"""What a forward pass costs, from the model's shape and the device's kind: never timed, so
the same sweep always runs in the same passes.

Costs are in token-layers (one position of one row through one layer), so they compare directly
with the work :func:`~patchwidget.batching.group_batches` and
:func:`~patchwidget.batching.group_bands` count.
"""

from __future__ import annotations

import torch

from .architectures import ModelDims
from .batching import BatchCost

# CPU, one thread, GPT-2-small shape (benchmarks/README.md, "Cost model"): a block costs ~0.12 ms
# per position in passes of 60-240 positions and ~1.5 ms however few positions it runs (reading
# its weights); a pass costs ~12 ms besides (the vocabulary projection's weights, nnsight's
# trace). Seconds per token-layer grow with its multiply-adds, so these fixed costs, counted in
# token-layers, shrink as models grow.
CPU_SECONDS_PER_MAC = 0.12e-3 / 7.2e6
CPU_PASS_SECONDS = 12e-3
CPU_LAYER_SECONDS = 1.5e-3
# CPU: a pass's activations (residual stream + MLP hidden, per position) beyond which it gets no
# cheaper per token (one thread): ~270 positions of GPT-2 small.
CPU_BEST_BYTES = 4 * 2**20
# GPU: a pass is bound by kernel launches and syncs until it is large. On an H100 one GPT-2-small
# row cost ~7 ms and a token-layer ~0.5 us (notes/performance.md): a pass's fixed cost is worth
# ~16k token-layers at d_model 768, fewer on wider models (a token-layer's work grows as d^2).
GPU_OVERHEAD_AT_768 = 16384.0


def token_layer_macs(dims: ModelDims, length: int) -> int:
    """Multiply-adds of one position through one layer (projections, MLP, attention)."""
    q = dims.n_heads * dims.d_head
    kv = dims.n_kv_heads * dims.d_head
    return dims.d_model * (2 * q + 2 * kv) + 2 * dims.d_model * dims.d_mlp + 2 * length * q


def answer_logits_cost(dims: ModelDims, length: int) -> float:
    """One row's answer-position logits, in token-layers."""
    return dims.vocab_size * dims.d_model / token_layer_macs(dims, length)


def batch_cost(
    dims: ModelDims, length: int, device: torch.device, max_tokens: int, max_rows: int | None
) -> BatchCost:
    """The cost model of passes on ``device``, at most ``max_tokens`` rows x positions each
    (a memory bound) and ``max_rows`` rows."""
    per_row = answer_logits_cost(dims, length)
    if device.type != "cpu":
        overhead = GPU_OVERHEAD_AT_768 * (768 / dims.d_model) ** 2
        return BatchCost(overhead, per_row, max_tokens, max_rows)
    token_layer = token_layer_macs(dims, length) * CPU_SECONDS_PER_MAC
    best_tokens = CPU_BEST_BYTES // (4 * (dims.d_model + dims.d_mlp))
    return BatchCost(
        overhead=CPU_PASS_SECONDS / token_layer,
        per_row=per_row,
        max_tokens=max(length, min(max_tokens, best_tokens)),
        max_rows=max_rows,
        layer_overhead=CPU_LAYER_SECONDS / token_layer,
    )


def memory_tokens(
    dims: ModelDims, length: int, device: torch.device, dtype: torch.dtype, budget: int | None
) -> int:
    """Rows x positions of one pass that fit a memory budget (bytes; default: half the free GPU
    memory, or 512 MiB on a CPU)."""
    elem = torch.finfo(dtype).bits // 8
    per_token = elem * (10 * dims.d_model + 3 * dims.d_mlp + 4 * dims.n_heads * length)
    per_token += 16 * dims.vocab_size // length  # each row's logits and readouts
    per_token += (elem + 1) * 2 * length  # a packed pass's attention mask, and its boolean form
    if budget is None and device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // 2
    budget = budget or 512 * 2**20
    return max(length, budget // per_token)


def memory_rows(dims: ModelDims, device: torch.device, budget: int | None) -> int:
    """Rows of one pass whose answer-position logits and readouts (logits, log-probabilities and
    both baselines' rows: ~8 floats per vocabulary entry) fit a memory budget, however few
    positions the pass computes."""
    if budget is None and device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // 2
    return max(1, (budget or 512 * 2**20) // (32 * dims.vocab_size))
