"""Paths and settings shared by the browser-test fixtures and tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("PATCHWIDGET_CHROMIUM", "/usr/bin/chromium"))
# Headless Chromium, nothing fetched from the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def artifact_name(node_name: str) -> str:
    """A test's name as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).strip("-")
