"""PPSD (Li et al. 2025, arXiv 2509.19368): early-exit self-speculation pipelined over the model's
layers ("verify-while-draft"). Derived model (ours, see PAPERS.md): a token whose early-exit draft is
accepted costs only the E early layers on the critical path (its late layers overlap the next draft);
a rejected one costs all N layers. The non-pipelined baseline is Leviathan's SD with c = E/N.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp
import sympy.stats
from numpy.typing import ArrayLike

from . import sd
from .symbols import Step, alpha, c, exit_layer, gamma, layer_time, num_layers, numeric

STATED_SPEEDUP = 1 / (1 - alpha * (1 - exit_layer / num_layers))


@cache
def time_per_token() -> sp.Expr:
    """E[time per token] = α·E·t_L + (1 − α)·N·t_L."""
    accepted = sympy.stats.Bernoulli("accepted", alpha)
    cost = sp.Piecewise((exit_layer * layer_time, sp.Eq(accepted, 1)), (num_layers * layer_time, True))
    return sp.expand(sympy.stats.E(cost))


@cache
def speedup() -> sp.Expr:
    """AR costs N·t_L per token."""
    return sp.simplify(num_layers * layer_time / time_per_token())


@cache
def baseline_speedup() -> sp.Expr:
    """Draft γ tokens with the E early layers, verify with all N: SD with c = E/N."""
    return sd.walltime_speedup().subs(c, exit_layer / num_layers)


def derivation() -> list[Step]:
    return [
        Step("E[time per token]", sp.Eq(sp.Symbol("T"), time_per_token()), "accepted: E layers; rejected: N"),
        Step("PPSD speedup", sp.Eq(sp.Symbol("S_PPSD"), speedup()), ""),
        Step("non-pipelined early exit", sp.Eq(sp.Symbol("S_EE"), baseline_speedup()), "SD with c = E/N"),
    ]


_speedup = numeric(speedup, (alpha, exit_layer, num_layers))
_baseline = numeric(baseline_speedup, (alpha, gamma, exit_layer, num_layers))


def pipelined_speedup(alpha_: ArrayLike, exit_: ArrayLike, layers: ArrayLike) -> np.ndarray:
    """PPSD speedup over AR, vectorised."""
    return _speedup(alpha_, exit_, layers)


def early_exit_speedup(alpha_: ArrayLike, gamma_: ArrayLike, exit_: ArrayLike,
                       layers: ArrayLike) -> np.ndarray:
    """Non-pipelined early-exit SD speedup over AR, vectorised."""
    return _baseline(alpha_, gamma_, exit_, layers)
