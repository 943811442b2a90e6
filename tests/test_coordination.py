"""The coordination models of the asynchronous pipeline and of the synchronous chain, as exact timelines."""

import pytest

from pipespec.errors import ConfigError
from pipespec.sim.config import SimConfig
from pipespec.sim.run import simulate


def events(result, stage):
    return [(round(e.start_s * 1e3, 9), round(e.end_s * 1e3, 9), e.kind, e.num_tokens)
            for e in result.timeline if e.stage == stage]


def two_stage(coordination, **values):
    return simulate(SimConfig.from_text(scheme="pipespec", latency=("1", "2.5"), acceptance=("1",),
                                        coordination=coordination, rollback="finish", num_tokens=8, prompt_len=0,
                                        timeline=True, **values),
                    with_ar_baseline=False)


def test_lockfree_verifier_goes_on_at_once():
    result = two_stage("lockfree")
    assert events(result, 1) == [(0, 2.5, "generate", 1), (2.5, 5, "verify", 2), (5, 7.5, "verify", 3),
                                 (7.5, 10, "verify", 2)]


def test_reference_verifier_waits_for_its_upstreams_answer():
    """After each step the verifier posts a sync request; the draft answers once its step in flight ends (at
    3, 6, 9 ms), and only then does the verifier read the drafts and go on."""
    result = two_stage("reference")
    assert events(result, 1) == [(0, 2.5, "generate", 1), (3, 5.5, "verify", 3), (6, 8.5, "verify", 3),
                                 (9, 11.5, "verify", 3)]
    assert round(result.elapsed_s * 1e3, 9) == 11.5


def test_reference_middle_stage_answers_after_its_own_wait():
    """Three stages (1.1, 2.5 and 6.3 ms): the last posts at 6.3; the middle, itself waiting for the draft's
    answer until 6.6, answers then, and the last verifies from 6.6."""
    result = simulate(SimConfig.from_text(scheme="pipespec", latency=("1.1", "2.5", "6.3"), acceptance=("1",),
                                coordination="reference", rollback="finish", num_tokens=12, prompt_len=0,
                                timeline=True), with_ar_baseline=False)
    assert events(result, 1)[:3] == [(0, 2.5, "generate", 1), (3.3, 5.8, "verify", 3), (6.6, 9.1, "verify", 3)]
    assert events(result, 2)[:2] == [(0, 6.3, "generate", 1), (6.6, 12.9, "verify", 4)]


@pytest.mark.parametrize("coordination", ["lockfree", "reference"])
def test_lazy_drafter_equals_eager_under_each_coordination(coordination):
    base = SimConfig.from_text(scheme="pipespec", latency=("1.1", "2.5", "6.3"), acceptance=("0.8",),
                               coordination=coordination, rollback="finish", num_tokens=40, prompt_len=0,
                               timeline=True, seed=3)
    lazy, eager = simulate(base), simulate(base.with_values(lazy_drafter=False))
    for stage in range(3):
        assert events(lazy, stage) == events(eager, stage)


def test_reference_sync_chain_drafts_the_bonus_position():
    """γ = 2, α = 1: after the first full window the draft was not given the bonus token: it drafts that position
    (5-6 ms) and two more before the next verification, one step more than lockfree's."""
    result = simulate(SimConfig.from_text(scheme="sd", latency=("1", "3"), acceptance=("1",), gamma=2, num_tokens=6,
                                timeline=True, prompt_len=0, coordination="reference"))
    assert events(result, 0) == [(0, 1, "generate", 1), (1, 2, "generate", 1), (5, 6, "generate", 1),
                                 (6, 7, "generate", 1), (7, 8, "generate", 1)]
    assert events(result, 1) == [(2, 5, "verify", 3), (8, 11, "verify", 3)]


def test_reference_sync_chain_single_step_when_bonus_token_differs(tmp_path):
    """A trace agreeing everywhere but at the first bonus position: the verifier decodes that round alone."""
    from pipespec.traces import write_traces

    path = write_traces(tmp_path / "t.json", {"d->t": {"draft": "d", "target": "t",
                                                       "sequences": [[1, 1, 0] + [1] * 20]}})
    result = simulate(SimConfig.from_text(scheme="sd", latency=("1", "3"), acceptance=(f"trace:{path}",), gamma=2,
                                num_tokens=6, timeline=True, prompt_len=0, coordination="reference"),
                      with_ar_baseline=False)
    assert [k for _, _, k, _ in events(result, 1)][:2] == ["verify", "generate"]


def test_coordination_choices_are_checked():
    with pytest.raises(ConfigError, match="--coordination must be one of lockfree, reference"):
        SimConfig.from_text(coordination="handshake")
