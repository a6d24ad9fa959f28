"""Loading models as nnsight objects."""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)


def load_model(
    model: Any,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    remote: bool = False,
    **kwargs: Any,
) -> Any:
    """An nnsight model from a hub name, a local folder, or an already-built transformers model.

    Attention runs eagerly so attention patterns can be patched.

    Args:
        model: a hub name or local folder, a transformers model (needs ``tokenizer``), or an
            nnsight model (returned as is).
        tokenizer: the model's tokenizer; loaded with the model when it is a name.
        device: where the weights go, e.g. ``"cuda"`` (default: where transformers puts them).
        dtype: ``torch.float32``, ``"bfloat16"``, ...; default: the checkpoint's.
        remote: True marks the model for nnsight's remote execution (NDIF); its weights are not
            loaded here.
        **kwargs: passed to transformers' ``from_pretrained`` (e.g. ``revision=``).
    """
    from nnsight import Envoy, TransformersModel

    if isinstance(model, Envoy):
        return model
    if isinstance(model, torch.nn.Module):
        if tokenizer is None:
            raise ValueError(
                "a transformers model needs its tokenizer: pw.load_model(hf_model, tokenizer=tok)"
            )
        model_device(model)
        if dtype is not None:
            model = model.to(_as_dtype(dtype))
        if device is not None:
            model = model.to(device)
        model.eval()
        model.set_attn_implementation("eager")
        wrapped = TransformersModel(model, tokenizer=tokenizer)
    elif isinstance(model, str):
        options: dict[str, Any] = {
            "attn_implementation": "eager",
            "task": "text-generation",
            **kwargs,
        }
        if dtype is not None:
            options["dtype"] = _as_dtype(dtype)
        if device is not None:
            options["device_map"] = str(device)
        if tokenizer is not None:
            options["tokenizer"] = tokenizer
        log.info("loading %s (remote=%s, %s)", model, remote, options)
        wrapped = TransformersModel(model, dispatch=not remote, **options)
    else:
        raise TypeError(
            f"cannot load a model from {type(model).__name__}; pass a hub name or folder, "
            "a transformers model (with tokenizer=...), or an nnsight model"
        )
    object.__setattr__(wrapped, "_patchwidget_remote", remote)
    return wrapped


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32' or 'bfloat16'")
    return value


def model_device(model: torch.nn.Module) -> torch.device:
    """The one device holding the weights; a ValueError that says how to fix anything else."""
    devices = {p.device for p in model.parameters()}
    if any(d.type == "meta" for d in devices):
        raise ValueError(
            "the model's weights are not loaded (they are on the 'meta' device): load it with "
            "pw.load_model(name) or move it to a real device with model.to('cpu')"
        )
    if len(devices) > 1 and not getattr(model, "hf_device_map", None):
        raise ValueError(
            f"the model's weights are spread over {sorted(map(str, devices))} without a device "
            "map; move the whole model to one device, e.g. model.to('cuda')"
        )
    return next(iter(sorted(devices, key=str)))
