"""Acceptance models fitted by maximum likelihood from what engines report: per-round counts (drafted,
accepted) in order, or a histogram of tokens added per verification at a fixed window.

The correlated model is `acceptance.Markov(p11, p01)`. A round that offers w drafts and accepts a of them,
entered with q = P(the position before the window agreed):
- P(first draft agrees) = r = q·p11 + (1 - q)·p01;
- a = 0 < w: 1 - r, and the next round is entered with q = 0 (the rejected position differed);
- 0 < a < w: r·p11^(a-1)·(1 - p11), next q = 0;
- a = w >= 1: r·p11^(w-1); the bonus position is the verifier's, unobserved: next q = p11;
- w = 0 (the verifier decoded alone): nothing observed, next q = r.
A request's first round is entered at the chain's stationary rate. From a histogram the rounds' order is
lost: each is entered with the steady-state mix q = f·p11, f the histogram's share of full windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from .acceptance import Bernoulli, Markov
from .errors import require

EPS = 1e-6

Round = tuple[int, int]  # (drafted, accepted)


def _round_log_p(p11: float, p01: float, q: float, drafted: int, accepted: int) -> tuple[float, float]:
    """(log-likelihood of one round, the next round's q)."""
    r = q * p11 + (1.0 - q) * p01
    if drafted == 0:
        return 0.0, r
    if accepted == 0:
        return math.log(max(1.0 - r, EPS)), 0.0
    log_p = math.log(max(r, EPS)) + (accepted - 1) * math.log(max(p11, EPS))
    if accepted < drafted:
        return log_p + math.log(max(1.0 - p11, EPS)), 0.0
    return log_p, p11


def markov_log_likelihood(p11: float, p01: float, requests: Sequence[Sequence[Round]]) -> float:
    stationary = p01 / max(1.0 - p11 + p01, EPS)
    total = 0.0
    for rounds in requests:
        q = stationary
        for drafted, accepted in rounds:
            log_p, q = _round_log_p(p11, p01, q, drafted, accepted)
            total += log_p
    return total


def _maximise(nll: Callable[[float, float], float]) -> tuple[float, float]:
    best = None
    for start in ((0.8, 0.5), (0.95, 0.2), (0.5, 0.5)):
        res = minimize(lambda x: nll(*x), np.array(start), method="L-BFGS-B",
                       bounds=[(EPS, 1 - EPS), (EPS, 1 - EPS)])
        if best is None or res.fun < best.fun:
            best = res
    return float(best.x[0]), float(best.x[1])


def _check_rounds(requests: Sequence[Sequence[Round]]) -> None:
    for rounds in requests:
        for drafted, accepted in rounds:
            require(0 <= accepted <= drafted, f"acceptance fit: a round accepted {accepted} of {drafted} drafts")
    require(any(d for rounds in requests for d, _ in rounds), "acceptance fit: no round offered any draft")


def fit_markov_rounds(requests: Sequence[Sequence[Round]]) -> Markov:
    """Maximum-likelihood Markov(p11, p01) from per-request sequences of (drafted, accepted)."""
    _check_rounds(requests)
    return Markov(*_maximise(lambda a, b: -markov_log_likelihood(a, b, requests)))


def _histogram_rounds(histogram: Mapping[int, float], window: int) -> list[tuple[int, float]]:
    """(accepted, count) from {tokens added: count} at a fixed window."""
    require(window >= 1, f"acceptance fit: the window must be >= 1, got {window}")
    rows = []
    for added, count in histogram.items():
        added = int(added)
        require(1 <= added <= window + 1, f"acceptance fit: {added} tokens added is impossible at window {window}")
        require(count >= 0, "acceptance fit: histogram counts must be >= 0")
        rows.append((added - 1, float(count)))
    require(sum(c for _, c in rows) > 0, "acceptance fit: empty histogram")
    return rows


def fit_markov_histogram(histogram: Mapping[int, float], window: int) -> Markov:
    """Maximum-likelihood Markov(p11, p01) from a histogram of tokens added per verification, every round
    offering `window` drafts (rounds entered at the steady-state mix, see the module docstring)."""
    rows = _histogram_rounds(histogram, window)
    full = sum(c for a, c in rows if a == window) / sum(c for _, c in rows)

    def nll(p11: float, p01: float) -> float:
        q = full * p11
        return -sum(c * _round_log_p(p11, p01, q, window, a)[0] for a, c in rows)

    return Markov(*_maximise(nll))


def fit_bernoulli_histogram(histogram: Mapping[int, float], window: int) -> Bernoulli:
    """The i.i.d. α's maximum-likelihood estimate: accepted / (accepted + rejections)."""
    rows = _histogram_rounds(histogram, window)
    accepted = sum(a * c for a, c in rows)
    rejections = sum(c for a, c in rows if a < window)
    return Bernoulli(accepted / (accepted + rejections) if accepted + rejections else 1.0)


def rounds_from_bits(bits: Sequence[int], window: int) -> list[Round]:
    """The rounds an engine offering `window` drafts after every verified prefix logs on known agreement bits
    (position 0 is the prefill's): for tests and for the comparison of acceptance models on traces."""
    rounds, p = [], 1
    while p + window < len(bits):
        accepted = 0
        while accepted < window and bits[p + accepted]:
            accepted += 1
        rounds.append((window, accepted))
        p += accepted + 1
    return rounds
