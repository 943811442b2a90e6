"""SpecPipe (Yin et al. 2025, arXiv 2504.04104): a target split over P pipeline stages, filled each
step with the next level of a speculative token tree. Derived model (ours, see PAPERS.md): when the
oldest level leaves the last stage, the target's token is among the surviving subtree with
probability h (a hit: the next token completes one step later), else the pipeline is flushed and the
new root needs all P steps.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp
import sympy.stats
from numpy.typing import ArrayLike

from .symbols import Step, hit_rate, num_stages, numeric, step_time

STATED_SPEEDUP = num_stages / (hit_rate + (1 - hit_rate) * num_stages)


@cache
def steps_per_token() -> sp.Expr:
    """E[pipeline steps between tokens] = 1 on a hit, P on a miss."""
    hit = sympy.stats.Bernoulli("hit", hit_rate)
    return sp.simplify(sympy.stats.E(sp.Piecewise((1, sp.Eq(hit, 1)), (num_stages, True))))


@cache
def time_between_tokens() -> sp.Expr:
    """T_s·E[steps]; T_s = one stage's forward time (one pipeline step)."""
    return step_time * steps_per_token()


@cache
def speedup_over_pipeline() -> sp.Expr:
    """Plain pipeline parallelism decodes one token per P steps: speedup = P·T_s / time between tokens."""
    return sp.simplify(num_stages * step_time / time_between_tokens())


def derivation() -> list[Step]:
    return [
        Step("E[steps per token]", sp.Eq(sp.Symbol("E[steps]"), steps_per_token()), "hit: 1 step; miss: P"),
        Step("time between tokens", sp.Eq(sp.Symbol("TBT"), time_between_tokens()), ""),
        Step("speedup over plain PP", sp.Eq(sp.Symbol("S_PP"), speedup_over_pipeline()),
             "→ P as h → 1, → 1 as h → 0"),
    ]


_speedup = numeric(speedup_over_pipeline, (hit_rate, num_stages))


def speedup(hit_rate_: ArrayLike, num_stages_: ArrayLike) -> np.ndarray:
    """Speedup over plain pipeline parallelism, vectorised."""
    return _speedup(hit_rate_, num_stages_)
