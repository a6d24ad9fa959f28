"""Remote execution on NDIF (``remote=True``) and its offline simulation (``remote="local"``).

Every model-touching step of a remote experiment (baselines, noise scale, source activations,
patched batches, readouts) runs as one nnsight session per request, built here as a *program*:
a list of plain-data operations (tensors, ints, strings, module envoys) that the session body
below interprets. The body calls only torch, nnsight and four torch-only patchwidget modules
(``session_ops``, ``units``, ``ablations``, ``readouts``) that travel by value
(``nnsight.register``), so the server never needs ``patchwidget`` installed. Only the readouts
(patches × pairs × 6 numbers) come back; source activations and logits stay on the server
inside the session.

``remote="local"`` runs the very same requests through nnsight's local simulation backend
(serialised, deserialised with local modules hidden, run in-process): the remote path apart
from the transport.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nnsight
import numpy as np
import torch

from . import ablations, readouts, session_ops, units
from .ablations import FIRST, SourceRecipe
from .batching import batches
from .corruptions import RunInput
from .engine import rows_per_batch
from .hookpoints import POINT_ORDER, RESID_MID, Key, Target
from .readouts import READOUT_FIELDS
from .result import PatchResult
from .session_ops import apply_op, finish_trace, run_steps, touch

if TYPE_CHECKING:
    from .experiment import Experiment
    from .runner import RunRequest

log = logging.getLogger(__name__)

RUNS_ON = {True: "NDIF (remote)", "local": "nnsight's local simulation of NDIF"}
SHIPPED_BY_VALUE = (units, ablations, readouts, session_ops)
_READ_INPUT = {"block_in", "z", "neurons"}
# Rows (patch sets × pairs) per request: a request's payload and its server time stay small
# enough for NDIF's limits, and cancel takes effect between requests.
ROWS_PER_REQUEST = 8192
# Rows per forward pass on the server, whose free memory the client cannot ask.
REMOTE_MEMORY_BUDGET = 4 * 2**30
Status = Callable[[str], None]


class RemoteExecutionError(ConnectionError):
    """A remote request failed (NDIF refused, could not run or could not be reached): the
    message says why and what to do."""


@dataclass
class RemoteStats:
    """What the remote requests of one experiment cost so far."""

    requests: int = 0
    returned_bytes: int = 0
    last_runtime_s: float | None = None
    last_status: str = ""


def remote_mode(model: Any) -> bool | str:
    """How a model loaded with ``pw.load_model`` runs: False (here), True (NDIF) or "local"."""
    return getattr(model, "_patchwidget_remote", False)


class RemoteRunner:
    """Runs an experiment's model-touching steps as nnsight session requests."""

    def __init__(self, exp: Experiment, mode: bool | str) -> None:
        self.exp = exp
        self.mode = mode
        self.stats = RemoteStats()
        self.on_status: Status | None = None
        self._embed = exp.hooks.embed()

    # ------------------------------------------------------------------ requests
    def embedding_std(self) -> float:
        """The standard deviation of the token-embedding matrix, computed on the server."""
        program = _Program(self)
        program.ops.append(("std", self._embed, "std"))
        return float(self._request(program, ["std"])["std"])

    def baselines(self) -> tuple[np.ndarray, np.ndarray]:
        """Readouts (pairs, fields) of the clean and the corrupted run."""
        program = _Program(self)
        program.baselines(set(), set())
        pairs = torch.arange(self.exp.n_pairs)
        program.readouts("clean_logits", pairs, "clean_readouts")
        program.readouts("corrupted_logits", pairs, "corrupted_readouts")
        out = self._request(program, ["clean_readouts", "corrupted_readouts"])
        return _numpy(out["clean_readouts"]), _numpy(out["corrupted_readouts"])

    def run(
        self, request: RunRequest, result: Callable[[np.ndarray, bool], PatchResult]
    ) -> PatchResult:
        """Readouts of every patch set of ``request``, in as few requests as the limits allow."""
        from .runner import cancelled

        exp, patch_sets = self.exp, request.patch_sets
        n_pairs, n_sets = exp.n_pairs, len(request.patch_sets)
        values = np.full((n_sets, n_pairs, len(READOUT_FIELDS)), np.nan, dtype=np.float32)
        keys = {(t.point, t.layer) for targets in patch_sets for t in targets}
        rows = exp.batch_size or rows_per_batch(
            exp.dims,
            exp.length,
            torch.device("cpu"),
            exp.dtype,
            exp.memory_budget or REMOTE_MEMORY_BUDGET,
        )
        per_request = max(1, ROWS_PER_REQUEST // n_pairs)
        per_batch = min(max(1, rows // n_pairs), per_request)
        per_request = per_request // per_batch * per_batch
        # Even one request gets a bar: it shows the job's status while NDIF queues and runs it.
        bar = _progress_bar(n_sets, request) if request.progress else None
        done = 0
        for start in range(0, n_sets, per_request):
            if cancelled(request.cancel):
                log.info("%s cancelled after %d of %d patches", request.site, done, n_sets)
                break
            chunk = patch_sets[start : start + per_request]
            program = _Program(self)
            program.sweep(request.direction, keys, chunk, per_batch)
            got = _numpy(self._request(program, ["readouts"], bar)["readouts"])
            values[start : start + len(chunk)] = got.reshape(len(chunk), n_pairs, -1)
            bad = ~np.isfinite(values[start : start + len(chunk)])
            if bad.any():
                from .runner import describe

                raise FloatingPointError(
                    f"patching {describe(request, start + int(np.argwhere(bad)[0][0]))} "
                    f"({request.direction}) gave NaN or inf in the model's output; nothing was "
                    "plotted. Check the model's dtype (float16 overflow?) and the corruption's "
                    "scale."
                )
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            if request.on_progress is not None:
                request.on_progress(done, n_sets, result(values, done == n_sets))
        if bar is not None:
            bar.close()
        return result(values, done == n_sets)

    def _request(self, program: _Program, outputs: list[str], bar: Any = None) -> dict[str, Any]:
        """Send one session request and return its saved outputs."""
        for module in SHIPPED_BY_VALUE:
            nnsight.register(module)

        def status(name: str) -> None:
            self.stats.last_status = name
            if bar is not None:
                bar.set_postfix_str(name.lower())
            if self.on_status is not None:
                self.on_status(name)

        started = time.perf_counter()
        try:
            backend = _backend(self.exp.model, self.mode, status)
            result = _execute(self.exp.model, backend, program.ops, outputs)
        except Exception as error:
            explained = _explain(error, self.mode)
            if explained is error:
                raise
            raise explained from error
        self.stats.requests += 1
        meta = getattr(backend, "meta", None) or {}
        runtime = _runtime(meta)
        self.stats.last_runtime_s = (
            runtime if runtime is not None else time.perf_counter() - started
        )
        buffer = io.BytesIO()
        torch.save(result, buffer)
        self.stats.returned_bytes += buffer.tell()
        status("COMPLETED")  # (again, after NDIF's own): now with the runtime recorded
        log.info(
            "remote request: %d ops, %d bytes back, %.2f s on the server",
            len(program.ops),
            buffer.tell(),
            self.stats.last_runtime_s,
        )
        return result


class _Program:
    """The plain-data operations of one request (see :func:`_execute`)."""

    def __init__(self, runner: RemoteRunner) -> None:
        self.runner = runner
        self.exp = runner.exp
        self.ops: list[tuple[Any, ...]] = [("device", self.runner._embed)]
        self._noise_sent = False
        self._instrumented = False

    # Building blocks ----------------------------------------------------------------------
    def trace(
        self,
        run: RunInput,
        pairs: torch.Tensor,
        save: set[Key] = frozenset(),  # type: ignore[assignment]
        patch: dict[Key, tuple[torch.Tensor, str]] | None = None,
        capture: str | None = None,
        logits: str | None = None,
    ) -> None:
        """One forward pass of ``run``'s rows ``pairs``, patched and capturing as asked."""
        patch = patch or {}
        if any(point == "pattern" for point, _ in [*patch, *save]):
            self._instrument()
        noise = None
        if run.noise is not None:
            if run.noise is self.exp.noise:
                if not self._noise_sent:
                    self.ops.append(("put", "noise", self.exp.noise))
                    self._noise_sent = True
                noise = ("noise", pairs)
            else:
                self.ops.append(("put", "run_noise", run.noise))
                noise = ("run_noise", pairs)
        spec = {
            "ids": run.ids[pairs],
            "noise": noise,
            "embed": self.runner._embed,
            "steps": self._steps(set(patch), set(save)),
            "patch": {k: (cells, src, pairs) for k, (cells, src) in patch.items()},
            "capture": capture,
            "logits": logits,
        }
        self.ops.append(("trace", spec))

    def readouts(self, logits: str, pairs: torch.Tensor, out: str) -> None:
        correct, incorrect = self.exp._correct.cpu(), self.exp._incorrect.cpu()
        self.ops.append(("readouts", logits, correct[pairs], incorrect[pairs], pairs, out))

    def sources(self, direction: str, keys: set[Key], name: str) -> None:
        """Source activations of ``keys`` for ``direction``, kept in the session as ``name``."""
        exp, every = self.exp, torch.arange(self.exp.n_pairs)
        if direction == "denoising":
            self.trace(RunInput(exp._clean_ids), every, save=keys, capture=name)
            return
        recipe: SourceRecipe = exp._strategy.noising_recipe(exp._inputs, frozenset(keys))
        names = []
        for i, run in enumerate(recipe.runs):
            rows = torch.arange(run.ids.shape[0])
            self.trace(run, rows, save=keys, capture=f"{name}:{i}")
            names.append(f"{name}:{i}")
        self.ops.append(
            ("combine", recipe.combine, names, exp.n_pairs, exp.length, recipe.index, name)
        )

    def baselines(self, clean_keys: set[Key], corrupted_keys: set[Key]) -> None:
        """Clean and corrupted logits and log-probabilities; the clean run also captures
        ``clean_keys`` (as "src:denoising"), the corrupted run ``corrupted_keys`` ("src:noising")
        where the corruption has a corrupted run whose activations are the noising sources."""
        exp, every = self.exp, torch.arange(self.exp.n_pairs)
        self.trace(
            RunInput(exp._clean_ids),
            every,
            save=clean_keys,
            capture="src:denoising" if clean_keys else None,
            logits="clean_logits",
        )
        corrupted = exp._strategy.corrupted_run(exp._inputs)
        if corrupted is not None:
            self.trace(
                corrupted,
                every,
                save=corrupted_keys,
                capture="src:noising" if corrupted_keys else None,
                logits="corrupted_logits",
            )
        else:
            # No corrupted run of its own: the clean run with the corruption's values patched
            # into the token embeddings.
            embed = ("block_in", 0)
            self.sources("noising", {embed}, "src:embed")
            cells = _cells([[Target("block_in", 0, 0, None)]], exp.n_pairs, exp.length)[embed]
            self.trace(
                RunInput(exp._clean_ids),
                every,
                patch={embed: (cells, "src:embed")},
                logits="corrupted_logits",
            )
        self.ops.append(("logprobs", "clean_logits", "clean_lp"))
        self.ops.append(("logprobs", "corrupted_logits", "corrupted_lp"))

    def sweep(
        self, direction: str, keys: set[Key], patch_sets: Sequence[Sequence[Target]], per_batch: int
    ) -> None:
        """Baselines, sources and every batch of ``patch_sets``; readouts as "readouts"."""
        exp = self.exp
        noising_from_corrupted = (
            direction == "noising"
            and exp._strategy.corrupted_run(exp._inputs) is not None
            and exp._strategy.noising_recipe(exp._inputs, frozenset(keys)).combine == FIRST
        )
        self.baselines(
            keys if direction == "denoising" else set(),
            keys if noising_from_corrupted else set(),
        )
        source = f"src:{direction}"
        if direction == "noising" and not noising_from_corrupted:
            self.sources("noising", keys, source)
        base = exp._base_run(direction)
        self.ops.append(("list", "readouts"))
        min_size = max(1, per_batch // 4)
        for start, stop in batches(patch_sets, per_batch, min_size):
            chunk = patch_sets[start:stop]
            pairs = torch.arange(exp.n_pairs).repeat(len(chunk))
            cells = _cells(chunk, exp.n_pairs, exp.length)
            self.trace(
                base,
                pairs,
                patch={k: (c, source) for k, c in cells.items()},
                logits="batch_logits",
            )
            self.readouts("batch_logits", pairs, "readouts")
        self.ops.append(("cat", "readouts"))

    # Hook points --------------------------------------------------------------------------
    def _instrument(self) -> None:
        """Read every layer's attention pattern once first: nnsight instruments the attention
        source when it is first read, which must not happen inside a patching trace."""
        if self._instrumented:
            return
        self._instrumented = True
        path = self._pattern_path()
        envoys = [
            (self.exp.hooks.attention(layer), path) for layer in range(self.exp.dims.n_layers)
        ]
        self.ops.append(("instrument", envoys, torch.zeros(1, 2, dtype=torch.long)))

    def _pattern_path(self) -> tuple[str, ...]:
        call = self.exp.hooks.pattern_call_name()
        return ("source", call, "source", "nn_functional_softmax_0")

    def _steps(self, patched: set[Key], saved: set[Key]) -> list[tuple[Any, ...]]:
        """Hook points to visit, in forward order, as plain tuples (see :func:`_execute`)."""
        hooks, steps = self.exp.hooks, []
        for layer in sorted({layer for _, layer in [*patched, *saved]}):
            block = hooks.block(layer)
            mid_key = (RESID_MID, layer)
            needs_mid = mid_key in patched or mid_key in saved
            for point in POINT_ORDER:
                key = (point, layer)
                wanted = key in patched or key in saved
                if needs_mid and point in ("block_in", "attn_contrib"):
                    wanted = True
                if not wanted:
                    continue
                if point == "pattern":
                    envoy, path = hooks.attention(layer), self._pattern_path()
                else:
                    envoy, path = hooks.envoy(block, point), ()
                mid = None
                if point == "attn_contrib" and needs_mid:
                    mid = (mid_key, mid_key in patched, mid_key in saved)
                steps.append(
                    (
                        key,
                        envoy,
                        path,
                        "input" if point in _READ_INPUT else "output",
                        point,
                        hooks.n_units(point),
                        key in patched,
                        key in saved,
                        mid,
                    )
                )
        return steps


def _cells(
    patch_sets: Sequence[Sequence[Target]], n_pairs: int, length: int
) -> dict[Key, torch.Tensor]:
    """Per hook point, the (row, pos, unit) cells patched; row ``i * n_pairs + p`` is patch set
    ``i`` on pair ``p``."""
    cells: dict[Key, list[np.ndarray]] = {}
    for i, targets in enumerate(patch_sets):
        rows = np.arange(i * n_pairs, (i + 1) * n_pairs)
        for t in targets:
            positions = np.arange(length) if t.positions is None else np.asarray(t.positions)
            grid = np.stack(np.meshgrid(rows, positions, [t.unit], indexing="ij"), -1)
            cells.setdefault((t.point, t.layer), []).append(grid.reshape(-1, 3))
    return {k: torch.from_numpy(np.concatenate(v).astype(np.int32)) for k, v in cells.items()}


def _execute(model: Any, backend: Any, ops: list[tuple[Any, ...]], outputs: list[str]) -> Any:
    """Run ``ops`` in one session request and return the ``outputs`` it saved.

    The session body is what the server runs. It calls only torch, nnsight and the functions
    of the modules shipped by value, and its statements fit one line each: nnsight re-creates
    the body from its syntax tree, and a statement spread over several lines would shift the
    line numbers by which it finds the inner traces.
    """
    with model.session(backend=backend):
        store: dict = {}
        with torch.no_grad():
            for op in ops:
                if op[0] == "trace":
                    ids = op[1]["ids"].to(store["device"])
                    with model.trace(ids, use_cache=False, logits_to_keep=1):
                        saved = run_steps(op[1], store, ids)
                        logits = model.output.logits[:, -1]
                    finish_trace(op[1], store, saved, logits)
                elif op[0] == "instrument":
                    with model.trace(op[2].to(store["device"]), use_cache=False):
                        touch(op[1])
                else:
                    apply_op(op, store)
        result = nnsight.save({name: store[name] for name in outputs})
    return result


class _ObservedBackend:
    """Wraps nnsight's backend of a request: reports job statuses and keeps server metadata."""

    def __init__(self, inner: Any, mode: bool | str, on_status: Status) -> None:
        self.inner = inner
        self.mode = mode
        self.on_status = on_status
        self.meta: dict[str, Any] | None = None
        if hasattr(inner, "note"):
            note = inner.note

            def observed(response: Any) -> bool:
                self.on_status(getattr(response.status, "value", str(response.status)))
                return bool(note(response))

            inner.note = observed

    def __call__(self, tracer: Any) -> Any:
        if self.mode == "local":
            self.on_status("RUNNING")
        try:
            return self.inner(tracer)
        finally:
            self.meta = getattr(self.inner, "meta", None)


def _backend(model: Any, mode: bool | str, on_status: Status) -> _ObservedBackend:
    inner = model._remote_backend(mode, True, None, False)
    return _ObservedBackend(inner, mode, on_status)


def _runtime(meta: dict[str, Any]) -> float | None:
    """The server's runtime in seconds, from a job's metadata where it reports one."""
    for key in ("runtime", "run_time", "execution_time", "duration"):
        value = meta.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _explain(error: Exception, mode: bool | str) -> Exception:
    """A remote failure as a message that says what happened and what to do."""
    if mode == "local" or isinstance(error, (ValueError, TypeError, FloatingPointError)):
        return error
    text = str(error) or type(error).__name__
    lowered = text.lower()
    if "api key" in lowered or "401" in lowered or "unauthorized" in lowered:
        hint = (
            "NDIF did not accept the API key: get one at https://login.ndif.us and set it with "
            "nnsight.CONFIG.set_default_api_key('<key>') (or the NDIF_API_KEY variable)"
        )
    elif "queue" in lowered or "capacity" in lowered or "429" in lowered or "503" in lowered:
        hint = "NDIF's queue is full right now: try again in a few minutes"
    elif "not" in lowered and any(w in lowered for w in ("served", "deployed", "found", "hosted")):
        hint = (
            "NDIF does not serve this model right now: see https://nnsight.net/status for the "
            "models it runs, or load it here with pw.load_model(name)"
        )
    elif isinstance(error, (ConnectionError, OSError)) or "connect" in lowered:
        hint = "NDIF could not be reached: check the network connection and CONFIG.API.HOST"
    else:
        hint = "the remote job failed on NDIF"
    return RemoteExecutionError(f"{hint} ({text})")


def _numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().float().cpu().numpy().astype(np.float32)


def _progress_bar(total: int, request: RunRequest) -> Any:
    from tqdm.auto import tqdm

    desc = f"{request.site} ({request.direction}, remote)"
    return tqdm(total=total, desc=desc, unit="patch", leave=False)
