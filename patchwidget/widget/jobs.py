"""Kernel-side job control: engine work runs in a worker thread, one job at a time, in order.

A new job supersedes the sweeps and circuit checks queued or running before it (the running one's
cancel event is set, the engine stops after its current batch). Prompt changes are never
superseded: a sweep sent right after a prompt edit runs on the new prompts.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

NEVER_SUPERSEDED = ("set_prompts",)
log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request's work; ``cancel`` is passed to the engine, ``superseded`` says why."""

    id: int
    kind: str
    cancel: threading.Event = field(default_factory=threading.Event)
    superseded: bool = False

    def supersede(self) -> None:
        self.superseded = True
        self.cancel.set()


Work = Callable[[Job], None]


class JobQueue:
    """Runs jobs one after another in a daemon thread that exists only while there is work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: deque[tuple[Job, Work]] = deque()
        self._current: Job | None = None
        self._worker: threading.Thread | None = None
        self._closed = False

    @property
    def latest(self) -> Job | None:
        """The job submitted last, queued or running; None when idle."""
        with self._lock:
            return self._pending[-1][0] if self._pending else self._current

    def submit(self, job: Job, work: Work) -> None:
        """Queue ``work(job)``; earlier sweeps and circuit checks are superseded."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this widget was closed: create a new one")
            for earlier in self._active():
                if earlier.kind not in NEVER_SUPERSEDED:
                    earlier.supersede()
            self._pending.append((job, work))
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._drain, name="patchwidget-jobs", daemon=True
                )
                self._worker.start()

    def close(self) -> None:
        """Supersede every job and accept no more (the widget was closed)."""
        with self._lock:
            self._closed = True
            for job in self._active():
                job.supersede()

    def has_pending(self) -> bool:
        """Whether jobs wait behind the running one."""
        with self._lock:
            return bool(self._pending)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued job has finished (for tests and scripts); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._worker is None and not self._pending, timeout)

    def _active(self) -> list[Job]:
        running = [self._current] if self._current is not None else []
        return running + [job for job, _ in self._pending]

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None
                    self._idle.notify_all()
                    return
                job, work = self._pending.popleft()
                self._current = job
            try:
                work(job)
            except Exception:  # the work replies itself; this keeps the queue alive regardless
                log.exception("patchwidget job %s (%s) failed", job.id, job.kind)
            finally:
                with self._lock:
                    self._current = None
