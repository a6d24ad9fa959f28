"""The widget's fast-estimate mode: an attribution estimate paints at once, then exact patching
replaces its cells, largest estimate first (js/PROTOCOL.md, "Fast estimate")."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..attribution import ESTIMATE_NOTE
from ..components import HEAD_PART_SITES
from ..result import PatchResult
from ..verification import Verification
from .jobs import Job
from .messages import ViewRequest
from .views import ViewData

PROGRESS_INTERVAL_S = 0.2
_F32 = np.dtype("<f4")


class EstimateView(ViewData):
    """A view whose cells start as estimates; per direction it also keeps the estimate's
    readouts and a flag per cell (1 = exact), sent after the usual buffer."""

    def __init__(self, request_id: int, request: ViewRequest, n_pairs: int) -> None:
        super().__init__(request_id, request, n_pairs)
        self.estimates: dict[str, np.ndarray] = {}
        self.exact: dict[str, np.ndarray] = {}
        self.current: dict[tuple[str, str], PatchResult] = {}

    def put_estimate(self, direction: str, site: str, estimate: PatchResult) -> None:
        self.put(direction, site, estimate)
        if not self.estimates:
            for d in self.request.directions:
                self.estimates[d] = np.full_like(self.panels[d]["readouts"], np.nan)
                self.exact[d] = np.zeros(self.shape, dtype=np.float32)
        slot = self._slot(site)
        target = self.estimates[direction][slot]
        target[...] = np.asarray(estimate.readouts, dtype=np.float32).reshape(target.shape)
        self.current[(direction, site)] = estimate

    def put_verified(self, direction: str, site: str, check: Verification) -> None:
        """Cells verified so far take their exact readouts; the rest keep the estimate's."""
        estimate = check.estimate
        flat = estimate.readouts.reshape(-1, *estimate.readouts.shape[-2:]).copy()
        exact = check.exact.readouts.reshape(flat.shape)
        flat[check.verified] = exact[check.verified]
        mixed = dataclasses.replace(
            estimate,
            readouts=flat.reshape(estimate.readouts.shape),
            metadata={**estimate.metadata, "exact_cells": check.verified.tolist()},
            complete=True,
        )
        self.put(direction, site, mixed)
        flags = np.zeros(len(flat), dtype=np.float32)
        flags[check.verified] = 1
        target = self.exact[direction][self._slot(site)]
        target[...] = flags.reshape(target.shape)
        self.current[(direction, site)] = mixed

    def _slot(self, site: str) -> tuple[int, ...]:
        return (HEAD_PART_SITES.index(site),) if self.request.kind == "head_parts" else ()

    def meta(self, status: str) -> dict[str, Any]:
        meta = super().meta(status)
        meta.update(method="attribution", note=ESTIMATE_NOTE)
        return meta

    def buffer(self) -> bytes:
        parts = [super().buffer()]
        for direction in self.request.directions:
            parts.append(np.ascontiguousarray(self.estimates[direction], dtype=_F32).tobytes())
            parts.append(np.ascontiguousarray(self.exact[direction], dtype=_F32).tobytes())
        return b"".join(parts)


def run_estimate_view(
    widget: Any,
    job: Job,
    request: ViewRequest,
    entry: dict[str, Any],
    calls: list[tuple[str, str, dict[str, Any]]],
) -> None:
    """Estimate every sweep of the view, show it, then verify its cells exactly in the order of
    their estimated effect, streaming progress replies as the exact values arrive."""
    exp = widget.experiment
    view = EstimateView(job.id, request, n_pairs=exp.n_pairs)
    entry.update(method="attribution")
    widget._reply({"type": "started", "id": job.id, "kind": "sweep"})
    estimates = []
    for direction, site, kwargs in calls:
        estimate = exp.sweep(site, direction=direction, method="attribution", **kwargs)
        view.put_estimate(direction, site, estimate)
        estimates.append((direction, site, estimate))
    sizes = [int(np.prod(e.shape)) for *_, e in estimates]
    view.total = sum(sizes)
    last_sent = [time.monotonic()]

    def send(force: bool = False) -> None:
        now = time.monotonic()
        if (force or now - last_sent[0] >= PROGRESS_INTERVAL_S) and not job.superseded:
            last_sent[0] = now
            widget._reply(
                {"type": "progress", "id": job.id, "meta": view.meta("running")}, [view.buffer()]
            )

    send(force=True)  # the estimate paints at once
    for (direction, site, estimate), offset in zip(estimates, np.cumsum([0, *sizes]), strict=False):
        if job.cancel.is_set():
            break

        def on_progress(
            done: int,
            _total: int,
            check: Verification,
            direction=direction,
            site=site,
            offset=offset,
        ) -> None:
            view.put_verified(direction, site, check)
            view.done = int(offset) + done
            send()

        check = exp.verify(estimate, on_progress=on_progress, cancel=job.cancel, progress=False)
        view.put_verified(direction, site, check)
        view.done = int(offset) + check.n_verified
    if job.superseded:
        widget._superseded(job, entry)
        return
    view.results = [(d, s, view.current[(d, s)]) for d, s, _ in estimates]
    status = "done" if view.done == view.total else "cancelled"
    widget._publish_view(view, status)
    entry.update(status=status)
