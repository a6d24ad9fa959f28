"""Handlers of the front end's requests (see js/PROTOCOL.md), composed into PatchingWidget.

Engine work (sweeps, circuits, new prompts) runs in a worker thread through ``JobQueue``; the rest
answers at once. Every request gets exactly one final reply carrying its id.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import checks
from ..checks import shown_elsewhere
from ..positions import MARK
from ..sites import kv_group, kv_head, n_heads_of, sweep_axes
from .codegen import ExperimentSource, circuit_code, view_code
from .estimates import run_estimate_view
from .exports import parse_display, save_view_figure, write_view_csv
from .jobs import Job, JobQueue
from .messages import (
    ComponentSpec,
    MessageError,
    ViewRequest,
    list_or_none,
    message_type,
    parse_components,
    parse_metric,
    parse_prompt_text,
    parse_view,
    require_id,
    require_object,
    writer_layers,
)
from .path_messages import (
    attention_payload,
    engine_receiver,
    path_circuit,
    receiver_json,
    spec_json,
)
from .requests import RequestLog, short_repr
from .views import KeptViews, ViewData, circuit_payload

if TYPE_CHECKING:
    from .core import PatchingWidget

PROGRESS_INTERVAL_S = 0.2
CONFIRM_FIELD = "confirm"  # the error field of a sweep that waits for "run it anyway"
Entry = dict[str, Any]
Handler = Callable[[int, dict[str, Any], Entry], None]


class RequestHandlers:
    """Answers one widget's requests; owns its job queue, request log and kept views."""

    def __init__(self, widget: PatchingWidget) -> None:
        self.widget = widget
        self.jobs = JobQueue()
        self.log = RequestLog(widget.send)
        self.views = KeptViews()
        self._handlers: dict[str, Handler] = {
            "sweep": self._handle_sweep,
            "circuit": self._handle_circuit,
            "set_prompts": self._handle_set_prompts,
            "cancel": self._handle_cancel,
            "copy_code": self._handle_copy_code,
            "save_figure": self._handle_save_figure,
            "export_csv": self._handle_export_csv,
            "attention": self._handle_attention,
        }

    def on_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        """Entry point of every custom message; nothing escapes, exactly one final reply."""
        request_id = None
        try:
            request_id = require_id(content)
            kind = message_type(content)
        except MessageError as error:
            self.log.fail(self.log.record(request_id, "invalid"), error, error.field)
            return
        except Exception as error:  # e.g. a pathologically nested message
            self.log.internal_error(self.log.record(request_id, "invalid"), error)
            return
        if kind == "ping":  # the front end's liveness check: answered, not kept in the history
            self.log.reply({"type": "pong", "id": request_id})
            return
        handler = self._handlers.get(kind)
        entry = self.log.record(request_id, kind if handler else "invalid")
        if handler is None:
            message = f"unknown request type {short_repr(kind)}"
            self.log.fail(entry, MessageError(message, "type"), "type")
            return
        try:
            handler(request_id, content, entry)
        except MessageError as error:
            self.log.fail(entry, error, error.field)
        except Exception as error:
            self.log.internal_error(entry, error)

    def close(self) -> None:
        """Stop the running job and drop what this widget keeps (the widget was closed)."""
        self.jobs.close()
        self.views.clear()

    # ---- engine jobs ----------------------------------------------------------------------

    def _handle_sweep(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        request = self._view_request(msg)
        self._confirm_if_long(request, msg)
        entry.update(
            kind="sweep",
            site=request.site if request.kind == "sweep" else request.kind,
            direction=request.direction,
            layers=list_or_none(request.layers),
            heads=list_or_none(request.heads),
            positions=list_or_none(request.positions),
        )
        if request.receivers is not None:
            entry.update(receivers=request.to_json()["receivers"])

        def work(job: Job) -> None:
            # Checked again: a prompt change queued before this sweep may have changed the sizes.
            self._run_view(job, self._view_request(msg), entry)

        self._submit(Job(request_id, "sweep"), entry, work)

    def _handle_circuit(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        raw = msg.get("components")
        parse_components(raw, self.widget.limits(), self.widget.site_reasons())  # fail fast
        entry.update(direction="both")

        def work(job: Job) -> None:
            checked = parse_components(raw, self.widget.limits(), self.widget.site_reasons())
            self._run_circuit(job, checked, entry)

        self._submit(Job(request_id, "circuit"), entry, work)

    def _handle_attention(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        limits = self.widget.limits()
        layer = _int_field(msg, "layer", limits.n_layers)
        head = _int_field(msg, "head", limits.n_heads)
        reason = self.widget.site_reasons().get("head_pattern")
        if reason:
            raise MessageError(f"attention patterns are not available: {reason}", "head")

        def work(job: Job) -> None:
            meta, buffer = attention_payload(self.widget.experiment, job.id, layer, head)
            entry.update(status="done")
            self.log.reply({"type": "attention", "id": job.id, "meta": meta}, [buffer])

        self._submit(Job(request_id, "attention"), entry, work)

    def _handle_set_prompts(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        clean, corrupted, answers = parse_prompt_text(msg)
        self._submit(
            Job(request_id, "set_prompts"),
            entry,
            lambda job: self._run_set_prompts(job, clean, corrupted, answers, entry),
        )

    def _confirm_if_long(self, request: ViewRequest, msg: dict[str, Any]) -> None:
        """Refuse, on the field ``confirm``, a sweep estimated to take long unless confirmed."""
        if msg.get("confirmed") is True or request.method == "attribution":
            return  # attribution estimates take two passes per direction
        exp = self.widget.experiment
        dims = exp.dims
        patches = 0
        for _, site, kwargs in _sweep_calls(request, self._kv_group()):
            sizes = {
                "layer": dims.n_layers,
                "head": n_heads_of(site, dims),
                "pos": exp.length,
                "neuron": dims.d_mlp,
            }
            axes = sweep_axes(site, bool(kwargs.get("by_pos")) or site == "head_by_pos")
            patches += checks.patch_count(sizes, axes, kwargs)
        # Patched runs skip the layers before their patch: about half the model on average.
        seconds = patches * exp.n_pairs * exp.seconds_per_run * 0.5
        if seconds > checks.LONG_SWEEP_S:
            raise MessageError(
                f"This sweep runs {patches * exp.n_pairs:,} patched passes: about "
                f"{checks.duration(seconds)} here. Run it anyway, or choose a smaller view "
                "(drill into a cell, another site, or fewer prompt pairs).",
                CONFIRM_FIELD,
            )

    def _view_request(self, msg: dict[str, Any]) -> ViewRequest:
        request = parse_view(msg, self.widget.limits(), self.widget.site_reasons())
        for direction in request.directions:
            reason = self.widget.directions.get(direction)
            if reason:
                raise MessageError(
                    f"direction {direction!r} is not available: {reason}", "direction"
                )
        return request

    def _submit(self, job: Job, entry: Entry, work: Callable[[Job], None]) -> None:
        try:
            self.jobs.submit(job, lambda j: self._guarded(j, entry, work))
        except RuntimeError as error:
            raise MessageError(str(error)) from None
        self.widget.status = "running"

    def _guarded(self, job: Job, entry: Entry, work: Callable[[Job], None]) -> None:
        try:
            if job.superseded:
                self._superseded(job, entry)
            else:
                with shown_elsewhere():
                    work(job)
        except MessageError as error:
            self.log.fail(entry, error, error.field)
        except Exception as error:
            self.log.internal_error(entry, error)
        finally:
            if not self.jobs.has_pending():
                self.widget.status = "idle"
                self.widget.static_output.flush()  # the new map, before `wait()` returns

    def _superseded(self, job: Job, entry: Entry) -> None:
        entry.update(status="superseded")
        self.log.reply({"type": "superseded", "id": job.id})

    def _run_view(self, job: Job, request: ViewRequest, entry: Entry) -> None:
        if request.method == "attribution":
            run_estimate_view(self, job, request, entry, _sweep_calls(request, self._kv_group()))
            return
        exp = self.widget.experiment
        view = ViewData(job.id, request, n_pairs=len(exp.clean_tokens), kv_group=self._kv_group())
        sweeps = _sweep_calls(request, self._kv_group())
        last_sent = [0.0]
        totals: list[int] = []
        self.log.reply({"type": "started", "id": job.id, "kind": "sweep"})

        for index, (direction, site, kwargs) in enumerate(sweeps):
            if job.cancel.is_set():
                break
            offset = sum(totals)

            def on_progress(
                done: int,
                total: int,
                partial: Any,
                site: str = site,
                direction: str = direction,
                offset: int = offset,
                index: int = index,
            ) -> None:
                if len(totals) == index:
                    totals.append(total)
                view.done = offset + done
                view.total = sum(totals) + total * (len(sweeps) - len(totals))
                view.put(direction, site, partial)
                now = time.monotonic()
                if now - last_sent[0] >= PROGRESS_INTERVAL_S and not job.superseded:
                    last_sent[0] = now
                    self.log.reply(
                        {"type": "progress", "id": job.id, "meta": view.meta("running")},
                        [view.buffer()],
                    )

            result = exp.sweep(
                site,
                direction=direction,
                on_progress=on_progress,
                cancel=job.cancel,
                progress=False,
                **kwargs,
            )
            if len(totals) == index:
                totals.append(int(view.total or 0))
            view.finish(direction, site, result)
        if job.superseded:
            self._superseded(job, entry)
            return
        complete = len(view.results) == len(sweeps) and all(r.complete for *_, r in view.results)
        status = "done" if complete else "cancelled"
        if view.ready:
            self._publish_view(view, status)
        else:
            self.log.reply({"type": "result", "id": job.id, "meta": None, "status": status})
        entry.update(status=status)

    def _publish_view(self, view: ViewData, status: str) -> None:
        meta, buffer = view.meta(status), view.buffer()
        self.widget.result = view.results[0][2] if view.results else None
        self.widget.results = [r for *_, r in view.results]
        self.views.keep(view, len(buffer))
        with self.widget.hold_sync():
            self.widget.result_meta = meta
            self.widget.result_bytes = buffer
        self.log.reply({"type": "result", "id": view.id, "meta": meta, "status": status}, [buffer])

    def _run_circuit(self, job: Job, specs: list[ComponentSpec], entry: Entry) -> None:
        from ..components import Component

        self.log.reply({"type": "started", "id": job.id, "kind": "circuit"})
        group = self._kv_group()
        if any(s.receiver is not None for s in specs):
            paths = path_circuit(self.widget.experiment, specs, group)
            self._finish_circuit(job, specs, entry, paths)
            return
        components = [
            Component(s.site, s.layer, head=s.engine_head, pos=s.pos, neuron=s.neuron)
            for s in specs
        ]
        checked = self.widget.experiment.circuit(components)  # its notes travel in the reply
        self._finish_circuit(job, specs, entry, checked)

    def _finish_circuit(
        self, job: Job, specs: list[ComponentSpec], entry: Entry, checked: Any
    ) -> None:
        if job.superseded:
            self._superseded(job, entry)
            return
        meta, buffer = circuit_payload(
            job.id, [spec_json(s) for s in specs], checked.results, checked.complement_note
        )
        with self.widget.hold_sync():
            self.widget.circuit_meta = meta
            self.widget.circuit_bytes = buffer
        self.widget.circuit_checks = checked
        entry.update(status="done")
        self.log.reply({"type": "circuit_result", "id": job.id, "meta": meta}, [buffer])

    def _run_set_prompts(
        self,
        job: Job,
        clean: list[str],
        corrupted: list[str],
        answers: list[tuple[str, str]],
        entry: Entry,
    ) -> None:
        from ..experiment import Experiment

        old = self.widget.experiment
        try:
            exp = Experiment(
                old.model,
                clean=clean,
                # Noise and ablations define the corrupted run themselves.
                corrupted=None if old.corruption is not None else corrupted,
                answers=answers,
                corruption=old.corruption,
                batch_size=old.batch_size,
                memory_budget=old.memory_budget,
                # [NAME:word] marks in the edited prompts name their positions.
                positions="marked" if any(MARK.search(p) for p in clean) else None,
            )
        except (ValueError, TypeError) as error:
            raise MessageError(str(error), _prompt_field(str(error))) from error
        if job.superseded:
            self._superseded(job, entry)
            return
        self.widget.experiment = exp
        self.widget.result, self.widget.results = None, []
        with self.widget.hold_sync():
            self.widget.describe_experiment()
            self.widget.result_meta, self.widget.result_bytes = {}, b""
            self.widget.circuit_meta, self.widget.circuit_bytes = {}, b""
        entry.update(status="done")
        self.log.reply({"type": "prompts_set", "id": job.id, "notes": list(exp.prompt_notes)})

    # ---- immediate requests ---------------------------------------------------------------

    def _handle_cancel(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        job = self.jobs.latest
        entry.update(status="done")
        if job is None:
            self.log.reply({"type": "ack", "id": request_id, "message": "nothing is running"})
            return
        if job.kind != "sweep":
            # A circuit check is a few runs that can't stop half-way; a prompt edit is never lost.
            what = "a circuit check" if job.kind == "circuit" else "a prompt change"
            message = f"{what} can't be cancelled; it finishes by itself"
            self.log.reply({"type": "ack", "id": request_id, "message": message, "target": None})
            return
        job.cancel.set()  # the engine stops after its current batch
        self.log.reply(
            {"type": "ack", "id": request_id, "message": f"cancelling {job.id}", "target": job.id}
        )

    def _handle_copy_code(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        source = self._source()
        if msg.get("what") == "circuit":
            limits, reasons = self.widget.limits(), self.widget.site_reasons()
            specs = parse_components(msg.get("components"), limits, reasons)
            code = circuit_code(source, [_code_fields(s) for s in specs], self._kv_group())
        else:
            view = require_object(msg.get("view"), "view")
            request = parse_view(view, self.widget.limits(), self.widget.site_reasons())
            metric, normalized = parse_metric(msg)
            code = view_code(source, request.to_json(), metric, normalized, self._kv_group())
        entry.update(status="done")
        self.log.reply({"type": "code", "id": request_id, "code": code})

    def _handle_save_figure(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        metric, normalized = parse_metric(msg)
        scale, drop = parse_display(msg)
        view = self._kept_view(msg)
        path = save_view_figure(view, metric, normalized, scale, drop, pathlib.Path.cwd())
        entry.update(status="done")
        self.log.reply({"type": "saved", "id": request_id, "path": str(path)})

    def _handle_export_csv(self, request_id: int, msg: dict[str, Any], entry: Entry) -> None:
        path = write_view_csv(self._kept_view(msg), pathlib.Path.cwd())
        entry.update(status="done")
        self.log.reply({"type": "saved", "id": request_id, "path": str(path)})

    def _kept_view(self, msg: dict[str, Any]) -> ViewData:
        view = self.views.get(msg.get("view_id"))
        if view is None or not view.ready:
            raise MessageError("that view is not in this kernel any more: run it again", "view_id")
        return view

    # ---- helpers --------------------------------------------------------------------------

    def _kv_group(self) -> int:
        return kv_group(self.widget.experiment.dims)

    def _source(self) -> ExperimentSource:
        exp = self.widget.experiment
        corruption = exp.corruption
        named, name = self.widget.named_experiment
        return ExperimentSource(
            experiment_expr=name if named is exp else None,
            model_expr=self.widget.model_expr,
            clean=tuple(self.widget.prompts["clean"]),
            corrupted=() if corruption is not None else tuple(self.widget.prompts["corrupted"]),
            answers=tuple(tuple(a) for a in self.widget.prompts["answers"]),
            corruption_expr=None if corruption is None else f"pw.{corruption!r}",
            positions={k: list(v) for k, v in exp.named_positions.items()} or None,
        )


def _sweep_calls(request: ViewRequest, kv_group: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(direction, site, keyword arguments) of each engine sweep the view needs."""
    from ..components import HEAD_PART_SITES

    base: dict[str, Any] = {
        k: list(v)
        for k, v in (
            ("layers", request.layers),
            ("heads", request.heads),
            ("positions", request.positions),
            ("neurons", request.neurons),
        )
        if v is not None
    }
    if request.receivers is not None:
        base["receivers"] = [engine_receiver(r, kv_group) for r in request.receivers]
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for direction in request.directions:
        if request.kind == "sweep":
            calls.append((direction, request.site, base))
            continue
        if request.kind == "writers":
            (layer,) = request.layers or (0,)
            head_layers, mlp_layers = writer_layers(request.site, layer)
            for site, layers in (("head_by_pos", head_layers), ("mlp_out", mlp_layers)):
                if layers:
                    calls.append((direction, site, dict(base, layers=list(layers))))
            continue
        for site in HEAD_PART_SITES:
            kwargs = dict(base, by_pos=True)
            kwargs["heads"] = [kv_head(site, request.drilled_head[1], kv_group)]
            calls.append((direction, site, kwargs))
    return calls


def _code_fields(spec: ComponentSpec) -> dict[str, Any]:
    """A circuit entry's ``pw.Component`` keywords (k/v sites take the key/value head as head),
    with a path step's receiver as the front end sent it."""
    fields = _engine_fields(spec)
    if spec.receiver is not None:
        fields["receiver"] = receiver_json(spec.receiver)
    return fields


def _engine_fields(spec: ComponentSpec) -> dict[str, Any]:
    """A component's ``pw.Component`` keywords (k/v sites take the key/value head as head)."""
    return {
        "site": spec.site,
        "layer": spec.layer,
        "head": spec.engine_head,
        "pos": spec.pos,
        "neuron": spec.neuron,
    }


def _int_field(msg: dict[str, Any], name: str, size: int) -> int:
    value = msg.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        got = short_repr(value)
        raise MessageError(f"'{name}' must be an integer in [0, {size - 1}], got {got}", name)
    return value


def _prompt_field(message: str) -> str:
    lowered = message.lower()
    if "answer" in lowered:
        return "answers"
    if "corrupted" in lowered:
        return "corrupted"
    return "clean"
