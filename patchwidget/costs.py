"""What a forward pass costs on this model and device: timed on a CPU, reasoned on a GPU.

Costs are in token-layers (one position of one row through one layer), so they compare directly
with the work :func:`~patchwidget.batching.group_batches` counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .architectures import ModelDims
from .batching import BatchCost

# Timing a pass of (rows, first layer, first position) with no patches, in seconds.
Timer = Callable[[int, int, int], float]

# CPU: a pass's activations (residual stream + MLP hidden, per position) beyond which it gets no
# cheaper per token (one thread): ~550 positions of GPT-2 small (32-64 rows of 15 were best in
# notes/performance.md), ~6500 of the demo model (4096 beat 1024 and 13107 in a neuron sweep;
# benchmarks/README.md).
CPU_BEST_BYTES = 8 * 2**20
# GPU: a pass is bound by kernel launches and syncs until it is large. On an H100 one GPT-2-small
# row cost ~7 ms and a token-layer ~0.5 us (notes/performance.md): a pass's fixed cost is worth
# ~16k token-layers at d_model 768, fewer on wider models (a token-layer's work grows as d^2).
GPU_OVERHEAD_AT_768 = 16384.0
CALIBRATION_TOKEN_LAYERS = 2048  # work of the timed full pass


def token_layer_macs(dims: ModelDims, length: int) -> int:
    """Multiply-adds of one position through one layer (projections, MLP, attention)."""
    q = dims.n_heads * dims.d_head
    kv = dims.n_kv_heads * dims.d_head
    return dims.d_model * (2 * q + 2 * kv) + 2 * dims.d_model * dims.d_mlp + 2 * length * q


def answer_logits_cost(dims: ModelDims, length: int) -> float:
    """One row's answer-position logits, in token-layers."""
    return dims.vocab_size * dims.d_model / token_layer_macs(dims, length)


def batch_cost(
    dims: ModelDims,
    length: int,
    device: torch.device,
    max_tokens: int,
    timer: Timer,
    max_rows: int | None = None,
) -> BatchCost:
    """The cost model of passes on ``device``, at most ``max_tokens`` rows x positions each
    (a memory bound). On a local CPU the fixed cost per pass and per layer is timed: one-row,
    last-position passes of one and of every layer against a full pass; fastest of a few tries
    each (a shared machine only ever makes a pass slower). The timed passes keep to
    ``max_rows`` rows (the user's ``batch_size`` holds for them too)."""
    per_row = answer_logits_cost(dims, length)
    if device.type != "cpu":
        overhead = GPU_OVERHEAD_AT_768 * (768 / dims.d_model) ** 2
        return BatchCost(overhead, per_row, max_tokens)
    rows = max(1, min(max_tokens // length, CALIBRATION_TOKEN_LAYERS // (length * dims.n_layers)))
    rows = min(rows, max_rows or rows)
    n = dims.n_layers
    small = min(timer(1, n - 1, length - 1) for _ in range(5))
    deep = min(timer(1, 0, length - 1) for _ in range(3))
    full = min(timer(rows, 0, 0) for _ in range(2))
    small_work, deep_work = 1 + per_row, n + per_row
    full_work = rows * (n * length + per_row)
    per_token_layer = max(full - deep, 1e-9) / (full_work - deep_work)
    # A pass's fixed cost grows with the layers it runs (nnsight's hooks, module calls).
    extra = (deep - small) / per_token_layer - (deep_work - small_work)
    per_layer = max(0.0, extra) / max(1, n - 1)
    overhead = max(0.0, small / per_token_layer - small_work - per_layer)
    best_tokens = CPU_BEST_BYTES // (4 * (dims.d_model + dims.d_mlp))
    return BatchCost(overhead, per_row, min(max_tokens, best_tokens), layer_overhead=per_layer)


def memory_tokens(
    dims: ModelDims, length: int, device: torch.device, dtype: torch.dtype, budget: int | None
) -> int:
    """Rows x positions of one pass that fit a memory budget (bytes; default: half the free GPU
    memory, or 512 MiB on a CPU)."""
    elem = torch.finfo(dtype).bits // 8
    per_token = elem * (10 * dims.d_model + 3 * dims.d_mlp + 4 * dims.n_heads * length)
    per_token += 16 * dims.vocab_size // length  # each row's logits and readouts
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


def timed(run: Callable[[], object], device: torch.device) -> float:
    """Seconds ``run`` takes, synchronised on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    begin = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - begin
