"""Counters every run reports, simulated or measured, in the field's conventions (PAPERS.md §5)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class StageStats:
    """Per-stage counters; steps count completed forwards only."""

    name: str
    steps: int = 0
    verify_steps: int = 0
    generate_steps: int = 0
    aborted_steps: int = 0
    tokens_added: int = 0
    tokens_forwarded: int = 0
    busy_s: float = 0.0
    wasted_s: float = 0.0

    def add(self, other: StageStats) -> None:
        """Accumulate another run's counters (e.g. over prompts)."""
        for f in fields(self):
            if f.name != "name":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def count(self, kind: str, fed: int, added: int) -> None:
        """One completed forward (or proposal) of a measured stage: `fed` tokens in, `added` to its sequence;
        kind "generate", "verify" or "forward" (a layer stage's, neither)."""
        self.steps += 1
        self.tokens_forwarded += fed
        self.tokens_added += added
        if kind == "verify":
            self.verify_steps += 1
        elif kind == "generate":
            self.generate_steps += 1


@dataclass(slots=True)
class PairStats:
    """Per adjacent pair draft -> verifier (PAPERS.md §5 conventions)."""

    name: str
    verifications: int = 0
    drafted: int = 0
    accepted: int = 0
    rejections: int = 0  # verifications that ended on a rejected draft
    rollbacks: int = 0
    resyncs: int = 0
    tokens_added_histogram: Counter = field(default_factory=Counter)  # tokens added per verification, bonus incl.

    def add(self, other: PairStats) -> None:
        """Accumulate another run's counters (e.g. over prompts)."""
        for f in fields(self):
            if f.name == "tokens_added_histogram":
                self.tokens_added_histogram.update(other.tokens_added_histogram)
            elif f.name != "name":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def field_metrics(self) -> dict[str, Any]:
        """The names engines report them under (see `acceptance_metrics`)."""
        return acceptance_metrics(self.verifications, self.drafted, self.accepted, self.tokens_added_histogram)

    def record(self, num_drafts: int, accepted: int) -> None:
        """One verification of `num_drafts` drafts of which the first `accepted` were accepted."""
        self.verifications += 1
        self.drafted += num_drafts
        self.accepted += accepted
        if accepted < num_drafts:  # (a branch, not `+= accepted < num_drafts`: int + bool is the slow addition)
            self.rejections += 1
        self.tokens_added_histogram[accepted + 1] += 1

    def judge(self, num_drafts: int, accepted: int) -> None:
        """A measured verification (`record`): a verifier that rejects a draft rolls its drafter back."""
        self.record(num_drafts, accepted)
        self.rollbacks += accepted < num_drafts




def acceptance_metrics(verifications: int, drafted: int, accepted: int,
                       tokens_added_histogram: Mapping[int, int]) -> dict[str, Any]:
    """Acceptance in vLLM's names (SGLang's `avg_spec_accept_length` is `mean_acceptance_length`):
    - draft_acceptance_rate = accepted / drafted (the papers' α when windows are not truncated);
    - mean_acceptance_length = 1 + accepted / verifications (τ, the bonus/correction token included);
    - per_position_acceptance_rate[j-1] = share of verifications whose j-th draft was accepted;
    - acceptance_histogram[k] = verifications that accepted k drafts."""
    by_accepted = {int(added) - 1: int(n) for added, n in tokens_added_histogram.items()}
    longest = max(by_accepted, default=0)
    per_position = [sum(n for k, n in by_accepted.items() if k >= j) / verifications if verifications else None
                    for j in range(1, longest + 1)]
    return {"draft_acceptance_rate": accepted / drafted if drafted else None,
            "mean_acceptance_length": 1 + accepted / verifications if verifications else None,
            "per_position_acceptance_rate": per_position,
            "acceptance_histogram": {str(k): by_accepted[k] for k in sorted(by_accepted)}}


@dataclass
class RunResult:
    """A decoding run's outcome, simulated or measured; summary() gives the field's metrics."""

    scheme: str
    num_tokens: int  # tokens the final stage decided (a last round may pass the requested count)
    elapsed_s: float
    stages: list[StageStats]
    pairs: list[PairStats]
    ar_elapsed_s: float | None = None  # the final model alone on the same inputs
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ms_per_token(self) -> float:
        return self.elapsed_s / self.num_tokens * 1e3

    @property
    def tokens_per_s(self) -> float:
        return self.num_tokens / self.elapsed_s

    @property
    def speedup(self) -> float | None:
        return None if self.ar_elapsed_s is None else self.ar_elapsed_s / self.elapsed_s

    def busy_fraction(self, stage: StageStats) -> float:
        return stage.busy_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @staticmethod
    def rho(stage: StageStats) -> float | None:
        """Fraction of the stage's completed steps that verified (PipeSpec's ρ_i); None for stages that
        neither verify nor generate (layer-pipeline stages)."""
        decided = stage.verify_steps + stage.generate_steps
        return stage.verify_steps / decided if decided else None

    @staticmethod
    def tokens_per_step(stage: StageStats) -> float | None:
        """Tokens the stage appended per completed step (PipeSpec's E[N(M_i)])."""
        decided = stage.verify_steps + stage.generate_steps
        return stage.tokens_added / decided if decided and stage.tokens_added else None

    @staticmethod
    def acceptance_rate(pair: PairStats) -> float | None:
        return pair.accepted / pair.drafted if pair.drafted else None

    @staticmethod
    def alpha_estimate(pair: PairStats) -> float | None:
        """Per-token α under i.i.d. acceptance: accepted / (accepted + rejections), the MLE of a
        geometric truncated by the window (acceptance_rate falls as windows grow; this does not)."""
        trials = pair.accepted + pair.rejections
        return pair.accepted / trials if trials else None

    @staticmethod
    def mean_accepted_length(pair: PairStats) -> float | None:
        """τ = 1 + accepted / verifications: tokens a verification adds, correction/bonus included."""
        return 1 + pair.accepted / pair.verifications if pair.verifications else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict in the field's conventions (ms/token, tokens/s, speedup, α, τ, ρ)."""
        return {
            "scheme": self.scheme,
            "num_tokens": self.num_tokens,
            "elapsed_s": self.elapsed_s,
            "ms_per_token": self.ms_per_token,
            "tokens_per_s": self.tokens_per_s,
            "ar_ms_per_token": None if self.ar_elapsed_s is None else self.ar_elapsed_s / self.num_tokens * 1e3,
            "speedup_over_ar": self.speedup,
            "stages": [
                {"name": s.name, "steps": s.steps, "verify_steps": s.verify_steps, "generate_steps": s.generate_steps,
                 "aborted_steps": s.aborted_steps, "busy_s": s.busy_s, "busy_fraction": self.busy_fraction(s),
                 "wasted_s": s.wasted_s, "rho": self.rho(s), "tokens_per_step": self.tokens_per_step(s),
                 "tokens_forwarded": s.tokens_forwarded}
                for s in self.stages
            ],
            "pairs": [
                {"name": p.name, "verifications": p.verifications, "drafted": p.drafted, "accepted": p.accepted,
                 "acceptance_rate": self.acceptance_rate(p), "alpha_estimate": self.alpha_estimate(p),
                 "mean_accepted_length": self.mean_accepted_length(p),
                 "rollbacks": p.rollbacks, "resyncs": p.resyncs,
                 "tokens_added_histogram": {str(k): v for k, v in sorted(p.tokens_added_histogram.items())},
                 **p.field_metrics()}
                for p in self.pairs
            ],
            "notes": self.notes,
        }
