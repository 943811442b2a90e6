"""Acceptance models shared by simulator, validation and backend traces: how many of a window of
drafts a verifier accepts.

`accepted(position, num_drafts, draws)` returns the length of the accepted prefix (0 … num_drafts)
of drafts proposed for output positions position, position+1, …; the verifier then adds one
correction or bonus token of its own. Three models:
- Bernoulli(α): i.i.d. per token (the closed forms' assumption);
- Positional(α_1, α_2, …): the j-th draft of a window is accepted with probability α_j given the
  previous ones were (the last value repeats), i.e. a hazard curve fitted from a histogram;
- Markov(p11, p01): agreement as a two-state chain along output positions, carried across windows:
  P(agree at p | agreed at p-1) = p11, P(agree at p | differed at p-1) = p01. It holds the long accepted
  runs (code) and the clustered rejections that i.i.d. and positional models cannot, with two numbers that
  per-round counts or a histogram suffice to fit (`pipespec.acceptance_fit`);
- Trace: replay of recorded token-level matches between two real models. Under greedy decoding the
  draft's proposal for position p, given the verified prefix, matches the verifier iff trace[p] = 1,
  so a window's accepted prefix is the run of ones starting at p. The recorded sequences are
  concatenated and replayed cyclically (the result records the trace's length), from the start or
  from one prompt's sequence (`start`, the simulator's --trace-sequence). A model-free drafter
  (prompt lookup) also records where it proposes nothing from the verified prefix (`silent`): there
  the verifier decodes alone and the drafter waits for the sequence to change.

`proposes(position)` is False only at such silent positions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import check_probability, require


class Draws:
    """Uniform(0, 1) numbers from one generator, drawn in blocks (a per-call rng.random() is slow)."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng, self._block = rng, block
        self.realised: list[int] = []  # a stateful model's bits by position, drawn once (see Markov)
        # uniform() -> float: the next number, a block drawn whenever the last is used up
        self.uniform: Callable[[], float] = itertools.chain.from_iterable(self._blocks()).__next__

    def _blocks(self) -> Iterator[list[float]]:
        while True:
            yield self._rng.random(self._block).tolist()


class Acceptance(Protocol):
    def accepted(self, position: int, num_drafts: int, draws: Draws) -> int: ...

    def mean_alpha(self) -> float: ...

    def proposes(self, position: int) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Bernoulli:
    alpha: float
    spec: str = field(default="", compare=False, repr=False)  # the text it was parsed from, if any
    _log_alpha: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_probability("alpha", self.alpha)
        object.__setattr__(self, "_log_alpha", math.log(self.alpha) if 0.0 < self.alpha < 1.0 else 0.0)

    def accepted(self, position: int, num_drafts: int, draws: Draws) -> int:
        if self.alpha >= 1.0:
            return num_drafts
        if self.alpha <= 0.0 or num_drafts == 0:
            return 0
        # P(accepted >= k) = α^k  ⇔  accepted = ⌊log u / log α⌋ (inverse CDF of a geometric)
        # (the quotient is >= 0: floor truncates as int() would, without a call to the int type)
        accepted = math.floor(math.log(1.0 - draws.uniform()) / self._log_alpha)
        return accepted if accepted < num_drafts else num_drafts

    def mean_alpha(self) -> float:
        return self.alpha

    def proposes(self, position: int) -> bool:
        return True

    def describe(self) -> str:
        return f"bernoulli({self.alpha:g})"


@dataclass(frozen=True)
class Positional:
    alphas: tuple[float, ...]
    spec: str = field(default="", compare=False, repr=False)
    _last: int = field(init=False, repr=False, compare=False)  # index of the value that repeats

    def __post_init__(self) -> None:
        require(len(self.alphas) > 0, "positional acceptance needs at least one α_j")
        for a in self.alphas:
            check_probability("positional alpha", a)
        object.__setattr__(self, "_last", len(self.alphas) - 1)

    def accepted(self, position: int, num_drafts: int, draws: Draws) -> int:
        alphas, uniform, last = self.alphas, draws.uniform, self._last
        j = 0  # (a while loop: a range object per call costs more than the loop it drives)
        while j < num_drafts and uniform() < alphas[j if j < last else last]:
            j += 1
        return j

    def mean_alpha(self) -> float:
        return float(np.mean(self.alphas))

    def proposes(self, position: int) -> bool:
        return True

    def describe(self) -> str:
        return "positional(" + ",".join(f"{a:.3g}" for a in self.alphas) + ")"


@dataclass(frozen=True)
class Markov:
    """Agreement bits as a two-state Markov chain along output positions (see the module docstring). Each
    pair's run draws one realisation, position by position from its own generator, and every question about a
    position reads it: the bits do not depend on which window asks, as with a replayed trace."""

    p11: float
    p01: float
    spec: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_probability("markov p11 (agree after agree)", self.p11)
        check_probability("markov p01 (agree after differ)", self.p01)
        require(self.p01 > 0 or self.p11 < 1, "markov: p11 = 1 with p01 = 0 has no stationary mix; give p01 > 0")

    @property
    def stationary(self) -> float:
        """Long-run agreement rate π1 = p01 / (1 - p11 + p01)."""
        return self.p01 / (1.0 - self.p11 + self.p01)

    def _bit(self, position: int, draws: Draws) -> int:
        bits = draws.realised
        while len(bits) <= position:
            p = self.stationary if not bits else (self.p11 if bits[-1] else self.p01)
            bits.append(int(draws.uniform() < p))
        return bits[position]

    def accepted(self, position: int, num_drafts: int, draws: Draws) -> int:
        j = 0  # (a while loop: a range object per call costs more than the loop it drives)
        while j < num_drafts and self._bit(position + j, draws):
            j += 1
        return j

    def mean_alpha(self) -> float:
        return self.stationary

    def proposes(self, position: int) -> bool:
        return True

    def describe(self) -> str:
        return f"markov(p11={self.p11:.3g}, p01={self.p01:.3g}, mean {self.stationary:.3f})"


