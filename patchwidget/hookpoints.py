"""Hook points: where a site's activation is read and written in one decoder block.

A hook point's tensor is viewed as units ``(batch, pos, unit, width)`` so that one boolean mask
over ``(batch, pos, unit)`` expresses any set of patches (positions x heads/neurons).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any

import torch

from .architectures import QKV_PER_HEAD, QKV_SEPARATE, QKV_SPLIT, Architecture, ModelDims
from .units import from_units, to_units

# Forward order inside a block; nnsight needs modules touched in this order.
POINT_ORDER = (
    "block_in",
    "q",
    "k",
    "v",
    "qkv",
    "pattern",
    "z",
    "attn_contrib",
    "neurons",
    "mlp_contrib",
    "block_out",
)
RESID_MID = "resid_mid"  # virtual: patched through the attention contribution
Key = tuple[str, int]  # (hook point, layer)

_READ_INPUT = {"block_in", "z", "neurons"}


@dataclass(frozen=True)
class Target:
    """One hook-point unit of one layer, at some positions (None = all)."""

    point: str
    layer: int
    unit: int = 0
    positions: tuple[int, ...] | None = None


class HookPoints:
    """Reads, writes and reshapes hook-point tensors of one architecture through nnsight."""

    def __init__(self, model: Any, arch: Architecture, dims: ModelDims) -> None:
        self.model = model
        self.arch = arch
        self.dims = dims
        self._pattern_call: str | None = None

    def n_units(self, point: str) -> int:
        d = self.dims
        if point in ("q", "z", "pattern"):
            return d.n_heads
        if point in ("k", "v"):
            return d.n_kv_heads
        if point == "qkv":
            return d.n_heads + 2 * d.n_kv_heads
        if point == "neurons":
            return d.d_mlp
        return 1

    def head_part(self, part: str, head: int) -> tuple[str, int]:
        """The (point, unit) of a head's q, k or v."""
        index = "qkv".index(part)
        layout, d = self.arch.qkv_layout, self.dims
        if layout == QKV_SEPARATE:
            return part, head
        if layout == QKV_SPLIT:
            return "qkv", (0, d.n_heads, d.n_heads + d.n_kv_heads)[index] + head
        if layout == QKV_PER_HEAD:
            return "qkv", 3 * head + index
        raise ValueError(f"unknown qkv layout {layout!r}")

    # nnsight access -----------------------------------------------------------------------
    def embed(self) -> Any:
        return _path(self.model, self.arch.embed)

    def unembed(self) -> Any:
        return _path(self.model, self.arch.unembed)

    def block(self, layer: int) -> Any:
        return _path(self.model, self.arch.layers)[layer]

    def envoy(self, block: Any, point: str) -> Any:
        """The nnsight envoy whose input or output holds a hook point of ``block``."""
        arch = self.arch
        if point in ("block_in", "block_out"):
            return block
        if point == "attn_contrib":
            return _path(block, arch.attn_contribution)
        if point == "mlp_contrib":
            return _path(block, arch.mlp_contribution)
        if point == "z":
            return _path(block, arch.attn_out_proj)
        if point == "neurons":
            return _path(block, arch.mlp_down_proj)
        attn = _path(block, arch.attn)
        if point == "qkv":
            return _path(attn, arch.qkv[0])
        if point in ("q", "k", "v"):
            return _path(attn, arch.qkv["qkv".index(point)])
        if point == "pattern":
            call = getattr(attn.source, self.pattern_call())
            return call.source.nn_functional_softmax_0
        raise ValueError(f"unknown hook point {point!r}")

    def pattern_call(self) -> str:
        """Name of the attention-function call inside the attention module's source.

        The first call (outside any trace) runs one tiny trace that reads every layer's
        pattern: nnsight instruments the nested attention source when it is first read, and
        that must not happen inside a patching trace, where q/k/v of the same layer may already
        have been touched and the attention module is past the point of instrumenting.
        """
        if self._pattern_call is None:
            self._pattern_call = self.pattern_call_name()
            device = next(self.model._module.parameters()).device
            with (
                torch.no_grad(),
                self.model.trace(torch.zeros(1, 2, dtype=torch.long, device=device)),
            ):
                for layer in range(self.dims.n_layers):
                    _ = self.envoy(self.block(layer), "pattern").output
        return self._pattern_call

    def pattern_call_name(self) -> str:
        """Name of the attention-function call, read from the source without running a trace."""
        attn = _path(self.block(0), self.arch.attn)
        calls = [n for n in attn.source.names if n.startswith("attention_interface_")]
        if not calls:
            raise ValueError("this attention module has no attention-function call to patch")
        return calls[-1]

    def per_position(self, layer: int) -> list[Any]:
        """Envoys of a block, in call order, whose output at a position depends only on their
        first argument there: the attention's output projection and the MLP, where the family
        names its MLP (``Architecture.mlp``; none otherwise)."""
        if self.arch.mlp is None:
            return []
        block = self.block(layer)
        return [_path(block, self.arch.attn_out_proj), _path(block, self.arch.mlp)]

    def attention(self, layer: int) -> Any:
        """The attention module's envoy of a layer."""
        return _path(self.block(layer), self.arch.attn)

    def read(self, envoy: Any, point: str) -> tuple[Any, torch.Tensor]:
        """(raw value, tensor) of a hook point; raw keeps tuple outputs for writing back."""
        raw = envoy.input if point in _READ_INPUT else envoy.output
        return raw, raw[0] if isinstance(raw, tuple) else raw

    def write(self, envoy: Any, point: str, raw: Any, tensor: torch.Tensor) -> None:
        value = (tensor, *raw[1:]) if isinstance(raw, tuple) else tensor
        if point in _READ_INPUT:
            envoy.input = value
        else:
            envoy.output = value

    # unit views ---------------------------------------------------------------------------
    def to_units(self, point: str, x: torch.Tensor) -> torch.Tensor:
        return to_units(point, x, self.n_units(point))

    def from_units(self, point: str, u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return from_units(point, u, like)


def _path(envoy: Any, path: str) -> Any:
    return reduce(getattr, path.split("."), envoy)
