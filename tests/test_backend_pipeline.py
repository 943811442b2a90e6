"""The asynchronous multi-process PipeSpec engine: lossless, and it stops cleanly when a stage fails."""

import os
import signal
import time

import numpy as np
import pytest
import torch

from pipespec.backend.engines import DecodeOptions, decode_ar
from pipespec.backend.models import resolve
from pipespec.backend.pipeline import PipelineEngine, Placement, StageFailed
from pipespec.backend.stages import build_stage

pytestmark = pytest.mark.slow
TARGET = "tiny:1:3:64"


def prompts(count=3):
    rng = np.random.default_rng(1)
    return [rng.integers(3, 49152, size=int(rng.integers(8, 40))).tolist() for _ in range(count)]


@pytest.mark.parametrize("chain", [["tiny:2:1:32", TARGET], ["tiny:1:1:64", TARGET],
                                   ["ngram", "tiny:1:1:64", TARGET], ["tiny:3:1:32", "tiny:2:2:32", TARGET]],
                         ids=lambda c: "+".join(c))
def test_pipespec_is_token_for_token_the_targets_greedy_output(chain):
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=48, max_drafts=6)
    target = build_stage(resolve(TARGET), "T", "cpu", 0.0)
    refs = [resolve(s) for s in chain]
    with PipelineEngine(refs, [Placement()] * len(refs), options) as engine:
        for prompt in prompts():
            expected = decode_ar([target], prompt, options).output
            result = engine.decode(prompt)
            assert result.output == expected, f"{chain}: pipeline output diverged from the target's greedy output"
            assert len(result.stages) == len(chain) and len(result.pairs) == len(chain) - 1
            assert all(p.drafted <= 6 * max(p.verifications, 1) for p in result.pairs)


def _children_alive(engine):
    return [p for p in engine.processes if p.is_alive()]


def test_a_killed_stage_stops_the_run_within_seconds():
    refs = [resolve("tiny:1:1:64"), resolve(TARGET)]
    options = DecodeOptions(max_new_tokens=100_000)  # would run for minutes
    engine = PipelineEngine(refs, [Placement()] * 2, options, capacity=200_100)
    with engine:
        killer_started = time.monotonic()
        os.kill(engine.processes[0].pid, signal.SIGKILL)
        with pytest.raises(StageFailed, match=r"stage 0 .* died"):
            engine.decode(prompts(1)[0])
        assert time.monotonic() - killer_started < 10
    assert _children_alive(engine) == []


def test_a_stage_that_raises_reports_its_error():
    refs = [resolve("tiny:1:1:64"), resolve(TARGET)]
    engine = PipelineEngine(refs, [Placement(), Placement(device="meta-nonsense")], DecodeOptions(max_new_tokens=50))
    with pytest.raises(StageFailed, match=r"stage 1 .* failed"):
        engine.__enter__()
    assert _children_alive(engine) == []


def test_a_prompt_longer_than_the_buffers_is_a_config_error():
    from pipespec.errors import ConfigError

    refs = [resolve("tiny:1:1:64"), resolve(TARGET)]
    with PipelineEngine(refs, [Placement()] * 2, DecodeOptions(max_new_tokens=50), capacity=64) as engine, \
            pytest.raises(ConfigError, match="does not fit"):
        engine.decode(list(range(3, 60)))


def test_pipeline_sampling_keeps_the_targets_distribution():
    """Speculative sampling across processes: q travels with the drafts through shared memory."""
    from scipy import stats

    from pipespec.backend.loading import load_model

    vocab, runs, prompt = 6, 1500, [1, 4, 2, 4, 2]
    target_spec, draft_spec = "tiny:0:2:16:6", "tiny:1:1:16:6"
    target = load_model(resolve(target_spec), "cpu")
    with torch.no_grad():
        p1 = torch.softmax(target(torch.tensor([prompt])).logits[0, -1], -1)
        expected = np.concatenate([(p1[x] * torch.softmax(target(torch.tensor([[*prompt, x]])).logits[0, -1], -1))
                                   .numpy() for x in range(vocab)]).astype(np.float64)
    counts = np.zeros(vocab * vocab)
    refs = [resolve(draft_spec), resolve(target_spec)]
    with PipelineEngine(refs, [Placement()] * 2, DecodeOptions(max_new_tokens=2, max_lead=4), temperature=1.0,
                        seed=7) as engine:
        drafted = 0
        for _ in range(runs):
            result = engine.decode(prompt)
            counts[result.output[0] * vocab + result.output[1]] += 1
            drafted += result.pairs[0].drafted
    assert drafted > 0, "the draft never got a window verified: the test would not exercise sampling"
    mask = expected * runs >= 5
    observed = np.append(counts[mask], counts[~mask].sum())
    wanted = np.append(expected[mask], expected[~mask].sum()) * runs
    _, p_value = stats.chisquare(observed, wanted * observed.sum() / wanted.sum())
    assert p_value > 1e-3, f"pipeline samples differ from the target's distribution (p = {p_value:.2g})"


class _Reports:
    """A harness that only records what a stage reports (`_stage_main` connects, reports and closes)."""

    def __init__(self) -> None:
        self.results: list[tuple] = []
        self.closed = False

    def connect(self, index):
        return self

    def put_result(self, message):
        self.results.append(message)

    def close(self):
        self.closed = True


def test_a_stage_that_fails_reports_it_and_says_so_to_its_caller():
    """Under torchrun a stage rank's own exit status must say it failed (serve_rank raises StageFailed on it)."""
    from pipespec.backend.workers import _stage_main

    def factory(index, placement, options, harness):
        raise ValueError("weights missing")

    harness = _Reports()
    threads = torch.get_num_threads()
    try:
        error = _stage_main(1, factory, Placement(threads=threads), DecodeOptions(max_new_tokens=4), harness)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert error == "ValueError: weights missing"
    assert harness.results == [("error", 1, "ValueError: weights missing")] and harness.closed
