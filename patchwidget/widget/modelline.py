"""The widget's model line: which model, its sizes, where it runs and what the last request cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Job statuses of a remote request, as a reader would say them.
STATUS_WORDS = {
    "RECEIVED": "request received",
    "QUEUED": "queued",
    "PROVISIONING": "starting the model",
    "DEPLOYING": "starting the model",
    "DISPATCHED": "dispatched",
    "RUNNING": "running",
    "COMPLETED": "done",
    "ERROR": "failed",
}


def model_line(experiment: Any, status: str | None = None) -> str:
    """E.g. ``openai-community/gpt2 (gpt2) · 12 layers × 12 heads · float32 · runs on NDIF
    (remote) · last request 0.80 s on the server (3 so far)``."""
    info = dict(experiment.info)
    name = str(info.get("model_name") or "")
    if Path(name).is_absolute():  # a local folder: its name is enough
        name = Path(name).name
    parts = [
        f"{name} ({info['architecture']})" if name else str(info["architecture"]),
        f"{info['n_layers']} layers × {info['n_heads']} heads",
        str(info["dtype"]),
        f"runs on {info['device']}",
    ]
    runner = getattr(experiment, "_remote", None)
    if runner is not None:
        stats = runner.stats
        if status and status != "COMPLETED":
            parts.append(STATUS_WORDS.get(status, status.lower()))
        if stats.last_runtime_s is not None:
            parts.append(
                f"last request {stats.last_runtime_s:.2f} s on the server ({stats.requests} so far)"
            )
    return " · ".join(parts)
