"""The synthetic Indirect Object Identification (IOI) task the demo model is trained on.

Every template has the same token length and puts the names at the same positions, so prompts
from different templates line up position by position:

    position  0      1     2    3    4    5     6   7    8      9  10  11    12  13     14
              <bos>  When  A    and  B    went  to  the  PLACE  ,  S2  gave  a   OBJECT to

ABBA: A = IO, B = S, S2 = S ("When Mary and John ..., John gave a drink to" -> " Mary").
BABA: A = S, B = IO, S2 = S ("When John and Mary ..., John gave a drink to" -> " Mary").
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

NAMES = (
    "Mary", "John", "Alice", "Bob", "Anna", "Tom", "Sarah", "James", "Emma", "David",
    "Laura", "Mark", "Julia", "Paul", "Kate", "Peter", "Lucy", "Daniel", "Rachel", "Steven",
    "Helen", "Frank", "Claire", "George", "Nina", "Oscar", "Rose", "Victor", "Grace", "Henry",
)  # fmt: skip
PLACES = ("store", "park", "school", "office", "garden", "station", "library", "beach")
OBJECTS = ("drink", "book", "ball", "key", "gift", "letter", "ring", "flower")
TEMPLATES = (
    "When {a} and {b} went to the {place} , {s2} gave a {obj} to",
    "After {a} and {b} arrived at the {place} , {s2} handed a {obj} to",
    "Then {a} and {b} walked into the {place} , {s2} passed the {obj} to",
    "While {a} and {b} were at the {place} , {s2} threw a {obj} to",
    "Once {a} and {b} got to the {place} , {s2} sent a {obj} to",
    "As {a} and {b} sat in the {place} , {s2} offered the {obj} to",
)
ORDERS = ("ABBA", "BABA")

BOS, PAD, UNK = "<bos>", "<pad>", "<unk>"
FIRST_NAME_POS, SECOND_NAME_POS, S2_POS = 2, 4, 10  # token positions, <bos> = 0
PROMPT_LEN = 15  # tokens including <bos>; the answer is predicted at position PROMPT_LEN - 1
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt: the indirect object `io`, the subject `s`, and the template filling."""

    template: int
    order: str
    io: str
    s: str
    place: str
    obj: str

    def text(
        self, first: str | None = None, second: str | None = None, s2: str | None = None
    ) -> str:
        """The prompt, optionally with the names at the three name positions overridden."""
        a, b = (self.io, self.s) if self.order == "ABBA" else (self.s, self.io)
        return TEMPLATES[self.template].format(
            a=first or a, b=second or b, s2=s2 or self.s, place=self.place, obj=self.obj
        )

    @property
    def io_pos(self) -> int:
        """Token position of the IO name."""
        return FIRST_NAME_POS if self.order == "ABBA" else SECOND_NAME_POS


def vocabulary() -> list[str]:
    """All tokens of the word-level vocabulary, special tokens first, in a fixed order."""
    words = [w for t in TEMPLATES for w in t.split() if not w.startswith("{")]
    tokens = [BOS, PAD, UNK, *NAMES, *PLACES, *OBJECTS, *words]
    return list(dict.fromkeys(tokens))


def name_pair_split() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out) unordered name pairs; the held-out pairs are never trained on."""
    pairs = list(itertools.combinations(NAMES, 2))
    random.Random(SPLIT_SEED).shuffle(pairs)
    n_heldout = round(HELDOUT_FRACTION * len(pairs))
    return sorted(pairs[n_heldout:]), sorted(pairs[:n_heldout])


def sample_prompt(
    rng: random.Random,
    pairs: list[tuple[str, str]],
    template: int | None = None,
    order: str | None = None,
) -> IOIPrompt:
    """A random IOI prompt whose two names are one of `pairs`, in a random role."""
    io, s = rng.sample(rng.choice(pairs), 2)
    return IOIPrompt(
        template=rng.randrange(len(TEMPLATES)) if template is None else template,
        order=rng.choice(ORDERS) if order is None else order,
        io=io,
        s=s,
        place=rng.choice(PLACES),
        obj=rng.choice(OBJECTS),
    )


def heldout_eval_prompts(seed: int = 0) -> list[IOIPrompt]:
    """Every held-out pair in both roles, both orders and every template (random place/object)."""
    rng = random.Random(seed)
    return [
        IOIPrompt(t, order, io, s, rng.choice(PLACES), rng.choice(OBJECTS))
        for x, y in name_pair_split()[1]
        for io, s in ((x, y), (y, x))
        for order in ORDERS
        for t in range(len(TEMPLATES))
    ]


DEMO_CORRUPTIONS = {
    "flip_s2": "S2 (the repeated name) becomes the IO name: one token differs and the answer "
    "flips, so patching finds where the model tracks which name was repeated.",
    "new_io": "The IO name becomes a third name C: the clean answer is no longer in the prompt, "
    "so patching finds the path that copies the IO name to the answer.",
    "abc": "All three name positions get three other names (no name repeats): patching finds "
    "everything name-specific, both the repeat-detection and the IO-copying paths.",
}


def demo_prompts(
    corruption: str = "flip_s2", n: int = 32, seed: int = 0, template: int | None = None
) -> dict[str, list]:
    """Clean/corrupted IOI prompt pairs on held-out name pairs, for `pw.Experiment(**...)`.

    Templates (all, or only `template`) and ABBA/BABA orders are mixed evenly; names, places and
    objects are drawn from `seed`. Answers are `(" IO", " S")` of the clean prompt.
    """
    if corruption not in DEMO_CORRUPTIONS:
        choices = ", ".join(DEMO_CORRUPTIONS)
        raise ValueError(f"unknown corruption {corruption!r}; choose one of: {choices}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if template is not None and template not in range(len(TEMPLATES)):
        raise ValueError(f"template must be in 0..{len(TEMPLATES) - 1}, got {template}")
    rng = random.Random(seed)
    heldout = name_pair_split()[1]
    out: dict[str, list] = {"clean": [], "corrupted": [], "answers": []}
    for i in range(n):
        t = (i // 2) % len(TEMPLATES) if template is None else template
        p = sample_prompt(rng, heldout, template=t, order=ORDERS[i % 2])
        others = rng.sample([x for x in NAMES if x not in (p.io, p.s)], 3)
        out["clean"].append(p.text())
        out["corrupted"].append(_corrupt(p, corruption, others))
        out["answers"].append((f" {p.io}", f" {p.s}"))
    return out


def _corrupt(p: IOIPrompt, corruption: str, others: list[str]) -> str:
    if corruption == "flip_s2":
        return p.text(s2=p.io)
    if corruption == "new_io":
        return p.text(**{"first" if p.order == "ABBA" else "second": others[0]})
    return p.text(first=others[0], second=others[1], s2=others[2])
