"""Where a stage's model lives: one device, or a device group that splits its layers, and quantised weights.

A device is `cpu` or `cuda:N`; a device group is several CUDA devices joined by commas (`cuda:1,cuda:2`): the
model's layers are split over them by accelerate's balanced device map (what `from_pretrained(device_map=
"balanced")` does), its inputs go to the first, and timing synchronises every one of them. `--quantize nf4|int8`
loads the weights through transformers' BitsAndBytesConfig, which needs CUDA and the bitsandbytes package.
`loaded_facts` reads back what a loaded model holds (dtypes, quantisation, devices), for the result to record.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import require

QUANTIZE = ("none", "nf4", "int8")
TRANSPORTS = ("shm", "dist")  # how a pipeline's stage processes talk (links.py, dist.py)


def members(device: str) -> tuple[str, ...]:
    """The devices of a device or device group (`cuda:1,cuda:2` -> cuda:1, cuda:2)."""
    return tuple(part.strip() for part in device.split(","))


def primary(device: str) -> str:
    """Where a stage's inputs go: the group's first device (its embeddings)."""
    return members(device)[0]


def check_device(device: str, where: str = "--device") -> None:
    """A one-line error unless `device` is cpu, cuda:N, or a group of distinct CUDA devices present here."""
    import torch

    parts = members(device)
    require(all(parts), f"{where}: empty device in {device!r}; use cpu, cuda:N or a group cuda:N,cuda:M")
    if len(parts) > 1:
        require(all(p.startswith("cuda") for p in parts),
                f"{where} {device}: a device group splits a model's layers over GPUs; give cuda:N,cuda:M")
        require(len(set(parts)) == len(parts), f"{where} {device}: a device group names each device once")
    for part in parts:
        if part == "cpu":
            continue
        kind, _, index = part.partition(":")
        require(kind == "cuda" and (index == "" or index.isdigit()),
                f"{where}: unknown device {part!r}; use cpu, cuda:N or a group cuda:N,cuda:M")
        require(torch.cuda.is_available(), f"{where} {part}: CUDA is not available on this machine")
        require(index == "" or int(index) < torch.cuda.device_count(),
                f"{where} {part}: only {torch.cuda.device_count()} CUDA device(s)")


def check_quantize(quantize: str, devices: list[str]) -> None:
    """--quantize nf4|int8 needs every stage on CUDA and bitsandbytes installed: otherwise a one-line error."""
    require(quantize in QUANTIZE, f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if quantize == "none":
        return
    off = sorted({d for d in devices for part in members(d) if not part.startswith("cuda")})
    require(not off, f"--quantize {quantize}: bitsandbytes quantisation runs on CUDA devices, not {', '.join(off)} "
                     "(on the CPU, the int8 self-draft is --chain smollm2-int8)")
    require(importlib.util.find_spec("bitsandbytes") is not None,
            f"--quantize {quantize}: needs the bitsandbytes package (pip install bitsandbytes), not installed here")


def quantization_config(quantize: str, compute_dtype: Any) -> Any:
    """transformers' BitsAndBytesConfig for nf4 (4-bit NormalFloat, as the PipeSpec authors ran their 70B) or
    int8 (LLM.int8()); None for none."""
    if quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantize == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def group_max_memory(device: str) -> dict[int, int]:
    """Each GPU of a device group at its total memory (GPU index -> bytes): the only devices a split may use."""
    import torch

    indices = [int(part.partition(":")[2] or 0) for part in members(device)]
    return {i: torch.cuda.get_device_properties(i).total_memory for i in indices}


def balanced_memory(model: Any, max_memory: dict[int, int]) -> dict[int, int]:
    """The memory each GPU may hold for `model` so that its layers split evenly (accelerate's
    get_balanced_memory)."""
    from accelerate.utils import get_balanced_memory

    return get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=model._no_split_modules)


def split_over(model: Any, memory: dict[int, int]) -> dict[str, int]:
    """accelerate's device map of `model` within `memory` (GPU index -> bytes): whole decoder layers per GPU."""
    from accelerate import infer_auto_device_map

    return dict(infer_auto_device_map(model, max_memory=memory, no_split_module_classes=model._no_split_modules))


def dispatch(model: Any, device: str) -> Any:
    """A model built on the CPU spread over the GPUs of a device group (accelerate's dispatch_model)."""
    from accelerate import dispatch_model

    return dispatch_model(model, device_map=split_over(model, balanced_memory(model, group_max_memory(device))))


def loaded_facts(model: Any) -> dict[str, Any]:
    """What a loaded model holds, read back from it: its parameters' dtypes, its quantisation, and the devices
    its parameters sit on (with the layer -> device map when split over a group)."""
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    devices = sorted({str(p.device) for p in model.parameters()})
    quant = getattr(getattr(model, "config", None), "quantization_config", None)
    if quant is not None:
        quant = quant.to_dict() if hasattr(quant, "to_dict") else dict(quant)
        quant = {k: v for k, v in quant.items() if k in ("quant_method", "load_in_4bit", "load_in_8bit",
                                                           "bnb_4bit_quant_type", "bnb_4bit_compute_dtype")}
    if any(".quantized" in type(m).__module__ for m in model.modules()):  # torch.ao's dynamic int8 (CPU)
        quant = {"quant_method": "torch.ao dynamic", "dtype": "qint8"}
    facts: dict[str, Any] = {"dtypes": dtypes, "quantization": quant, "devices": devices}
    device_map = getattr(model, "hf_device_map", None)
    if device_map and len(set(device_map.values())) > 1:
        facts["device_map"] = {k: str(v) for k, v in device_map.items()}
    return facts
