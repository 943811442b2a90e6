"""`pipespec profile` writes what `pipespec simulate` reads: measured latencies and traces drive a run."""

import json

import pytest

from pipespec.profiles import load_profile
from pipespec.traces import load_trace


@pytest.mark.slow
def test_profile_then_simulate(run_cli, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": i, "input_ids": list(range(10 + i, 40 + i))}) for i in range(2)))
    profile, traces = tmp_path / "profile.json", tmp_path / "traces.json"
    code, out, err = run_cli("profile", "--chain", "ngram", "tiny:1:1:64", "tiny:1:3:64", "--num-tokens", "1", "4",
                             "--contexts", "0", "32", "--repeats", "3", "--warmup", "1", "--prompts", str(prompts),
                             "--max-new-tokens", "20", "--output", str(profile), "--traces", str(traces))
    assert code == 0, err
    latency = load_profile(profile, "tiny:1:3:64")
    assert latency.median_s(1, 0) > 0 and latency.median_s(4, 32) > 0
    assert set(json.loads(profile.read_text())["models"]) == {"tiny:1:1:64", "tiny:1:3:64"}
    trace = load_trace(traces, "tiny:1:1:64->tiny:1:3:64")
    assert len(trace.bits) == 40
    assert "greedy match rate" in out
    code, out, err = run_cli("simulate", "--scheme", "pipespec", "--latency", "0.01",
                             f"profile:{profile}#tiny:1:1:64", f"profile:{profile}#tiny:1:3:64",
                             "--acceptance", f"trace:{traces}#ngram->tiny:1:1:64",
                             f"trace:{traces}#tiny:1:1:64->tiny:1:3:64", "--num-tokens", "200", "--json")
    assert code == 0, err
    assert json.loads(out)["results"]["ms_per_token"] > 0


def test_profile_rejects_bad_options(run_cli):
    for args, message in ((["--num-tokens", "0"], "--num-tokens"), (["--output", "p.txt"], "--output"),
                          (["--device", "cuda:3"], "CUDA")):
        code, _, err = run_cli("profile", "--chain", "tiny:1:1:32", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_match_bits_follow_the_draft_as_it_decodes():
    """Fed one token at a time over its cache, a float32 draft's top-k at each position is what one
    teacher-forced forward over the whole sequence gives (int8 dynamic quantisation is where they part)."""
    import torch

    from pipespec.backend.loading import load_model
    from pipespec.backend.models import resolve
    from pipespec.backend.profiler import greedy_continuation, match_bits

    target, draft = load_model(resolve("tiny:1:2:64"), "cpu"), load_model(resolve("tiny:2:2:64"), "cpu")
    prompt = [5, 17, 301, 42, 7]
    reference = greedy_continuation(target, "cpu", prompt, 24, None)
    with torch.inference_mode():
        logits = draft(input_ids=torch.tensor([prompt + reference])).logits[0, len(prompt) - 1:-1]
    for k in (1, 3):
        top = logits.topk(k, -1).indices.tolist()
        expected = [int(t in c) for c, t in zip(top, reference, strict=True)]
        assert match_bits(draft, "cpu", prompt, reference, k) == (expected, [0] * len(reference))
    assert match_bits(target, "cpu", prompt, reference)[0] == [1] * len(reference)


def test_the_ngram_drafter_is_silent_where_it_finds_no_earlier_occurrence():
    from pipespec.backend.ngram import NgramDrafter
    from pipespec.backend.profiler import match_bits

    # output 9 8 7 9 8 5 after 1 2 3: nothing recurs until the second 9, which proposes 8 (a match),
    # then "9 8" proposes 7 where the output has 5
    bits, silent = match_bits(NgramDrafter(2), "cpu", [1, 2, 3], [9, 8, 7, 9, 8, 5])
    assert silent == [1, 1, 1, 1, 0, 0] and bits == [0, 0, 0, 0, 1, 0]
