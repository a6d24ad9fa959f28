"""Attribution patching (AtP): every component's patching effect estimated from one gradient pass.

The estimate of a patch is the base run's readouts plus (source - base activation) · gradient,
summed over the patched cells, for each readout that a first-order expansion can follow: the
answer logits and the log-normaliser (so logit_diff, logprob and prob switch instantly). KL,
rank and accuracy need the whole patched distribution and are left NaN.

Options from AtP* (Kramár et al. 2024): ``qk_fix`` recomputes the attention softmax with the
patched queries or keys instead of taking the softmax's gradient; ``grad_drop`` scores each
component by its estimates with the backward pass blocked through one layer at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .architectures import QKV_PER_HEAD, QKV_SEPARATE, QKV_SPLIT
from .gradients import GRADIENT_FIELDS, GradientPass, attention_inputs, gradient_pass
from .hookpoints import HookPoints, Key, Target
from .readouts import READOUT_FIELDS
from .result import PatchResult

if TYPE_CHECKING:
    from .experiment import Experiment

METHODS = ("exact", "attribution")
NOT_ESTIMABLE = ("kl", "rank", "accuracy")
ESTIMATE_NOTE = (
    "attribution estimate (first order): logit_diff, logprob and prob are estimated; KL, rank "
    "and accuracy need the patched run's whole distribution and cannot be estimated (NaN). "
    "Check the largest cells with exp.verify(result, top=k)."
)
GRAD_DROP_METRICS = {"logit_diff": (1, -1, 0), "logprob": (1, 0, -1), "prob": (1, 0, -1)}
_FIELD = [READOUT_FIELDS.index(f) for f in GRADIENT_FIELDS]


def check_method(method: str, qk_fix: bool, grad_drop: bool) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be 'exact' or 'attribution', not {method!r}")
    if method == "exact" and (qk_fix or grad_drop):
        raise ValueError(
            "qk_fix and grad_drop refine attribution estimates: use method='attribution'"
        )


def attribution_sweep(
    exp: Experiment,
    patch_sets: list[list[Target]],
    site: str,
    direction: str,
    axes: tuple[str, ...],
    coords: dict[str, tuple[int, ...]],
    labels: dict[str, tuple[str, ...]],
    meta: dict[str, Any],
    qk_fix: bool = False,
    grad_drop: bool = False,
) -> PatchResult:
    """The attribution estimate of a sweep, shaped and labelled like the exact sweep."""
    shape = tuple(len(coords[a]) for a in axes)
    readouts, scores = estimate_readouts(exp, patch_sets, direction, qk_fix, grad_drop)
    metadata = exp._metadata(site, direction, meta)
    metadata.update(
        method="attribution",
        qk_fix=qk_fix,
        grad_drop=grad_drop,
        not_estimable=list(NOT_ESTIMABLE),
        note=ESTIMATE_NOTE,
    )
    if scores is not None:
        metadata["grad_drop_scores"] = {
            m: s.reshape(shape).round(6).tolist() for m, s in scores.items()
        }
    return PatchResult(
        site=site,
        direction=direction,
        axes=axes,
        coords=coords,
        labels=labels,
        readouts=readouts.reshape(*shape, exp.n_pairs, -1),
        clean_readouts=exp.clean_readouts,
        corrupted_readouts=exp.corrupted_readouts,
        metadata=metadata,
        complete=True,
    )


def grad_drop_scores(result: PatchResult, metric: str = "logit_diff") -> np.ndarray | None:
    """GradDrop's magnitude score per component (None unless swept with ``grad_drop=True``)."""
    scores = result.metadata.get("grad_drop_scores")
    if not scores:
        return None
    if metric not in scores:
        raise ValueError(f"GradDrop scores exist for {', '.join(scores)}, not {metric!r}")
    return np.asarray(scores[metric], dtype=np.float64)


