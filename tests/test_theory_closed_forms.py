"""Closed forms: published check values, derived == stated, Theorem 1, limits and monotonicity."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pipespec.theory import pipespec, ppsd, sd, specpipe, timing
from pipespec.theory.symbols import alpha, c, c_hat, gamma, generic_branch, t_draft, t_gen, t_verify

alphas = st.floats(0.0, 1.0)
open_alphas = st.floats(0.01, 0.99)
gammas = st.integers(0, 40)
costs = st.floats(0.0, 5.0)


# --- published check values -------------------------------------------------------------------

def test_leviathan_check_value():
    assert sd.speedup(0.8, 5, 0.0) == pytest.approx(3.69, abs=5e-3)


def test_pipespec_check_values():
    assert pipespec.rho(0.8, 4) == pytest.approx(0.543, abs=5e-4)
    assert pipespec.expected_tokens(0.8, 4) == pytest.approx(2.28, abs=5e-3)


def test_paper_caveat_sd_beats_pipespec_at_c_one_tenth():
    """α = 0.8, γ = 4, a draft 10x faster (c = 0.1): E[N] = 2.28 < S_SD = 2.40."""
    assert sd.speedup(0.8, 4, 0.1) == pytest.approx(2.40, abs=5e-3)
    assert pipespec.advantage_over_sd(0.8, 4, 0.1) < 0


# --- derivations equal the stated forms ------------------------------------------------------

@pytest.mark.parametrize(
    ("derived", "stated"),
    [
        (sd.tokens_per_round, sd.STATED_TOKENS_PER_ROUND),
        (sd.walltime_speedup, sd.STATED_SPEEDUP),
        (sd.operations_factor, sd.STATED_OPERATIONS_FACTOR),
        (pipespec.verification_probability, pipespec.STATED_RHO),
        (specpipe.speedup_over_pipeline, specpipe.STATED_SPEEDUP),
        (ppsd.speedup, ppsd.STATED_SPEEDUP),
    ],
    ids=["sd_tokens", "sd_speedup", "sd_ops", "rho", "specpipe", "ppsd"],
)
def test_derivation_equals_stated_form(derived, stated):
    assert sp.simplify(generic_branch(derived()) - stated) == 0


def test_stationary_distribution_is_stationary():
    pi = sp.Matrix([list(pipespec.stationary_distribution())])
    assert sp.simplify(pi * pipespec.transition_matrix() - pi) == sp.zeros(1, 2)
    assert sp.simplify(sum(pi) - 1) == 0


def test_pipespec_tokens_per_step_stated_form():
    rho = pipespec.STATED_RHO
    stated = (1 - rho) + rho * (1 - alpha ** (gamma + 1)) / (1 - alpha)
    assert sp.simplify(generic_branch(pipespec.tokens_per_step()) - stated) == 0


def test_tokens_per_round_limit_at_alpha_one_is_gamma_plus_one():
    assert sd.tokens_per_round().subs(alpha, 1) == gamma + 1
    assert sp.limit(sd.STATED_TOKENS_PER_ROUND, alpha, 1) == gamma + 1


def test_theorem_1_is_proved_step_by_step():
    steps = pipespec.theorem_1_proof()
    assert len(steps) >= 5
    assert all(step.holds for step in steps), [s.title for s in steps if not s.holds]


def test_breakeven_cost_ratio_closed_form():
    assert sp.simplify(pipespec.breakeven_cost_ratio() - alpha * (1 - alpha**gamma) / gamma) == 0


def test_sd_time_reduces_to_target_time_over_speedup():
    """With t_verify = t_gen and t_draft = c·t_gen, Eq. time/token = t_gen / S."""
    expr = timing.sd_time_per_token().subs({t_verify: t_gen, t_draft: c * t_gen})
    assert sp.simplify(generic_branch(expr) - t_gen / generic_branch(sd.walltime_speedup())) == 0


def test_pipeline_time_equal_costs_is_target_time_over_tokens_per_step():
    expr = timing.pipeline_time_per_token().subs(t_verify, t_gen)
    assert sp.simplify(generic_branch(expr) - t_gen / generic_branch(pipespec.tokens_per_step())) == 0


def test_pipeline_best_case_and_breakeven():
    assert sp.simplify(timing.pipeline_best_case() - t_verify / (gamma + 1)) == 0
    breakeven = generic_branch(timing.pipeline_breakeven_verify_cost())
    assert sp.simplify(breakeven - t_gen * sd.STATED_TOKENS_PER_ROUND) == 0


def test_ppsd_baseline_is_sd_with_exit_fraction():
    e, n = sp.symbols("E N", positive=True, integer=True)
    expected = sd.walltime_speedup().subs(c, e / n)
    assert sp.simplify(generic_branch(ppsd.baseline_speedup()) - generic_branch(expected)) == 0


# --- numeric twins agree with the symbolic expressions ----------------------------------------

@settings(max_examples=60, deadline=None)
@given(a=open_alphas, g=gammas, cc=costs)
def test_numeric_twins_match_sympy(a, g, cc):
    point = {alpha: sp.Float(a), gamma: g, c: sp.Float(cc), c_hat: sp.Float(cc)}
    assert sd.speedup(a, g, cc) == pytest.approx(float(sd.walltime_speedup().subs(point)), rel=1e-9)
    assert sd.operations(a, g, cc) == pytest.approx(float(sd.operations_factor().subs(point)), rel=1e-9)
    assert pipespec.rho(a, g) == pytest.approx(float(pipespec.verification_probability().subs(point)), rel=1e-9)
    assert pipespec.expected_tokens(a, g) == pytest.approx(float(pipespec.tokens_per_step().subs(point)), rel=1e-9)


def test_numeric_twins_broadcast_over_arrays():
    a = np.linspace(0, 1, 11)[:, None]
    g = np.arange(5)[None, :]
    assert pipespec.expected_tokens(a, g).shape == (11, 5)
    assert np.all(np.isfinite(pipespec.expected_tokens(a, g)))


# --- limits and monotonicity (property tests) --------------------------------------------------

@given(g=gammas)
def test_limits_at_alpha_zero_and_one(g):
    assert pipespec.rho(0.0, g) == 0.0
    assert pipespec.expected_tokens(0.0, g) == 1.0
    assert pipespec.rho(1.0, g) == 1.0
    assert pipespec.expected_tokens(1.0, g) == g + 1
    assert sd.expected_tokens(1.0, g) == g + 1
    assert sd.expected_tokens(0.0, g) == 1.0


@given(a1=alphas, a2=alphas, g=gammas)
def test_tokens_per_step_never_fall_as_alpha_rises(a1, a2, g):
    lo, hi = sorted((a1, a2))
    assert pipespec.expected_tokens(hi, g) >= pipespec.expected_tokens(lo, g) - 1e-12, (
        f"E[N] fell from α = {lo} to α = {hi} at γ = {g}")
    assert sd.expected_tokens(hi, g) >= sd.expected_tokens(lo, g) - 1e-12


@given(a=alphas, g=gammas)
def test_rho_is_a_probability_and_pipeline_is_between_ar_and_round(a, g):
    r = float(pipespec.rho(a, g))
    assert 0.0 <= r <= 1.0
    tokens = float(pipespec.expected_tokens(a, g))
    assert 1.0 - 1e-12 <= tokens <= float(sd.expected_tokens(a, g)) + 1e-9


@given(a=st.floats(0.001, 0.999), g=st.integers(1, 40))
def test_theorem_1_numerically(a, g):
    assert pipespec.expected_tokens(a, g) > 1.0


@given(a=open_alphas, g=st.integers(1, 30), c1=costs, c2=costs)
def test_sd_speedup_never_rises_with_draft_cost(a, g, c1, c2):
    lo, hi = sorted((c1, c2))
    assert sd.speedup(a, g, hi) <= sd.speedup(a, g, lo) + 1e-12


@given(a=open_alphas, g=st.integers(1, 30))
def test_breakeven_separates_winners(a, g):
    c_star = float(pipespec.breakeven_c(a, g))
    assert abs(float(pipespec.advantage_over_sd(a, g, c_star))) < 1e-9
    assert pipespec.advantage_over_sd(a, g, c_star * 1.5 + 1e-3) > 0
    if c_star > 1e-6:
        assert pipespec.advantage_over_sd(a, g, c_star * 0.5) < 0


@given(h1=alphas, h2=alphas, p=st.integers(1, 64))
def test_specpipe_between_one_and_p_and_monotone(h1, h2, p):
    lo, hi = sorted((h1, h2))
    s_lo, s_hi = float(specpipe.speedup(lo, p)), float(specpipe.speedup(hi, p))
    assert 1.0 - 1e-12 <= s_lo <= s_hi + 1e-12 <= p + 1e-9


@given(a=alphas, e=st.integers(1, 31))
def test_ppsd_speedup_bounds(a, e):
    s = float(ppsd.pipelined_speedup(a, e, 32))
    assert 1.0 - 1e-12 <= s <= 32 / e + 1e-9


# --- optimal window -----------------------------------------------------------------------------

@given(a=st.floats(0.05, 0.95), cc=st.floats(0.01, 1.0))
def test_integer_optimal_gamma_is_a_maximum(a, cc):
    best, value = sd.optimal_gamma(a, cc, gamma_max=200)
    best = int(best)
    assert value == pytest.approx(float(sd.speedup(a, best, cc)))
    for other in (best - 1, best + 1):
        if 0 <= other <= 200:
            assert sd.speedup(a, other, cc) <= value + 1e-12


@given(a=st.floats(0.3, 0.95), cc=st.floats(0.01, 0.3))
def test_continuous_optimum_is_near_integer_optimum(a, cc):
    real = sd.continuous_optimal_gamma(a, cc)
    best, _ = sd.optimal_gamma(a, cc, gamma_max=500)
    if real == 0.0:
        assert int(best) <= 1
    else:
        assert abs(real - int(best)) <= 1.0


def test_optimal_gamma_is_zero_when_speculation_cannot_pay():
    """If α ≤ c no window beats AR (Leviathan Corollary 3.9)."""
    best, value = sd.optimal_gamma(0.2, 0.5)
    assert int(best) == 0 and value == 1.0
    assert sd.continuous_optimal_gamma(0.2, 0.5) == 0.0


def test_throughput_bounds_with_cheap_single_token_path():
    lower, upper = timing.throughput_bounds(lambda n: 0.120 if n == 1 else 0.430, max_window=40)
    assert lower == pytest.approx(1 / 0.120)
    assert upper == pytest.approx(41 / 0.430)
