"""A throwaway `marimo run` server for one notebook, for the browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .server_process import answers, start_server, stop_group


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
        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "marimo", "run", str(self.notebook), "--headless",
                "--no-token", "--host", "127.0.0.1", "--port", str(port), "--no-sandbox",
            ]  # fmt: skip

        env = {
            **os.environ,
            "MARIMO_SKIP_UPDATE_CHECK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self._proc, self.port = start_server(
            command, lambda port: answers(f"http://127.0.0.1:{port}/health"), name="marimo",
            cwd=self.notebook.parent, env=env, log_path=self.log_path,
            timeout=self._start_timeout,
        )  # fmt: skip

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc)
