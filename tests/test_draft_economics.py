"""Which drafts pay: the closed-form map over (α, draft cost), priced with a benchmark's profile."""

import itertools
import json
from dataclasses import asdict

import pytest

from pipespec.profiles import load_profiles, write_profiles
from pipespec.validation import draft_economics
from pipespec.validation.setups import builtin_setups


def _bench(tmp_path, verify_ms):
    """A bench_backend.py result with the target's t(n) = verify_ms(n) (one thread) and AR at 40 ms/token."""
    setups = builtin_setups(4, "draft:smollm2-chat4")
    keys = {k for s in setups for k in s.profile_keys()}
    points = {k: {"points": [{"num_tokens": n, "context_len": 0, "median_s": verify_ms(n) / 1e3}
                             for n in range(1, 34)]} for k in keys if k.startswith("smollm2@")}
    points |= {k: {"points": [{"num_tokens": n, "context_len": 0, "median_s": (6 if "chat4" in k else 30) / 1e3}
                              for n in range(1, 34)]} for k in keys if not k.startswith(("smollm2@", "ngram"))}
    write_profiles(tmp_path / "bench.profile.json", points)
    rows = {s.name: {"decode_ms_per_token": 40.0, "speedup_over_ar": 1.0,
                     "alpha": [0.7] * (len(s.chain) - 1)} for s in setups}
    doc = {"config": {"setups": [asdict(s) for s in setups], "gamma": 4, "max_lead": 32,
                      "ngram_cost_s": {"ngram": 1e-4}}, "results": rows}
    (tmp_path / "bench.json").write_text(json.dumps(doc))
    return tmp_path / "bench.json"


def test_speedup_rises_with_alpha_and_falls_with_cost(tmp_path):
    result = draft_economics.analyse(_bench(tmp_path, lambda n: 50 + 5 * n))
    grid = {(a, c): p for a, c, p, *_ in result["grid"]}
    alphas, costs = draft_economics.ALPHAS, draft_economics.COSTS
    for c in costs[::6]:
        column = [grid[(a, c)] for a in alphas]
        assert all(x <= y + 1e-9 for x, y in itertools.pairwise(column))
    for a in alphas[::10]:
        row = [grid[(a, c)] for c in costs]
        assert all(x >= y - 1e-9 for x, y in itertools.pairwise(row))
    need = result["goal_alpha_by_cost"]  # the α the goal needs never falls as the draft gets dearer
    assert all(need[c] is None or (need[d] is not None and need[d] <= need[c]) for d, c in itertools.pairwise(costs))
    # the limit: every one of 33 tokens accepted per verification of t(33) = 215 ms, against AR's 40 ms
    assert result["limit_speedup"] == pytest.approx(40 / (215 / 33))


def test_each_draft_gets_its_point_and_the_acceptance_it_would_need(tmp_path):
    result = draft_economics.analyse(_bench(tmp_path, lambda n: 50 + 5 * n))
    chat = next(d for d in result["drafts"] if d["draft"] == "draft:smollm2-chat4")
    assert chat["cost"] == pytest.approx(6 / 55)
    need = chat["alpha_for_goal"]
    assert need is not None and need > 0.7  # α = 0.7 does not reach 1.5x here, a higher one does
    probe = draft_economics.speedups(load_profiles(tmp_path / "bench.profile.json"),
                                     "smollm2@1t~draft:smollm2-chat4",
                                     "smollm2@2t", 40.0, need, chat["cost"], 32)
    assert probe[0] >= draft_economics.GOAL
    files = draft_economics.write(result, tmp_path / "out" / "economics")
    assert [f.suffix for f in files] == [".png", ".csv", ".md"]
    assert "draft:smollm2-chat4" in (tmp_path / "out" / "economics.md").read_text()


def test_a_file_that_is_not_a_benchmark_result_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text("[1, 2]")
    assert draft_economics.main([str(tmp_path / "x.json"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a bench_backend.py result" in capsys.readouterr().err


def _record(kind, responses, alpha, scored=1000, corpus="responses", **extra):
    return {"recipe": {"kind": kind, "corpus": corpus, "responses": responses},
            "curve": [{"alpha_builtin": alpha} | ({"alpha_tokens": scored} if scored else {})]} | extra


def test_what_more_responses_buy_is_a_line_in_their_doublings_extrapolated_to_each_goal():
    """α 0.30 at 1,000 responses and 0.35 at 2,000: +0.05 a doubling, so α 0.60 needs 5 more doublings
    (64,000 responses); at 100 tokens a response and 10 tokens/s that is 640,000 s of generation."""
    records = {"a": _record("small", 1000, 0.30), "b": _record("small", 1000, 0.35, scored=0,
                                                                  responses_before=2000),
               "c": _record("eagle", 1000, 0.5), "d": _record("small", 4000, 0.9, corpus="stdlib")}
    responses = {"tokens_generated": 1000, "wall_seconds": 100.0, "prompts_done": 10}
    (small,) = draft_economics.data_returns(records, responses, {"goal": 0.6, "low": 0.2})  # one eagle: no line
    assert [d["responses"] for d in small["drafts"]] == [1000, 2000]  # b learnt its start's 2,000 rows
    assert small["alpha_per_doubling"] == pytest.approx(0.05)
    assert small["drafts"][1]["alpha_se"] == pytest.approx((0.35 * 0.65 / 1000) ** 0.5)  # a's count, for b's
    assert small["alpha_per_doubling_se"] == pytest.approx((0.3 * 0.7 / 1000 + 0.35 * 0.65 / 1000) ** 0.5)
    fitted, optimistic = small["goals"]["goal"]["fitted"], small["goals"]["goal"]["optimistic"]
    assert fitted["responses"] == pytest.approx(64000) and fitted["hours"] == pytest.approx(640000 / 3600)
    assert 2000 < optimistic["responses"] < fitted["responses"]
    assert small["goals"]["low"]["fitted"]["responses"] == 2000  # a goal already met needs no more
    falling = {"a": _record("small", 1000, 0.35), "b": _record("small", 2000, 0.30)}
    (flat,) = draft_economics.data_returns(falling, responses, {"goal": 0.6})
    assert flat["goals"]["goal"]["fitted"] is None
