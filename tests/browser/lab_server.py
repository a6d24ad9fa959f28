"""A throwaway JupyterLab server (it also serves Notebook 7) for the browser tests."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .server_process import answers, start_server, stop_group

# Settings that keep JupyterLab from reaching the network or showing its news toast.
_NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}
_OFFLINE_ARGS = [
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
]


class LabServer:
    """JupyterLab on 127.0.0.1 with a token, a temp root dir and its own process group."""

    def __init__(self, base: Path, log_path: Path, start_timeout: float = 90.0) -> None:
        self.root = base / "root"
        self.token = secrets.token_hex(16)
        self.log_path = log_path
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        dirs = {
            name: base / name for name in ("settings", "workspaces", "config", "runtime", "data")
        }
        for d in (self.root, *dirs.values()):
            d.mkdir(parents=True, exist_ok=True)
        notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True, exist_ok=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps(_NOTIFICATION_SETTINGS)
        )
        self.runtime_dir = dirs["runtime"]
        self.data_dir = dirs["data"]  # the notary's secret and signatures (`jupyter trust`)
        self._env = {
            **os.environ,
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            # No user-level kernelspecs: the kernel is this interpreter's ipykernel.
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "jupyter", "lab", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}", "--ServerApp.allow_root=True",
                *_OFFLINE_ARGS,
            ]  # fmt: skip

        def ready(port: int) -> bool:
            url = f"http://127.0.0.1:{port}/api/status"
            return answers(url, {"Authorization": f"token {self.token}"})

        self._proc, self.port = start_server(
            command, ready, name="JupyterLab", cwd=self.root, env=self._env,
            log_path=self.log_path, timeout=self._start_timeout,
        )  # fmt: skip

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the REST API; returns the decoded JSON (None for an empty body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def session_for(self, path: str) -> dict[str, Any] | None:
        return next((s for s in self.api("GET", "/api/sessions") if s["path"] == path), None)

    def stop(self) -> None:
        """POST /api/shutdown (it shuts kernels down too), then kill the whole process group."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
                proc.wait(timeout=15)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        stop_group(proc)
        self._kill_leftover_kernels()

    def _kill_leftover_kernels(self) -> None:
        """Kernels run in sessions of their own; kill any still using our runtime dir."""
        marker = str(self.runtime_dir).encode()
        for proc_dir in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (proc_dir / "cmdline").read_bytes():
                    os.kill(int(proc_dir.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
