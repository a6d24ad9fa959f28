"""Experiment: prompts, answers and a corruption on a model; exploratory sweeps and
confirmatory patches in both directions.

``Experiment`` is the public API and holds its caches (baselines, source activations, block
outputs); corruptions live in ``corruptions.py``, the site → hook-point mapping in ``sites.py``
and the run loop in ``runner.py``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch

from . import checks
from ._version import __version__
from .ablations import combine_sources
from .architectures import architecture_for, dims_of
from .attention import AttentionPatterns, attention_patterns
from .attribution import attribution_sweep, check_method
from .batching import BatchCost, first_layer
from .circuit import CircuitResult, complement_of, mixed_kinds_note
from .components import SITES, Component
from .corruptions import (
    DIRECTIONS,
    Corruption,
    Inputs,
    MeanAblation,
    ResampleAblation,
    RunInput,
    strategy_for,
)
from .engine import Engine, rows_per_batch
from .hookpoints import HookPoints, Key, Target
from .jsondata import jsonable
from .models import load_model, model_device
from .padding import by_rows, pad_id_of, pad_right
from .paths import Path, Receiver, patch_paths, path_patch, path_sweep
from .positions import from_spans, resolve, strip_marks, unmark
from .prefix import BaseRun
from .prompts import as_list, build_prompt_set, token_strings, tokenize
from .readouts import Baseline, compute_readouts
from .remote import RUNS_ON, RemoteRunner, RemoteStats, remote_mode
from .result import PatchResult
from .runner import Cancel, Progress, RunRequest, run
from .sites import indices, n_heads_of, sweep_axes, target
from .verification import Verification, verify

__all__ = ["DIRECTIONS", "Experiment", "Progress"]

log = logging.getLogger(__name__)


class Experiment:
    """Clean and corrupted inputs on one model, ready to patch.

    ``corrupted`` gives counterfactual prompts (preferred); otherwise ``corruption`` is a
    ``GaussianNoise`` (a corrupted run) or a zero / mean / resample ablation (noising only).

    Args:
        model: an nnsight model, a transformers model (with its tokenizer, through
            ``pw.load_model``), a hub name or a local folder; loaded with ``pw.load_model``.
            A model loaded with ``remote=True`` (or ``"local"``) runs every step that needs it
            as nnsight requests to NDIF (or their local simulation); its sizes come from its
            config.
        clean: the clean prompt(s); of one token length unless ``positions`` are named.
        corrupted: counterfactual prompt(s), one per clean prompt and of its token length.
        answers: ``(correct, incorrect)`` answer tokens per pair (or one pair for all), each a
            single token, e.g. ``(" Mary", " John")``.
        corruption: instead of ``corrupted``: ``pw.GaussianNoise()``, ``pw.ZeroAblation()``,
            ``pw.MeanAblation()`` or ``pw.ResampleAblation()``.
        batch_size: at most this many rows (patch sets × pairs) per forward pass; default:
            what a measured cost model finds cheapest within ``memory_budget``.
        memory_budget: bytes one forward pass may use when ``batch_size`` is None; default: half
            the free GPU memory, or 512 MiB on CPU.
        positions: named token positions, ``{"S2": [index or word per pair], "END": -1}``
            (indices count from each prompt's end when negative; words are found through the
            tokenizer's offsets, see ``pw.Word``), or ``"marked"`` for ``[NAME:word]`` marks in
            the prompts. Named positions let pairs differ in length (each pair is padded on the
            right and read at its own last token); the position axis of sweeps is the names.
    """

    def __init__(
        self,
        model: Any,
        clean: str | Sequence[str],
        corrupted: str | Sequence[str] | None = None,
        answers: Sequence[tuple[str, str]] | tuple[str, str] | None = None,
        corruption: Corruption | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        positions: Mapping[str, Any] | str | None = None,
    ) -> None:
        self.model = load_model(model)
        self._hf = self.model._module
        self.tokenizer = self.model.tokenizer
        self.arch = architecture_for(self._hf.config)
        self.dims = dims_of(self._hf.config)
        self.remote = remote_mode(self.model)
        # A remote model's weights stay on the server (here: the meta device); tensors built
        # here (ids, noise) stay on the CPU and follow each layer's device over there.
        self.device = torch.device("cpu") if self.remote else model_device(self._hf)
        self.dtype = next(self._hf.parameters()).dtype
        served_dtype = getattr(self._hf.config, "dtype", None)
        if self.remote is True and isinstance(served_dtype, torch.dtype):
            self.dtype = served_dtype  # the checkpoint's dtype, as the server holds it
        clean_list = as_list(clean, "clean")
        if clean_list is None:
            raise ValueError("clean prompts are required: clean=['...']")
        corrupted_list = as_list(corrupted, "corrupted")
        if (corrupted_list is None) == (corruption is None):
            raise ValueError(
                "give either corrupted=[...] prompts (counterfactuals, preferred) or "
                "corruption=pw.GaussianNoise() / pw.ZeroAblation() / pw.MeanAblation() / "
                "pw.ResampleAblation(), not both and not neither"
            )
        if answers is None:
            raise ValueError("answers are required: answers=[(' correct', ' incorrect')]")
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        self.memory_budget = checks.positive_int(memory_budget, "memory_budget")
        spans = None
        if positions == "marked":
            clean_list, spans = unmark(clean_list)
            if corrupted_list is not None:
                corrupted_list = [strip_marks(p)[0] for p in corrupted_list]
        elif isinstance(positions, str):
            raise ValueError(f"positions must be a dict of names or 'marked', not {positions!r}")
        self.prompts = build_prompt_set(
            self.tokenizer, clean_list, corrupted_list, answers, positions is not None
        )
        checks.context_fits(self._hf.config, self.prompts.length)
        self.prompt_notes = checks.prompt_notes(self.tokenizer, self.prompts)
        for note in self.prompt_notes:
            checks.warn(note)
        self.named_positions: dict[str, tuple[int, ...]] = {}
        if spans is not None:
            self.named_positions = from_spans(self.tokenizer, clean_list, spans)
        elif positions is not None and not isinstance(positions, str):
            ids = self.prompts.clean_ids
            self.named_positions = resolve(self.tokenizer, clean_list, ids, positions)
        self._check_ragged(corruption)
        self.corruption = corruption
        self._strategy = strategy_for(corruption)
        self.hooks = HookPoints(self.model, self.arch, self.dims)
        self.engine = Engine(self.hooks, self.device)
        pad = pad_id_of(self.tokenizer)
        self._clean_ids = pad_right(self.prompts.clean_ids, pad)
        self._corrupted_ids = (
            pad_right(self.prompts.corrupted_ids, pad) if self.prompts.corrupted_ids else None
        )
        lengths = self.prompts.lengths
        self._last = None if len(set(lengths)) == 1 else torch.tensor(lengths) - 1
        self._position_table = (
            np.array(list(self.named_positions.values())) if self.named_positions else None
        )
        answer_ids = torch.tensor(self.prompts.answer_ids, device=self.device)
        self._correct, self._incorrect = answer_ids[:, 0], answer_ids[:, 1]
        self._sources: dict[tuple[str, Key], torch.Tensor] = {}
        self._block_outputs: dict[str, BaseRun] = {}
        self._batch_cost: BatchCost | None = None
        self._lock = threading.Lock()
        self._remote = RemoteRunner(self, self.remote) if self.remote else None
        self.noise = self._make_noise()
        self._inputs = Inputs(
            clean_ids=self._clean_ids,
            corrupted_ids=self._corrupted_ids,
            noise=self.noise,
            clean_prompts=tuple(self.prompts.clean),
            tokenize=lambda prompts: tokenize(self.tokenizer, prompts),
        )
        self._baselines()

    @classmethod
    def from_dataset(cls, model: Any, dataset: Any, **kwargs: Any) -> Experiment:
        """An experiment on a table of pairs (DataFrame, ``.csv``/``.json`` path, dict of
        columns or list of rows; see ``patchwidget.datasets``); ``kwargs`` as ``Experiment``."""
        from .datasets import load_dataset

        return cls(model, **load_dataset(dataset), **kwargs)

    # ------------------------------------------------------------------ description
    @property
    def n_pairs(self) -> int:
        return self.prompts.n_pairs

    @property
    def length(self) -> int:
        """Tokens of the longest prompt (of every prompt without named positions)."""
        return self.prompts.length

    @property
    def n_positions(self) -> int:
        """Size of the position axis: the named positions, else the tokens."""
        return len(self.named_positions) or self.length

    @property
    def remote_stats(self) -> RemoteStats | None:
        """Requests sent so far, bytes returned and the last server runtime of a remote model
        (None for a model that runs here)."""
        return None if self._remote is None else self._remote.stats

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this experiment's corruption allows (ablations: noising only)."""
        return self._strategy.directions

    @property
    def info(self) -> dict[str, Any]:
        d = self.dims
        return {
            "model_name": getattr(self._hf.config, "_name_or_path", "") or type(self._hf).__name__,
            "architecture": self._hf.config.model_type,
            "n_layers": d.n_layers,
            "n_heads": d.n_heads,
            "n_kv_heads": d.n_kv_heads,
            "d_model": d.d_model,
            "d_head": d.d_head,
            "d_mlp": d.d_mlp,
            "device": RUNS_ON.get(self.remote, str(self.device)),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    @property
    def clean_tokens(self) -> list[list[str]]:
        return [token_strings(self.tokenizer, ids) for ids in self.prompts.clean_ids]

    @property
    def corrupted_tokens(self) -> list[list[str]] | None:
        if self.prompts.corrupted_ids is None:
            return None
        return [token_strings(self.tokenizer, ids) for ids in self.prompts.corrupted_ids]

    @property
    def diff_positions(self) -> list[int]:
        """Positions where a corrupted prompt differs from its clean prompt (or is noised);
        with named positions, the indices of the names where some pair differs."""
        if self.named_positions:
            return self._named_diffs()
        return self._strategy.changed_positions(self._inputs)

    @property
    def position_labels(self) -> list[str]:
        if self.named_positions:
            return list(self.named_positions)
        clean = self.clean_tokens[0]
        corrupted = (self.corrupted_tokens or [clean])[0]
        return [
            f"{p}: {c}" if c == k else f"{p}: {c}/{k}"
            for p, (c, k) in enumerate(zip(clean, corrupted, strict=True))
        ]

    @property
    def answer_tokens(self) -> list[tuple[str, str]]:
        return list(self.prompts.answers)

    def available_sites(self) -> dict[str, str | None]:
        """Each site, with None where it can be patched, else the reason it cannot."""
        reasons: dict[str, str | None] = dict.fromkeys(SITES)
        if self.arch.parallel(self._hf.config):
            reasons["resid_mid"] = (
                "attention and MLP read the same residual stream in parallel in this model, so "
                "there is no residual stream between them"
            )
        if self._hf.config._attn_implementation != "eager":
            reasons["head_pattern"] = (
                "attention patterns need eager attention; load the model with pw.load_model(...), "
                "which sets attn_implementation='eager'"
            )
        return reasons

    def widget(self, **kwargs: Any) -> Any:
        """An interactive patching widget on this experiment (keywords: ``PatchingWidget``'s)."""
        from .widget import PatchingWidget

        return PatchingWidget(self, **kwargs)

    # ------------------------------------------------------------------ patching
    def sweep(
        self,
        site: str,
        direction: str = "denoising",
        layers: Iterable[int] | None = None,
        heads: Iterable[int] | None = None,
        positions: Iterable[int | str] | None = None,
        neurons: Iterable[int] | None = None,
        by_pos: bool = False,
        on_progress: Progress | None = None,
        cancel: Cancel | None = None,
        progress: bool = True,
        method: str = "exact",
        qk_fix: bool = False,
        grad_drop: bool = False,
        receivers: Iterable[Receiver] | None = None,
    ) -> PatchResult:
        """Exploratory patching: one patch per component of ``site``, restricted to the given
        layers / heads / positions / neurons.

        Args:
            site: one of ``pw.SITES`` (``resid_pre``, ``head``, ``neuron``, ...).
            direction: ``"denoising"`` (clean activations into the corrupted run) or
                ``"noising"`` (corrupted activations into the clean run).
            layers, heads, neurons: indices to visit (negative ones count from the end); None
                visits all. ``heads`` of ``head_k``/``head_v`` are key/value heads.
            positions: positions to visit for sites with a position axis; for sites without
                one, the positions patched together (default: all). With named positions the
                position axis is the names: ``positions=["S2", "END"]``.
            by_pos: give ``head_q``/``head_k``/``head_v``/``head_pattern`` a position axis
                (one patch per head and position); ``head_by_pos`` always has one.
            on_progress: called as ``on_progress(done, total, partial_result)`` after every
                forward pass; ``partial_result`` holds NaN where patches have not run yet.
            cancel: a ``threading.Event`` or a callable returning True to stop between forward
                passes; the result then has ``complete=False``.
            progress: show a tqdm progress bar when the sweep takes several forward passes.
            method: ``"exact"`` patching, or ``"attribution"``: every cell estimated to first
                order from one gradient pass (check it with :meth:`verify`).
            qk_fix, grad_drop: AtP*'s refinements of an attribution estimate (see
                ``patchwidget.attribution``).
            receivers: path patching (see ``patchwidget.paths``): each component is a sender
                whose patched output reaches only these (sites head, head_by_pos, attn_out,
                mlp_out).

        Returns:
            A ``PatchResult`` with one cell per component along the site's axes.
        """
        if receivers is not None:
            if method != "exact":
                raise ValueError(
                    "path patching (receivers=...) is exact only: drop method=" + repr(method)
                )
            self._tokens_only("path patching")  # so positions are token indices
            token_positions = cast("Iterable[int] | None", positions)
            return path_sweep(
                self, site, direction, receivers, layers, heads, token_positions,
                on_progress, cancel, progress,
            )  # fmt: skip
        check_method(method, qk_fix, grad_drop)
        self._check_site(site, direction)
        layers, heads, positions, neurons = (
            checks.restriction(value, name)
            for value, name in (
                (layers, "layers"),
                (heads, "heads"),
                (positions, "positions"),
                (neurons, "neurons"),
            )
        )
        if site == "head_by_pos":
            by_pos = True
        axes = sweep_axes(site, by_pos)
        checks.restrictions_fit_site(site, axes, {"heads": heads, "neurons": neurons})
        every = {
            "layer": indices(layers, self.dims.n_layers, "layer"),
            "head": indices(heads, n_heads_of(site, self.dims), "head"),
            "pos": self._positions(positions),
            "neuron": indices(neurons, self.dims.d_mlp, "neuron"),
        }
        coords = {a: every[a] for a in axes}
        together = None if positions is None or "pos" in axes else every["pos"]
        patch_sets = [
            [target(self.hooks, site, **dict(zip(axes, values, strict=True)), together=together)]
            for values in itertools.product(*(coords[a] for a in axes))
        ]
        labels = {a: tuple(self._label(a, v, site) for v in coords[a]) for a in axes}
        meta = {"layers": layers, "heads": heads, "positions": positions, "neurons": neurons}
        if method == "attribution":
            if self.named_positions:
                raise ValueError(
                    "attribution estimates don't support named positions yet: use "
                    "method='exact', or token positions on prompts of one template"
                )
            return attribution_sweep(
                self, patch_sets, site, direction, axes, coords, labels, meta, qk_fix, grad_drop
            )
        self._warn_if_long(patch_sets, f"this {site} sweep ({direction})")
        request = RunRequest(
            patch_sets=patch_sets,
            site=site,
            direction=direction,
            axes=axes,
            coords=coords,
            labels=labels,
            meta=meta,
            on_progress=on_progress,
            cancel=cancel,
            progress=progress,
        )
        return run(self, request)

    def verify(
        self,
        estimate: PatchResult,
        top: int | None = None,
        metric: str = "logit_diff",
        on_progress: Callable[[int, int, Verification], None] | None = None,
        cancel: Cancel | None = None,
        progress: bool = True,
    ) -> Verification:
        """Exact patching of an attribution estimate's ``top`` largest cells (all when None),
        largest first; the result holds both and their agreement (``.agreement(metric)``)."""
        return verify(self, estimate, top, metric, on_progress, cancel, progress)

    def patch(
        self,
        components: Iterable[Component],
        direction: str = "denoising",
        label: str = "",
        receivers: Iterable[Receiver] | None = None,
    ) -> PatchResult:
        """Confirmatory patching: every component patched at once, in one run per pair.

        Args:
            components: the ``pw.Component`` s patched together.
            direction: ``"denoising"`` or ``"noising"`` (see :meth:`sweep`).
            label: the patch's name in the result (default: the components' labels joined).
            receivers: path patching: the components are senders whose patched output reaches
                only these (see :meth:`sweep`).

        Returns:
            A ``PatchResult`` with a single cell on the axis ``patch``.
        """
        if receivers is not None:
            self._tokens_only("path patching")
            return path_patch(self, components, direction, receivers, label)
        components = _component_list(components, "patch")
        targets = []
        for c in components:
            if not isinstance(c, Component):
                raise TypeError(f"expected pw.Component, got {type(c).__name__}: {c!r}")
            self._check_site(c.site, direction)
            targets.append(self._component_target(c))
        name = label or (" + ".join(c.label for c in components) or "nothing")
        request = RunRequest(
            patch_sets=[targets],
            site="circuit",
            direction=direction,
            axes=("patch",),
            coords={"patch": (0,)},
            labels={"patch": (name,)},
            meta={"components": [c.label for c in components]},
        )
        return run(self, request)

    def patch_paths(
        self, paths: Iterable[Path], direction: str = "denoising", label: str = ""
    ) -> PatchResult:
        """Confirmatory path patching of edges ``pw.Path(sender, receiver)`` at once: each
        receiver sees exactly the senders of its own edges patched."""
        self._tokens_only("path patching")
        return patch_paths(self, paths, direction, label)

    def attention(self, layer: int, head: int) -> AttentionPatterns:
        """Where query head ``head`` of ``layer`` looks, on the clean and corrupted prompts."""
        self._tokens_only("attention patterns")
        return attention_patterns(self, layer, head)

    def circuit(self, components: Iterable[Component]) -> CircuitResult:
        """Patch a hypothesised circuit and its complement, in every direction the corruption
        allows.

        Args:
            components: the circuit's ``pw.Component`` s; the complement is every other
                component at the same granularity (site, head/neuron axis, position or not).
                A circuit mixing granularities gets no complement (a warning and
                ``complement_note`` say why): only the circuit itself is patched.
        """
        components = _component_list(components, "circuit")
        if not components:
            raise ValueError("the circuit is empty: give at least one pw.Component")
        note = mixed_kinds_note(components)
        complement = [] if note else complement_of(components, self.dims, self.n_positions)
        parts_of = [("circuit", components)] + ([] if note else [("complement", complement)])
        results = {
            (d, which): self.patch(parts, d, label=which)
            for d in self.directions
            for which, parts in parts_of
        }
        if note:
            checks.warn(f"no complement: {note}")
        return CircuitResult(
            components=tuple(components),
            complement_size=len(complement),
            results=results,
            complement_note=note,
        )

    # ------------------------------------------------------------------ internals
    def _check_site(self, site: str, direction: str) -> None:
        if site not in SITES:
            raise ValueError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'denoising' or 'noising', not {direction!r}")
        if direction not in self.directions:
            raise ValueError(
                f"{type(self.corruption).__name__} only defines what to patch into the clean run, "
                "so only direction='noising' applies. For denoising, give corrupted prompts or "
                "pw.GaussianNoise()."
            )
        reason = self.available_sites()[site]
        if reason:
            raise ValueError(f"site {site!r} is not available: {reason}")

    def _positions(self, values: Iterable[int | str] | int | str | None) -> tuple[int, ...]:
        """Indices on the position axis; names are looked up when positions are named."""
        names = list(self.named_positions)
        if values is None or isinstance(values, (int, np.integer)):
            return indices(values, self.n_positions, "position")
        out = []
        for v in [values] if isinstance(values, str) else values:
            if isinstance(v, str):
                if v not in names:
                    known = ", ".join(names) or "none: positions are token indices here"
                    raise ValueError(f"unknown position name {v!r}; named positions: {known}")
                v = names.index(v)
            out.append(v)
        return indices(out, self.n_positions, "position")

    def _named_diffs(self) -> list[int]:
        if self._corrupted_ids is None or self._position_table is None:
            return []
        pairs = np.arange(self.n_pairs)
        return [
            k
            for k, row in enumerate(self._position_table)
            if bool((self._clean_ids[pairs, row] != self._corrupted_ids[pairs, row]).any())
        ]

    def _tokens_only(self, what: str) -> None:
        """Refuse features that read token positions directly when positions are named."""
        if self.named_positions:
            raise ValueError(
                f"{what} doesn't support named positions yet: use prompts of one template "
                "without positions=..."
            )

    def _check_ragged(self, corruption: Corruption | None) -> None:
        if self.remote and self.named_positions:
            raise ValueError(
                "named positions (and prompts of several lengths) run on local models only for "
                "now: group the prompts by template and give token positions for remote runs"
            )
        if len(set(self.prompts.lengths)) > 1 and isinstance(
            corruption, (MeanAblation, ResampleAblation)
        ):
            raise ValueError(
                f"{type(corruption).__name__} patches in activations position by position, so it "
                "needs prompts of one length; with prompts of several lengths give corrupted "
                "prompts, pw.GaussianNoise() or pw.ZeroAblation()"
            )

    def _forward(
        self,
        ids: torch.Tensor,
        noise: torch.Tensor | None = None,
        save: frozenset[Key] = frozenset(),
        save_blocks: bool = False,
        plan_for: Callable[[np.ndarray], Any] | None = None,
        last: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[Key, Any]]:
        """A forward pass over all rows of ``ids`` in batches of at most ``_rows()`` rows;
        ``last`` holds each row's last token (prompts of different lengths)."""

        def run_rows(rows: torch.Tensor) -> tuple[torch.Tensor, dict[Key, Any]]:
            return self.engine.forward(
                ids[rows],
                None if noise is None else noise[rows],
                plan=None if plan_for is None else plan_for(rows.numpy()),
                save=save,
                save_blocks=save_blocks,
                last=None if last is None else last[rows],
            )

        return by_rows(run_rows, len(ids), self._rows())

    def _rows(self) -> int:
        """Rows (patch sets x pairs) per forward pass."""
        return self.batch_size or rows_per_batch(
            self.dims, self.length, self.device, self.dtype, self.memory_budget
        )

    def _label(self, axis: str, value: int, site: str) -> str:
        if axis == "pos":
            return self.position_labels[value]
        if axis == "head" and n_heads_of(site, self.dims) != self.dims.n_heads:
            return f"KV{value}"
        return {"layer": "L", "head": "H", "neuron": "N"}[axis] + str(value)

    def _component_target(self, c: Component) -> Target:
        layer = indices([c.layer], self.dims.n_layers, "layer")[0]
        head = (
            None if c.head is None else indices([c.head], n_heads_of(c.site, self.dims), "head")[0]
        )
        neuron = None if c.neuron is None else indices([c.neuron], self.dims.d_mlp, "neuron")[0]
        pos = None if c.pos is None else self._positions([c.pos])[0]
        return target(self.hooks, c.site, layer=layer, head=head, pos=pos, neuron=neuron)

    def _make_noise(self) -> torch.Tensor | None:
        noise = self._strategy.make_noise(
            self.n_pairs, self.length, self.dims.d_model, self._embedding_std
        )
        return None if noise is None else noise.to(self.dtype)

    def _embedding_std(self) -> float:
        if self._remote is not None:
            return self._remote.embedding_std()
        weight = self._hf.get_input_embeddings().weight
        return float(weight.detach().float().std())

    def _base_run(self, direction: str) -> RunInput:
        """The run a direction patches: the corrupted run for denoising, else the clean run."""
        if direction == "denoising":
            corrupted = self._strategy.corrupted_run(self._inputs)
            assert corrupted is not None, "_check_site refuses denoising without a corrupted run"
            return corrupted
        return RunInput(self._clean_ids)

    def _capture(
        self, ids: torch.Tensor, keys: frozenset[Key], noise: torch.Tensor | None = None
    ) -> dict[Key, torch.Tensor]:
        return self._forward(ids, noise, save=keys)[1]

    def _warn_if_long(self, patch_sets: list[list[Target]], what: str) -> None:
        """A warning with a time estimate before a sweep that will take long."""
        if len(patch_sets) * self.n_pairs * self.seconds_per_run <= checks.LONG_SWEEP_S / 4:
            return  # clearly short: skip counting the layers each patch lets us skip
        n_layers = self.dims.n_layers
        share = float(np.mean([1 - first_layer(ts) / n_layers for ts in patch_sets]))
        checks.long_sweep(len(patch_sets) * self.n_pairs, self.seconds_per_run * share, what)

    def _baselines(self) -> None:
        if self._remote is not None:
            self.clean_readouts, self.corrupted_readouts = self._remote.baselines()
            for name, values in (
                ("clean", self.clean_readouts),
                ("corrupted", self.corrupted_readouts),
            ):
                if not np.isfinite(values).all():
                    raise FloatingPointError(
                        f"the {name} run's logits contain NaN or inf before any patching: "
                        "check the model's dtype (float16 can overflow)"
                    )
            self.seconds_per_run = 0.0  # no local timing: no long-sweep estimate
            return
        start = time.perf_counter()
        clean_logits, _ = self._forward(self._clean_ids, last=self._last)
        clean_seconds = time.perf_counter() - start
        start = time.perf_counter()
        corrupted = self._strategy.corrupted_run(self._inputs)
        if corrupted is None:
            # No corrupted run of its own: the clean run with the corruption's values patched
            # into the token embeddings.
            embed_target = [[Target("block_in", 0, 0, None)]]
            embed_source = self._source_values("noising", {("block_in", 0)})

            def plan_for(rows: np.ndarray) -> Any:
                return self.engine.plan(embed_target, rows, embed_source, self.length)

            corrupted_logits, _ = self._forward(self._clean_ids, plan_for=plan_for, last=self._last)
        else:
            corrupted_logits, _ = self._forward(corrupted.ids, corrupted.noise, last=self._last)
        # Seconds one prompt's forward pass took here, the faster of the two runs (the first
        # pass of a fresh process pays one-time set-up): the base of long-sweep estimates.
        self.seconds_per_run = min(clean_seconds, time.perf_counter() - start) / self.n_pairs
        for name, logits in (("clean", clean_logits), ("corrupted", corrupted_logits)):
            if not torch.isfinite(logits).all():
                raise FloatingPointError(
                    f"the {name} run's logits contain NaN or inf before any patching: check the "
                    "model's weights and dtype (float16 can overflow; try dtype='float32')"
                )
        self._clean_base = Baseline.of(clean_logits)
        self._corrupted_base = Baseline.of(corrupted_logits)
        self.clean_readouts = self._readouts(clean_logits, np.arange(self.n_pairs))
        self.corrupted_readouts = self._readouts(corrupted_logits, np.arange(self.n_pairs))

    def _readouts(self, logits: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
        p = torch.as_tensor(pairs, device=logits.device)
        r = compute_readouts(
            logits,
            self._correct[p],
            self._incorrect[p],
            self._clean_base,
            self._corrupted_base,
            p,
        )
        return r.cpu().numpy().astype(np.float32)

    def _source_values(self, direction: str, keys: Iterable[Key]) -> dict[Key, torch.Tensor]:
        """Source activations (pairs, pos, unit, width) patched in, cached per direction."""
        keys = list(keys)
        missing = frozenset(k for k in keys if (direction, k) not in self._sources)
        if missing:
            log.debug("capturing %d %s source(s)", len(missing), direction)
            if direction == "denoising":
                captured = self._capture(self._clean_ids, missing)
            else:
                recipe = self._strategy.noising_recipe(self._inputs, missing)
                captures = [self._capture(r.ids, missing, r.noise) for r in recipe.runs]
                captured = combine_sources(
                    recipe.combine, captures, self.n_pairs, self.length, recipe.index
                )
            for key, value in captured.items():
                self._sources[(direction, key)] = value
        return {k: self._sources[(direction, k)] for k in keys}

    def _metadata(self, site: str, direction: str, extra: dict[str, Any]) -> dict[str, Any]:
        import nnsight
        import transformers

        return {
            "model": self.info["model_name"],
            "architecture": self.info["architecture"],
            "site": site,
            "direction": direction,
            "clean": list(self.prompts.clean),
            "corrupted": list(self.prompts.corrupted) if self.prompts.corrupted else None,
            "answers": [list(a) for a in self.prompts.answers],
            "named_positions": {k: list(v) for k, v in self.named_positions.items()},
            "corruption": repr(self.corruption) if self.corruption else "counterfactual prompts",
            "versions": {
                "patchwidget": __version__,
                "torch": torch.__version__,
                "nnsight": getattr(nnsight, "__version__", "unknown"),
                "transformers": transformers.__version__,
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **{k: jsonable(v) for k, v in extra.items()},
        }


def _component_list(components: Any, method: str) -> list[Component]:
    if isinstance(components, Component):
        raise TypeError(
            f"{method}() takes a list of components: exp.{method}([component]), not one component"
        )
    if isinstance(components, (str, bytes)) or not hasattr(components, "__iter__"):
        raise TypeError(f"{method}() takes a list of pw.Component, got {components!r}")
    return list(components)
