"""From tokens per step to time: predicted ms/token when a forward of n tokens costs t(n).

A verification forward over γ+1 tokens is *not* assumed to cost one autoregressive step: with 4-bit
kernels the single-token path is much faster (PipeSpec's 70B: 120 ms AR step, ~430 ms verification).
Symbols: t_gen = t_k(1) of the final model, t_verify = t_k(γ+1), t_draft = t_{k-1}(1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from . import pipespec, sd
from .symbols import Step, alpha, gamma, numeric, t_draft, t_gen, t_verify

LatencyFn = Callable[[int], float]  # tokens in the forward pass → seconds


@cache
def sd_time_per_token() -> sp.Expr:
    """Synchronous SD: a round = γ draft steps + one verification forward, yielding E_round tokens."""
    return (gamma * t_draft + t_verify) / sd.tokens_per_round()


@cache
def pipeline_time_per_token() -> sp.Expr:
    """Asynchronous final stage: a step generates (cost t_gen) w.p. 1 − ρ, verifies (t_verify) w.p. ρ."""
    rho = pipespec.verification_probability()
    return ((1 - rho) * t_gen + rho * t_verify) / pipespec.tokens_per_step()


@cache
def pipeline_best_case() -> sp.Expr:
    """Time per token as α → 1: every step verifies a full window (the throughput upper bound)."""
    return sp.limit(pipeline_time_per_token(), alpha, 1, "-")


@cache
def pipeline_breakeven_verify_cost() -> sp.Expr:
    """The verification cost t_verify at which the pipeline exactly matches AR (t_gen per token)."""
    return sp.simplify(sp.solve(sp.Eq(pipeline_time_per_token(), t_gen), t_verify)[0])


def derivation() -> list[Step]:
    return [
        Step("SD time per token", sp.Eq(sp.Symbol("T_SD"), sd_time_per_token()),
             "t_verify = t_k(γ+1); equals t_gen / S when t_verify = t_gen and t_draft = c·t_gen"),
        Step("pipeline time per token", sp.Eq(sp.Symbol("T_PipeSpec"), pipeline_time_per_token()), ""),
        Step("best case (α → 1)", sp.Eq(sp.Symbol("T_min"), pipeline_best_case()),
             "the final verifier accepts γ+1 tokens per verification forward"),
        Step("AR break-even verification cost", sp.Eq(sp.Symbol("t_verify*"), pipeline_breakeven_verify_cost()),
             "the pipeline beats AR iff a verification forward costs less than E_round AR steps"),
    ]


_sd_time = numeric(sd_time_per_token, (alpha, gamma, t_draft, t_verify))
_pipe_time = numeric(pipeline_time_per_token, (alpha, gamma, t_gen, t_verify))


def sd_chain_time_per_token(latencies: Sequence[LatencyFn], alphas: Sequence[float], gammas: Sequence[int]) -> float:
    """Synchronous chain M_0 … M_k: level i drafts γ_i tokens at the sub-chain's rate, then verifies.

    T_0 = t_0(1); T_i = (γ_i·T_{i-1} + t_i(γ_i + 1)) / E_round(α_i, γ_i). k = 1 is classic SD.
    A mean-rate approximation: it ignores how sub-chain rounds straddle level-i windows (the
    simulator does not).
    """
    per_token = latencies[0](1)
    for latency, a, g in zip(latencies[1:], alphas, gammas, strict=True):
        per_token = float(_sd_time(a, g, per_token, latency(g + 1)))
    return per_token


def pipeline_time(alpha_: ArrayLike, gamma_: ArrayLike, gen_s: ArrayLike,
                  verify_s: ArrayLike) -> np.ndarray:
    """Asynchronous pipeline's seconds per token at its final stage, vectorised."""
    return _pipe_time(alpha_, gamma_, gen_s, verify_s)


def sd_time(alpha_: ArrayLike, gamma_: ArrayLike, draft_s: ArrayLike,
            verify_s: ArrayLike) -> np.ndarray:
    """Synchronous SD's seconds per token, vectorised."""
    return _sd_time(alpha_, gamma_, draft_s, verify_s)


def throughput_bounds(final_latency: LatencyFn, max_window: int) -> tuple[float, float]:
    """(lower, upper) tokens/s of the final verifier: AR, and the best verification forward size.

    Upper: max over n ≤ max_window + 1 of n / t_k(n) (all n tokens accepted every step, the final
    verifier never idle). Lower: 1 / t_k(1), AR; the pipeline reaches it only when verification is
    cheap enough (see pipeline_breakeven_verify_cost): it can fall below when t_k(γ+1) > E_round·t_k(1).
    """
    upper = max(n / final_latency(n) for n in range(1, max_window + 2))
    return 1.0 / final_latency(1), upper