def estimate_readouts(
    exp: Experiment,
    patch_sets: Sequence[Sequence[Target]],
    direction: str,
    qk_fix: bool = False,
    grad_drop: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Estimated readouts (sets, pairs, fields) and, with ``grad_drop``, per-metric scores."""
    if exp.remote:
        raise ValueError(
            "attribution patching needs a local backward pass; load the model without "
            "remote=..., or use method='exact'"
        )
    hooks = exp.hooks
    fixed = {t for ts in patch_sets for t in ts if qk_fix and qk_part(hooks, t) is not None}
    if fixed and "denoising" not in exp.directions:
        raise ValueError(
            "the QK fix recomputes attention with the source run's queries and keys; an "
            f"{type(exp.corruption).__name__} has no source run. Use qk_fix=False, or give "
            "corrupted prompts or pw.GaussianNoise()."
        )
    linear_keys = {(t.point, t.layer) for ts in patch_sets for t in ts if t not in fixed}
    fixed_layers = frozenset(t.layer for t in fixed)
    grad_keys = frozenset(linear_keys | {("pattern", layer) for layer in fixed_layers})
    with exp._lock:
        run = exp._base_run(direction)
        gp = gradient_pass(
            hooks,
            exp.device,
            run.ids,
            run.noise,
            grad_keys,
            exp._correct,
            exp._incorrect,
            grad_drop=grad_drop,
            attention_layers=fixed_layers,
        )
        sources = exp._source_values(direction, linear_keys)
        source_attention = _source_attention(exp, direction, fixed_layers) if fixed else {}
    base = exp.corrupted_readouts if direction == "denoising" else exp.clean_readouts

    def deltas(grads: dict[Key, torch.Tensor]) -> np.ndarray:
        contrib = {
            k: _contributions(sources[k].to(gp.base[k].device) - gp.base[k], grads[k])
            for k in linear_keys
        }
        fixes = _qk_fix_contributions(hooks, fixed, gp, grads, source_attention)
        out = np.zeros((len(patch_sets), exp.n_pairs, len(GRADIENT_FIELDS)))
        # Gather the cells of every (hook point, positions) group at once: a neuron map has
        # tens of thousands of patch sets.
        groups: dict[tuple[Key, tuple[int, ...] | None], tuple[list[int], list[int]]] = {}
        for i, targets in enumerate(patch_sets):
            for t in targets:
                if t in fixed:
                    out[i] += fixes[t]
                    continue
                sets, units = groups.setdefault(((t.point, t.layer), t.positions), ([], []))
                sets.append(i)
                units.append(t.unit)
        for (key, positions), (sets, units) in groups.items():
            c = contrib[key] if positions is None else contrib[key][:, list(positions)]
            np.add.at(out, sets, c.sum(axis=1)[:, units].transpose(1, 0, 2))
        return out

    delta = deltas(gp.grads)
    readouts = np.full((len(patch_sets), exp.n_pairs, len(READOUT_FIELDS)), np.nan)
    readouts[..., _FIELD] = base[None][..., _FIELD] + delta
    scores = None
    if grad_drop:
        dropped = [deltas({**gp.grads, **d}) for d in gp.dropped.values()]
        dropped += [delta] * (exp.dims.n_layers - len(dropped))  # layers before the sweep
        scores = {
            metric: sum(np.abs((d @ np.array(w, dtype=float)).mean(axis=1)) for d in dropped)
            / max(exp.dims.n_layers - 1, 1)
            for metric, w in GRAD_DROP_METRICS.items()
        }
    return readouts.astype(np.float32), scores


def qk_part(hooks: HookPoints, t: Target) -> tuple[str, int] | None:
    """("q" | "k", head) when a target patches a head's queries or keys, else None."""
    layout, d = hooks.arch.qkv_layout, hooks.dims
    if layout == QKV_SEPARATE and t.point in ("q", "k"):
        return t.point, t.unit
    if t.point != "qkv":
        return None
    if layout == QKV_SPLIT:
        if t.unit < d.n_heads:
            return "q", t.unit
        if t.unit < d.n_heads + d.n_kv_heads:
            return "k", t.unit - d.n_heads
        return None
    if layout == QKV_PER_HEAD:
        part = "qkv"[t.unit % 3]
        return (part, t.unit // 3) if part != "v" else None
    return None


def _contributions(diff: torch.Tensor, grads: torch.Tensor) -> np.ndarray:
    """(pairs, pos, unit, fields): each cell's first-order change of every readout field."""
    dtype = torch.promote_types(grads.dtype, torch.float32)  # no bfloat16 sums
    return torch.einsum("bpuw,bpuwf->bpuf", diff.to(dtype), grads.to(dtype)).double().cpu().numpy()


def _source_attention(exp: Experiment, direction: str, layers: frozenset[int]) -> dict[int, Any]:
    """The source run's attention-function inputs (post-rotary queries and keys)."""
    source = exp._base_run("noising" if direction == "denoising" else "denoising")
    return attention_inputs(exp.hooks, exp.device, source.ids, source.noise, layers)


def _qk_fix_contributions(
    hooks: HookPoints,
    fixed: set[Target],
    gp: GradientPass,
    grads: dict[Key, torch.Tensor],
    source: dict[int, Any],
) -> dict[Target, np.ndarray]:
    """Per q/k target: (recomputed pattern - base pattern) · pattern gradient, (pairs, fields)."""
    out: dict[Target, np.ndarray] = {}
    group = hooks.dims.n_heads // hooks.dims.n_kv_heads
    for t in fixed:
        part, head = qk_part(hooks, t)  # type: ignore[misc]
        base, src = gp.attention[t.layer], source[t.layer]
        query, key = base["query"].clone(), base["key"].clone()
        pos = slice(None) if t.positions is None else list(t.positions)
        heads = [head] if part == "q" else list(range(head * group, (head + 1) * group))
        if part == "q":
            query[:, head, pos] = src["query"][:, head, pos].to(query.device)
        else:
            key[:, head, pos] = src["key"][:, head, pos].to(key.device)
        new = attention_pattern(query, key, base, heads, group)
        old = attention_pattern(base["query"], base["key"], base, heads, group)
        # pattern units are (pairs, query pos, head, key pos); gradient fields last
        g = grads[("pattern", t.layer)][:, :, heads].transpose(1, 2)
        dtype = torch.promote_types(g.dtype, torch.float32)
        change = torch.einsum("bhqk,bhqkf->bf", (new - old).to(dtype), g.to(dtype))
        out[t] = change.double().cpu().numpy()
    return out


def attention_pattern(
    query: torch.Tensor, key: torch.Tensor, attn: dict[str, Any], heads: list[int], group: int
) -> torch.Tensor:
    """Softmax attention of the given query heads, as the model's eager attention computes it."""
    keys = key[:, [h // group for h in heads]]
    scaling = attn["scaling"] if attn["scaling"] is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query[:, heads].float(), keys.float().transpose(-1, -2)) * scaling
    if attn["softcap"] is not None:
        scores = torch.tanh(scores / attn["softcap"]) * attn["softcap"]
    mask = attn["mask"]
    if mask is not None:
        mask = mask[..., : keys.shape[-2]].float()
        scores = scores + (mask if mask.shape[1] == 1 else mask[:, heads])
    return torch.softmax(scores, dim=-1)
