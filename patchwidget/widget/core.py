"""PatchingWidget: activation patching, live, in a notebook (anywidget front end in js/)."""

from __future__ import annotations

import pathlib
import threading
import time
import traceback
import uuid
from typing import Any

import anywidget
import traitlets as t

from ..components import SITES
from .handlers import HandlersMixin
from .jobs import JobQueue
from .messages import Limits
from .modelline import model_line
from .names import caller_name
from .names import model_expr as loadable_model_expr

STATIC = pathlib.Path(__file__).parent.parent / "static"


class PatchingWidget(HandlersMixin, anywidget.AnyWidget):
    """Interactive patching of one Experiment: sweeps, drill-down, circuits, export.

    ``PatchingWidget(exp)``, or ``PatchingWidget(model, clean=..., corrupted=..., answers=...)``
    with any other ``pw.Experiment`` keyword, or ``PatchingWidget.demo()``.
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    _model_key = t.Unicode().tag(sync=True)  # finds the front end's per-model state
    info = t.Dict().tag(sync=True)
    sites = t.List().tag(sync=True)
    directions = t.Dict().tag(sync=True)
    prompts = t.Dict().tag(sync=True)
    status = t.Unicode("idle").tag(sync=True)
    model_line = t.Unicode().tag(sync=True)  # model, sizes, where it runs, last request's cost
    result_meta = t.Dict().tag(sync=True)
    result_bytes = t.Bytes(b"").tag(sync=True)
    circuit_meta = t.Dict().tag(sync=True)
    circuit_bytes = t.Bytes(b"").tag(sync=True)
    # View settings chosen in the browser; saved with the notebook.
    site = t.Unicode("resid_pre").tag(sync=True)
    direction = t.Unicode("denoising").tag(sync=True)
    metric = t.Unicode("logit_diff").tag(sync=True)
    normalized = t.Bool(True).tag(sync=True)
    circuit = t.List().tag(sync=True)

    def __init__(self, experiment: Any, *, model_expr: str | None = None, **kwargs: Any) -> None:
        from ..experiment import Experiment

        # Generated code reuses the notebook's own variables for the model / the experiment.
        experiment_name = None
        if not isinstance(experiment, Experiment):
            model_expr = model_expr or caller_name(experiment)
            experiment = Experiment(experiment, **kwargs)
        elif kwargs:
            raise TypeError("pass either an Experiment or a model with prompt keywords, not both")
        else:
            experiment_name = caller_name(experiment)
        super().__init__(_model_key=uuid.uuid4().hex)
        self.experiment = experiment
        self.result: Any = None
        self.results: list[Any] = []
        self.history: list[dict[str, Any]] = []
        self.model_expr = model_expr or loadable_model_expr(experiment)
        self.named_experiment = (experiment, experiment_name)
        self._jobs = JobQueue()
        self._history_lock = threading.Lock()
        self._views: dict[int, Any] = {}
        self._describe_experiment()
        if self.directions["denoising"]:
            self.direction = "noising"  # the only direction an ablation supports
        self.on_msg(self._on_message)

    @classmethod
    def demo(cls, corruption: str = "flip_s2", **prompt_kwargs: Any) -> PatchingWidget:
        """The bundled tiny IOI model with its demo prompts."""
        from ..demo import demo_model, demo_prompts
        from ..experiment import Experiment

        exp = Experiment(demo_model(), **demo_prompts(corruption, **prompt_kwargs))
        return cls(exp, model_expr="pw.demo_model()")

    def wait(self, timeout: float | None = 60) -> bool:
        """Block until the running job (if any) has finished; False on timeout."""
        return self._jobs.wait(timeout)

    # ---- state shown in the browser -------------------------------------------------------

    def _describe_experiment(self) -> None:
        exp = self.experiment
        self.info = dict(exp.info)
        self.model_line = model_line(exp)
        if exp._remote is not None:
            exp._remote.on_status = self._remote_status
        available = exp.available_sites()
        self.sites = [
            {"name": name, "reason": available.get(name, "not supported"), "help": site.description}
            for name, site in SITES.items()
        ]
        corruption = exp.corruption
        noising_only = "denoising" not in exp.directions
        self.directions = {
            "denoising": "ablations define only the patched-in value: use noising"
            if noising_only
            else None,
            "noising": None,
        }
        self.prompts = {
            "clean": list(exp.prompts.clean),
            "corrupted": list(exp.prompts.corrupted or exp.prompts.clean),
            "answers": [list(a) for a in exp.prompts.answers],
            "clean_tokens": exp.clean_tokens,
            "corrupted_tokens": exp.corrupted_tokens or exp.clean_tokens,
            "diff_positions": list(exp.diff_positions),
            "position_labels": list(exp.position_labels),
            "answer_tokens": [list(a) for a in exp.answer_tokens],
            "corruption": "counterfactual prompts" if corruption is None else repr(corruption),
            "unknown": _unknown_flags(exp),
        }

    def _remote_status(self, status: str) -> None:
        """A remote request's job status (and, once done, its server runtime) on the model line."""
        self.model_line = model_line(self.experiment, status)

    def _limits(self) -> Limits:
        info = self.experiment.info
        return Limits(
            n_layers=int(info["n_layers"]),
            n_heads=int(info["n_heads"]),
            n_positions=len(self.experiment.position_labels),
            d_mlp=int(info["d_mlp"]),
            n_kv_heads=int(info.get("n_kv_heads") or info["n_heads"]),
        )

    def _site_reasons(self) -> dict[str, str | None]:
        return {s["name"]: s["reason"] for s in self.sites}

    # ---- messages -----------------------------------------------------------------------

    def _reply(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.send(content, buffers=buffers)

    def _record(self, request_id: int | None, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {
            "id": request_id,
            "kind": kind,
            "site": None,
            "direction": None,
            "layers": None,
            "heads": None,
            "positions": None,
            "status": "running",
            "error": None,
            "time": time.time(),
        }
        entry.update(fields)
        with self._history_lock:
            self.history.append(entry)
        return entry

    def _fail(self, entry: dict[str, Any], error: Exception, field: str | None = None) -> None:
        entry.update(status="error", error=str(error))
        self._reply(
            {
                "type": "error",
                "id": entry["id"],
                "kind": entry["kind"],
                "message": str(error) or type(error).__name__,
                "field": field,
            }
        )

    def _internal_error(self, entry: dict[str, Any], error: Exception) -> None:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        self._fail(entry, RuntimeError(f"{entry['kind']} failed: {detail}"))


def _unknown_flags(exp: Any) -> dict[str, list[list[bool]]]:
    """Which tokens are the tokenizer's unknown token: per pair, for clean, corrupted, answers."""
    unk = getattr(exp.tokenizer, "unk_token_id", None)
    prompts = exp.prompts

    def flags(rows: Any) -> list[list[bool]]:
        return [[unk is not None and int(i) == unk for i in ids] for ids in rows]

    return {
        "clean": flags(prompts.clean_ids),
        "corrupted": flags(prompts.corrupted_ids or prompts.clean_ids),
        "answers": flags(prompts.answer_ids),
    }