@dataclass(frozen=True)
class Trace:
    bits: tuple[int, ...]
    name: str = "trace"
    silent: tuple[int, ...] = ()  # 1 where the drafter proposes nothing (its bit is then 0); () = never
    starts: tuple[int, ...] = (0,)  # where each prompt's sequence begins in `bits` (they are concatenated)
    spec: str = field(default="", compare=False, repr=False)
    _runs: list[int] = field(init=False, repr=False, compare=False)
    _alpha: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require(len(self.bits) > 0, f"acceptance trace {self.name!r} is empty")
        require(set(self.bits) <= {0, 1}, f"acceptance trace {self.name!r} must hold only 0 and 1")
        require(not self.silent or (len(self.silent) == len(self.bits) and set(self.silent) <= {0, 1}
                                    and not any(b and s for b, s in zip(self.bits, self.silent, strict=True))),
                f"acceptance trace {self.name!r}: silent must be 0/1 per position, and 0 where a draft matched")
        require(self.starts[:1] == (0,) and all(a <= b for a, b in itertools.pairwise(self.starts))
                and self.starts[-1] <= len(self.bits),
                f"acceptance trace {self.name!r}: sequence starts must rise from 0 within its positions")
        n = len(self.bits)
        doubled = list(self.bits) * 2
        runs = [0] * (2 * n + 1)
        for i in range(2 * n - 1, -1, -1):  # runs[i] = consecutive ones from i on, cyclically, at most n
            runs[i] = min(n, runs[i + 1] + 1) if doubled[i] else 0
        object.__setattr__(self, "_runs", runs[:n])
        proposed = [b for b, s in zip(self.bits, self.silent, strict=True) if not s] if self.silent else self.bits
        object.__setattr__(self, "_alpha", float(np.mean(proposed)) if proposed else 0.0)

    def accepted(self, position: int, num_drafts: int, draws: Draws) -> int:
        run = self._runs[position % len(self._runs)]  # (len(_runs) == len(bits))
        return run if run < num_drafts else num_drafts

    def start(self, sequence: int) -> int:
        """Position in the trace of output position 0 of prompt `sequence` (cyclically)."""
        return self.starts[sequence % len(self.starts)]

    def mean_alpha(self) -> float:
        """The match rate where the drafter proposes (all positions for a model)."""
        return self._alpha

    def proposes(self, position: int) -> bool:
        return not self.silent or not self.silent[position % len(self.silent)]

    def describe(self) -> str:
        silent = f", silent at {np.mean(self.silent):.0%}" if self.silent else ""
        return f"trace({self.name}, {len(self.bits)} positions, mean {self.mean_alpha():.3f}{silent})"


def may_be_silent(model: Acceptance) -> bool:
    """Whether the drafter proposes nothing at some position (a replayed model-free drafter's trace)."""
    return isinstance(model, Trace) and bool(model.silent)


def hazard_from_histogram(fractions: Sequence[float]) -> tuple[float, ...]:
    """α_j from a histogram of tokens added per verification (index j = tokens added, bonus included).

    Tokens added N = accepted + 1, so α_j = P(N > j | N ≥ j) for j = 1 … max-1: the probability the
    j-th draft is accepted given the previous ones were.
    """
    p = np.asarray(fractions, dtype=float)
    require(p.ndim == 1 and len(p) >= 3 and np.all(p >= 0) and p.sum() > 0, "histogram must be >= 3 non-negative bins")
    p = p / p.sum()
    survival = np.cumsum(p[::-1])[::-1]  # survival[j] = P(N >= j)
    return tuple(float(survival[j + 1] / survival[j]) for j in range(1, len(p) - 1) if survival[j] > 0)


def parse_acceptance(spec: str, where: str) -> Acceptance:
    """From the CLI/config form: "0.8" (Bernoulli), "pos:0.9,0.8,…" (positional), "markov:P11,P01",
    "trace:FILE[#PAIR]"."""
    from .errors import ConfigError
    from .traces import load_trace

    text = spec.strip()
    try:
        if text.startswith("pos:"):
            return Positional(tuple(float(x) for x in text[4:].split(",")), spec=text)
        if text.startswith("markov:"):
            values = [float(x) for x in text[len("markov:"):].split(",")]
            require(len(values) == 2, f"{where}: markov takes P11,P01 (agree after agree, after differ), got {spec!r}")
            return Markov(*values, spec=text)
        if text.startswith("trace:"):
            path, _, pair = text[6:].partition("#")
            return load_trace(path, pair or None, spec=text)
        return Bernoulli(float(text), spec=text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ValueError:
        raise ConfigError(f"{where}: expected an α in [0, 1], pos:A1,A2,…, markov:P11,P01 or trace:FILE[#PAIR], "
                          f"got {spec!r}") from None
