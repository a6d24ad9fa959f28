"""Kernel-side job control: engine work runs in a worker thread, one job at a time.

A new job supersedes the running one: the old job's cancel event is set (the engine stops after
its current batch) and the new job waits for it to let go of the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


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


class JobQueue:
    """Runs jobs in daemon threads; the model is used by one job at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._current: Job | None = None
        self._threads: list[threading.Thread] = []

    @property
    def current(self) -> Job | None:
        return self._current

    def submit(self, job: Job, work: Callable[[Job], None]) -> None:
        """Start ``work(job)`` after the previous job (now superseded) has stopped."""
        with self._lock:
            if self._current is not None:
                self._current.supersede()
            self._current = job
            thread = threading.Thread(
                target=self._run, args=(job, work), name=f"patchwidget-job-{job.id}", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def cancel(self) -> Job | None:
        """Ask the running job to stop after its current batch; returns it (None if idle)."""
        with self._lock:
            job = self._current
        if job is not None:
            job.cancel.set()
        return job

    def is_current(self, job: Job) -> bool:
        with self._lock:
            return self._current is job

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job has finished (for tests and scripts); False on timeout."""
        for thread in list(self._threads):
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        with self._model_lock:
            try:
                work(job)
            finally:
                with self._lock:
                    if self._current is job:
                        self._current = None
