"""Independent activation-patching reference: plain torch forward hooks, no engine code, no nnsight.

Attention patterns are read and replaced inside an eager attention function registered with
transformers' AttentionInterface; everything else goes through `register_forward_hook` /
`register_forward_pre_hook` on the model's own modules.

A run takes a batch of token ids, a list of patches per batch row (objects with `site`, `layer`,
`head`, `pos`, `neuron` attributes, e.g. `pw.Component`) and a source `Trace` with one row per
batch row; each patch copies the source row's activation at the patched index into the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

ATTN_IMPL = "patchwidget_reference"
_PATTERN_HOOK = "_patchwidget_reference_pattern_hook"

RESID_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
KIND_OF_SITE = {
    **{k: k for k in RESID_KINDS},
    "head": "z",
    "head_by_pos": "z",
    "head_q": "q",
    "head_k": "k",
    "head_v": "v",
    "head_pattern": "pattern",
    "neuron": "neuron",
}
READOUT_FIELDS = ("logit_correct", "logit_incorrect", "lse", "kl_clean", "kl_corrupted", "rank")


@dataclass(frozen=True)
class Arch:
    """Where each activation lives in one model family (module paths relative to a layer)."""

    layers: str
    embed: str
    attn_out: str  # module whose output (first element if a tuple) is added to the residual
    mlp_out: str
    o_proj: str  # its input is the concatenation of per-head outputs z
    down_proj: str  # its input holds the MLP neurons
    qkv: tuple[str, ...]  # one fused projection, or (q, k, v) projections
    qkv_layout: str  # "gpt2" (q|k|v blocks), "neox" (per head q,k,v), "split"
    mlp_norm: str | None  # norm whose input is resid_mid (None for parallel blocks)


def arch_of(model: torch.nn.Module) -> Arch:
    name = type(model).__name__
    if name == "GPT2LMHeadModel":
        return Arch(
            "transformer.h",
            "transformer.wte",
            "attn",
            "mlp",
            "attn.c_proj",
            "mlp.c_proj",
            ("attn.c_attn",),
            "gpt2",
            "ln_2",
        )
    if name == "GPTNeoXForCausalLM":
        parallel = model.config.use_parallel_residual
        return Arch(
            "gpt_neox.layers",
            "gpt_neox.embed_in",
            "attention",
            "mlp",
            "attention.dense",
            "mlp.dense_4h_to_h",
            ("attention.query_key_value",),
            "neox",
            None if parallel else "post_attention_layernorm",
        )
    if name == "GPTJForCausalLM":
        return Arch(
            "transformer.h",
            "transformer.wte",
            "attn",
            "mlp",
            "attn.out_proj",
            "mlp.fc_out",
            ("attn.q_proj", "attn.k_proj", "attn.v_proj"),
            "split",
            None,
        )
    qkv = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    if name == "Gemma2ForCausalLM":
        return Arch(
            "model.layers",
            "model.embed_tokens",
            "post_attention_layernorm",
            "post_feedforward_layernorm",
            "self_attn.o_proj",
            "mlp.down_proj",
            qkv,
            "split",
            "pre_feedforward_layernorm",
        )
    if name in ("LlamaForCausalLM", "GemmaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
        return Arch(
            "model.layers",
            "model.embed_tokens",
            "self_attn",
            "mlp",
            "self_attn.o_proj",
            "mlp.down_proj",
            qkv,
            "split",
            "post_attention_layernorm",
        )
    raise ValueError(f"reference does not know {name}")


def reference_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention whose post-softmax pattern (batch, heads, q, k) passes through a hook."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    pattern = torch.softmax(scores, dim=-1).to(value.dtype)
    hook = getattr(module, _PATTERN_HOOK, None)
    if hook is not None:
        pattern = hook(pattern)
    out = torch.matmul(pattern, value).transpose(1, 2).contiguous()
    return out, pattern


AttentionInterface.register(ATTN_IMPL, reference_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPL, eager_mask)


class Trace(dict):
    """Activations of one run: (kind, layer) -> tensor with batch first.

    Layouts: resid kinds (B, S, d_model); z, q (B, S, heads, d_head); k, v (B, S, kv_heads, d_head);
    pattern (B, heads, S_query, S_key); neuron (B, S, d_mlp).
    """

    def rows(self, index: Sequence[int]) -> Trace:
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return Trace({key: t[idx] for key, t in self.items()})

    def mean(self, n_rows: int) -> Trace:
        """The mean over rows, repeated `n_rows` times."""
        return Trace(
            {key: t.mean(0, keepdim=True).expand(n_rows, *t.shape[1:]) for key, t in self.items()}
        )

    def zeros(self) -> Trace:
        return Trace({key: torch.zeros_like(t) for key, t in self.items()})


def _index(comp: Any, row: int) -> tuple:
    """Index into a trace tensor selecting what `comp` patches in batch row `row`."""
    pos = comp.pos
    if pos is None:
        pos_sel: Any = slice(None)
    elif isinstance(pos, int):
        pos_sel = pos
    else:
        pos_sel = torch.as_tensor(list(pos), dtype=torch.long)
    kind = KIND_OF_SITE[comp.site]
    if kind in RESID_KINDS:
        return (row, pos_sel)
    if kind == "pattern":
        return (row, comp.head, pos_sel)
    if kind == "neuron":
        return (row, pos_sel, comp.neuron)
    return (row, pos_sel, comp.head)


class Reference:
    """Runs a private copy of a transformers model with hook-based patching."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.arch = arch_of(model)
        self.model.config._attn_implementation = ATTN_IMPL
        self.layers = self.model.get_submodule(self.arch.layers)
        cfg = model.config
        self.n_layers = len(self.layers)
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.d_model = cfg.hidden_size
        self.d_head = getattr(cfg, "head_dim", None) or self.d_model // self.n_heads
        self.d_mlp = self._mlp_width()
        self.parallel = self.arch.mlp_norm is None

    # ---- tokens -------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        assert len({len(i) for i in ids}) == 1, "reference needs equal-length prompts"
        return torch.tensor(ids, dtype=torch.long)

    def answer_id(self, answer: str) -> int:
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, ids
        return ids[0]

    # ---- runs ---------------------------------------------------------------------------------
    @torch.no_grad()
    def run(
        self,
        input_ids: torch.Tensor,
        patches: Sequence[Sequence[Any]] | None = None,
        source: Trace | None = None,
        noise: torch.Tensor | None = None,
        capture: bool = False,
    ) -> tuple[torch.Tensor, Trace | None]:
        """Last-position logits (B, vocab) float32 and, if `capture`, the run's (patched) Trace.

        `patches[b]` lists the components patched in row b with values from `source` row b;
        `noise` (B, S, d_model) is added to the token-embedding output.
        """
        rows = input_ids.shape[0]
        patches = patches or [[] for _ in range(rows)]
        assert len(patches) == rows
        plan: dict[tuple[str, int], list[tuple[int, Any]]] = {}
        for b, comps in enumerate(patches):
            for comp in comps:
                plan.setdefault((KIND_OF_SITE[comp.site], comp.layer), []).append((b, comp))
        if plan:
            assert source is not None and all(t.shape[0] == rows for t in source.values())
        trace = Trace()
        with self._hooks(plan, source, trace if capture else None, noise):
            logits = self.model(input_ids=input_ids).logits[:, -1].float()
        return logits, (trace if capture else None)

    @contextmanager
    def _hooks(
        self,
        plan: dict[tuple[str, int], list[tuple[int, Any]]],
        source: Trace | None,
        trace: Trace | None,
        noise: torch.Tensor | None,
    ) -> Iterator[None]:
        handles = []
        pattern_modules = []
        resid_pre: dict[int, torch.Tensor] = {}

        def apply(kind: str, layer: int, act: torch.Tensor) -> None:
            """Patch `act` (trace layout, modified in place) and record it."""
            for b, comp in plan.get((kind, layer), []):
                idx = _index(comp, b)
                act[idx] = source[(kind, layer)][idx].to(act.dtype)
            if trace is not None:
                trace[(kind, layer)] = act.detach().clone()

        if noise is not None:
            embed = self.model.get_submodule(self.arch.embed)
            handles.append(embed.register_forward_hook(lambda m, i, o: o + noise.to(o.dtype)))

        for layer in range(self.n_layers):
            mod = self._layer_modules(layer)
            handles.append(
                mod["layer"].register_forward_pre_hook(
                    self._pre_layer(layer, apply, resid_pre), with_kwargs=True
                )
            )
            handles.extend(self._qkv_hooks(layer, mod, apply))
            attn = mod["o_proj_parent"]
            setattr(attn, _PATTERN_HOOK, self._pattern_hook(layer, apply))
            pattern_modules.append(attn)
            handles.append(mod["o_proj"].register_forward_pre_hook(self._z_hook(layer, apply)))
            handles.append(
                mod["attn_out"].register_forward_hook(
                    self._attn_out_hook(layer, apply, resid_pre, ("resid_mid", layer) in plan)
                )
            )
            handles.append(
                mod["down_proj"].register_forward_pre_hook(self._neuron_hook(layer, apply))
            )
            handles.append(mod["mlp_out"].register_forward_hook(self._mlp_out_hook(layer, apply)))
            handles.append(mod["layer"].register_forward_hook(self._post_layer(layer, apply)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for m in pattern_modules:
                delattr(m, _PATTERN_HOOK)

    # ---- hook factories -----------------------------------------------------------------------
    def _pre_layer(self, layer: int, apply: Callable, resid_pre: dict) -> Callable:
        def hook(module, args, kwargs):
            if args:
                hidden = args[0].clone()
                args = (hidden, *args[1:])
            else:
                hidden = kwargs["hidden_states"].clone()
                kwargs = {**kwargs, "hidden_states": hidden}
            apply("resid_pre", layer, hidden)
            resid_pre[layer] = hidden
            return args, kwargs

        return hook

    def _post_layer(self, layer: int, apply: Callable) -> Callable:
        def hook(module, args, output):
            hidden = (output[0] if isinstance(output, tuple) else output).clone()
            apply("resid_post", layer, hidden)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    def _qkv_hooks(self, layer: int, mod: dict, apply: Callable) -> list:
        h, kv, dh = self.n_heads, self.n_kv_heads, self.d_head
        layout = self.arch.qkv_layout

        def fused(module, args, output):
            out = output.clone()
            b, s, _ = out.shape
            if layout == "gpt2":
                d = h * dh
                views = [out[..., i * d : (i + 1) * d].view(b, s, h, dh) for i in range(3)]
            else:  # neox: per head a block of 3 * d_head holding q, k, v
                grid = out.view(b, s, h, 3, dh)
                views = [grid[:, :, :, i] for i in range(3)]
            for kind, view in zip("qkv", views, strict=True):
                apply(kind, layer, view)  # views share storage with `out`
            return out

        def split(kind: str, n: int) -> Callable:
            def hook(module, args, output):
                out = output.clone()
                apply(kind, layer, out.view(*out.shape[:2], n, dh))
                return out

            return hook

        if layout in ("gpt2", "neox"):
            return [mod["qkv"][0].register_forward_hook(fused)]
        return [
            m.register_forward_hook(split(k, n))
            for m, k, n in zip(mod["qkv"], "qkv", (h, kv, kv), strict=True)
        ]

    def _pattern_hook(self, layer: int, apply: Callable) -> Callable:
        def hook(pattern: torch.Tensor) -> torch.Tensor:
            pattern = pattern.clone()
            apply("pattern", layer, pattern)
            return pattern

        return hook

    def _z_hook(self, layer: int, apply: Callable) -> Callable:
        def hook(module, args):
            z = args[0].clone()
            apply("z", layer, z.view(*z.shape[:2], self.n_heads, self.d_head))
            return (z, *args[1:])

        return hook

    def _attn_out_hook(
        self, layer: int, apply: Callable, resid_pre: dict, patch_mid: bool
    ) -> Callable:
        def hook(module, args, output):
            out = (output[0] if isinstance(output, tuple) else output).clone()
            apply("attn_out", layer, out)
            if not self.parallel:
                # resid_mid = resid_pre + attention contribution; patching it sets the contribution
                # to (target - resid_pre), so both the MLP and the later residual see the target.
                mid = resid_pre[layer] + out
                apply("resid_mid", layer, mid)
                if patch_mid:
                    out = mid - resid_pre[layer]
            return (out, *output[1:]) if isinstance(output, tuple) else out

        return hook

    def _neuron_hook(self, layer: int, apply: Callable) -> Callable:
        def hook(module, args):
            acts = args[0].clone()
            apply("neuron", layer, acts)
            return (acts, *args[1:])

        return hook

    def _mlp_out_hook(self, layer: int, apply: Callable) -> Callable:
        def hook(module, args, output):
            out = (output[0] if isinstance(output, tuple) else output).clone()
            apply("mlp_out", layer, out)
            return (out, *output[1:]) if isinstance(output, tuple) else out

        return hook

    # ---- helpers ------------------------------------------------------------------------------
    def _layer_module(self, layer: int, path: str) -> torch.nn.Module:
        return self.layers[layer].get_submodule(path)

    def _layer_modules(self, layer: int) -> dict[str, Any]:
        """The modules of one layer that the hooks attach to."""
        a = self.arch
        return {
            "layer": self.layers[layer],
            "qkv": [self._layer_module(layer, p) for p in a.qkv],
            "o_proj_parent": self._layer_module(layer, a.o_proj.rsplit(".", 1)[0]),
            "o_proj": self._layer_module(layer, a.o_proj),
            "attn_out": self._layer_module(layer, a.attn_out),
            "down_proj": self._layer_module(layer, a.down_proj),
            "mlp_out": self._layer_module(layer, a.mlp_out),
        }

    def _mlp_width(self) -> int:
        down = self._layer_module(0, self.arch.down_proj)
        # Linear: weight (out, in); GPT-2 Conv1D: weight (in, out)
        return down.weight.shape[0] if type(down).__name__ == "Conv1D" else down.weight.shape[1]


# ---- readouts -----------------------------------------------------------------------------------
def readouts(
    logits: torch.Tensor,
    correct: torch.Tensor,
    incorrect: torch.Tensor,
    clean_logits: torch.Tensor,
    corrupted_logits: torch.Tensor,
) -> torch.Tensor:
    """(rows, 6) float64 readouts from last-position logits; baselines/answers broadcast by row."""
    x = logits.double()
    logp = torch.log_softmax(x, -1)
    lp_clean = torch.log_softmax(clean_logits.double(), -1)
    lp_corr = torch.log_softmax(corrupted_logits.double(), -1)
    lc = x.gather(-1, correct[:, None])[:, 0]
    li = x.gather(-1, incorrect[:, None])[:, 0]
    kl_clean = (lp_clean.exp() * (lp_clean - logp)).sum(-1)
    kl_corr = (lp_corr.exp() * (lp_corr - logp)).sum(-1)
    rank = (x > lc[:, None]).sum(-1).double()
    return torch.stack([lc, li, torch.logsumexp(x, -1), kl_clean, kl_corr, rank], -1)


# ---- experiments ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comp:
    """A patch target for the reference; `pos` may also be a tuple of positions patched together."""

    site: str
    layer: int
    head: int | None = None
    pos: int | tuple[int, ...] | None = None
    neuron: int | None = None


class Scenario:
    """Prompt pairs + answers + corruption: baselines and patched readouts computed by `Reference`.

    Exactly one corruption: `corrupted` prompts, `noise` (P, S, d_model) added to the clean run's
    token embeddings, or an ablation trace (`ablation`, one row per pair) patched into the clean run
    (the corrupted baseline then ablates resid_pre of layer 0 at every position).
    """

    def __init__(
        self,
        ref: Reference,
        clean: Sequence[str],
        answers: Sequence[tuple[str, str]],
        corrupted: Sequence[str] | None = None,
        noise: torch.Tensor | None = None,
        ablation: Trace | None = None,
    ) -> None:
        assert (corrupted is not None) + (noise is not None) + (ablation is not None) == 1
        self.ref = ref
        self.clean_ids = ref.encode(clean)
        self.n_pairs, self.n_pos = self.clean_ids.shape
        self.correct = torch.tensor([ref.answer_id(a) for a, _ in answers])
        self.incorrect = torch.tensor([ref.answer_id(b) for _, b in answers])
        self.clean_logits, self.clean_trace = ref.run(self.clean_ids, capture=True)
        self.corrupted_ids, self.noise, self.ablation = self.clean_ids, noise, ablation is not None
        if corrupted is not None:
            self.corrupted_ids = ref.encode(corrupted)
            assert self.corrupted_ids.shape == self.clean_ids.shape
        if ablation is not None:
            rows = [[Comp("resid_pre", 0)] for _ in range(self.n_pairs)]
            self.corrupted_logits, _ = ref.run(self.clean_ids, rows, ablation)
            self.corrupted_trace = ablation
        else:
            self.corrupted_logits, self.corrupted_trace = ref.run(
                self.corrupted_ids, noise=noise, capture=True
            )

    def readouts(self, logits: torch.Tensor) -> torch.Tensor:
        """(cells * pairs, vocab) logits, rows pair-minor -> (cells, pairs, 6) float64."""
        cells = logits.shape[0] // self.n_pairs

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(cells, *([1] * (t.dim() - 1)))

        out = readouts(
            logits,
            rep(self.correct),
            rep(self.incorrect),
            rep(self.clean_logits),
            rep(self.corrupted_logits),
        )
        return out.view(cells, self.n_pairs, len(READOUT_FIELDS))

    def baselines(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean and corrupted baseline readouts, each (pairs, 6)."""
        return self.readouts(self.clean_logits)[0], self.readouts(self.corrupted_logits)[0]

    def patched(
        self, direction: str, cells: Sequence[Sequence[Any]], chunk: int = 512
    ) -> torch.Tensor:
        """Readouts (cells, pairs, 6) of patching each cell's components together, per pair."""
        if direction == "denoising":
            assert not self.ablation, "ablations define no corrupted run to denoise"
            ids, noise, source = self.corrupted_ids, self.noise, self.clean_trace
        elif direction == "noising":
            ids, noise, source = self.clean_ids, None, self.corrupted_trace
        else:
            raise ValueError(direction)
        p = self.n_pairs
        per_chunk = max(1, chunk // p)
        logits = []
        for start in range(0, len(cells), per_chunk):
            block = cells[start : start + per_chunk]
            rows = [list(cell) for cell in block for _ in range(p)]
            reps = len(block)
            logits.append(
                self.ref.run(
                    ids.repeat(reps, 1),
                    rows,
                    source.rows(list(range(p)) * reps),
                    None if noise is None else noise.repeat(reps, 1, 1),
                )[0]
            )
        return self.readouts(torch.cat(logits))
