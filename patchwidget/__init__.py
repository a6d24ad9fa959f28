"""patchwidget: activation patching, live, inside a Jupyter notebook."""

from ._version import __version__
from .architectures import Architecture, register_architecture
from .attention import AttentionPatterns
from .circuit import CircuitResult
from .components import SITES, Component
from .corruptions import GaussianNoise, MeanAblation, ResampleAblation, ZeroAblation
from .experiment import Experiment
from .metrics import METRICS
from .models import load_model
from .paths import Path
from .readouts import READOUT_FIELDS
from .remote import RemoteExecutionError
from .result import LabeledArray, PatchResult

__all__ = [
    "METRICS",
    "READOUT_FIELDS",
    "SITES",
    "Architecture",
    "AttentionPatterns",
    "CircuitResult",
    "Component",
    "Experiment",
    "GaussianNoise",
    "LabeledArray",
    "MeanAblation",
    "PatchResult",
    "Path",
    "RemoteExecutionError",
    "ResampleAblation",
    "ZeroAblation",
    "__version__",
    "load_model",
    "register_architecture",
]


def __getattr__(name: str):
    """Lazily import the widget and the demo (they pull in anywidget and shipped files)."""
    if name == "PatchingWidget":
        from .widget import PatchingWidget

        return PatchingWidget
    if name in ("demo_model", "demo_prompts"):
        from . import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'patchwidget' has no attribute {name!r}")
