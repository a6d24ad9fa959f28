"""Loading the bundled demo model (a 3-layer GPT-2 trained on the IOI task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_DIR = Path(__file__).parent / "model"


def load_demo_hf() -> tuple[Any, Any]:
    """(Hugging Face GPT-2 model in eval mode with eager attention, its tokenizer), offline."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(MODEL_DIR, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(MODEL_DIR)


def demo_model(device: str | None = None) -> Any:
    """The demo model wrapped for patching (`patchwidget.models.load_model`)."""
    from patchwidget.models import load_model

    model, tokenizer = load_demo_hf()
    return load_model(model, tokenizer=tokenizer, device=device)
