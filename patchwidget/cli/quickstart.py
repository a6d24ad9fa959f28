"""The quickstart notebook that ``patchwidget demo`` writes and opens in JupyterLab."""

from __future__ import annotations

import sys
from typing import Any

QUICKSTART_NAME = "quickstart.ipynb"


def lab_command(notebook: str, no_browser: bool, as_root: bool = False) -> list[str]:
    """The command that opens ``notebook`` in JupyterLab with this Python. JupyterLab refuses
    to start as root (common in containers) without ``--allow-root``."""
    options = ["--no-browser"] * no_browser + ["--allow-root"] * as_root
    return [sys.executable, "-m", "jupyterlab", notebook, *options]


QUICKSTART_CELLS: tuple[tuple[str, str], ...] = (
    (
        "markdown",
        "# patchwidget quickstart\n"
        "\n"
        "Activation patching on a tiny model that solves Indirect Object Identification "
        '("When Mary and John went to the store, John gave a drink to" → " Mary"). '
        "Run the three cells below: the widget sweeps by itself, and the map fills in as "
        "patches finish.",
    ),
    ("code", "# %pip install patchwidget\nimport patchwidget as pw"),
    (
        "code",
        "model = pw.demo_model()  # 3 layers, 4 heads, bundled with the package\n"
        'prompts = pw.demo_prompts("flip_s2", n=32)  # S2, the repeated name, becomes the IO\n'
        "exp = pw.Experiment(model, **prompts)",
    ),
    ("code", "exp.widget()"),
    (
        "markdown",
        "## How to read it\n"
        "\n"
        "**Denoising** runs the corrupted prompt and restores one component's clean activation: "
        "a cell near 1 means that component alone is *sufficient* to bring the clean answer "
        "back. **Noising** runs the clean prompt and gives one component its corrupted "
        "activation: a cell near 0 means the component is *necessary*.\n"
        "\n"
        "Click a cell to look inside it (layer → heads → positions); shift-click to collect "
        "components into a circuit and test them together. Without a widget front end "
        "(plain Python, a terminal, CI), the same sweep draws with matplotlib:",
    ),
    ("code", 'exp.sweep("head", progress=False).plot();'),
)


def quickstart_notebook() -> dict[str, Any]:
    """The quickstart as nbformat 4 JSON (``notebooks/quickstart.ipynb`` holds the same cells)."""
    cells = []
    for i, (kind, source) in enumerate(QUICKSTART_CELLS):
        cell: dict[str, Any] = {
            "cell_type": kind,
            "id": f"quickstart-{i}",
            "metadata": {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
