"""Loading the bundled demo model (a 3-layer GPT-2 trained on the IOI task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_DIR = Path(__file__).parent / "model"


def load_demo_hf() -> tuple[Any, Any]:
    """(Hugging Face GPT-2 model in eval mode with eager attention, its tokenizer), offline."""
    from transformers import AutoTokenizer, GPT2LMHeadModel
    from transformers.utils import logging

    # 40 tensors load in milliseconds: a progress bar would only clutter a lesson's notebook.
    bar_was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model = GPT2LMHeadModel.from_pretrained(MODEL_DIR, attn_implementation="eager")
    finally:
        if bar_was_on:
            logging.enable_progress_bar()
    return model.eval(), AutoTokenizer.from_pretrained(MODEL_DIR)


def demo_model(device: str | None = None) -> Any:
    """The demo model wrapped for patching (`patchwidget.models.load_model`)."""
    from patchwidget.models import load_model

    model, tokenizer = load_demo_hf()
    return load_model(model, tokenizer=tokenizer, device=device)
