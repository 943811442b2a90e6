"""Where the simulator and PipeSpec's closed forms agree, and where (and why) they part.

The closed form's chain (P(V→V) = α^(γ+1), P(G→V) = α) holds when the drafter refills a whole window
during one verifier step: after a rollback the verifier generates once while the drafter produces
the γ + 1 tokens (its copy of the verifier's token plus γ drafts) the next verification needs, i.e.
(γ + 1)·c ≤ 1 with c = t_draft / t_verifier. Beyond that the windows come up short of γ, so the
simulated tokens per step fall below E[N]; ρ first rises a little (short windows are accepted whole
more often), then falls as the verifier increasingly finds no draft ready and generates itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..acceptance import Bernoulli
from ..latency import ConstantLatency
from ..schemes.pipespec import PipeSpecOptions
from ..sim.config import SimConfig
from ..sim.run import simulate_seeds
from ..theory import pipespec as pipespec_theory


def grid(alphas: Sequence[float] = (0.6, 0.8, 0.95), gammas: Sequence[int] = (2, 4, 8),
         fill_ratios: Sequence[float] = (0.25, 0.5, 0.75, 0.9, 1.1, 1.5, 2.0, 3.0, 4.0),
         seeds: int = 3, num_tokens: int = 1500,
         progress: Callable[[Any], Any] = lambda it: it) -> list[dict[str, Any]]:
    """Rows of (α, γ, c, (γ+1)·c, simulated and closed-form ρ and E[N], with 99% CI half-widths)."""
    rows = []
    points = list(itertools.product(alphas, gammas, fill_ratios))
    for alpha, gamma, fill in progress(points):
        c = fill / (gamma + 1)
        # the draft's ms to 6 significant digits: at (γ+1)·c = 2 its steps would otherwise end at the verifier's
        # instants, and floating-point rounding, not the model, would decide which comes first
        draft_s = float(f"{100 * c:.6g}") / 1e3
        config = SimConfig(scheme="pipespec", latency=(ConstantLatency(draft_s), ConstantLatency(0.1)),
                           acceptance=(Bernoulli(alpha),), options=PipeSpecOptions(max_drafts=gamma),
                           num_tokens=num_tokens)
        runs = simulate_seeds(config, seeds)
        rho = np.array([r.rho(r.stages[-1]) for r in runs])
        tokens = np.array([r.tokens_per_step(r.stages[-1]) for r in runs])
        half = 2.576 / np.sqrt(seeds)
        rows.append({
            "alpha": alpha, "gamma": gamma, "c": c, "fill_ratio": fill,
            "rho_sim": rho.mean(), "rho_ci99": half * rho.std(ddof=1),
            "rho_closed": float(pipespec_theory.rho(alpha, gamma)),
            "tokens_sim": tokens.mean(), "tokens_ci99": half * tokens.std(ddof=1),
            "tokens_closed": float(pipespec_theory.expected_tokens(alpha, gamma)),
        })
    return rows
