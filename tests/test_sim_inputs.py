"""Latency and acceptance inputs: profile files (JSON/CSV), interpolation, jitter, traces, bad files."""

import json

import numpy as np
import pytest

from pipespec.acceptance import Bernoulli, Draws, Positional, Trace, hazard_from_histogram, parse_acceptance
from pipespec.errors import ConfigError
from pipespec.latency import AffineLatency, ConstantLatency, ProfileLatency, ProfilePoint, parse_latency
from pipespec.profiles import load_profile, read_profiles, write_profiles
from pipespec.sim import calibration
from pipespec.traces import load_trace, write_traces

POINTS = [ProfilePoint(1, 0, 0.010, ((0.1, 0.009), (0.5, 0.010), (0.9, 0.013))),
          ProfilePoint(2, 0, 0.030, ((0.1, 0.027), (0.5, 0.030), (0.9, 0.039))),
          ProfilePoint(8, 0, 0.036, ((0.1, 0.032), (0.5, 0.036), (0.9, 0.047))),
          ProfilePoint(1, 512, 0.020, ((0.1, 0.018), (0.5, 0.020), (0.9, 0.026))),
          ProfilePoint(2, 512, 0.040, ((0.1, 0.036), (0.5, 0.040), (0.9, 0.052))),
          ProfilePoint(8, 512, 0.046, ((0.1, 0.041), (0.5, 0.046), (0.9, 0.060)))]


def test_profile_keeps_single_token_separate_and_interpolates():
    profile = ProfileLatency(tuple(POINTS))
    assert profile.median_s(1, 0) == pytest.approx(0.010)  # n = 1 is its own point, not a line to n = 2
    assert profile.median_s(2, 0) == pytest.approx(0.030)
    assert profile.median_s(5, 0) == pytest.approx(0.033)
    assert profile.median_s(5, 256) == pytest.approx(0.038)  # halfway in context
    assert profile.median_s(14, 0) == pytest.approx(0.042)  # linear extrapolation past the last n
    assert not profile.steady


def test_jitter_quantiles_extend_or_truncate():
    rng = np.random.default_rng(0)
    extended = ProfileLatency(tuple(POINTS[:3]), jitter="quantiles")
    truncated = ProfileLatency(tuple(POINTS[:3]), jitter="quantiles", jitter_tails="truncate")
    ext = np.array([extended.sample_s(1, 0, rng) for _ in range(4000)])
    trunc = np.array([truncated.sample_s(1, 0, rng) for _ in range(4000)])
    ratio_lo, ratio_hi = np.mean([0.9, 0.9, 32 / 36]), np.mean([1.3, 1.3, 47 / 36])
    assert trunc.min() >= 0.010 * ratio_lo - 1e-12 and trunc.max() <= 0.010 * ratio_hi + 1e-12
    assert ext.min() < 0.010 * ratio_lo and ext.max() > 0.010 * ratio_hi  # tails extended past p10/p90
    assert np.median(ext) == pytest.approx(0.010, rel=0.02)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_profile_files_round_trip(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    write_profiles(path, {"draft": {"device": "cpu", "points": POINTS}, "target": {"points": POINTS[:3]}})
    models = read_profiles(path)
    assert set(models) == {"draft", "target"}
    loaded = load_profile(path, "draft")
    assert loaded.median_s(5, 256) == pytest.approx(ProfileLatency(tuple(POINTS)).median_s(5, 256))
    spec = parse_latency(f"profile:{path}#target@quantiles", "--latency[0]")
    assert spec.jitter == "quantiles"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        (json.dumps({"format": "something-else"}), "expected \"format\""),
        (json.dumps({"format": "pipespec.latency-profile", "version": 1, "models": {}}), "lists no models"),
        (json.dumps({"format": "pipespec.latency-profile", "version": 1,
                     "models": {"m": {"points": [{"num_tokens": 1}]}}}), "malformed profile point"),
        (json.dumps({"format": "pipespec.latency-profile", "version": 1,
                     "models": {"m": {"points": [{"num_tokens": 1, "median_s": -1}]}}}), "must be > 0"),
    ],
)
def test_malformed_profiles_are_config_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_latency_specs():
    assert parse_latency("12", "x").median_s(1, 0) == pytest.approx(0.012)
    assert parse_latency("12ms", "x").median_s(1, 0) == pytest.approx(0.012)
    affine = parse_latency("affine:10,2,0.01", "x")
    assert isinstance(affine, AffineLatency) and affine.median_s(3, 100) == pytest.approx(0.017)
    assert isinstance(parse_latency("5", "x"), ConstantLatency)
    for bad in ("0", "-3", "abc", "affine:", "affine:1,2,3,4"):
        with pytest.raises(ConfigError, match="x"):
            parse_latency(bad, "x")


def test_acceptance_models():
    draws = Draws(np.random.default_rng(1))
    windows = [Bernoulli(0.7).accepted(0, 10_000, draws) for _ in range(20_000)]
    assert np.mean(windows) == pytest.approx(0.7 / 0.3, rel=0.03)
    assert Bernoulli(1.0).accepted(0, 7, draws) == 7 and Bernoulli(0.0).accepted(0, 7, draws) == 0
    first = [Positional((0.9, 0.1)).accepted(0, 5, draws) for _ in range(20_000)]
    assert np.mean(np.array(first) >= 1) == pytest.approx(0.9, abs=0.01)
    assert np.mean(np.array(first) >= 2) == pytest.approx(0.09, abs=0.01)
    trace = Trace((1, 1, 0, 1))
    assert [trace.accepted(p, 9, draws) for p in range(5)] == [2, 1, 0, 3, 2]
    assert isinstance(parse_acceptance("pos:0.9,0.8", "x"), Positional)
    for bad in ("1.2", "pos:", "pos:0.5,2", "trace:/nonexistent.json"):
        with pytest.raises(ConfigError, match="x"):
            parse_acceptance(bad, "x")


