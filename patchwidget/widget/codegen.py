"""Python snippets that reproduce a widget view with the engine API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..components import HEAD_PART_SITES
from ..sites import kv_head


@dataclass(frozen=True)
class ExperimentSource:
    """What the snippet needs to rebuild the experiment."""

    model_expr: str
    clean: tuple[str, ...]
    corrupted: tuple[str, ...]
    answers: tuple[tuple[str, str], ...]
    corruption_expr: str | None = None


def view_code(
    source: ExperimentSource,
    request: dict[str, Any],
    metric: str,
    normalized: bool,
    kv_group: int = 1,
) -> str:
    """A snippet that rebuilds the experiment, reruns the view's sweep(s) and plots them."""
    lines = _experiment_lines(source)
    directions = (
        ["denoising", "noising"] if request["direction"] == "both" else [request["direction"]]
    )
    values = f'"{metric}", normalized={normalized}'
    attribution = request.get("method") == "attribution"
    for direction in directions:
        for name, site, extra in _sweeps(request, kv_group):
            args = [repr(site), f"direction={direction!r}", *extra]
            args += ['method="attribution"'] if attribution else []
            var = f"{name}_{direction}" if len(directions) > 1 else name
            lines.append(f"{var} = exp.sweep({', '.join(args)})")
            lines.append(f"print({var}.values({values}))")
            lines.append(f"{var}.plot({values})")
            if attribution:  # the estimate's largest cells, patched exactly
                lines.append(f"print(exp.verify({var}, top=20, metric={metric!r}))")
    return "\n".join(lines) + "\n"


def circuit_code(source: ExperimentSource, components: Sequence[dict[str, Any]]) -> str:
    """A snippet that checks a circuit (and its complement) in both directions."""
    lines = _experiment_lines(source)
    lines.append("circuit = [")
    for comp in components:
        args = [repr(comp["site"]), f"layer={comp['layer']}"]
        args += [f"{k}={comp[k]}" for k in ("head", "pos", "neuron") if comp.get(k) is not None]
        lines.append(f"    pw.Component({', '.join(args)}),")
    lines += ["]", "checks = exp.circuit(circuit)", "print(checks)"]
    return "\n".join(lines) + "\n"


def _experiment_lines(source: ExperimentSource) -> list[str]:
    lines = ["import patchwidget as pw", "", f"model = {source.model_expr}"]
    args = ["model", f"clean={list(source.clean)!r}"]
    if source.corrupted:
        args.append(f"corrupted={list(source.corrupted)!r}")
    args.append(f"answers={[tuple(a) for a in source.answers]!r}")
    if source.corruption_expr:
        args.append(f"corruption={source.corruption_expr}")
    lines.append("exp = pw.Experiment(")
    lines += [f"    {a}," for a in args]
    lines += [")", ""]
    return lines


def _sweeps(request: dict[str, Any], kv_group: int) -> list[tuple[str, str, list[str]]]:
    restrict = [
        f"{key}={request[key]}"
        for key in ("layers", "heads", "positions", "neurons")
        if request.get(key) is not None
    ]
    if request["kind"] != "head_parts":
        return [("res", request["site"], restrict)]
    layer, head = request["layers"][0], request["heads"][0]
    positions = [f"positions={request['positions']}"] if request.get("positions") else []
    out = []
    for site in HEAD_PART_SITES:
        h = kv_head(site, head, kv_group)
        extra = [f"layers=[{layer}]", f"heads=[{h}]", *positions, "by_pos=True"]
        out.append((site.removeprefix("head_"), site, extra))
    return out
