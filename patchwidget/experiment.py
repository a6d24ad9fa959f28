"""Experiment: prompts, answers and a corruption on a model; exploratory sweeps and
confirmatory patches in both directions."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from . import __version__
from .ablations import mean_values, resample_values
from .architectures import architecture_for, dims_of
from .batching import batches, first_layer, rows_of
from .circuit import CircuitResult, complement_of
from .components import HEAD_PART_SITES, SITES, Component
from .corruptions import (
    Corruption,
    GaussianNoise,
    MeanAblation,
    ResampleAblation,
    ZeroAblation,
)
from .engine import Engine, Key, rows_per_batch
from .hookpoints import RESID_MID, HookPoints, Target
from .models import load_model, model_device
from .prompts import as_list, build_prompt_set, token_strings, tokenize
from .readouts import READOUT_FIELDS, Baseline, compute_readouts
from .result import PatchResult

DIRECTIONS = ("denoising", "noising")
_SIMPLE_POINTS = {
    "resid_pre": "block_in",
    "resid_mid": RESID_MID,
    "resid_post": "block_out",
    "attn_out": "attn_contrib",
    "mlp_out": "mlp_contrib",
}
Progress = Callable[[int, int, PatchResult], None]


class Experiment:
    """Clean and corrupted inputs on one model, ready to patch.

    ``corrupted`` gives counterfactual prompts (preferred); otherwise ``corruption`` is a
    ``GaussianNoise`` (a corrupted run) or a zero / mean / resample ablation (noising only).
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
    ) -> None:
        self.model = load_model(model)
        self._hf = self.model._module
        self.tokenizer = self.model.tokenizer
        self.arch = architecture_for(self._hf.config)
        self.dims = dims_of(self._hf.config)
        self.device = model_device(self._hf)
        self.dtype = next(self._hf.parameters()).dtype
        clean_list = as_list(clean, "clean")
        corrupted_list = as_list(corrupted, "corrupted")
        if (corrupted_list is None) == (corruption is None):
            raise ValueError(
                "give either corrupted=[...] prompts (counterfactuals, preferred) or "
                "corruption=pw.GaussianNoise() / pw.ZeroAblation() / pw.MeanAblation() / "
                "pw.ResampleAblation(), not both and not neither"
            )
        if answers is None:
            raise ValueError("answers are required: answers=[(' correct', ' incorrect')]")
        self.prompts = build_prompt_set(self.tokenizer, clean_list, corrupted_list, answers)
        self.corruption = corruption
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.hooks = HookPoints(self.model, self.arch, self.dims)
        self.engine = Engine(
            self.hooks, self.device, getattr(self.model, "_patchwidget_remote", False)
        )
        self._clean_ids = torch.tensor(self.prompts.clean_ids)
        self._corrupted_ids = (
            torch.tensor(self.prompts.corrupted_ids) if self.prompts.corrupted_ids else None
        )
        answer_ids = torch.tensor(self.prompts.answer_ids, device=self.device)
        self._correct, self._incorrect = answer_ids[:, 0], answer_ids[:, 1]
        self.noise = self._make_noise()
        self._sources: dict[tuple[str, Key], torch.Tensor] = {}
        self._block_outputs: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._baselines()

    # ------------------------------------------------------------------ description
    @property
    def n_pairs(self) -> int:
        return self.prompts.n_pairs

    @property
    def length(self) -> int:
        return self.prompts.length

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
            "device": str(self.device),
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
        """Positions where a corrupted prompt differs from its clean prompt (or is noised)."""
        if isinstance(self.corruption, GaussianNoise):
            return list(self.corruption.positions or range(self.length))
        if self._corrupted_ids is None:
            return []
        return torch.nonzero((self._clean_ids != self._corrupted_ids).any(0)).flatten().tolist()

    @property
    def position_labels(self) -> list[str]:
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
        """An interactive patching widget on this experiment."""
        from .widget import PatchingWidget

        return PatchingWidget(self, **kwargs)

    # ------------------------------------------------------------------ patching
    def sweep(
        self,
        site: str,
        direction: str = "denoising",
        layers: Iterable[int] | None = None,
        heads: Iterable[int] | None = None,
        positions: Iterable[int] | None = None,
        neurons: Iterable[int] | None = None,
        by_pos: bool = False,
        on_progress: Progress | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
        progress: bool = True,
    ) -> PatchResult:
        """Exploratory patching: one patch per component of ``site``, restricted to the given
        layers / heads / positions / neurons. For sites without a position axis, ``positions``
        are the positions patched together (default: all)."""
        self._check_site(site, direction)
        if site == "head_by_pos":
            by_pos = True
        axes = _sweep_axes(site, by_pos)
        n_heads = self.dims.n_kv_heads if site in ("head_k", "head_v") else self.dims.n_heads
        every = {
            "layer": self._indices(layers, self.dims.n_layers, "layer"),
            "head": self._indices(heads, n_heads, "head"),
            "pos": self._indices(positions, self.length, "position"),
            "neuron": self._indices(neurons, self.dims.d_mlp, "neuron"),
        }
        coords = {a: every[a] for a in axes}
        together = None if positions is None or "pos" in axes else every["pos"]
        patch_sets = [
            [self._target(site, **dict(zip(axes, values, strict=True)), together=together)]
            for values in itertools.product(*(coords[a] for a in axes))
        ]
        labels = {a: tuple(self._label(a, v, site) for v in coords[a]) for a in axes}
        meta = {"layers": layers, "heads": heads, "positions": positions, "neurons": neurons}
        return self._run(
            patch_sets, site, direction, axes, coords, labels, meta, on_progress, cancel, progress
        )

    def patch(
        self, components: Iterable[Component], direction: str = "denoising", label: str = ""
    ) -> PatchResult:
        """Confirmatory patching: every component patched at once, in one run per pair."""
        components = list(components)
        targets = []
        for c in components:
            if not isinstance(c, Component):
                raise TypeError(f"expected pw.Component, got {type(c).__name__}: {c!r}")
            self._check_site(c.site, direction)
            targets.append(self._component_target(c))
        name = label or (" + ".join(c.label for c in components) or "nothing")
        meta = {"components": [c.label for c in components]}
        return self._run(
            [targets],
            "circuit",
            direction,
            ("patch",),
            {"patch": (0,)},
            {"patch": (name,)},
            meta,
            None,
            None,
            False,
        )

    def circuit(self, components: Iterable[Component]) -> CircuitResult:
        """Patch a hypothesised circuit and its complement, in both directions."""
        components = list(components)
        complement = complement_of(components, self.dims, self.length)
        directions = self._directions()
        results = {
            (d, which): self.patch(parts, d, label=which)
            for d in directions
            for which, parts in (("circuit", components), ("complement", complement))
        }
        return CircuitResult(
            components=tuple(components),
            complement_size=len(complement),
            results=results,
        )

    # ------------------------------------------------------------------ internals
    def _directions(self) -> tuple[str, ...]:
        return ("noising",) if self._is_ablation else DIRECTIONS

    @property
    def _is_ablation(self) -> bool:
        return isinstance(self.corruption, (ZeroAblation, MeanAblation, ResampleAblation))

    def _check_site(self, site: str, direction: str) -> None:
        if site not in SITES:
            raise ValueError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'denoising' or 'noising', not {direction!r}")
        if direction == "denoising" and self._is_ablation:
            raise ValueError(
                f"{type(self.corruption).__name__} only defines what to patch into the clean run, "
                "so only direction='noising' applies. For denoising, give corrupted prompts or "
                "pw.GaussianNoise()."
            )
        reason = self.available_sites()[site]
        if reason:
            raise ValueError(f"site {site!r} is not available: {reason}")

    def _indices(self, values: Iterable[int] | None, size: int, name: str) -> tuple[int, ...]:
        if values is None:
            return tuple(range(size))
        out = []
        for v in [values] if isinstance(values, int) else values:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {v!r}")
            if not -size <= v < size:
                raise ValueError(
                    f"{name} {v} is out of range: this model has {size} ({0}..{size - 1})"
                )
            out.append(int(v) % size)
        if not out:
            raise ValueError(f"no {name}s selected: give at least one, or None for all")
        return tuple(out)

    def _label(self, axis: str, value: int, site: str) -> str:
        if axis == "pos":
            return self.position_labels[value]
        if (
            axis == "head"
            and site in ("head_k", "head_v")
            and self.dims.n_kv_heads != self.dims.n_heads
        ):
            return f"KV{value}"
        return {"layer": "L", "head": "H", "neuron": "N"}[axis] + str(value)

    def _component_target(self, c: Component) -> Target:
        layer = self._indices([c.layer], self.dims.n_layers, "layer")[0]
        n_heads = self.dims.n_kv_heads if c.site in ("head_k", "head_v") else self.dims.n_heads
        head = None if c.head is None else self._indices([c.head], n_heads, "head")[0]
        neuron = (
            None if c.neuron is None else self._indices([c.neuron], self.dims.d_mlp, "neuron")[0]
        )
        pos = None if c.pos is None else self._indices([c.pos], self.length, "position")[0]
        return self._target(c.site, layer=layer, head=head, pos=pos, neuron=neuron)

    def _target(
        self,
        site: str,
        layer: int,
        head: int | None = None,
        pos: int | None = None,
        neuron: int | None = None,
        together: tuple[int, ...] | None = None,
    ) -> Target:
        positions = (pos,) if pos is not None else together
        if site in _SIMPLE_POINTS:
            return Target(_SIMPLE_POINTS[site], layer, 0, positions)
        if site in ("head", "head_by_pos"):
            return Target("z", layer, head, positions)
        if site == "head_pattern":
            return Target("pattern", layer, head, positions)
        if site in HEAD_PART_SITES:
            point, unit = self.hooks.head_part(site[-1], head)
            return Target(point, layer, unit, positions)
        return Target("neurons", layer, neuron, positions)

    def _make_noise(self) -> torch.Tensor | None:
        c = self.corruption
        if not isinstance(c, GaussianNoise):
            return None
        weight = self._hf.get_input_embeddings().weight
        std = c.std if c.std is not None else 3 * float(weight.detach().float().std())
        gen = torch.Generator().manual_seed(c.seed)
        noise = torch.randn(self.n_pairs, self.length, self.dims.d_model, generator=gen) * std
        if c.positions is not None:
            keep = torch.zeros(self.length, dtype=torch.bool)
            keep[list(self._indices(c.positions, self.length, "noise position"))] = True
            noise[:, ~keep] = 0
        return noise.to(self.dtype)

    def _corrupted_input(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._corrupted_ids is not None:
            return self._corrupted_ids, None
        return self._clean_ids, self.noise

    def _baselines(self) -> None:
        clean_logits, _ = self.engine.forward(self._clean_ids)
        if self._is_ablation:
            embed_target = [[Target("block_in", 0, 0, None)]]
            rows = np.arange(self.n_pairs)
            plan = self.engine.plan(
                embed_target, rows, self._source_values("noising", {("block_in", 0)}), self.length
            )
            corrupted_logits, _ = self.engine.forward(self._clean_ids, plan=plan)
        else:
            ids, noise = self._corrupted_input()
            corrupted_logits, _ = self.engine.forward(ids, noise)
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
            self._clean_base.rows(p),
            self._corrupted_base.rows(p),
        )
        return r.cpu().numpy().astype(np.float32)

    def _source_values(self, direction: str, keys: Iterable[Key]) -> dict[Key, torch.Tensor]:
        """Source activations (pairs, pos, unit, width) patched in, cached per direction."""
        missing = frozenset(k for k in keys if (direction, k) not in self._sources)
        if missing:
            for key, value in self._capture_sources(direction, missing).items():
                self._sources[(direction, key)] = value
        return {k: self._sources[(direction, k)] for k in keys}

    def _capture_sources(self, direction: str, keys: frozenset[Key]) -> dict[Key, torch.Tensor]:
        if direction == "denoising":
            return self.engine.forward(self._clean_ids, save=keys)[1]
        c = self.corruption
        if not self._is_ablation:
            ids, noise = self._corrupted_input()
            return self.engine.forward(ids, noise, save=keys)[1]
        if isinstance(c, ZeroAblation):
            captured = self.engine.forward(self._clean_ids, save=keys)[1]
            return {k: torch.zeros_like(v) for k, v in captured.items()}
        reference = list(c.reference) if c.reference else list(self.prompts.clean)
        ref_ids = tokenize(self.tokenizer, reference)

        def capture(ids: torch.Tensor, keys: frozenset[Key]) -> dict[Key, torch.Tensor]:
            return self.engine.forward(ids, save=keys)[1]

        if isinstance(c, ResampleAblation):
            return resample_values(capture, c, ref_ids, keys, self.n_pairs, self.length)
        return mean_values(capture, ref_ids, keys, self.n_pairs, self.length)

    def _run(
        self,
        patch_sets: list[list[Target]],
        site: str,
        direction: str,
        axes: tuple[str, ...],
        coords: dict[str, tuple[int, ...]],
        labels: dict[str, tuple[str, ...]],
        meta: dict[str, Any],
        on_progress: Progress | None,
        cancel: threading.Event | Callable[[], bool] | None,
        progress: bool,
    ) -> PatchResult:
        shape = tuple(len(coords[a]) for a in axes)
        n_sets, n_pairs = len(patch_sets), self.n_pairs
        readouts = np.full((n_sets, n_pairs, len(READOUT_FIELDS)), np.nan, dtype=np.float32)
        metadata = self._metadata(site, direction, meta)

        def result(complete: bool) -> PatchResult:
            return PatchResult(
                site=site,
                direction=direction,
                axes=axes,
                coords=coords,
                labels=labels,
                readouts=readouts.reshape(*shape, n_pairs, -1).copy(),
                clean_readouts=self.clean_readouts,
                corrupted_readouts=self.corrupted_readouts,
                metadata=metadata,
                complete=complete,
            )

        with self._lock:
            keys = {(t.point, t.layer) for targets in patch_sets for t in targets}
            sources = self._source_values(direction, keys)
            ids, noise = (
                self._corrupted_input() if direction == "denoising" else (self._clean_ids, None)
            )
            rows = self.batch_size or rows_per_batch(
                self.dims, self.length, self.device, self.dtype, self.memory_budget
            )
            per_batch = max(1, rows // n_pairs)
            bar = (
                _progress_bar(n_sets, site, direction) if progress and n_sets > per_batch else None
            )
            done = 0
            # A GPU pass costs launches more than arithmetic: keep its batches full.
            min_size = per_batch if self.device.type == "cuda" else max(1, per_batch // 4)
            for start, stop in batches(patch_sets, per_batch, min_size):
                if _cancelled(cancel):
                    break
                chunk = patch_sets[start:stop]
                pairs = np.tile(np.arange(n_pairs), len(chunk))
                plan = self.engine.plan(chunk, pairs, sources, self.length)
                first = min(first_layer(targets) for targets in chunk)
                skip = [rows_of(out, pairs) for out in self._base_blocks(direction)[:first]]
                logits, _ = self.engine.forward(
                    ids[pairs], None if noise is None else noise[pairs], plan, skip=skip
                )
                batch = self._readouts(logits, pairs).reshape(len(chunk), n_pairs, -1)
                if not np.isfinite(batch).all():
                    bad = int(np.argwhere(~np.isfinite(batch))[0][0])
                    raise FloatingPointError(
                        f"patching {_describe(axes, coords, start + bad, shape)} ({direction}) "
                        "gave NaN or inf in the model's output; nothing was plotted. Check the "
                        "model's dtype (float16 overflow?) and the corruption's scale."
                    )
                readouts[start : start + len(chunk)] = batch
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                if on_progress is not None:
                    on_progress(done, n_sets, result(done == n_sets))
            if bar is not None:
                bar.close()
        return result(done == n_sets)

    def _base_blocks(self, direction: str) -> list[Any]:
        """Every block's output on the base run of a direction (to skip unpatched layers)."""
        if self.engine.remote:
            return []
        if direction not in self._block_outputs:
            ids, noise = (
                self._corrupted_input() if direction == "denoising" else (self._clean_ids, None)
            )
            saved = self.engine.forward(ids, noise, save_blocks=True)[1]
            self._block_outputs[direction] = [
                saved[("block_raw", layer)] for layer in range(self.dims.n_layers)
            ]
        return self._block_outputs[direction]

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
            "corruption": repr(self.corruption) if self.corruption else "counterfactual prompts",
            "versions": {
                "patchwidget": __version__,
                "torch": torch.__version__,
                "nnsight": getattr(nnsight, "__version__", "unknown"),
                "transformers": transformers.__version__,
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **{k: _jsonable(v) for k, v in extra.items()},
        }


def _sweep_axes(site: str, by_pos: bool) -> tuple[str, ...]:
    axes = SITES[site].axes
    if by_pos and "pos" not in axes:
        if site not in HEAD_PART_SITES:
            raise ValueError(f"by_pos applies to head_q/k/v/pattern, not {site!r}")
        axes = (*axes, "pos")
    return axes


def _describe(axes: tuple[str, ...], coords: dict, flat: int, shape: tuple[int, ...]) -> str:
    index = np.unravel_index(flat, shape)
    return ", ".join(f"{a} {coords[a][i]}" for a, i in zip(axes, index, strict=True))


def _cancelled(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


def _progress_bar(total: int, site: str, direction: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{site} ({direction})", unit="patch", leave=False)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return [_jsonable(v) for v in value]
