"""Synchronous engines over one process: `ar` (the target alone) and `sd` (a chain of k >= 2 stages,
each verifying its neighbour's window of drafts; k = 2 is classic speculative decoding).

Both share the stage helpers of stages.py. Greedy decoding is lossless: the output equals the
target's own greedy output token for token. With temperature > 0 every verification is speculative
sampling, so the output is distributed as the target's own samples.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..metrics import PairStats, StageStats
from ..schedule import Window
from .stages import FeatureStage, ModelStage, NgramStage, Stage


@dataclass(frozen=True)
class DecodeOptions:
    max_new_tokens: int = 128
    gamma: int = 5
    dynamic_window: bool = False
    max_drafts: int | None = None  # pipespec: cap on drafts one verification scores
    max_lead: int = 32  # pipespec: tokens a stage may run ahead of its verifier before it waits
    eos_token_id: int | None = None


@dataclass
class PromptResult:
    """One prompt's decoding: the new tokens, wall time, time to first token and the counters."""

    output: list[int]
    elapsed_s: float
    ttft_s: float
    stages: list[StageStats]
    pairs: list[PairStats] = field(default_factory=list)


class Output:
    """The final stage's new tokens: stops at EOS or the token limit, remembers the first token's time."""

    def __init__(self, prompt_len: int, options: DecodeOptions, started: float) -> None:
        self.prompt_len, self.options, self.started = prompt_len, options, started
        self.ttft_s: float | None = None

    def done(self, tokens: Sequence[int]) -> bool:
        new = tokens[self.prompt_len:]
        if new and self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.started
        eos = self.options.eos_token_id
        return len(new) >= self.options.max_new_tokens or (eos is not None and eos in new)

    def tokens(self, tokens: Sequence[int]) -> list[int]:
        new = list(tokens[self.prompt_len:])
        eos = self.options.eos_token_id
        if eos is not None and eos in new:
            new = new[: new.index(eos) + 1]
        return new[: self.options.max_new_tokens]


def decode_ar(stages: Sequence[Stage], prompt: Sequence[int], options: DecodeOptions) -> PromptResult:
    """The final model alone: one forward per token."""
    target = stages[-1]
    assert isinstance(target, ModelStage)
    target.reset(prompt)
    started = time.perf_counter()
    output = Output(len(prompt), options, started)
    while not output.done(target.tokens):
        target.generate()
    return PromptResult(output.tokens(target.tokens), time.perf_counter() - started, output.ttft_s or 0.0,
                        [target.stats])


def decode_sd(stages: Sequence[Stage], prompt: Sequence[int], options: DecodeOptions) -> PromptResult:
    """A synchronous chain: stage i verifies a window of γ drafts from stage i-1 per round; lower stages
    resynchronise to the verifier's output before drafting again."""
    for stage in stages:
        stage.reset(prompt)
    pairs = [PairStats(f"{a.name}->{b.name}") for a, b in itertools.pairwise(stages)]
    windows = [Window(options.gamma, options.dynamic_window) for _ in pairs]
    final = len(stages) - 1
    started = time.perf_counter()
    output = Output(len(prompt), options, started)

    def extend(level: int, target_length: int) -> None:
        stage = stages[level]
        while len(stage.tokens) < target_length and not (level == final and output.done(stage.tokens)):
            below = stages[level - 1]
            if isinstance(below, FeatureStage):  # it drafts from this stage's hidden states
                assert isinstance(stage, ModelStage) and stage.features is not None
                below.observe(stage.tokens, stage.probs, stage.features)
                if not below.ready:  # nothing verified yet: this stage's prefill makes the first token
                    stage.generate()
                    continue
            else:
                below.adopt(stage.tokens, getattr(stage, "probs", ()))
            base, window = len(stage.tokens), windows[level - 1].gamma
            if isinstance(below, NgramStage):
                drafts, draft_probs = below.propose(window), [None] * window
            else:
                if level - 1 == 0:
                    while len(below.tokens) < base + window:
                        below.generate()
                else:
                    extend(level - 1, base + window)
                drafts, draft_probs = below.tokens[base:base + window], below.probs[base:base + window]
            verdict = stage.verify(drafts, draft_probs[: len(drafts)])
            pairs[level - 1].record(len(drafts), verdict.accepted)
            pairs[level - 1].rollbacks += verdict.accepted < len(drafts)
            windows[level - 1].update(verdict.accepted == len(drafts))

    extend(final, 1 << 62)
    target = stages[final]
    return PromptResult(output.tokens(target.tokens), time.perf_counter() - started, output.ttft_s or 0.0,
                        [s.stats for s in stages], pairs)
