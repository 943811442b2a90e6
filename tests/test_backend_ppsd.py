"""PPSD on real (tiny) models: early layers + exit head drafting in one process, late layers verifying in
another; lossless, and it stops cleanly when a stage dies."""

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from pipespec.backend.engines import DecodeOptions, decode_ar
from pipespec.backend.layers import LayerSlice
from pipespec.backend.loading import load_model
from pipespec.backend.models import resolve
from pipespec.backend.pipeline import Placement, StageFailed
from pipespec.backend.ppsd import PPSDEngine
from pipespec.backend.stages import build_stage

TARGET = "tiny:1:4:64"


def prompts(count=3, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 49152, size=int(rng.integers(6, 30))).tolist() for _ in range(count)]


def test_layer_slices_compose_to_the_full_model_with_cache_and_crop():
    model = load_model(resolve(TARGET), "cpu")
    ids = torch.tensor(prompts(1)[0] + [5, 6, 7, 8])
    full = model(input_ids=ids[None]).logits[0]
    early, late = LayerSlice(model, range(0, 1), "cpu", embed=True), LayerSlice(model, range(1, 4), "cpu", head=True)
    got = torch.cat([late.logits(late.forward(early.forward(ids[:10]))),
                     late.logits(late.forward(early.forward(ids[10:11]))),
                     late.logits(late.forward(early.forward(ids[11:])))])
    assert torch.allclose(got, full, atol=1e-4)
    early.crop(8)
    late.crop(8)
    changed = ids.clone()
    changed[8:] = 11
    again = late.logits(late.forward(early.forward(changed[8:])))
    assert torch.allclose(again, model(input_ids=changed[None]).logits[0, 8:], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("exit_layer, max_drafts", [(1, None), (2, None), (3, 1)])
def test_ppsd_is_token_for_token_the_targets_greedy_output(exit_layer, max_drafts):
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=40, max_drafts=max_drafts, max_lead=8)
    target = build_stage(resolve(TARGET), "T", "cpu", 0.0)
    verifications = 0
    with PPSDEngine(resolve(TARGET), exit_layer, [Placement(), Placement()], options) as engine:
        for prompt in prompts(4):
            result = engine.decode(prompt)
            assert result.output == decode_ar([target], prompt, options).output
            pair = result.pairs[0]
            verifications += pair.verifications
            assert pair.accepted <= pair.drafted and result.stages[1].tokens_added >= len(result.output)
    assert verifications > 0


@pytest.mark.slow
def test_a_killed_ppsd_stage_stops_the_run_within_seconds():
    options = DecodeOptions(max_new_tokens=100_000)
    engine = PPSDEngine(resolve(TARGET), 2, [Placement(), Placement()], options, capacity=200_100)
    with engine:
        started = time.monotonic()
        os.kill(engine.processes[1].pid, signal.SIGKILL)
        with pytest.raises(StageFailed, match=r"stage 1 \(late\) died"):
            engine.decode(prompts(1)[0])
        assert time.monotonic() - started < 10
    assert [p for p in engine.processes if p.is_alive()] == []


@pytest.mark.parametrize("args, message", [
    (("--exit-layer", "4"), "--exit-layer must satisfy 1 <= E < 4"),
    (("--exit-layer", "0"), "--exit-layer must satisfy 1 <= E < 4"),
    (("--cpus", "0", "1", "0"), "--cpus: give one core set per stage (2)"),
    (("--temperature", "0.7"), "--temperature: ppsd decodes greedily"),
    (("--exit-draft", "draft:nope"), "no built draft 'nope'"),
])
def test_bad_layer_splits_are_one_line_errors(run_cli, tmp_path, args, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "input_ids": [1, 2, 3]}) + "\n")
    code, _, err = run_cli("run", "--scheme", "ppsd", "--chain", TARGET, "--prompts", str(path), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_ppsd_on_the_built_in_target_through_the_cli(run_cli):
    common = ["--chain", "smollm2", "--limit", "2", "--max-new-tokens", "16", "--warmup", "0", "--json"]
    code, out, err = run_cli("run", "--scheme", "ppsd", "--exit-layer", "8", "--threads", "1", *common)
    assert code == 0, err
    ppsd = json.loads(out)["results"]
    code, out, err = run_cli("run", "--scheme", "ar", *common)
    assert code == 0, err
    ar = json.loads(out)["results"]
    assert [p["output_ids"] for p in ppsd["prompts"]] == [p["output_ids"] for p in ar["prompts"]]
    assert [s["name"] for s in ppsd["summary"]["stages"]] == ["early", "late"]
