"""Python snippets that reproduce a widget view or check a circuit with the engine API.

The snippet reuses the notebook's experiment variable when the widget was made from it (and its
prompts are unchanged); otherwise it rebuilds the experiment, one prompt per line. A drill-down
view (a head's q/k/v/pattern, the writers of a residual-stream cell) comes out as the grid on
screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..components import HEAD_PART_SITES
from ..sites import kv_head
from .messages import writer_layers
from .path_messages import path_circuit_lines, receiver_code


@dataclass(frozen=True)
class ExperimentSource:
    """What the snippet needs to rebuild the experiment (or the notebook variable holding it)."""

    model_expr: str
    clean: tuple[str, ...]
    corrupted: tuple[str, ...]
    answers: tuple[tuple[str, str], ...]
    corruption_expr: str | None = None
    experiment_expr: str | None = None


def view_code(
    source: ExperimentSource,
    request: dict[str, Any],
    metric: str,
    normalized: bool,
    kv_group: int = 1,
) -> str:
    """A snippet that reruns the view's sweep(s) and shows them as on screen."""
    lines = _experiment_lines(source)
    directions = (
        ["denoising", "noising"] if request["direction"] == "both" else [request["direction"]]
    )
    values = f'"{metric}", normalized={normalized}'
    attribution = request.get("method") == "attribution"
    if request["kind"] == "sweep":
        for direction in directions:
            var = f"res_{direction}" if len(directions) > 1 else "res"
            args = [repr(request["site"]), f"direction={direction!r}", *_restrict(request)]
            if request.get("receivers") is not None:
                receivers = ", ".join(receiver_code(r, kv_group) for r in request["receivers"])
                args.append(f"receivers=[{receivers}]")
            args += ['method="attribution"'] if attribution else []
            lines.append(f"{var} = exp.sweep({', '.join(args)})")
            lines.append(f"print({var}.values({values}))")
            lines.append(f"{var}.plot({values})")
            if attribution:  # the estimate's largest cells, patched exactly
                lines.append(f"print(exp.verify({var}, top=20, metric={metric!r}))")
        return "\n".join(lines) + "\n"
    lines[0:0] = ["import numpy as np", "from patchwidget.plotting import HeatPanel, draw_panels"]
    lines.append("panels = []")
    for direction in directions:
        lines += _grid_lines(request, direction, metric, normalized, kv_group)
    lines.append(f"draw_panels(panels, {metric!r}, normalized={normalized})")
    return "\n".join(lines) + "\n"


def circuit_code(
    source: ExperimentSource, components: Sequence[dict[str, Any]], kv_group: int = 1
) -> str:
    """A snippet that checks a circuit (and its complement) in both directions."""
    lines = _experiment_lines(source)
    if any(comp.get("receiver") is not None for comp in components):
        return "\n".join(lines + path_circuit_lines(components, kv_group)) + "\n"
    lines.append("circuit = [")
    for comp in components:
        args = [repr(comp["site"]), f"layer={comp['layer']}"]
        args += [f"{k}={comp[k]}" for k in ("head", "pos", "neuron") if comp.get(k) is not None]
        lines.append(f"    pw.Component({', '.join(args)}),")
    lines += [
        "]",
        "checks = exp.circuit(circuit)",
        "print(checks.recovery())  # normalised logit difference per direction/which",
        "print(checks.to_pandas())",
    ]
    return "\n".join(lines) + "\n"


def _experiment_lines(source: ExperimentSource) -> list[str]:
    if source.experiment_expr:
        own = "" if source.experiment_expr == "exp" else f"exp = {source.experiment_expr}  "
        return ["import patchwidget as pw", "", f"{own}# the notebook's experiment".strip(), ""]
    lines = ["import patchwidget as pw", "", f"model = {source.model_expr}", "exp = pw.Experiment("]
    lines.append("    model,")
    lines += _list_arg("clean", list(source.clean))
    if source.corrupted:
        lines += _list_arg("corrupted", list(source.corrupted))
    lines += _list_arg("answers", [tuple(a) for a in source.answers])
    if source.corruption_expr:
        lines.append(f"    corruption={source.corruption_expr},")
    lines += [")", ""]
    return lines


def _list_arg(name: str, items: list[Any]) -> list[str]:
    """``name=[`` with one item per line."""
    return [f"    {name}=[", *(f"        {item!r}," for item in items), "    ],"]


def _restrict(request: dict[str, Any]) -> list[str]:
    return [
        f"{key}={request[key]}"
        for key in ("layers", "heads", "positions", "neurons")
        if request.get(key) is not None
    ]


def _grid_lines(
    request: dict[str, Any], direction: str, metric: str, normalized: bool, kv_group: int
) -> list[str]:
    """Sweeps of a drill view in one direction, stacked into the grid shown in the widget."""
    values = f"{metric!r}, normalized={normalized}"
    d = f"direction={direction!r}"
    if request["kind"] == "head_parts":
        layer, head = request["layers"][0], request["heads"][0]
        positions = f", positions={request['positions']}" if request.get("positions") else ""
        parts = [(site, kv_head(site, head, kv_group)) for site in HEAD_PART_SITES]
        return [
            "rows = []",
            f"for site, head in {parts!r}:  # k and v: the key/value head of query head {head}",
            f"    res = exp.sweep(site, {d}, layers=[{layer}], heads=[head]{positions}, "
            "by_pos=True)",
            f"    rows.append(np.asarray(res.values({values})).reshape(-1))",
            "panels.append(HeatPanel(",
            f"    title='L{layer} H{head} · {direction}', values=np.stack(rows),",
            "    rows=('q', 'k', 'v', 'pattern'), cols=res.labels['pos'],",
            "    row_axis='site', col_axis='pos', "
            f"base={_base(direction, normalized, 'res', metric)},",
            "))",
        ]
    layer, pos = request["layers"][0], request["positions"][0]
    head_layers, mlp_layers = writer_layers(request["site"], layer)
    lines = [
        f"# writers of {request['site']} L{layer} at position {pos}: heads and MLPs before it",
        f"heads = exp.sweep('head_by_pos', {d}, layers={list(head_layers)}, positions=[{pos}])",
        f"grid = np.full(({len(head_layers)}, heads.shape[1] + 1), np.nan)",
        f"grid[:, :-1] = np.asarray(heads.values({values}))[..., 0]",
    ]
    if mlp_layers:
        lines += [
            f"mlps = exp.sweep('mlp_out', {d}, layers={list(mlp_layers)}, positions=[{pos}])",
            f"grid[:{len(mlp_layers)}, -1] = np.asarray(mlps.values({values}))[:, 0]",
        ]
    lines += [
        "panels.append(HeatPanel(",
        f"    title='writers of {request['site']} L{layer} @{pos} · {direction}', values=grid,",
        "    rows=heads.labels['layer'], cols=(*heads.labels['head'], 'MLP'),",
        f"    row_axis='layer', col_axis='writer', "
        f"base={_base(direction, normalized, 'heads', metric)},",
        "))",
    ]
    return lines


def _base(direction: str, normalized: bool, var: str, metric: str) -> str:
    """The base run's value in the grid's units (its baseline when raw)."""
    if normalized:
        return "1.0" if direction == "noising" else "0.0"
    run = "clean" if direction == "noising" else "corrupted"
    return f"{var}.baselines({metric!r})[{run!r}]"
