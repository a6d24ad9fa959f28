"""Handlers of the front end's requests (see js/PROTOCOL.md); mixed into PatchingWidget.

Engine work (sweeps, circuits, new prompts) runs in a worker thread through ``JobQueue``; the rest
answers at once. Every request gets exactly one final reply carrying its id.
"""

from __future__ import annotations

import pathlib
import time
import warnings
from typing import Any

from ..sites import kv_group, kv_head
from .codegen import ExperimentSource, circuit_code, view_code
from .estimates import run_estimate_view
from .exports import parse_display, save_view_figure, write_view_csv
from .jobs import Job
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
    writer_layers,
)
from .path_messages import (
    attention_payload,
    engine_receiver,
    path_circuit,
    receiver_json,
    spec_json,
)
from .views import ViewData, circuit_payload

PROGRESS_INTERVAL_S = 0.2
MAX_KEPT_VIEWS = 32


class HandlersMixin:
    """Message dispatch; expects the attributes PatchingWidget sets up."""

    def _on_message(self, _widget: Any, content: Any, buffers: Any) -> None:
        request_id = None
        try:
            request_id = require_id(content)
            kind = message_type(content)
        except MessageError as error:
            entry = self._record(request_id, "invalid")
            self._fail(entry, error, error.field)
            return
        handler = getattr(self, f"_handle_{kind}", None) if kind in HANDLED else None
        entry = self._record(request_id, kind if handler else "invalid")
        if handler is None:
            self._fail(entry, MessageError(f"unknown request type {kind!r}", "type"), "type")
            return
        try:
            handler(request_id, content, entry)
        except MessageError as error:
            self._fail(entry, error, error.field)
        except Exception as error:
            self._internal_error(entry, error)

    # ---- engine jobs ----------------------------------------------------------------------

    def _handle_sweep(self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]) -> None:
        request = parse_view(msg, self._limits(), self._site_reasons())
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
        self._submit(
            Job(request_id, "sweep"), entry, lambda job: self._run_view(job, request, entry)
        )

    def _handle_circuit(self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]) -> None:
        specs = parse_components(msg.get("components"), self._limits(), self._site_reasons())
        entry.update(direction="both")
        self._submit(
            Job(request_id, "circuit"), entry, lambda job: self._run_circuit(job, specs, entry)
        )

    def _handle_attention(
        self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        limits = self._limits()
        layer = _int_field(msg, "layer", limits.n_layers)
        head = _int_field(msg, "head", limits.n_heads)
        reason = self._site_reasons().get("head_pattern")
        if reason:
            raise MessageError(f"attention patterns are not available: {reason}", "head")

        def work(job: Job) -> None:
            meta, buffer = attention_payload(self.experiment, job.id, layer, head)
            entry.update(status="done")
            self._reply({"type": "attention", "id": job.id, "meta": meta}, [buffer])

        self._submit(Job(request_id, "attention"), entry, work)

    def _handle_set_prompts(
        self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        clean, corrupted, answers = parse_prompt_text(msg)
        self._submit(
            Job(request_id, "set_prompts"),
            entry,
            lambda job: self._run_set_prompts(job, clean, corrupted, answers, entry),
        )

    def _submit(self, job: Job, entry: dict[str, Any], work: Any) -> None:
        self.status = "running"
        self._jobs.submit(job, lambda j: self._guarded(j, entry, work))

    def _guarded(self, job: Job, entry: dict[str, Any], work: Any) -> None:
        try:
            if job.superseded:
                self._superseded(job, entry)
            else:
                work(job)
        except MessageError as error:
            self._fail(entry, error, error.field)
        except Exception as error:
            self._internal_error(entry, error)
        finally:
            if self._jobs.is_current(job) or self._jobs.current is None:
                self.status = "idle"

    def _superseded(self, job: Job, entry: dict[str, Any]) -> None:
        entry.update(status="superseded")
        self._reply({"type": "superseded", "id": job.id})

    def _run_view(self, job: Job, request: ViewRequest, entry: dict[str, Any]) -> None:
        if request.method == "attribution":
            run_estimate_view(self, job, request, entry, _sweep_calls(request, self._kv_group()))
            return
        exp = self.experiment
        view = ViewData(job.id, request, n_pairs=len(exp.clean_tokens), kv_group=self._kv_group())
        sweeps = _sweep_calls(request, self._kv_group())
        last_sent = [0.0]
        totals: list[int] = []
        self._reply({"type": "started", "id": job.id, "kind": "sweep"})

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
                    self._reply(
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
            self._reply({"type": "result", "id": job.id, "meta": None, "status": status})
        entry.update(status=status)

    def _publish_view(self, view: ViewData, status: str) -> None:
        meta, buffer = view.meta(status), view.buffer()
        self.result = view.results[0][2] if view.results else None
        self.results = [r for *_, r in view.results]
        self._views[view.id] = view
        for old in list(self._views)[:-MAX_KEPT_VIEWS]:
            del self._views[old]
        with self.hold_sync():
            self.result_meta = meta
            self.result_bytes = buffer
        self._reply({"type": "result", "id": view.id, "meta": meta, "status": status}, [buffer])

    def _run_circuit(self, job: Job, specs: list[ComponentSpec], entry: dict[str, Any]) -> None:
        from ..components import Component

        self._reply({"type": "started", "id": job.id, "kind": "circuit"})
        group = self._kv_group()
        if any(s.receiver is not None for s in specs):
            return self._finish_circuit(
                job, specs, entry, path_circuit(self.experiment, specs, group)
            )
        components = [
            Component(s.site, s.layer, head=s.engine_head, pos=s.pos, neuron=s.neuron)
            for s in specs
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a mixed circuit's note travels in the reply
            checks = self.experiment.circuit(components)
        self._finish_circuit(job, specs, entry, checks)

    def _finish_circuit(
        self, job: Job, specs: list[ComponentSpec], entry: dict[str, Any], checks: Any
    ) -> None:
        if job.superseded:
            self._superseded(job, entry)
            return
        meta, buffer = circuit_payload(
            job.id, [spec_json(s) for s in specs], checks.results, checks.complement_note
        )
        with self.hold_sync():
            self.circuit_meta = meta
            self.circuit_bytes = buffer
        self.circuit_checks = checks
        entry.update(status="done")
        self._reply({"type": "circuit_result", "id": job.id, "meta": meta}, [buffer])

    def _run_set_prompts(
        self,
        job: Job,
        clean: list[str],
        corrupted: list[str],
        answers: list[tuple[str, str]],
        entry: dict[str, Any],
    ) -> None:
        from ..experiment import Experiment

        old = self.experiment
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
            )
        except (ValueError, TypeError) as error:
            raise MessageError(str(error), _prompt_field(str(error))) from error
        if job.superseded:
            self._superseded(job, entry)
            return
        self.experiment = exp
        self.result, self.results = None, []
        with self.hold_sync():
            self._describe_experiment()
            self.result_meta, self.result_bytes = {}, b""
            self.circuit_meta, self.circuit_bytes = {}, b""
        entry.update(status="done")
        self._reply({"type": "prompts_set", "id": job.id})

    # ---- immediate requests ---------------------------------------------------------------

    def _handle_cancel(self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]) -> None:
        job = self._jobs.cancel()
        entry.update(status="done")
        if job is None:
            self._reply({"type": "ack", "id": request_id, "message": "nothing is running"})
        else:
            self._reply(
                {
                    "type": "ack",
                    "id": request_id,
                    "message": f"cancelling {job.id}",
                    "target": job.id,
                }
            )

    def _handle_copy_code(
        self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        source = self._source()
        if msg.get("what") == "circuit":
            specs = parse_components(msg.get("components"), self._limits(), self._site_reasons())
            code = circuit_code(source, [_code_fields(s) for s in specs], self._kv_group())
        else:
            request = parse_view(msg.get("view") or {}, self._limits(), self._site_reasons())
            metric, normalized = parse_metric(msg)
            code = view_code(source, request.to_json(), metric, normalized, self._kv_group())
        entry.update(status="done")
        self._reply({"type": "code", "id": request_id, "code": code})

    def _handle_save_figure(
        self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        metric, normalized = parse_metric(msg)
        scale, drop = parse_display(msg)
        view = self._kept_view(msg)
        path = save_view_figure(view, metric, normalized, scale, drop, pathlib.Path.cwd())
        entry.update(status="done")
        self._reply({"type": "saved", "id": request_id, "path": str(path)})

    def _handle_export_csv(
        self, request_id: int, msg: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        path = write_view_csv(self._kept_view(msg), pathlib.Path.cwd())
        entry.update(status="done")
        self._reply({"type": "saved", "id": request_id, "path": str(path)})

    def _kept_view(self, msg: dict[str, Any]) -> ViewData:
        view_id = msg.get("view_id")
        view = self._views.get(view_id) if isinstance(view_id, int) else None
        if view is None or not view.ready:
            raise MessageError("that view is not in this kernel any more: run it again", "view_id")
        return view

    # ---- helpers --------------------------------------------------------------------------

    def _kv_group(self) -> int:
        return kv_group(self.experiment.dims)

    def _source(self) -> ExperimentSource:
        exp = self.experiment
        corruption = exp.corruption
        named, name = self.named_experiment
        return ExperimentSource(
            experiment_expr=name if named is exp else None,
            model_expr=self.model_expr,
            clean=tuple(self.prompts["clean"]),
            corrupted=() if corruption is not None else tuple(self.prompts["corrupted"]),
            answers=tuple(tuple(a) for a in self.prompts["answers"]),
            corruption_expr=None if corruption is None else f"pw.{corruption!r}",
        )


HANDLED = (
    "sweep",
    "circuit",
    "attention",
    "set_prompts",
    "cancel",
    "copy_code",
    "save_figure",
    "export_csv",
)


def _sweep_calls(request: ViewRequest, kv_group: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(direction, site, keyword arguments) of each engine sweep the view needs."""
    from ..components import HEAD_PART_SITES

    base = {
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
    calls = []
    for direction in request.directions:
        if request.kind == "sweep":
            calls.append((direction, request.site, base))
            continue
        if request.kind == "writers":
            head_layers, mlp_layers = writer_layers(request.site, request.layers[0])
            for site, layers in (("head_by_pos", head_layers), ("mlp_out", mlp_layers)):
                if layers:
                    calls.append((direction, site, dict(base, layers=list(layers))))
            continue
        for site in HEAD_PART_SITES:
            kwargs = dict(base, by_pos=True)
            kwargs["heads"] = [kv_head(site, request.heads[0], kv_group)]
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
        raise MessageError(f"'{name}' must be an integer in [0, {size - 1}], got {value!r}", name)
    return value


def _prompt_field(message: str) -> str:
    lowered = message.lower()
    if "answer" in lowered:
        return "answers"
    if "corrupted" in lowered:
        return "corrupted"
    return "clean"
