"""The bundled demo: a tiny GPT-2 trained on Indirect Object Identification, and its prompts."""

from patchwidget.demo.loading import MODEL_DIR, demo_model, load_demo_hf
from patchwidget.demo.mixed import MIXED_TEMPLATES, demo_dataset
from patchwidget.demo.prompts import DEMO_CORRUPTIONS, TEMPLATES, demo_prompts

__all__ = [
    "DEMO_CORRUPTIONS",
    "MIXED_TEMPLATES",
    "MODEL_DIR",
    "TEMPLATES",
    "demo_dataset",
    "demo_model",
    "demo_prompts",
    "load_demo_hf",
]
