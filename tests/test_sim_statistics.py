"""The simulator against the closed forms (confidence intervals), and metamorphic relations."""

import itertools

import numpy as np
import pytest

from pipespec.sim.config import SimConfig
from pipespec.sim.presets import preset
from pipespec.sim.run import simulate
from pipespec.theory import pipespec as pipespec_theory
from pipespec.theory import ppsd, sd, specpipe

Z99 = 2.576


def replicate(config, metric, seeds=range(8)):
    values = np.array([metric(simulate(config.with_values(seed=s))) for s in seeds])
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


def assert_same_summary(a, b):
    """Equal up to float accumulation order (the lazy drafter adds whole batches of steps at once)."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from flat(v, f"{prefix}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from flat(v, f"{prefix}[{i}]")
        else:
            yield prefix, value

    fa, fb = dict(flat(a)), dict(flat(b))
    assert fa.keys() == fb.keys()
    for key, value in fa.items():
        if isinstance(value, float):
            assert fb[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert fb[key] == value, key


def within_ci(mean, se, expected, floor=1e-3):
    """|mean − expected| within the 99% confidence half-width (with a small floor for zero variance)."""
    return abs(mean - expected) <= Z99 * max(se, floor * abs(expected))


@pytest.mark.parametrize("alpha", [0.5, 0.8, 0.95])
@pytest.mark.parametrize(("gamma", "c"), [(2, 0.1), (4, 0.05), (5, 0.3)])
def test_sd_matches_leviathan_speedup(alpha, gamma, c):
    config = SimConfig.from_text(scheme="sd", latency=(str(100 * c), "100"), acceptance=(str(alpha),), gamma=gamma,
                       num_tokens=1500)
    mean, se = replicate(config, lambda r: r.speedup)
    expected = float(sd.speedup(alpha, gamma, c))
    assert within_ci(mean, se, expected), f"simulated {mean:.4f} ± {Z99 * se:.4f}, Leviathan {expected:.4f}"


@pytest.mark.parametrize("alpha", [0.5, 0.8, 0.95])
@pytest.mark.parametrize(("gamma", "c"), [(2, 0.2), (3, 0.1), (4, 0.15)])
def test_pipespec_matches_closed_form_when_drafter_refills_window(alpha, gamma, c):
    """The chain behind ρ assumes the drafter refills a whole window within one verifier step:
    (γ + 1)·t_draft < t_verifier, with the window capped at γ and equal generate/verify costs."""
    assert (gamma + 1) * c < 1
    config = SimConfig.from_text(scheme="pipespec", latency=(str(100 * c), "100"), acceptance=(str(alpha),),
                       max_drafts=gamma, num_tokens=2000)
    rho, rho_se = replicate(config, lambda r: r.rho(r.stages[-1]))
    tokens, tokens_se = replicate(config, lambda r: r.tokens_per_step(r.stages[-1]))
    expected_rho = float(pipespec_theory.rho(alpha, gamma))
    expected_tokens = float(pipespec_theory.expected_tokens(alpha, gamma))
    assert within_ci(rho, rho_se, expected_rho), (
        f"ρ simulated {rho:.4f} ± {Z99 * rho_se:.4f}, closed form {expected_rho:.4f}")
    assert within_ci(tokens, tokens_se, expected_tokens), (
        f"E[N] simulated {tokens:.4f} ± {Z99 * tokens_se:.4f}, closed form {expected_tokens:.4f}")


def test_pipespec_falls_below_closed_form_when_drafter_is_slow():
    """(γ + 1)·c > 1: windows are shorter than γ, so tokens per step fall below the closed form."""
    config = SimConfig.from_text(scheme="pipespec", latency=("50", "100"), acceptance=("0.9",), max_drafts=4,
                                 num_tokens=2000)
    tokens, se = replicate(config, lambda r: r.tokens_per_step(r.stages[-1]), seeds=range(4))
    assert tokens + Z99 * se < float(pipespec_theory.expected_tokens(0.9, 4))


@pytest.mark.parametrize("alpha", [0.5, 0.8])
@pytest.mark.parametrize(("layers", "exit_layer"), [(8, 2), (8, 4)])
def test_ppsd_matches_closed_form_with_a_stage_per_layer(alpha, layers, exit_layer):
    config = SimConfig.from_text(scheme="ppsd", latency=(str(layers),), acceptance=(str(alpha),), num_layers=layers,
                       exit_layer=exit_layer, pp_stages=layers, num_tokens=1500)
    mean, se = replicate(config, lambda r: r.speedup)
    expected = float(ppsd.pipelined_speedup(alpha, exit_layer, layers))
    assert within_ci(mean, se, expected), f"simulated {mean:.4f} ± {Z99 * se:.4f}, closed form {expected:.4f}"


@pytest.mark.parametrize("hit_rate", [0.5, 0.9])
@pytest.mark.parametrize("stages", [2, 4, 8])
def test_specpipe_matches_closed_form_with_a_fast_draft(hit_rate, stages):
    config = SimConfig.from_text(scheme="specpipe", latency=("1", "100"), acceptance=(str(hit_rate),), pp_stages=stages,
                       num_tokens=1500)
    mean, se = replicate(config, lambda r: r.speedup)
    expected = float(specpipe.speedup(hit_rate, stages))
    assert within_ci(mean, se, expected), f"simulated {mean:.4f} ± {Z99 * se:.4f}, closed form {expected:.4f}"


def test_same_seed_same_result_and_seeds_differ():
    config = preset("pipespec-a100").with_values(num_tokens=500)
    assert simulate(config).summary() == simulate(config).summary()
    assert simulate(config.with_values(seed=1)).summary() != simulate(config).summary()


@pytest.mark.parametrize("seed", range(3))
def test_lazy_drafter_equals_eager_drafter(seed):
    config = preset("pipespec-a100").with_values(num_tokens=800, seed=seed)
    assert_same_summary(simulate(config).summary(), simulate(config.with_values(lazy_drafter=False)).summary())


def test_lazy_drafter_equals_eager_with_jitter_and_finish_policy(tmp_path):
    from pipespec.sim import calibration

    latency = tuple(f"profile:{calibration.profile_path()}#{m}@quantiles" for m in calibration.MODEL_NAMES)
    config = preset("pipespec-a100").with_text(latency=latency, rollback="finish", num_tokens=600)
    lazy, eager = simulate(config), simulate(config.with_values(lazy_drafter=False))
    assert_same_summary(lazy.summary(), eager.summary())


# --- metamorphic relations --------------------------------------------------------------------

def test_sd_raising_alpha_never_lowers_throughput():
    """Common random numbers: each round's inverse-CDF draw accepts at least as many tokens at higher α."""
    for seed in range(3):
        speeds = [simulate(SimConfig.from_text(scheme="sd", latency=("10", "100"), acceptance=(str(a),), gamma=4,
                                     num_tokens=500, seed=seed)).tokens_per_s for a in (0.3, 0.5, 0.7, 0.9, 1.0)]
        assert speeds == sorted(speeds), f"seed {seed}: tokens/s {speeds} fell as α rose"


