"""A throwaway `marimo run` server for one notebook, for the browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .lab_server import _free_port


class MarimoServer:
    """`marimo run NOTEBOOK` on 127.0.0.1 (no token), in its own process group."""

    def __init__(self, notebook: Path, log_path: Path, start_timeout: float = 90.0) -> None:
        self.notebook = notebook
        self.log_path = log_path
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            if self._launch():
                return
        raise RuntimeError(f"marimo did not start; see {self.log_path}")

    def _launch(self) -> bool:
        cmd = [
            sys.executable, "-m", "marimo", "run", str(self.notebook), "--headless", "--no-token",
            "--host", "127.0.0.1", "--port", str(self.port), "--no-sandbox",
        ]  # fmt: skip
        env = {
            **os.environ,
            "MARIMO_SKIP_UPDATE_CHECK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd, cwd=self.notebook.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5):
                    return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"marimo did not answer in {self._start_timeout:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue
