"""patchwidget: activation patching, live, inside a Jupyter notebook."""

from ._version import __version__
from .architectures import Architecture, register_architecture
from .attention import AttentionPatterns
from .checks import PatchingWarning
from .circuit import CircuitResult
from .components import SITES, Component
from .corruptions import GaussianNoise, MeanAblation, ResampleAblation, ZeroAblation
from .datasets import dataset_frame, load_dataset
from .experiment import Experiment
from .metrics import METRICS
from .modellock import model_lock
from .models import load_model
from .paths import Path
from .positions import Word
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
    "PatchingWarning",
    "Path",
    "RemoteExecutionError",
    "ResampleAblation",
    "Word",
    "ZeroAblation",
    "__version__",
    "dataset_frame",
    "load_dataset",
    "load_model",
    "model_lock",
    "register_architecture",
]


def __getattr__(name: str):
    """Lazily import the widget and the demo (they pull in anywidget and shipped files)."""
    if name == "PatchingWidget":
        from .widget import PatchingWidget

        return PatchingWidget
    if name in ("demo_model", "demo_prompts", "demo_dataset"):
        from . import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'patchwidget' has no attribute {name!r}")