def test_sd_slowing_the_final_stage_never_speeds_up():
    for seed in range(3):
        times = [simulate(SimConfig.from_text(scheme="sd", latency=("10", str(t)), acceptance=("0.8",), gamma=4,
                                    num_tokens=500, seed=seed)).elapsed_s for t in (50, 100, 200)]
        assert times == sorted(times), f"seed {seed}: elapsed {times} fell as the final stage slowed"


@pytest.mark.parametrize(("scheme", "options"), [("pipespec", {}), ("sd", {"gamma": 4})])
def test_three_stage_raising_alpha_never_lowers_throughput_on_average(scheme, options):
    means = []
    for alpha in (0.5, 0.7, 0.9):
        config = SimConfig.from_text(scheme=scheme, latency=("5", "20", "100"), acceptance=(str(alpha),),
                                     num_tokens=1000, **options)
        means.append(replicate(config, lambda r: r.tokens_per_s, seeds=range(4)))
    for (lo, lo_se), (hi, hi_se) in itertools.pairwise(means):
        assert hi + Z99 * hi_se >= lo - Z99 * lo_se, f"{scheme}: tokens/s fell as α rose: {means}"


def test_pipespec_slowing_the_final_stage_never_speeds_up_on_average():
    means = [replicate(SimConfig.from_text(scheme="pipespec", latency=("5", "20", str(t)), acceptance=("0.8",),
                                 num_tokens=1000), lambda r: r.tokens_per_s, seeds=range(4)) for t in (80, 160)]
    (fast, fast_se), (slow, slow_se) = means
    assert slow - Z99 * slow_se <= fast + Z99 * fast_se, f"a slower final stage gave more tokens/s: {means}"


def test_sharing_a_device_never_helps_and_caps_busy_time():
    dedicated = SimConfig.from_text(scheme="pipespec", latency=("5", "20", "100"), acceptance=("0.8",), num_tokens=800)
    shared = dedicated.with_values(devices=("cpu0", "cpu0", "cpu1"))
    a, b = simulate(dedicated), simulate(shared)
    assert b.elapsed_s >= a.elapsed_s
    assert b.stages[0].busy_s + b.stages[1].busy_s <= b.elapsed_s * (1 + 1e-9)


def test_trace_replay_gives_exact_accepted_lengths(tmp_path):
    from pipespec.traces import write_traces

    path = tmp_path / "trace.json"
    write_traces(path, {"M0->M1": {"draft": "M0", "target": "M1", "sequences": [[1, 1, 1, 0] * 50]}})
    result = simulate(SimConfig.from_text(scheme="sd", latency=("1", "10"), acceptance=(f"trace:{path}",), gamma=8,
                                num_tokens=40, prompt_len=0))
    # every window starts right after a correction, sees 1, 1, 1, 0 → 3 accepted + correction
    assert dict(result.pairs[0].tokens_added_histogram) == {4: 10}
