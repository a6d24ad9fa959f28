"""The command line: ``patchwidget sweep`` and ``patchwidget demo``."""

from .commands import main

__all__ = ["main"]
