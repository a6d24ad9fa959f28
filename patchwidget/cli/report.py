"""What ``patchwidget sweep`` prints and writes: the strongest components, a text summary,
JSON and the figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..jsondata import jsonable

NEGLIGIBLE = 0.01  # effects below 1% of the clean-corrupted gap are not listed


def strongest(res: Any, metric: str, normalized: bool, top: int) -> list[dict[str, Any]]:
    """The components whose patch moved the metric furthest from the unpatched base run
    (at most ``top``, none below 1% of the clean-corrupted gap)."""
    values = np.asarray(res.values(metric, normalized), dtype=np.float64)
    raw = np.asarray(res.values(metric, False), dtype=np.float64)
    base_run = "corrupted" if res.direction == "denoising" else "clean"
    if normalized:
        base = 0.0 if base_run == "corrupted" else 1.0
    else:
        base = res.baselines(metric)[base_run]
    effect = np.abs(values - base)
    effect[~np.isfinite(effect)] = -np.inf
    gap = res.baselines(metric)
    floor = NEGLIGIBLE * (1.0 if normalized else abs(gap["clean"] - gap["corrupted"]))
    order = np.argsort(-effect, axis=None, kind="stable")[:top]
    rows = []
    for flat in order:
        if not effect.flat[flat] >= floor:
            break
        index = np.unravel_index(flat, values.shape)
        rows.append(
            {
                "component": cell_label(res, index),
                "coords": {a: int(res.coords[a][i]) for a, i in zip(res.axes, index, strict=True)},
                "value": float(values[index]),
                "raw": float(raw[index]),
            }
        )
    return rows


def summary(
    exp: Any,
    results: Sequence[Any],
    seconds: Sequence[float],
    metric: str,
    normalized: bool,
    top: int,
    about: str,
    model_name: str = "",
) -> str:
    """The text ``patchwidget sweep`` prints."""
    from ..metrics import METRICS

    info, first = exp.info, results[0]
    name = model_name or info["model_name"]
    base = first.baselines(metric)
    answers = exp.answer_tokens[0]
    lines = [
        f"model: {name} ({info['architecture']}, {info['n_layers']} layers x "
        f"{info['n_heads']} heads, d_model {info['d_model']}) on {info['device']}, "
        f"{info['dtype']}",
        f"prompts: {exp.n_pairs} pairs of {exp.length} tokens; {about}",
        f"  clean:     {exp.prompts.clean[0]!r} -> {answers[0]!r} (not {answers[1]!r})",
    ]
    if exp.prompts.corrupted:
        lines.append(f"  corrupted: {exp.prompts.corrupted[0]!r}")
    lines.append(
        f"baselines, {metric} ({METRICS[metric]}), mean over pairs: "
        f"clean {base['clean']:.4g}, corrupted {base['corrupted']:.4g}"
    )
    use_norm = normalized and first.normalization_ok(metric)
    if normalized and not use_norm:
        lines.append(
            "note: the clean and corrupted baselines coincide, so normalised values are "
            "undefined; showing raw values"
        )
    elif use_norm:
        lines.append(
            "normalised = (patched - corrupted) / (clean - corrupted): 1 = clean behaviour, "
            "0 = corrupted; not clipped, so <0 or >1 are findings"
        )
    for res, secs in zip(results, seconds, strict=True):
        what = {
            "denoising": "corrupted run, clean activation patched in: is it sufficient?",
            "noising": "clean run, corrupted activation patched in: is it necessary?",
        }[res.direction]
        size = " x ".join(str(n) for n in res.shape)
        done = "" if res.complete else " (incomplete)"
        method = " (attribution estimate)" if res.method == "attribution" else ""
        lines.append(
            f"\n{res.site} sweep{method}, {res.direction} ({what}); {size} patches, {secs:.1f} s"
        )
        lines.append(f"strongest effects ({'normalised ' if use_norm else ''}{metric}):")
        rows = strongest(res, metric, use_norm, top)
        width = max((len(r["component"]) for r in rows), default=0)
        for rank, row in enumerate(rows, 1):
            raw = f"   (raw {row['raw']:.4g})" if use_norm else ""
            lines.append(f"  {rank:2d}. {row['component']:<{width}}  {row['value']:8.3f}{raw}")
        if not rows:
            lines.append("  none: no patch moved the metric by 1% of the clean-corrupted gap")
        lines[-1] += done
    return "\n".join(lines)


def to_json(exp: Any, results: Sequence[Any], metric: str, normalized: bool) -> dict[str, Any]:
    """Everything the sweep produced as JSON-ready data (NaN becomes null)."""
    from ..metrics import METRICS
    from ..readouts import READOUT_FIELDS

    first = results[0]

    def field_means(readouts: np.ndarray) -> dict[str, float]:
        return {f: float(v) for f, v in zip(READOUT_FIELDS, readouts.mean(0), strict=True)}

    data = {
        "model": exp.info,
        "site": first.site,
        "metric": metric,
        "normalized": normalized,
        "n_pairs": exp.n_pairs,
        "n_tokens": exp.length,
        "prompts": {
            "clean": list(exp.prompts.clean),
            "corrupted": list(exp.prompts.corrupted or []),
            "answers": [list(a) for a in exp.answer_tokens],
        },
        "baselines": {m: first.baselines(m) for m in METRICS},
        "baseline_readouts": {
            "clean": field_means(first.clean_readouts),
            "corrupted": field_means(first.corrupted_readouts),
        },
        "results": {
            res.direction: {
                "axes": list(res.axes),
                "coords": {a: list(v) for a, v in res.coords.items()},
                "labels": {a: list(v) for a, v in res.labels.items()},
                "complete": res.complete,
                "method": res.method,
                "strongest": strongest(res, metric, normalized, 10),
                "values": {
                    m: {
                        "raw": np.asarray(res.values(m, False)).tolist(),
                        "normalized": np.asarray(res.values(m, True)).tolist(),
                    }
                    for m in METRICS
                },
            }
            for res in results
        },
        "metadata": first.metadata,
    }
    return jsonable(data)


def write_figure(results: Sequence[Any], metric: str, normalized: bool, out: Path) -> None:
    """The sweep's heatmap (two panels side by side for both directions) written to ``out``."""
    from ..metrics import METRICS
    from ..plotting import draw_panels, result_panel

    panels = [result_panel(res, metric, normalized, title=res.direction) for res in results]
    scale = ", normalised: 1 = clean behaviour, 0 = corrupted" if normalized else ""
    title = f"{results[0].site}: {METRICS[metric]}{scale}"
    fig = draw_panels(panels, metric, normalized, suptitle=title)
    fig.savefig(out, dpi=150)


def cell_label(res: Any, index: tuple[int, ...]) -> str:
    """A component's name from its axis labels, e.g. ``L1 H3`` or ``L0 pos 10: Kate``."""
    parts = []
    for axis, i in zip(res.axes, index, strict=True):
        label = res.labels[axis][i]
        parts.append(f"pos {label}" if axis == "pos" else label)
    return " ".join(parts)
