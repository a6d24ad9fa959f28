"""Validation of the messages the front end sends; nothing here touches the model.

Every message is checked for type, range and known names before the widget acts on it; a bad
message raises ``MessageError`` whose text the widget shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..components import HEAD_PART_SITES, SITES
from ..corruptions import DIRECTIONS
from ..metrics import METRICS
from ..sites import KV_SITES

VIEW_DIRECTIONS = (*DIRECTIONS, "both")
VIEW_KINDS = ("sweep", "head_parts", "writers")
VIEW_METHODS = ("exact", "attribution")
RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post")
WRITER_SITES = ("head_by_pos", "mlp_out")
MAX_LIST = 100_000
MAX_TEXT = 100_000


class MessageError(ValueError):
    """A front-end message that can't be acted on; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Limits:
    """Model sizes that bound indices in messages."""

    n_layers: int
    n_heads: int
    n_positions: int
    d_mlp: int
    n_kv_heads: int


@dataclass(frozen=True)
class ViewRequest:
    """A sweep to show: one site (``head_parts``: q/k/v/pattern of one head), one or both
    directions, optionally restricted to some layers / heads / positions / neurons."""

    kind: str
    site: str
    direction: str
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    neurons: tuple[int, ...] | None = None
    label: str = ""
    method: str = "exact"
    receivers: tuple[Any, ...] | None = None  # path patching: see path_messages.py

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if self.direction == "both" else (self.direction,)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "site": self.site,
            "direction": self.direction,
            "layers": list_or_none(self.layers),
            "heads": list_or_none(self.heads),
            "positions": list_or_none(self.positions),
            "neurons": list_or_none(self.neurons),
            "label": self.label,
            "method": self.method,
            **({} if self.receivers is None else {"receivers": _receivers_json(self.receivers)}),
        }


@dataclass(frozen=True)
class ComponentSpec:
    """A component as the front end names it: ``head`` is a query head (sites head,
    head_by_pos, head_q, head_pattern), ``kv_head`` a key/value head (head_k, head_v)."""

    site: str
    layer: int
    head: int | None = None
    kv_head: int | None = None
    pos: int | None = None
    neuron: int | None = None
    receiver: Any = None  # a path step: this component reaches only that (path_messages.py)

    @property
    def engine_head(self) -> int | None:
        """The engine's ``head`` argument: the key/value head for k/v sites."""
        return self.kv_head if self.site in KV_SITES else self.head


def require_id(msg: Any) -> int:
    """The request id every message must carry."""
    if not isinstance(msg, dict):
        raise MessageError(f"a message must be an object, got {type(msg).__name__}")
    return _int(msg.get("id"), "id", 0, 2**53)


def message_type(msg: dict[str, Any]) -> str:
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise MessageError("message has no 'type'", "type")
    return kind


def parse_view(msg: dict[str, Any], limits: Limits, sites: dict[str, str | None]) -> ViewRequest:
    """A sweep/drill-down request, checked against the model's sizes and available sites."""
    kind = _choice(msg.get("kind", "sweep"), "kind", VIEW_KINDS)
    direction = _choice(msg.get("direction"), "direction", VIEW_DIRECTIONS)
    allowed = {"sweep": tuple(SITES), "head_parts": ("head",), "writers": RESIDUAL_SITES}[kind]
    site = _choice(msg.get("site"), "site", allowed)
    needed = {"sweep": (site,), "head_parts": HEAD_PART_SITES, "writers": WRITER_SITES}[kind]
    for name in needed:
        reason = sites.get(name, "unknown site")
        if reason is not None:
            raise MessageError(f"site {name!r} is not available: {reason}", "site")
    # A k/v sweep restricts key/value heads; everything else (and head_parts) query heads.
    n_heads = limits.n_kv_heads if kind == "sweep" and site in KV_SITES else limits.n_heads
    request = ViewRequest(
        kind=kind,
        site=site,
        direction=direction,
        layers=_indices(msg.get("layers"), "layers", limits.n_layers),
        heads=_indices(msg.get("heads"), "heads", n_heads),
        positions=_indices(msg.get("positions"), "positions", limits.n_positions),
        neurons=_indices(msg.get("neurons"), "neurons", limits.d_mlp),
        label=_text(msg.get("label", ""), "label", 200),
        method=_choice(msg.get("method", "exact"), "method", VIEW_METHODS),
        receivers=_receivers(msg, limits, kind, site),
    )
    if kind == "head_parts" and (
        request.layers is None
        or len(request.layers) != 1
        or request.heads is None
        or len(request.heads) != 1
    ):
        raise MessageError("a head drill-down needs exactly one layer and one head", "heads")
    if kind == "writers":
        if request.layers is None or len(request.layers) != 1:
            raise MessageError("a writers view needs exactly one layer", "layers")
        if request.positions is None or len(request.positions) != 1:
            raise MessageError("a writers view needs exactly one position", "positions")
        if not any(writer_layers(site, request.layers[0])):
            raise MessageError(
                "only the embeddings write the residual stream entering layer 0", "layers"
            )
    return request


