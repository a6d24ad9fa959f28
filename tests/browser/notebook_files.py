"""Write small .ipynb files for the browser tests (plain JSON: nbformat is slow to import)."""

from __future__ import annotations

import json
from pathlib import Path

PROBE_PREFIX = "PROBE:"


def write_notebook(path: Path, sources: list[str]) -> Path:
    """A notebook of code cells with the python3 kernelspec, so no kernel dialog opens."""
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{i}",
            "metadata": {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path
