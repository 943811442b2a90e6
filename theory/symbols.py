"""The papers' symbols, shared by every closed form, and the helpers that turn them into numbers.

Code name → paper symbol: `alpha` = α (per-token acceptance rate of a draft by its verifier),
`gamma` = γ (window: drafts per verification), `c` = t_draft / t_target (Leviathan et al.'s cost
coefficient; PipeSpec's paper writes the inverse), `rho` = ρ (steady-state probability that a stage
verifies rather than generates), `h` = tree hit rate (SpecPipe), `E`/`N` = exit layer / layers (PPSD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

alpha = sp.Symbol("alpha", nonnegative=True)
gamma = sp.Symbol("gamma", integer=True, nonnegative=True)
c = sp.Symbol("c", nonnegative=True)
c_hat = sp.Symbol("c_hat", nonnegative=True)  # ĉ: draft/target arithmetic operations per token
hit_rate = sp.Symbol("h", nonnegative=True)
num_stages = sp.Symbol("P", integer=True, positive=True)
exit_layer = sp.Symbol("E", integer=True, positive=True)
num_layers = sp.Symbol("N", integer=True, positive=True)
layer_time = sp.Symbol("t_L", positive=True)
step_time = sp.Symbol("T_s", positive=True)
t_gen = sp.Symbol("t_gen", positive=True)  # final stage: forward of 1 token (an AR step)
t_verify = sp.Symbol("t_verify", positive=True)  # final stage: forward of γ+1 tokens
t_draft = sp.Symbol("t_draft", positive=True)  # draft: forward of 1 token

NumericFn = Callable[..., np.ndarray]


def generic_branch(expr: sp.Expr) -> sp.Expr:
    """The α ≠ 1 branch of a Piecewise produced by a geometric summation (else expr itself)."""
    if isinstance(expr, sp.Piecewise):
        return expr.args[-1][0]
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])


def numeric(derive: Callable[[], sp.Expr], args: tuple[sp.Symbol, ...]) -> NumericFn:
    """The lambdified NumPy twin of the expression `derive()` returns: broadcasts over arrays.

    The derivation runs on first use (importing the CLI stays fast). Piecewise limits (α = 1)
    evaluate both branches under numpy.select, so the discarded branch's 0/0 is silenced.
    """
    compiled: list[Callable[..., Any]] = []

    def evaluate(*values: ArrayLike) -> np.ndarray:
        if not compiled:
            compiled.append(sp.lambdify(args, derive(), modules="numpy"))
        arrays = [np.asarray(v, dtype=float) for v in values]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = compiled[0](*arrays)
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        return np.broadcast_to(np.asarray(out, dtype=float), shape)

    evaluate.__doc__ = f"NumPy twin of {derive.__name__}() in ({', '.join(map(str, args))})."
    return evaluate


@dataclass(frozen=True)
class Step:
    """One line of a derivation: a named expression or a checked identity."""

    title: str
    expr: sp.Basic
    note: str = ""
    holds: bool | None = None  # for a checked step: did SymPy confirm it?
