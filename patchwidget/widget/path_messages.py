"""Path patching in the front end's messages: receivers, path steps of a circuit, and the
Python code that reproduces them. Heads are query heads, as everywhere in the front end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..circuit import CircuitResult
from ..components import Component
from ..experiment import Experiment
from ..paths import LOGITS, RECEIVER_SITES, SENDER_SITES, Path, Receiver, every_receiver_after
from ..sites import kv_head
from .messages import Limits, MessageError

MAX_RECEIVERS = 1000


@dataclass(frozen=True)
class ReceiverSpec:
    """A receiver as the front end names it: ``head_q|head_k|head_v`` (query head) or
    ``mlp_in``, at one position or all."""

    site: str
    layer: int
    head: int | None = None
    pos: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


ReceiverMessage = ReceiverSpec | str  # or "logits"


def parse_receiver(raw: Any, limits: Limits, name: str) -> ReceiverMessage:
    """``"logits"`` or ``{site, layer, head?, pos?}``; errors name the field."""
    if raw == LOGITS:
        return LOGITS
    if not isinstance(raw, dict) or raw.get("site") not in RECEIVER_SITES:
        raise MessageError(
            f"'{name}' must be \"logits\" or {{site: {' | '.join(RECEIVER_SITES)}, layer, "
            "head?, pos?}",
            "receivers",
        )
    site = raw["site"]
    head = raw.get("head")
    if (site == "mlp_in") != (head is None):
        raise MessageError(f"'{name}': {site} {'takes no' if head else 'needs a'} head", name)
    return ReceiverSpec(
        site=site,
        layer=_int(raw.get("layer"), f"{name}.layer", limits.n_layers),
        head=None if head is None else _int(head, f"{name}.head", limits.n_heads),
        pos=None if raw.get("pos") is None else _int(raw["pos"], f"{name}.pos", limits.n_positions),
    )


def parse_receivers(raw: Any, limits: Limits) -> tuple[ReceiverMessage, ...] | None:
    """A view's receivers: null (an ordinary sweep) or a list (possibly empty)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_RECEIVERS:
        raise MessageError("'receivers' must be a list of receivers or null", "receivers")
    return tuple(parse_receiver(r, limits, f"receivers[{i}]") for i, r in enumerate(raw))


def check_senders(site: str) -> None:
    if site not in SENDER_SITES:
        raise MessageError(
            f"path patching sends from {', '.join(SENDER_SITES)}, not {site!r}", "site"
        )


def engine_receiver(r: ReceiverMessage, kv_group: int) -> Receiver:
    if isinstance(r, str):
        return r
    return Component(r.site, r.layer, head=kv_head(r.site, r.head, kv_group), pos=r.pos)


def receiver_json(r: ReceiverMessage) -> Any:
    return r if isinstance(r, str) else r.to_json()


def receiver_code(r: Any, kv_group: int) -> str:
    """Python for a receiver in the front end's JSON form."""
    if r == LOGITS:
        return repr(LOGITS)
    head = kv_head(r["site"], r.get("head"), kv_group)
    args = [repr(r["site"]), f"layer={r['layer']}"]
    args += [f"{k}={v}" for k, v in (("head", head), ("pos", r.get("pos"))) if v is not None]
    return f"pw.Component({', '.join(args)})"


def engine_paths(exp: Experiment, specs: list[Any], kv_group: int) -> list[Path]:
    """A circuit's entries as edges: a path step (with ``receiver``) is one edge; a node is
    every edge from it (patched together, that is the node itself)."""
    out = []
    for s in specs:
        if s.site not in SENDER_SITES:
            raise MessageError(
                f"a circuit with path steps holds heads, attention and MLP outputs only; "
                f"remove {s.site} L{s.layer}",
                "components",
            )
        sender = Component(s.site, s.layer, head=s.head, pos=s.pos)
        if s.receiver is None:
            out += [Path(sender, r) for r in every_receiver_after(exp, s.site, s.layer)]
        else:
            out.append(Path(sender, engine_receiver(s.receiver, kv_group)))
    return out


def _int(value: Any, name: str, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise MessageError(f"'{name}' must be an integer in [0, {size - 1}], got {value!r}", name)
    return value


def path_circuit(exp: Experiment, specs: list[Any], kv_group: int) -> CircuitResult:
    """A circuit holding path steps, patched as a set of edges in both directions (there is
    no complement of a set of paths to check)."""
    paths = engine_paths(exp, specs, kv_group)
    results = {(d, "circuit"): exp.patch_paths(paths, d, label="paths") for d in exp.directions}
    components = tuple(dict.fromkeys(p.sender for p in paths))
    return CircuitResult(components=components, complement_size=0, results=results)


def spec_json(spec: Any) -> dict[str, Any]:
    """A circuit entry as the front end sent it."""
    out = {k: v for k, v in vars(spec).items() if v is not None or k == "site"}
    if spec.receiver is not None:
        out["receiver"] = receiver_json(spec.receiver)
    return out


def attention_payload(
    exp: Experiment, request_id: int, layer: int, head: int
) -> tuple[dict, bytes]:
    """Meta and float32 buffer (clean, then corrupted; each pair × dest × src) of a head's
    attention patterns."""
    att = exp.attention(layer, head)
    meta = {
        "id": request_id,
        "layer": att.layer,
        "head": att.head,
        "n_pairs": exp.n_pairs,
        "length": exp.length,
        "clean_tokens": [list(t) for t in att.clean_tokens],
        "corrupted_tokens": [list(t) for t in att.corrupted_tokens],
    }
    data = np.stack([att.clean.data, att.corrupted.data]).astype("<f4")
    return meta, np.ascontiguousarray(data).tobytes()


def path_circuit_lines(components: Sequence[dict[str, Any]], kv_group: int) -> list[str]:
    """Python lines that patch a circuit with path steps as a set of edges, both directions."""
    lines = ["paths = ["]
    for comp in components:
        args = [repr(comp["site"]), f"layer={comp['layer']}"]
        args += [f"{k}={comp[k]}" for k in ("head", "pos") if comp.get(k) is not None]
        sender = f"pw.Component({', '.join(args)})"
        receiver = comp.get("receiver")
        if receiver is None:
            every = f"pw.paths.every_receiver_after(exp, {comp['site']!r}, {comp['layer']})"
            lines.append(f"    *(pw.Path({sender}, r) for r in {every}),")
        else:
            lines.append(f"    pw.Path({sender}, {receiver_code(receiver, kv_group)}),")
    lines += [
        "]",
        "for direction in exp.directions:",
        "    res = exp.patch_paths(paths, direction)",
        '    print(direction, res.values("logit_diff", normalized=True))',
    ]
    return lines
