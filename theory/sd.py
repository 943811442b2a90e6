"""Synchronous speculative decoding (Leviathan, Kalman & Matias 2023, "Fast Inference from
Transformers via Speculative Decoding", §3; Chen et al. 2023).

A round: the draft proposes γ tokens, the target scores them in one forward pass, the longest
accepted prefix plus one correction/bonus token is kept. With i.i.d. acceptance α the number of
tokens a round yields, N, has P(N ≥ n) = α^(n-1) for 1 ≤ n ≤ γ+1.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.optimize
import sympy as sp
from numpy.typing import ArrayLike

from .symbols import Step, alpha, c, c_hat, gamma, generic_branch, numeric

# The closed forms as the paper states them, kept to test the derivations against.
STATED_TOKENS_PER_ROUND = (1 - alpha ** (gamma + 1)) / (1 - alpha)  # Leviathan Eq. (1)
STATED_SPEEDUP = (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))  # Theorem 3.8
STATED_OPERATIONS_FACTOR = (1 - alpha) * (gamma * c_hat + gamma + 1) / (1 - alpha ** (gamma + 1))  # Thm 3.11


@cache
def tokens_per_round() -> sp.Expr:
    """E[N] = Σ_{n=1}^{γ+1} P(N ≥ n) = Σ_{j=0}^{γ} α^j: derived, γ + 1 at the α = 1 limit."""
    j = sp.Symbol("j", integer=True, nonnegative=True)
    return sp.summation(alpha**j, (j, 0, gamma))


@cache
def walltime_speedup() -> sp.Expr:
    """Expected walltime improvement: a round costs γ draft steps (γ·c target steps) + 1 target step."""
    round_cost_in_target_steps = gamma * c + 1
    return tokens_per_round() / round_cost_in_target_steps


@cache
def operations_factor() -> sp.Expr:
    """Expected arithmetic operations relative to AR: per round γ·ĉ (draft) + γ + 1 (target scores γ+1)."""
    operations_per_round = gamma * c_hat + gamma + 1
    return operations_per_round / tokens_per_round()


@cache
def speedup_stationarity() -> sp.Expr:
    """∂S/∂γ for real γ (α ≠ 1): the continuous optimal window solves this = 0."""
    return sp.simplify(sp.diff(generic_branch(walltime_speedup()), gamma))


def derivation() -> list[Step]:
    return [
        Step("E[N], tokens per round", sp.Eq(sp.Symbol("E[N]"), tokens_per_round()),
             "Σ_{j=0}^{γ} α^j: the round yields ≥ n tokens iff the first n-1 drafts are accepted"),
        Step("walltime speedup S", sp.Eq(sp.Symbol("S"), walltime_speedup()),
             "c = t_draft / t_target; a round costs γ·c + 1 target steps"),
        Step("operations factor", sp.Eq(sp.Symbol("ops"), operations_factor()),
             "ĉ = draft/target operations per token; the target scores γ+1 positions"),
        Step("stationarity ∂S/∂γ = 0", sp.Eq(speedup_stationarity(), 0), "continuous optimal γ"),
    ]


_tokens = numeric(tokens_per_round, (alpha, gamma))
_speedup = numeric(walltime_speedup, (alpha, gamma, c))
_ops = numeric(operations_factor, (alpha, gamma, c_hat))
_stationarity = numeric(speedup_stationarity, (alpha, gamma, c))


def expected_tokens(alpha_: ArrayLike, gamma_: ArrayLike) -> np.ndarray:
    """E[N] tokens per round, vectorised."""
    return _tokens(alpha_, gamma_)


def speedup(alpha_: ArrayLike, gamma_: ArrayLike, c_: ArrayLike) -> np.ndarray:
    """Walltime speedup over AR, vectorised (c = t_draft / t_target)."""
    return _speedup(alpha_, gamma_, c_)


def operations(alpha_: ArrayLike, gamma_: ArrayLike, c_hat_: ArrayLike) -> np.ndarray:
    """Arithmetic operations relative to AR, vectorised."""
    return _ops(alpha_, gamma_, c_hat_)


def optimal_gamma(alpha_: ArrayLike, c_: ArrayLike, gamma_max: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Integer argmax of S over γ in 0..gamma_max (γ = 0 is plain AR, S = 1); returns (γ*, S*)."""
    a = np.asarray(alpha_, dtype=float)[..., None]
    cc = np.asarray(c_, dtype=float)[..., None]
    gammas = np.arange(gamma_max + 1, dtype=float)
    values = speedup(a, gammas, cc)
    best = np.argmax(values, axis=-1)
    return best, np.take_along_axis(values, best[..., None], axis=-1)[..., 0]


def continuous_optimal_gamma(alpha_: float, c_: float, gamma_max: float = 1e4) -> float:
    """Real γ solving ∂S/∂γ = 0 (scipy brentq on the derived stationarity condition).

    Returns 0.0 when S falls from the start (speculation does not pay) and inf when S rises
    without bound in the search range (c = 0 or α = 1: a free draft or a perfect one).
    """
    if alpha_ <= 0.0:
        return 0.0
    if alpha_ >= 1.0 or c_ == 0.0:
        return float("inf")

    def slope(g: float) -> float:
        return float(_stationarity(alpha_, g, c_))

    if slope(0.0) <= 0.0:
        return 0.0
    if slope(gamma_max) > 0.0:
        return float("inf")
    return float(scipy.optimize.brentq(slope, 0.0, gamma_max, xtol=1e-10))
