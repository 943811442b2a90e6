"""Simulator policies beyond the papers' descriptions: waiting for a window of drafts (--min-drafts), the
output head's share of a layer pipeline's stages (--head-share), plain pipeline parallelism (--tree-depth 1)."""

import pytest

from pipespec.errors import ConfigError
from pipespec.sim.config import SimConfig
from pipespec.sim.presets import preset
from pipespec.sim.run import simulate
from pipespec.traces import write_traces


def _histogram(min_drafts):
    config = SimConfig.from_text(scheme="pipespec", latency=("40", "100"), acceptance=("1",), num_tokens=400,
                       min_drafts=min_drafts)
    result = simulate(config, with_ar_baseline=False)
    return result.pairs[0].tokens_added_histogram, result.stages[-1]


def test_a_stage_waits_for_a_window_instead_of_generating():
    free, _ = _histogram(1)
    assert min(free) < 5  # a 2.5x faster drafter leaves 2-3 drafts per 100 ms verification
    waiting, verifier = _histogram(4)
    assert min(waiting) >= 5  # every verification scores at least 4 drafts (+ the bonus token)
    assert verifier.generate_steps <= 1  # it waited rather than generate (the first step has no drafts yet)


def test_min_drafts_one_is_the_papers_policy():
    base = preset("pipespec-a100").with_values(num_tokens=400)
    assert simulate(base).ms_per_token == simulate(base.with_values(min_drafts=1)).ms_per_token


def test_min_drafts_reproduces_the_authors_window_of_four():
    """The authors' 1B -> 8B histogram: 73% of verifications add exactly 5 tokens; waiting for 4 drafts
    reproduces it (a stage verifying whatever is there sees about 2 at these step latencies)."""
    result = simulate(preset("pipespec-a100").with_values(min_drafts=4, num_tokens=1500), with_ar_baseline=False)
    histogram = result.pairs[0].tokens_added_histogram
    assert histogram[5] / sum(histogram.values()) == pytest.approx(0.73, abs=0.05)


def test_min_drafts_is_validated():
    with pytest.raises(ConfigError, match="--min-drafts must be"):
        SimConfig.from_text(min_drafts=0)


def test_an_exit_head_costs_the_early_stage_a_head_share():
    """α = 0: every token passes the early stage (its layers + the exit head) then the late one (its layers +
    the head) in turn, so a token costs the whole forward plus one more head: t·(1 + h)."""
    config = SimConfig.from_text(scheme="ppsd", latency=("100",), acceptance=("0",), num_layers=32, exit_layer=16,
                       pp_stages=2, num_tokens=200, head_share=0.2)
    assert simulate(config, with_ar_baseline=False).ms_per_token == pytest.approx(120.0, rel=0.02)
    assert simulate(config.with_values(head_share=0.0), with_ar_baseline=False).ms_per_token == \
        pytest.approx(100.0, rel=0.02)


def test_tree_depth_one_is_plain_pipeline_parallelism():
    """One level in flight: one token per pass through the P stages, whatever the draft and its hit rate,
    which is never consulted."""
    config = SimConfig.from_text(scheme="specpipe", latency=("50", "100"), acceptance=("0.9",), num_layers=32,
                                 pp_stages=4, num_tokens=200, tree_depth=1, head_share=0.2)
    result = simulate(config, with_ar_baseline=False)
    assert result.ms_per_token == pytest.approx(100.0, rel=1e-6)
    assert result.stages[0].steps == 0
    assert simulate(config.with_values(tree_depth=None), with_ar_baseline=False).ms_per_token < 60


@pytest.mark.parametrize("values, message", [({"head_share": 1.0}, "--head-share must be in"),
                                             ({"tree_depth": 0}, "--tree-depth must be")])
def test_layer_pipeline_options_are_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        SimConfig.from_text(scheme="specpipe", latency=("50", "100"), **values)


def _silent_trace(tmp_path, bits, silent):
    path = tmp_path / "ngram.json"
    write_traces(path, {"ngram->t": {"sequences": [bits], "silent": [silent]}})
    return f"trace:{path}"


@pytest.mark.parametrize(("scheme", "options"), [("sd", {"gamma": 4}), ("pipespec", {"lazy_drafter": True}),
                                                ("pipespec", {"lazy_drafter": False})])
def test_a_drafter_with_nothing_to_propose_leaves_the_target_decoding_alone(tmp_path, scheme, options):
    """Prompt lookup finding no earlier occurrence proposes nothing: the target generates one token per
    forward, as fast as AR, and the drafter does no work."""
    trace = _silent_trace(tmp_path, [0] * 50, [1] * 50)
    config = SimConfig.from_text(scheme=scheme, latency=("1", "100"), acceptance=(trace,), num_tokens=200, **options)
    result = simulate(config, with_ar_baseline=False)
    assert result.ms_per_token == pytest.approx(100.0)
    assert result.stages[0].steps == 0 and result.pairs[0].verifications == 0


def test_a_silent_drafter_proposes_again_once_the_sequence_changes(tmp_path):
    """Silent at even positions, right at odd ones and wrong at the next. SD: after the target's first
    token the drafter proposes from every verified (odd) position, one draft is accepted, and the
    correction lands on the next odd position, so every verification adds two tokens. PipeSpec: the target
    does not wait for proposals; they arrive while it generates its next token (which the draft's agrees
    with), and the verification that follows rejects the next draft: a generate and a verify per 2 tokens."""
    trace = _silent_trace(tmp_path, [0, 1] * 25, [1, 0] * 25)
    config = SimConfig.from_text(scheme="sd", latency=("1", "100"), acceptance=(trace,), gamma=4, num_tokens=201)
    result = simulate(config, with_ar_baseline=False)
    assert result.stages[-1].generate_steps == 1
    assert result.pairs[0].verifications == 100 and result.pairs[0].accepted == 100
    result = simulate(config.with_values(scheme="pipespec"), with_ar_baseline=False)
    assert result.stages[-1].generate_steps == 101 and result.stages[0].steps > 0
    assert result.pairs[0].verifications == 100 and result.pairs[0].accepted == 0


def test_a_stage_outrun_by_its_verifier_keeps_work_that_agrees_under_the_finish_policy():
    """M1's forwards (30 ms) outlast the target's (20 ms), which decodes alone meanwhile. abort: every token the
    target decodes resets M1, which never completes a forward. finish: M1's forward ends, agrees with what the
    target decoded meanwhile (α = 1), and the target then verifies what M1 has beyond it."""
    config = SimConfig.from_text(scheme="pipespec", latency=("1", "30", "20"), acceptance=("1", "1"), num_tokens=300)
    abort = simulate(config, with_ar_baseline=False)
    assert abort.ms_per_token == pytest.approx(20.0) and abort.stages[1].steps == 0
    finish = simulate(config.with_values(rollback="finish"), with_ar_baseline=False)
    assert finish.stages[1].steps > 0 and finish.pairs[1].verifications > 0 and finish.ms_per_token < 15
    disagreeing = simulate(config.with_text(rollback="finish", acceptance=("1", "0")), with_ar_baseline=False)
    assert disagreeing.ms_per_token == pytest.approx(20.0) and disagreeing.pairs[1].rollbacks > 0
