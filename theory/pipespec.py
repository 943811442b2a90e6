"""PipeSpec's analytical model (McDanel et al., ACL Findings 2025, §4): hierarchical asynchronous
speculative decoding.

Each stage M_i either *verifies* drafts from M_{i-1} (state V) or *generates* one token itself
(state G). From V it stays in V when the whole window of γ drafts plus the bonus is accepted,
probability α^(γ+1); from G it enters V as soon as its upstream draft is accepted, probability α.
ρ_i is the stationary probability of V; E[N(M_i)] the expected tokens a step of M_i yields.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from . import sd
from .symbols import Step, alpha, c, gamma, generic_branch, numeric

STATED_RHO = alpha / (1 - alpha ** (gamma + 1) + alpha)


@cache
def transition_matrix() -> sp.Matrix:
    """Rows/columns (V, G): P(V→V) = α^(γ+1), P(G→V) = α."""
    stay = alpha ** (gamma + 1)
    return sp.Matrix([[stay, 1 - stay], [alpha, 1 - alpha]])


@cache
def stationary_distribution() -> tuple[sp.Expr, sp.Expr]:
    """(π_V, π_G) solving π·P = π, π_V + π_G = 1, derived by SymPy."""
    pi_v, pi_g = sp.symbols("pi_V pi_G")
    pi = sp.Matrix([[pi_v, pi_g]])
    balance = [*list(pi * transition_matrix() - pi), pi_v + pi_g - 1]
    solution = sp.solve(balance, [pi_v, pi_g], dict=True)[0]
    return sp.simplify(solution[pi_v]), sp.simplify(solution[pi_g])


@cache
def verification_probability() -> sp.Expr:
    """ρ = π_V, the steady-state probability that a step verifies."""
    return stationary_distribution()[0]


@cache
def tokens_per_step() -> sp.Expr:
    """E[N(M_i)] = (1 − ρ)·1 + ρ·E_round(α, γ): a G step yields 1 token, a V step a whole round's."""
    rho = verification_probability()
    return (1 - rho) + rho * sd.tokens_per_round()


@cache
def breakeven_cost_ratio() -> sp.Expr:
    """c* solving E[N] = S_SD(α, γ, c): synchronous SD wins for c < c*, PipeSpec for c > c*.

    Compares tokens per verifier step with SD's walltime speedup (both per target step), as the paper
    does; it assumes a verification step costs what an AR step costs (see timing.py otherwise).
    """
    e_round = generic_branch(sd.tokens_per_round())
    e_step = generic_branch(tokens_per_step())
    solution = sp.solve(sp.Eq(e_step, e_round / (gamma * c + 1)), c)
    return sp.simplify(solution[0])


def theorem_1_proof() -> list[Step]:
    """Theorem 1: 0 < α < 1, γ ≥ 1 ⇒ E[N(M_i)] > 1, as checked SymPy steps (each must hold)."""
    a = sp.Symbol("alpha", positive=True)
    b = sp.Symbol("beta", positive=True)  # β = 1 − α > 0
    g = sp.Symbol("gamma", integer=True, positive=True)
    j = sp.Symbol("j", integer=True)
    e_round = sp.Sum(a**j, (j, 0, g))
    rho = STATED_RHO.subs({alpha: a, gamma: g})
    rho_rewritten = a / (a + b * e_round)  # 1 − α^(γ+1) + α = α + (1−α)·E_round, with β = 1 − α
    excess = (1 - rho) + rho * e_round - 1
    tail = sp.Sum(a**j, (j, 1, g))

    def identity(lhs: sp.Expr, rhs: sp.Expr) -> tuple[sp.Basic, bool]:
        return sp.Eq(lhs, rhs, evaluate=False), sp.simplify((lhs - rhs).doit()) == 0

    def positive(expr: sp.Expr) -> tuple[sp.Basic, bool]:
        return sp.StrictGreaterThan(expr, 0, evaluate=False), bool(expr.is_positive)

    checks = [
        ("geometric series", identity(1 - a ** (g + 1), (1 - a) * e_round)),
        ("E[N] − 1 = ρ·(E_round − 1)", identity(excess, rho * (e_round - 1))),
        ("E_round − 1 is a sum of powers of α", identity(e_round - 1, tail)),
        ("ρ > 0 (α > 0, β = 1 − α > 0)", positive(rho_rewritten)),
        ("that sum is positive (α > 0, γ ≥ 1)", positive(tail)),
    ]
    return [Step(title, statement, "", holds) for title, (statement, holds) in checks]


def theorem_1_holds() -> bool:
    """True when SymPy confirms every step of the proof."""
    return all(step.holds for step in theorem_1_proof())


def derivation() -> list[Step]:
    pi_v, pi_g = stationary_distribution()
    return [
        Step("transition matrix (V, G)", transition_matrix(), "P(V→V) = α^(γ+1), P(G→V) = α"),
        Step("stationary π_V = ρ", sp.Eq(sp.Symbol("rho"), pi_v), "π·P = π, π_V + π_G = 1"),
        Step("stationary π_G", sp.Eq(sp.Symbol("pi_G"), pi_g), ""),
        Step("E[N(M_i)]", sp.Eq(sp.Symbol("E[N]"), tokens_per_step()), "(1 − ρ)·1 + ρ·E_round"),
        Step("break-even cost ratio c*", sp.Eq(sp.Symbol("c*"), breakeven_cost_ratio()),
             "E[N] = S_SD(α, γ, c*); PipeSpec's tokens/step beat SD's speedup iff c > c*"),
        *theorem_1_proof(),
    ]


_rho = numeric(verification_probability, (alpha, gamma))
_tokens = numeric(tokens_per_step, (alpha, gamma))
_breakeven = numeric(breakeven_cost_ratio, (alpha, gamma))


def rho(alpha_: ArrayLike, gamma_: ArrayLike) -> np.ndarray:
    """ρ, vectorised."""
    return _rho(alpha_, gamma_)


def expected_tokens(alpha_: ArrayLike, gamma_: ArrayLike) -> np.ndarray:
    """E[N(M_i)], vectorised."""
    return _tokens(alpha_, gamma_)


def breakeven_c(alpha_: ArrayLike, gamma_: ArrayLike) -> np.ndarray:
    """c* where E[N] equals SD's speedup; α = 0 or 1 have no crossing (NaN)."""
    out = np.array(_breakeven(alpha_, gamma_), dtype=float)
    a = np.broadcast_to(np.asarray(alpha_, dtype=float), out.shape)
    out[(a <= 0) | (a >= 1)] = np.nan
    return out


def advantage_over_sd(alpha_: ArrayLike, gamma_: ArrayLike, c_: ArrayLike) -> np.ndarray:
    """E[N] − S_SD: positive where the asynchronous pipeline's closed form wins."""
    return expected_tokens(alpha_, gamma_) - sd.speedup(alpha_, gamma_, c_)
