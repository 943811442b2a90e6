"""Deterministic simulations: exact event timelines, asserted with ==."""

from pipespec.sim.config import SimConfig
from pipespec.sim.run import simulate


def events(result, stage):
    return [(e.start_s * 1e3, e.end_s * 1e3, e.kind, e.num_tokens) for e in result.timeline if e.stage == stage]


def rounded(items):
    return [(round(a, 9), round(b, 9), k, n) for a, b, k, n in items]


def test_ar_timeline():
    result = simulate(SimConfig.from_text(scheme="ar", latency=("3",), num_tokens=3, timeline=True, prompt_len=0))
    assert rounded(events(result, 0)) == [(0, 3, "generate", 1), (3, 6, "generate", 1), (6, 9, "generate", 1)]
    assert round(result.elapsed_s * 1e3, 9) == 9


def test_sd_timeline_full_acceptance():
    """γ = 2, α = 1: two 1 ms drafts, a 3 ms verification of 3 tokens; the draft then feeds its own
    uncached draft plus the bonus token (a 2-token forward) before drafting on."""
    result = simulate(SimConfig.from_text(scheme="sd", latency=("1", "3"), acceptance=("1",), gamma=2, num_tokens=6,
                                timeline=True, prompt_len=0))
    assert rounded(events(result, 0)) == [(0, 1, "generate", 1), (1, 2, "generate", 1),
                                          (5, 6, "generate", 2), (6, 7, "generate", 1)]
    assert rounded(events(result, 1)) == [(2, 5, "verify", 3), (7, 10, "verify", 3)]
    assert round(result.elapsed_s * 1e3, 9) == 10
    assert result.num_tokens == 6
    assert dict(result.pairs[0].tokens_added_histogram) == {3: 2}


def test_pipespec_timeline_full_acceptance():
    """The verifier starts with no drafts (generates), then verifies whatever the draft has published."""
    result = simulate(SimConfig.from_text(scheme="pipespec", latency=("1", "3"), acceptance=("1",), num_tokens=7,
                                timeline=True, prompt_len=0))
    assert rounded(events(result, 0)) == [(k, k + 1, "generate", 1) for k in range(9)]
    assert rounded(events(result, 1)) == [(0, 3, "generate", 1), (3, 6, "verify", 3), (6, 9, "verify", 3)]
    assert result.num_tokens == 7 and round(result.elapsed_s * 1e3, 9) == 9


def test_pipespec_timeline_total_rejection_is_autoregressive():
    """α = 0: every draft is wrong, the verifier generates every token itself and the draft's in-flight
    work is aborted at each of its steps' ends."""
    result = simulate(SimConfig.from_text(scheme="pipespec", latency=("1", "3"), acceptance=("0",), num_tokens=4,
                                timeline=True, prompt_len=0))
    assert rounded(events(result, 1)) == [(3 * k, 3 * k + 3, "generate", 1) for k in range(4)]
    assert result.speedup == 1.0
    assert result.pairs[0].rollbacks == 4


def test_lazy_drafter_timeline_equals_eager():
    base = SimConfig.from_text(scheme="pipespec", latency=("1", "2.5", "7"), acceptance=("0.7",), num_tokens=40,
                     timeline=True, prompt_len=0, seed=5)
    lazy, eager = simulate(base), simulate(base.with_values(lazy_drafter=False))
    assert rounded(events(lazy, 0)) == rounded(events(eager, 0))
    assert lazy.summary() == eager.summary()


def test_chrome_trace_rows_are_stages():
    result = simulate(SimConfig.from_text(scheme="pipespec", latency=("1", "3"), acceptance=("1",), num_tokens=7,
                                timeline=True, prompt_len=0))
    trace = result.to_chrome_trace(run_id=4)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in trace["traceEvents"]} == {4}
    assert {e["tid"] for e in complete} == {0, 1}
    first_draft = next(e for e in complete if e["tid"] == 0)
    assert first_draft["ts"] == 0 and first_draft["dur"] == 1000.0
    assert [e["ts"] for e in complete] == sorted(e["ts"] for e in complete)


def test_rollback_policies_abort_or_finish_in_flight_work():
    """α = 0, draft 2 ms, verifier 3 ms: at 3 ms the verifier rejects the draft's first token while the
    draft's second forward (2-4 ms) is in flight: abort cuts it at 3 ms, finish runs it to 4 ms."""
    base = SimConfig.from_text(scheme="pipespec", latency=("2", "3"), acceptance=("0",), num_tokens=2, timeline=True,
                     prompt_len=0, lazy_drafter=False)
    abort = simulate(base)
    assert rounded(events(abort, 0)) == [(0, 2, "generate", 1), (2, 3, "aborted", 1), (3, 5, "generate", 1),
                                         (5, 6, "aborted", 1)]
    finish = simulate(base.with_values(rollback="finish"))
    assert rounded(events(finish, 0)) == [(0, 2, "generate", 1), (2, 4, "discarded", 1), (4, 6, "generate", 1)]
    for result in (abort, finish):
        assert rounded(events(result, 1)) == [(0, 3, "generate", 1), (3, 6, "generate", 1)]
