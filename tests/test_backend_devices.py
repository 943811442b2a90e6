"""Device groups and quantised loading (backend/devices.py), as far as a CPU-only machine can check them: the
layer split accelerate computes for a group, the one-line errors, and what a loaded model is read back as."""

from __future__ import annotations

import warnings

import pytest
import torch

from pipespec.backend import devices
from pipespec.backend.loading import load_model
from pipespec.backend.models import resolve
from pipespec.backend.runner import RunConfig, run
from pipespec.errors import ConfigError


def test_a_device_group_has_members_and_a_primary_device():
    assert devices.members("cuda:1, cuda:2") == ("cuda:1", "cuda:2")
    assert devices.primary("cuda:1,cuda:2") == "cuda:1" and devices.primary("cpu") == "cpu"


@pytest.mark.parametrize(("device", "message"), [
    ("cpu,cpu", "a device group splits a model's layers over GPUs"),
    ("cuda:0,cuda:0", "names each device once"),
    ("cuda:0,", "empty device"),
    ("tpu:0", "unknown device 'tpu:0'"),
])
def test_bad_devices_and_groups_are_one_line_errors(device, message):
    with pytest.raises(ConfigError, match=message):
        devices.check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_a_cuda_device_without_cuda_says_so():
    with pytest.raises(ConfigError, match="--devices cuda:1: CUDA is not available"):
        devices.check_device("cuda:1", "--devices")


def test_quantisation_needs_cuda_and_bitsandbytes():
    devices.check_quantize("none", ["cpu"])
    with pytest.raises(ConfigError, match="runs on CUDA devices, not cpu"):
        devices.check_quantize("nf4", ["cuda:0", "cpu"])
    with pytest.raises(ConfigError, match="must be one of none, nf4, int8"):
        devices.check_quantize("fp4", ["cuda:0"])
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs the bitsandbytes package"):
            devices.check_quantize("int8", ["cuda:0,cuda:1"])


def test_nf4_is_four_bit_normal_float_computing_in_the_run_dtype():
    config = devices.quantization_config("nf4", torch.bfloat16)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert devices.quantization_config("int8", torch.float16).load_in_8bit
    assert devices.quantization_config("none", torch.float32) is None


def test_a_group_splits_whole_layers_over_its_gpus_embeddings_first_head_last():
    model = load_model(resolve("tiny:1:6:64:1000"), "cpu")
    with warnings.catch_warnings():  # accelerate warns that GPUs 0 and 1 are not on this machine
        warnings.simplefilter("ignore")
        memory = devices.balanced_memory(model, {0: 10**9, 1: 10**9})
        split = devices.split_over(model, memory)
    assert split["model.embed_tokens"] == 0 and split["lm_head"] == 1
    layers = [split[f"model.layers.{i}"] for i in range(6)]
    assert layers == sorted(layers) and set(layers) == {0, 1}  # contiguous: each GPU a run of whole layers


def test_the_result_records_what_each_stage_loaded_read_back_from_the_models():
    model = load_model(resolve("tiny:1:2:64"), "cpu", "bfloat16")
    assert devices.loaded_facts(model) == {"dtypes": ["bfloat16"], "quantization": None, "devices": ["cpu"]}
    quantised = load_model(resolve("tiny:1:2:64"), "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantised.model.layers = torch.ao.quantization.quantize_dynamic(quantised.model.layers, {torch.nn.Linear},
                                                                        dtype=torch.qint8)
    assert devices.loaded_facts(quantised)["quantization"] == {"quant_method": "torch.ao dynamic", "dtype": "qint8"}
    summary = run(RunConfig(scheme="sd", chain=("ngram", "tiny:2:2:64"), max_new_tokens=4, limit=1, warmup=0,
                            dtype="bfloat16"))["summary"]
    assert summary["loaded"] == [[], [{"dtypes": ["bfloat16"], "quantization": None, "devices": ["cpu"]}]]
