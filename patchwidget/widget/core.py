"""PatchingWidget: activation patching, live, in a notebook (anywidget front end in js/)."""

from __future__ import annotations

import pathlib
import uuid
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

from ..components import SITES
from .handlers import RequestHandlers
from .messages import Limits
from .modelline import model_line
from .names import caller_name
from .names import model_expr as loadable_model_expr
from .snapshot import StaticView

if TYPE_CHECKING:
    from ..experiment import Experiment

STATIC = pathlib.Path(__file__).parent.parent / "static"


class PatchingWidget(anywidget.AnyWidget):
    """Interactive patching of one Experiment: sweeps, drill-down, circuits, export.

    ``PatchingWidget(exp)``, or ``PatchingWidget(model, clean=..., corrupted=..., answers=...)``
    with any other ``pw.Experiment`` keyword, or ``PatchingWidget.demo()``.
    """

    # The bundle's text, not its path: anywidget ties every instance to a path's file watcher
    # for good, so closed widgets (and their experiments) could never be freed.
    _esm = (STATIC / "widget.js").read_text(encoding="utf-8")
    _css = (STATIC / "widget.css").read_text(encoding="utf-8")

    _model_key = t.Unicode().tag(sync=True)  # finds the front end's per-model state
    info = t.Dict().tag(sync=True)
    sites: t.List[dict[str, Any]] = t.List().tag(sync=True)
    directions = t.Dict().tag(sync=True)
    prompts = t.Dict().tag(sync=True)
    status = t.Unicode("idle")  # kernel side only: "running" while a job runs
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
    circuit: t.List[dict[str, Any]] = t.List().tag(sync=True)
    # Id of the sweep whose result the front end shows, set by it: marimo reruns cells on it.
    result_id = t.Int(0).tag(sync=True)

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
        self.experiment: Experiment = experiment
        self.result: Any = None
        self.results: list[Any] = []
        self.circuit_checks: Any = None
        self.model_expr = model_expr or loadable_model_expr(experiment)
        self.named_experiment = (experiment, experiment_name)
        self._static = StaticView()
        self.describe_experiment()
        if self.directions["denoising"]:
            self.direction = "noising"  # the only direction an ablation supports
        self._handlers = RequestHandlers(self)
        self.on_msg(self._handlers.on_message)

    @classmethod
    def demo(cls, corruption: str = "flip_s2", **prompt_kwargs: Any) -> PatchingWidget:
        """The bundled tiny IOI model with its demo prompts."""
        from ..demo import demo_model, demo_prompts
        from ..experiment import Experiment

        prompts: dict[str, Any] = demo_prompts(corruption, **prompt_kwargs)
        exp = Experiment(demo_model(), **prompts)
        return cls(exp, model_expr="pw.demo_model()")

    def wait(self, timeout: float | None = 60) -> bool:
        """Block until the running job (if any) has finished; False on timeout."""
        return self._handlers.jobs.wait(timeout)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The latest requests from the browser (newest last), with their outcome."""
        return self._handlers.log.entries

    def close(self) -> None:
        """Close the widget: its running sweep stops after the current batch, its views go."""
        handlers = getattr(self, "_handlers", None)
        if handlers is not None:
            handlers.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The widget view, plus a PNG of the current map and a one-line summary for viewers
        without a widget front end (GitHub, nbviewer, HTML exports, plain IPython)."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        static = self._static.bundle(
            self.model_expr, len(self.prompts["clean"]), self.results, self.metric, self.normalized
        )
        return {**data, **static}, metadata

    # ---- state shown in the browser -------------------------------------------------------

    def describe_experiment(self) -> None:
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
            "named_positions": {k: list(v) for k, v in exp.named_positions.items()},
            "answer_tokens": [list(a) for a in exp.answer_tokens],
            "corruption": "counterfactual prompts" if corruption is None else repr(corruption),
            "unknown": _unknown_flags(exp),
            "notes": list(exp.prompt_notes),
        }

    def _remote_status(self, status: str) -> None:
        """A remote request's job status (and, once done, its server runtime) on the model line."""
        self.model_line = model_line(self.experiment, status)

    def limits(self) -> Limits:
        info = self.experiment.info
        return Limits(
            n_layers=int(info["n_layers"]),
            n_heads=int(info["n_heads"]),
            n_positions=len(self.experiment.position_labels),
            d_mlp=int(info["d_mlp"]),
            n_kv_heads=int(info.get("n_kv_heads") or info["n_heads"]),
        )

    def site_reasons(self) -> dict[str, str | None]:
        return {s["name"]: s["reason"] for s in self.sites}


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
