"""Latency models shared by theory, simulator and backend: seconds for one forward pass of a model.

A forward is characterised by `num_tokens` (tokens in the pass: 1 for a generate step, drafts + 1
for a verification) and `context_len` (tokens already in the KV cache). Three shapes:
constant; affine a + b·n + c·ctx; or a measured profile table (see profiles.py) interpolated
piecewise-linearly, with n = 1 kept separate from n ≥ 2 as measured (4-bit kernels have a fast
single-token path). Optional jitter multiplies the median by a factor drawn from the measured
quantiles.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from .errors import ConfigError, check_nonnegative, check_positive, require

Seconds = float


class LatencyModel(Protocol):
    # True when a forward's time depends on neither the context length nor chance: the simulator may
    # then advance many identical steps at once.
    steady: bool

    def median_s(self, num_tokens: int, context_len: int) -> Seconds: ...

    def sample_s(self, num_tokens: int, context_len: int, rng: np.random.Generator | None) -> Seconds: ...


class SteadyDurations(dict):
    """A steady latency's forward times by tokens per forward, each computed once (the simulator's lookup)."""

    def __init__(self, latency: LatencyModel) -> None:
        super().__init__()
        self.latency = latency

    def __missing__(self, num_tokens: int) -> Seconds:
        value = self[num_tokens] = self.latency.median_s(num_tokens, 0)
        return value


class _NoJitter:
    def sample_s(self, num_tokens: int, context_len: int, rng: np.random.Generator | None) -> Seconds:
        return self.median_s(num_tokens, context_len)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ConstantLatency(_NoJitter):
    """Every forward costs the same (the closed forms' assumption)."""

    latency_s: Seconds
    spec: str = field(default="", compare=False, repr=False)  # the text it was parsed from, if any
    steady = True

    def __post_init__(self) -> None:
        check_positive("latency", self.latency_s)

    def median_s(self, num_tokens: int, context_len: int) -> Seconds:
        return self.latency_s


@dataclass(frozen=True)
class AffineLatency(_NoJitter):
    """base_s + per_token_s·n + per_context_s·ctx: the fitted form LLM simulators use."""

    base_s: Seconds
    per_token_s: Seconds = 0.0
    per_context_s: Seconds = 0.0
    spec: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_positive("affine latency base", self.base_s)
        check_nonnegative("affine latency per-token slope", self.per_token_s)
        check_nonnegative("affine latency per-context slope", self.per_context_s)

    @property
    def steady(self) -> bool:
        return self.per_context_s == 0

    def median_s(self, num_tokens: int, context_len: int) -> Seconds:
        return self.base_s + self.per_token_s * num_tokens + self.per_context_s * context_len


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through (xs, ys); beyond the ends, linear extrapolation from the last two points."""
    if len(xs) == 1:
        return ys[0]
    i = bisect.bisect_right(xs, x)
    i = min(max(i, 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class ProfilePoint:
    num_tokens: int
    context_len: int
    median_s: Seconds
    quantiles_s: tuple[tuple[float, Seconds], ...] = ()  # ((probability, seconds), ...), ascending


@dataclass(frozen=True)
class ProfileLatency:
    """A measured table, interpolated in n for each measured context length, then across context.

    Outside the measured range of n or ctx the table is extrapolated linearly (never clipped) and
    floored at the smallest measured latency. `jitter`: "none" uses medians; "quantiles" draws the
    median × a factor whose inverse CDF is piecewise-linear through the measured quantile ratios;
    `jitter_tails`="extend" continues that line to probabilities 0 and 1, "truncate" samples only
    between the outermost measured quantiles.
    """

    points: tuple[ProfilePoint, ...]
    name: str = "profile"
    jitter: Literal["none", "quantiles"] = "none"
    jitter_tails: Literal["extend", "truncate"] = "extend"
    spec: str = field(default="", compare=False, repr=False)
    _tables: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require(len(self.points) > 0, f"latency profile {self.name!r} has no points")
        require(self.jitter in ("none", "quantiles"), f"jitter must be none or quantiles, got {self.jitter!r}")
        require(self.jitter_tails in ("extend", "truncate"),
                f"jitter_tails must be extend or truncate, got {self.jitter_tails!r}")
        by_context: dict[int, list[ProfilePoint]] = {}
        for p in self.points:
            check_positive(f"latency profile {self.name!r}: median_s at n={p.num_tokens}", p.median_s)
            require(p.num_tokens >= 1, f"latency profile {self.name!r}: num_tokens must be >= 1")
            by_context.setdefault(p.context_len, []).append(p)
        contexts = sorted(by_context)
        rows = []
        for ctx in contexts:
            pts = sorted(by_context[ctx], key=lambda q: q.num_tokens)
            ns = [float(q.num_tokens) for q in pts]
            require(len(set(ns)) == len(ns), f"latency profile {self.name!r}: duplicate n at context {ctx}")
            rows.append((ns, [q.median_s for q in pts]))
        floor_s = min(p.median_s for p in self.points)
        quantiles = self._quantile_curve()
        if self.jitter == "quantiles":
            require(quantiles is not None,
                    f"latency profile {self.name!r}: jitter=quantiles needs quantiles_s on its points")
        object.__setattr__(self, "_tables", {"contexts": [float(c) for c in contexts], "rows": rows,
                                             "floor_s": floor_s, "quantiles": quantiles})

    def _quantile_curve(self) -> tuple[list[float], list[float]] | None:
        """Mean (probability → latency/median) ratio curve over the points that carry quantiles."""
        with_q = [p for p in self.points if p.quantiles_s]
        if not with_q:
            return None
        probs = [q for q, _ in with_q[0].quantiles_s]
        require(all([q for q, _ in p.quantiles_s] == probs for p in with_q),
                f"latency profile {self.name!r}: every point must list the same quantiles")
        ratios = [float(np.mean([dict(p.quantiles_s)[q] / p.median_s for p in with_q])) for q in probs]
        return probs, ratios

    @property
    def steady(self) -> bool:
        return self.jitter == "none" and len(self._tables["contexts"]) == 1

    def median_s(self, num_tokens: int, context_len: int) -> Seconds:
        tables = self._tables
        contexts, rows = tables["contexts"], tables["rows"]
        if len(contexts) == 1:  # no context dependence measured: memoise by n (the simulator's hot path)
            memo = tables.setdefault("memo", {})
            value = memo.get(num_tokens)
            if value is None:
                ns, ys = rows[0]
                value = memo[num_tokens] = max(_interp(ns, ys, float(num_tokens)), tables["floor_s"])
            return value
        values = [_interp(ns, ys, float(num_tokens)) for ns, ys in rows]
        value = _interp(contexts, values, float(context_len)) if len(contexts) > 1 else values[0]
        return max(value, tables["floor_s"])

    def sample_s(self, num_tokens: int, context_len: int, rng: np.random.Generator | None) -> Seconds:
        median = self.median_s(num_tokens, context_len)
        if self.jitter == "none" or rng is None:
            return median
        probs, ratios = self._tables["quantiles"]
        lo, hi = (probs[0], probs[-1]) if self.jitter_tails == "truncate" else (0.0, 1.0)
        u = lo + (hi - lo) * rng.random()
        return max(median * _interp(probs, ratios, u), 0.0)


def parse_latency(spec: str, where: str) -> LatencyModel:
    """A latency from its CLI/config form: "12" or "12ms" (constant ms), "affine:A,B,C" (ms: A + B·n +
    C·ctx), "profile:FILE[#MODEL][@quantiles]"."""
    from .profiles import load_profile

    text = spec.strip()
    try:
        if text.startswith("affine:"):
            parts = [float(x) / 1e3 for x in text[len("affine:"):].split(",")]
            require(len(parts) == 3, f"affine takes A,B,C in ms (A + B·tokens + C·context; 0 for a term "
                                     f"you do not want), got {spec!r}")
            return AffineLatency(*parts, spec=text)
        if text.startswith("profile:"):
            body = text[len("profile:"):]
            jitter = "none"
            if body.endswith("@quantiles"):
                body, jitter = body[: -len("@quantiles")], "quantiles"
            path, _, model = body.partition("#")
            return load_profile(path, model or None, jitter=jitter, spec=text)
        return ConstantLatency(float(text.removesuffix("ms")) / 1e3, spec=text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ValueError:
        raise ConfigError(f"{where}: expected a latency in ms, affine:A,B,C or profile:FILE[#MODEL], "
                          f"got {spec!r}") from None


@dataclass(frozen=True)
class ScaledLatency:
    """A share of a model's forward: a pipeline stage holding `fraction` of its layers."""

    base: LatencyModel
    fraction: float

    def __post_init__(self) -> None:
        require(0 < self.fraction <= 1, f"layer fraction must be in (0, 1], got {self.fraction}")

    @property
    def steady(self) -> bool:
        return self.base.steady

    def median_s(self, num_tokens: int, context_len: int) -> Seconds:
        return self.base.median_s(num_tokens, context_len) * self.fraction

    def sample_s(self, num_tokens: int, context_len: int, rng: np.random.Generator | None) -> Seconds:
        return self.base.sample_s(num_tokens, context_len, rng) * self.fraction
