"""Loading models as nnsight objects."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def load_model(
    model: Any,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    remote: bool | str = False,
    device_map: str | dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """An nnsight model from a hub name, a local folder, or an already-built transformers model.

    Attention runs eagerly so attention patterns can be patched.

    Args:
        model: a hub name or local folder, a transformers model (needs ``tokenizer``), or an
            nnsight model (returned as is; ``remote=True``/``"local"`` marks it to run remotely).
        tokenizer: the model's tokenizer; loaded with the model when it is a name.
        device: where the weights go, e.g. ``"cuda"`` (default: where transformers puts them).
        dtype: ``torch.float32``, ``"bfloat16"``, ...; default: the checkpoint's.
        remote: True runs the model on NDIF (nnsight's remote execution): only its config and
            tokenizer are loaded here, never its weights. ``"local"`` loads the weights here and
            sends every request through nnsight's local simulation of remote execution
            (serialised, deserialised without local modules, run in-process): the offline check
            that the remote path works.
        device_map: where each layer goes, for a model larger than one device: ``"auto"``
            (spread over the GPUs, then CPU) or a dict of module name → device, as in
            transformers' ``from_pretrained``. Not with ``remote=True``.
        **kwargs: passed to transformers' ``from_pretrained`` (e.g. ``revision=``).
    """
    from nnsight import Envoy, TransformersModel

    if remote not in (False, True, "local"):
        raise ValueError(f"remote must be False, True (NDIF) or 'local', not {remote!r}")
    if remote is True and device_map is not None:
        raise ValueError("device_map places weights here; with remote=True they stay on NDIF")
    if isinstance(model, Envoy):
        if remote:
            object.__setattr__(model, "_patchwidget_remote", remote)
        return model
    if isinstance(model, torch.nn.Module):
        if remote is True:
            raise ValueError(
                "remote=True runs a model that NDIF serves, named by its hub id: "
                "pw.load_model('meta-llama/Llama-3.1-8B', remote=True); an in-memory model "
                "can use remote='local'"
            )
        if device_map is not None:
            raise ValueError(
                "device_map applies when loading by name or folder: "
                "pw.load_model(name, device_map='auto')"
            )
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
        if remote is True and Path(model).is_dir():
            raise ValueError(
                f"remote=True runs a model NDIF serves, named by its hub id; {model!r} is a "
                "local folder: load it here (remote=False) or with remote='local'"
            )
        options: dict[str, Any] = {
            "attn_implementation": "eager",
            "task": "text-generation",
            **kwargs,
        }
        if dtype is not None:
            options["dtype"] = _as_dtype(dtype)
        if device is not None and device_map is not None:
            raise ValueError("give device= (one device) or device_map= (several), not both")
        if device is not None:
            options["device_map"] = str(device)
        if device_map is not None:
            options["device_map"] = device_map
        if tokenizer is not None:
            options["tokenizer"] = tokenizer
        log.info("loading %s (remote=%s, %s)", model, remote, options)
        wrapped = TransformersModel(model, dispatch=remote is not True, **options)
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
    """The device holding the weights (of a device-mapped model: its token embeddings); a
    ValueError that says how to fix anything else."""
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
    embeddings = getattr(model, "get_input_embeddings", None)
    if len(devices) > 1 and embeddings is not None:
        return embeddings().weight.device  # where the token ids go
    return next(iter(sorted(devices, key=str)))