def test_a_trace_records_where_a_model_free_drafter_is_silent(tmp_path):
    trace = Trace((1, 0, 0, 1), silent=(0, 1, 1, 0))
    assert trace.mean_alpha() == 1.0 and [trace.proposes(p) for p in range(5)] == [True, False, False, True, True]
    assert Trace((1, 0)).proposes(1) and Bernoulli(0.5).proposes(3)
    with pytest.raises(ConfigError, match="silent"):
        Trace((1, 0), silent=(1, 0))  # a position cannot both match and propose nothing
    path = tmp_path / "t.json"
    write_traces(path, {"ngram->m": {"sequences": [[1, 0], [0]], "silent": [[0, 0], [1]]}})
    assert load_trace(path).silent == (0, 0, 1)
    path.write_text(json.dumps({"format": "pipespec.acceptance-trace", "pairs": {
        "ngram->m": {"sequences": [[1, 0]], "silent": [[0]]}}}))
    with pytest.raises(ConfigError, match="silent must have the shape of sequences"):
        load_trace(path)


def test_hazards_recover_a_geometric():
    alpha, window = 0.8, 6
    tokens = np.arange(1, window + 2)
    probs = [alpha ** (k - 1) * (1 - alpha) if k <= window else alpha**window for k in tokens]
    assert hazard_from_histogram([0.0, *probs]) == pytest.approx((alpha,) * window)


def test_calibrated_profile_is_what_the_source_gives():
    """The committed profile equals what calibration.py derives from the copied source data."""
    committed = read_profiles(calibration.profile_path())
    derived = calibration.profile_models()
    for name, entry in derived.items():
        assert committed[name]["points"] == entry["points"]
    m2 = load_profile(calibration.profile_path(), "M2")
    assert m2.median_s(1, 0) == pytest.approx(0.12025) and m2.median_s(9, 0) == pytest.approx(0.43123)


def test_a_rewritten_profile_or_trace_is_read_again(tmp_path):
    """load_profile and load_trace read the file as it is now, never a stale copy."""
    path, traces = tmp_path / "p.json", tmp_path / "t.json"
    for ms, bits in ((10.0, [1, 1, 0]), (20.0, [0, 0, 0, 0])):
        write_profiles(path, {"m": {"points": [{"num_tokens": 1, "context_len": 0, "median_s": ms / 1e3}]}})
        write_traces(traces, {"a->b": {"sequences": [bits]}})
        assert load_profile(path, "m").median_s(1, 0) == pytest.approx(ms / 1e3)
        assert load_trace(traces).bits == tuple(bits)


def test_the_ar_baseline_follows_a_rewritten_profile(tmp_path):
    """ar_elapsed_s is computed once per configuration and latency: a profile rewritten under the same name is a
    new latency, so its baseline is simulated again."""
    from pipespec.sim.config import SimConfig
    from pipespec.sim.run import ar_elapsed_s

    path = tmp_path / "p.json"
    seen = []
    for ms in (10.0, 20.0):
        write_profiles(path, {"m": {"points": [{"num_tokens": 1, "context_len": 0, "median_s": ms / 1e3}]}})
        config = SimConfig.from_text(scheme="pipespec", latency=("1", f"profile:{path}#m"), acceptance=("0.5",),
                           num_tokens=50, prompt_len=0)
        seen.append(ar_elapsed_s(config))
    assert seen == [pytest.approx(50 * 10e-3), pytest.approx(50 * 20e-3)]


def test_a_configuration_holds_parsed_models_and_reads_no_file(tmp_path):
    """Spec text is parsed once, at the edge: the configuration holds the models (the files it named can go
    away before it is copied, checked and simulated), records the text it was given, and refuses unparsed text."""
    from pipespec.sim.config import SimConfig
    from pipespec.sim.run import simulate

    profile, traces = tmp_path / "p.json", tmp_path / "t.json"
    write_profiles(profile, {"m": {"points": [{"num_tokens": n, "context_len": 0, "median_s": 0.01 + 0.001 * n}
                                              for n in (1, 2, 8)]}})
    write_traces(traces, {"a->b": {"sequences": [[1, 1, 0, 1] * 20, [0, 1, 1] * 20]}})
    latency, acceptance = ("2ms", f"profile:{profile}#m"), (f"trace:{traces}#a->b",)
    config = SimConfig.from_text(scheme="sd", latency=latency, acceptance=acceptance, gamma=3, num_tokens=30,
                                 prompt_len=0)
    assert config.latency[0] == ConstantLatency(0.002) and isinstance(config.acceptance[0], Trace)
    profile.unlink()
    traces.unlink()
    moved = config.with_values(num_tokens=40, seed=2, trace_sequence=1)
    assert simulate(moved).num_tokens >= 40
    assert moved.to_dict()["latency"] == latency and moved.to_dict()["acceptance"] == acceptance
    with pytest.raises(TypeError, match="parsed models, not spec text"):
        SimConfig(latency=("12", "28", "431"))