def writer_layers(site: str, layer: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Layers whose attention heads, and whose MLPs, write the residual stream ``site`` of
    ``layer`` (every earlier block; resid_mid also the layer's own attention)."""
    heads_to = {"resid_pre": layer, "resid_mid": layer + 1, "resid_post": layer + 1}[site]
    mlps_to = {"resid_pre": layer, "resid_mid": layer, "resid_post": layer + 1}[site]
    return tuple(range(heads_to)), tuple(range(mlps_to))


def parse_components(raw: Any, limits: Limits, sites: dict[str, str | None]) -> list[ComponentSpec]:
    """The circuit's components: a non-empty list of {site, layer, head?, pos?, neuron?}."""
    if not isinstance(raw, list) or not raw:
        raise MessageError(
            "the circuit is empty: shift-click cells to add components", "components"
        )
    if len(raw) > MAX_LIST:
        raise MessageError(f"too many components ({len(raw)})", "components")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise MessageError(f"component {i} must be an object", "components")
        site = _choice(item.get("site"), f"components[{i}].site", tuple(SITES))
        if sites.get(site) is not None:
            raise MessageError(f"site {site!r} is not available: {sites[site]}", "components")
        out.append(
            ComponentSpec(
                site=site,
                layer=_int(item.get("layer"), f"components[{i}].layer", 0, limits.n_layers - 1),
                head=_opt_int(item.get("head"), f"components[{i}].head", limits.n_heads),
                kv_head=_opt_int(
                    item.get("kv_head"), f"components[{i}].kv_head", limits.n_kv_heads
                ),
                pos=_opt_int(item.get("pos"), f"components[{i}].pos", limits.n_positions),
                neuron=_opt_int(item.get("neuron"), f"components[{i}].neuron", limits.d_mlp),
                receiver=_step_receiver(item.get("receiver"), limits, i),
            )
        )
        _check_head_space(out[-1], i)
    return out


def _check_head_space(spec: ComponentSpec, i: int) -> None:
    """Key/value sites name a ``kv_head``, the other head sites a query ``head``; never both."""
    name = f"components[{i}]"
    if spec.site in KV_SITES:
        if spec.head is not None or spec.kv_head is None:
            raise MessageError(
                f"{name}: site {spec.site!r} indexes key/value heads: give 'kv_head', not 'head'",
                f"{name}.kv_head",
            )
    elif spec.kv_head is not None:
        raise MessageError(
            f"{name}: only head_k and head_v take 'kv_head'; site {spec.site!r} uses 'head'",
            f"{name}.kv_head",
        )


def parse_metric(msg: dict[str, Any]) -> tuple[str, bool]:
    metric = _choice(msg.get("metric", "logit_diff"), "metric", tuple(METRICS))
    normalized = msg.get("normalized", False)
    if not isinstance(normalized, bool):
        raise MessageError("'normalized' must be true or false", "normalized")
    return metric, normalized


def parse_prompt_text(msg: dict[str, Any]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Prompts as typed in the widget: one prompt per line; answers one pair per line,
    ``correct|incorrect`` with spaces kept exactly (GPT-2 style tokens start with a space)."""
    clean = _lines(_text(msg.get("clean"), "clean", MAX_TEXT))
    corrupted = _lines(_text(msg.get("corrupted"), "corrupted", MAX_TEXT))
    answer_lines = _lines(_text(msg.get("answers"), "answers", MAX_TEXT))
    if not clean:
        raise MessageError("write at least one clean prompt (one per line)", "clean")
    if not corrupted:
        raise MessageError(
            "write one corrupted prompt per clean prompt (one per line)", "corrupted"
        )
    if not answer_lines:
        raise MessageError("write the answers as 'correct|incorrect', one pair per line", "answers")
    answers = []
    for i, line in enumerate(answer_lines):
        parts = line.split("|")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise MessageError(
                f"answer line {i + 1} ({line!r}) must be 'correct|incorrect', e.g. ' Mary| John'",
                "answers",
            )
        answers.append((parts[0], parts[1]))
    return clean, corrupted, answers


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def _text(value: Any, name: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise MessageError(f"'{name}' must be text", name)
    if len(value) > max_len:
        raise MessageError(f"'{name}' is too long ({len(value)} characters)", name)
    return value


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise MessageError(f"'{name}' must be one of {', '.join(options)}; got {value!r}", name)
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"'{name}' must be an integer, got {value!r}", name)
    if not low <= value <= high:
        raise MessageError(f"'{name}' = {value} is out of range [{low}, {high}]", name)
    return value


def _opt_int(value: Any, name: str, size: int) -> int | None:
    return None if value is None else _int(value, name, 0, size - 1)


def _indices(value: Any, name: str, size: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise MessageError(f"'{name}' must be a non-empty list of integers or null", name)
    if len(value) > MAX_LIST:
        raise MessageError(f"'{name}' has too many entries ({len(value)})", name)
    items = tuple(_int(v, name, 0, size - 1) for v in value)
    if len(set(items)) != len(items):
        raise MessageError(f"'{name}' has repeated entries", name)
    return items


def list_or_none(values: tuple[int, ...] | None) -> list[int] | None:
    return None if values is None else list(values)


def _receivers(msg: dict[str, Any], limits: Limits, kind: str, site: str) -> tuple[Any, ...] | None:
    from .path_messages import check_senders, parse_receivers

    receivers = parse_receivers(msg.get("receivers"), limits)
    if receivers is not None:
        if kind != "sweep":
            raise MessageError("receivers apply to sweeps, not to a head drill-down", "receivers")
        check_senders(site)
    return receivers


def _step_receiver(raw: Any, limits: Limits, i: int) -> Any:
    from .path_messages import parse_receiver

    return None if raw is None else parse_receiver(raw, limits, f"components[{i}].receiver")


def _receivers_json(receivers: tuple[Any, ...]) -> list[Any]:
    from .path_messages import receiver_json

    return [receiver_json(r) for r in receivers]
