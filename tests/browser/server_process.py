"""A local server process for the browser tests: a free port on 127.0.0.1, a process group of its
own, started and waited for until it answers; stopped with the whole group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, headers: dict[str, str] | None = None) -> bool:
    """Whether a GET of `url` succeeds now."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_server(
    command: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    *,
    name: str,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    timeout: float,
) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``command(port)`` until ``ready(port)``; a few ports are tried, since a free port can
    be taken between probing and binding. Returns the process and its port."""
    for _attempt in range(3):
        port = free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                command(port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if ready(port):
                return proc, port
            time.sleep(0.25)
        if proc.poll() is None:
            stop_group(proc)
            raise RuntimeError(f"{name} did not answer in {timeout:.0f} s; see {log_path}")
    raise RuntimeError(f"{name} did not start; see {log_path}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the process's whole group (its children too)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        time.sleep(0.2)
