"""Loading a resolved model's weights onto a device or a device group, in a dtype or quantised: the built-in
target's fp32 conversion, checkpoints, tiny random models, exits and the int8 self-draft (`models.py` says which
model a chain entry is, and its facts, without loading anything)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import require
from .devices import dispatch, group_max_memory, members, quantization_config
from .eagle import load_feature_draft
from .models import INT8_DRAFT, ModelRef, is_feature_draft, quiet_transformers, resolve, target_path, tiny_config


def load_model(ref: ModelRef, device: str, dtype: str = "float32", quantize: str = "none") -> Any:
    """A causal LM in eval mode on `device`, a device or a device group over which its layers are split
    (`backend.devices`), its weights in `dtype` or quantised (`quantize`: nf4 or int8, through bitsandbytes);
    for ngram: the drafter object."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    quiet_transformers()
    if ref.kind == "ngram":
        from .ngram import NgramDrafter

        return NgramDrafter(ref.params[0])
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    checkpoint = ref.kind not in ("tiny", "exit") and ref.spec != INT8_DRAFT and not (
        ref.path is not None and (ref.path / "exit.safetensors").is_file()) and not is_feature_draft(ref.path)
    require(quantize == "none" or checkpoint, f"--quantize {quantize}: {ref.spec!r} is built in memory, not loaded "
                                              "from a checkpoint; quantise a checkpoint (the target or a draft folder)")
    if checkpoint:
        return _from_pretrained(ref.path if ref.path is not None else target_path(), device, torch_dtype, quantize)
    if ref.kind == "tiny":
        seed, layers, hidden, vocab = ref.params
        config = tiny_config(layers, hidden, vocab)
        # A small vocabulary (statistical tests) gets an untied head with large weights, so that
        # distributions are far from uniform and differ from seed to seed.
        config.tie_word_embeddings = vocab == 49152
        model = LlamaForCausalLM(config)
        torch.manual_seed(seed)
        model.apply(model._init_weights)  # deterministic given the seed
        if not config.tie_word_embeddings:
            with torch.no_grad():
                model.lm_head.weight.normal_(0.0, 0.5)
    elif ref.kind == "exit":
        model = (AutoModelForCausalLM.from_pretrained(target_path(), dtype=torch.float32) if ref.base is None
                 else load_model(ref.base, "cpu"))
        layers = ref.params[0]
        require(layers < model.config.num_hidden_layers,
                f"--chain {ref.spec}: E must be < the model's {model.config.num_hidden_layers} layers")
        _truncate(model, layers)
    elif ref.path is not None and (ref.path / "exit.safetensors").is_file():
        model = load_exit_draft(ref.path)
    elif is_feature_draft(ref.path):
        require(len(members(device)) == 1, f"--device {device}: a feature draft runs on one device")
        model = load_feature_draft(ref.path, lambda base: load_model(resolve(base), "cpu"))
    elif ref.spec == INT8_DRAFT:
        require(dtype == "float32", f"--dtype {dtype}: {INT8_DRAFT} is int8 weights over float32 activations; "
                                    "give --dtype float32")
        model = AutoModelForCausalLM.from_pretrained(target_path(), dtype=torch.float32).eval()
        # int8 weights and per-batch activation scales in the decoder layers; the head stays fp32.
        # A CPU-only draft (about 3x faster per token here, ~40% greedy agreement on the corpus).
        import warnings

        with warnings.catch_warnings():  # torch marks its quantized-tensor constructors deprecated
            warnings.simplefilter("ignore")
            model.model.layers = torch.ao.quantization.quantize_dynamic(model.model.layers, {torch.nn.Linear},
                                                                        dtype=torch.qint8)
        require(device == "cpu", f"--chain {INT8_DRAFT}: dynamic int8 quantisation runs on the CPU only")
        return model
    model = model.to(dtype=torch_dtype)
    return (dispatch(model, device) if len(members(device)) > 1 else model.to(device=device)).eval()


def _from_pretrained(path: Path, device: str, dtype: Any, quantize: str) -> Any:
    """A checkpoint loaded onto a device, or split over a device group at load time (transformers' balanced
    device map within the group's GPUs), in `dtype` or quantised."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    quantization = quantization_config(quantize, dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if len(members(device)) > 1:
        kwargs |= {"device_map": "balanced", "max_memory": group_max_memory(device)}
    elif quantization is not None:
        kwargs["device_map"] = device  # bitsandbytes places quantised weights as it loads them
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if "device_map" not in kwargs:
        model = model.to(device=device)
    return model.eval()


def load_exit_draft(path: Path) -> Any:
    """An early-exit self-draft: the target truncated after its exit layer, with the trained last layer
    and final norm from `exit.safetensors`."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config = json.loads((path / "config.json").read_text())
    exit_layer = int(config["exit_layer"])
    model = AutoModelForCausalLM.from_pretrained(target_path(), dtype=torch.float32)
    _truncate(model, exit_layer)
    trained = load_file(str(path / "exit.safetensors"))
    layer = {k[len("layer."):]: v.float() for k, v in trained.items() if k.startswith("layer.")}
    norm = {k[len("norm."):]: v.float() for k, v in trained.items() if k.startswith("norm.")}
    model.model.layers[exit_layer - 1].load_state_dict(layer)
    model.model.norm.load_state_dict(norm)
    return model


def _truncate(model: Any, layers: int) -> None:
    """Keep a causal LM's first `layers` decoder layers (its norm and head stay on top)."""
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    if hasattr(model.config, "layer_types") and model.config.layer_types:
        model.config.layer_types = model.config.layer_types[:layers]
