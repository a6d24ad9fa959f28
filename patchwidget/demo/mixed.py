"""A demo dataset of IOI templates of different lengths, with named positions IO, S1, S2, END.

The demo model learned the task with the names at tokens 2, 4 and 10 (it has absolute position
embeddings and was trained on one layout), so these templates differ after the repeated name:
14 to 19 tokens, each pair read at its own last token.
"""

from __future__ import annotations

import random
from typing import Any

from patchwidget.demo.prompts import (
    DEMO_CORRUPTIONS,
    NAMES,
    OBJECTS,
    ORDERS,
    PLACES,
    name_pair_split,
)

MIXED_TEMPLATES = (
    "When {a} and {b} went to the {place} , {s2} gave {obj} to",
    "After {a} and {b} arrived at the {place} , {s2} handed a {obj} to",
    "While {a} and {b} were at the {place} , {s2} gave {obj} and {obj2} to",
    "Once {a} and {b} got to the {place} , {s2} sent a {obj} and a {obj2} to",
    "Then {a} and {b} walked into the {place} , {s2} threw a {obj} and handed a {obj2} to",
)


def _token_index(template: str, slot: str) -> int:
    """Token position of a slot (the tokenizer splits on spaces and prepends <bos>)."""
    return template.split().index(slot) + 1


def _text(template: str, order: str, io: str, s: str, s2: str, fill: dict[str, str]) -> str:
    a, b = (io, s) if order == "ABBA" else (s, io)
    return template.format(a=a, b=b, s2=s2, **fill)


def demo_dataset(corruption: str = "flip_s2", n: int = 64, seed: int = 0) -> Any:
    """Clean/corrupted IOI pairs of mixed lengths on held-out names, as a table for
    ``pw.Experiment.from_dataset(pw.demo_model(), ...)``: columns clean, corrupted, correct,
    incorrect, IO, S1, S2, END (token indices). Templates and ABBA/BABA orders are mixed evenly.
    """
    from patchwidget.datasets import dataset_frame

    if corruption not in DEMO_CORRUPTIONS:
        choices = ", ".join(DEMO_CORRUPTIONS)
        raise ValueError(f"unknown corruption {corruption!r}; choose one of: {choices}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = random.Random(seed)
    heldout = name_pair_split()[1]
    clean, corrupted, answers = [], [], []
    positions: dict[str, list[int]] = {"IO": [], "S1": [], "S2": [], "END": []}
    for i in range(n):
        template = MIXED_TEMPLATES[(i // 2) % len(MIXED_TEMPLATES)]
        order = ORDERS[i % 2]
        io, s = rng.sample(rng.choice(heldout), 2)
        place = rng.choice(PLACES)
        obj, obj2 = rng.sample(OBJECTS, 2)
        c1, c2, c3 = rng.sample([x for x in NAMES if x not in (io, s)], 3)
        io_slot, s_slot = ("{a}", "{b}") if order == "ABBA" else ("{b}", "{a}")
        fill = {"place": place, "obj": obj, "obj2": obj2}
        names = {"flip_s2": (io, s, io), "new_io": (c1, s, s), "abc": (c1, c2, c3)}[corruption]
        clean.append(_text(template, order, io, s, s, fill))
        corrupted.append(_text(template, order, *names, fill))
        answers.append((f" {io}", f" {s}"))
        positions["IO"].append(_token_index(template, io_slot))
        positions["S1"].append(_token_index(template, s_slot))
        positions["S2"].append(_token_index(template, "{s2}"))
        positions["END"].append(-1)
    return dataset_frame(clean, corrupted, answers, positions)
