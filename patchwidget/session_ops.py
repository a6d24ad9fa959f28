"""The operations of a remote request (see ``remote.py``), in plain torch.

Remote requests ship this module by value (``nnsight.register``): it imports nothing the server
lacks, and it refers only to torch and the other modules shipped by value (``units``,
``ablations``, ``readouts``). ``store`` holds a request's values on the server between its traces.
"""

from __future__ import annotations

from typing import Any

import torch

from .ablations import combine_sources
from .readouts import Baseline, compute_readouts
from .units import from_units, mask_of, patch_units, to_units


def run_steps(spec: dict[str, Any], store: dict[str, Any], ids: torch.Tensor) -> dict[Any, Any]:
    """Inside a trace: add the noise, patch and read the hook points of ``spec["steps"]`` in
    forward order; returns the captured unit views."""
    if spec["noise"] is not None:
        name, rows = spec["noise"]
        noise = store[name][rows]
        clean = spec["embed"].output
        spec["embed"].output = clean + noise.to(clean.device, clean.dtype)
    saved: dict[Any, Any] = {}
    x_in = None
    for key, envoy, path, io, view, n_units, patched, keep, mid in spec["steps"]:
        node = envoy
        for name in path:
            node = getattr(node, name)
        raw = node.input if io == "input" else node.output
        tensor = raw[0] if isinstance(raw, tuple) else raw
        units = to_units(view, tensor, n_units)
        changed = patched
        if patched:
            units = _patched(spec, store, key, ids, n_units, units)
        if view == "block_in":
            x_in = units
        if mid is not None:
            mid_key, mid_patched, mid_keep = mid
            assert x_in is not None, "block_in is read before attn_contrib"
            both = x_in + units
            if mid_patched:
                both = _patched(spec, store, mid_key, ids, 1, both)
                units = both - x_in
                changed = True
            if mid_keep:
                saved[mid_key] = both
        if changed:
            new = from_units(view, units, tensor)
            value = (new, *raw[1:]) if isinstance(raw, tuple) else new
            if io == "input":
                node.input = value
            else:
                node.output = value
        if keep:
            saved[key] = units
    return saved


def _patched(
    spec: dict[str, Any],
    store: dict[str, Any],
    key: Any,
    ids: torch.Tensor,
    n_units: int,
    units: torch.Tensor,
) -> torch.Tensor:
    cells, source_name, rows = spec["patch"][key]
    source = store[source_name][key]
    mask = mask_of(ids.shape[0], ids.shape[1], n_units, cells)
    return patch_units(mask, source[rows.to(source.device)], units)


def finish_trace(
    spec: dict[str, Any], store: dict[str, Any], saved: dict[Any, Any], logits: torch.Tensor
) -> None:
    """After a trace: keep its captures and last-position logits in the session."""
    if spec["capture"] is not None:
        store[spec["capture"]] = saved
    if spec["logits"] is not None:
        store[spec["logits"]] = logits


def touch(points: list[tuple[Any, tuple[str, ...]]]) -> None:
    """Inside a trace: read the output of each (envoy, attribute path)."""
    for envoy, path in points:
        node = envoy
        for name in path:
            node = getattr(node, name)
        _ = node.output


def apply_op(op: tuple[Any, ...], store: dict[str, Any]) -> None:
    """Run one operation outside a trace (see ``remote._Program`` for the kinds)."""
    kind = op[0]
    if kind == "device":
        store["device"] = op[1].weight.device
    elif kind == "put":
        store[op[1]] = op[2]
    elif kind == "list":
        store[op[1]] = []
    elif kind == "cat":
        store[op[1]] = torch.cat(store[op[1]]).cpu()
    elif kind == "std":
        store[op[2]] = op[1].weight.detach().float().std().cpu()
    elif kind == "logprobs":
        store[op[2]] = Baseline.of(store[op[1]])
    elif kind == "combine":
        captures = [store[name] for name in op[2]]
        store[op[6]] = combine_sources(op[1], captures, op[3], op[4], op[5])
    elif kind == "readouts":
        _readouts(op, store)
    else:
        raise ValueError(f"unknown remote operation {kind!r}")


def _readouts(op: tuple[Any, ...], store: dict[str, Any]) -> None:
    _, logits_name, correct, incorrect, pairs, out = op
    logits = store[logits_name]
    clean, corrupted = store["clean_lp"], store["corrupted_lp"]
    got = compute_readouts(
        logits,
        correct.to(logits.device),
        incorrect.to(logits.device),
        clean,
        corrupted,
        pairs,
    ).cpu()
    if isinstance(store.get(out), list):
        store[out].append(got)
    else:
        store[out] = got
