"""A chain's stages as the engines see them: a model (Decoder) that drafts, verifies and rolls back, or
the model-free n-gram drafter. Both record the per-stage counters every run reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..metrics import StageStats
from .decoding import Decoder, Verdict, probabilities, timed, verify_greedy, verify_sampling
from .eagle import FeatureDraft, FeatureDrafter
from .ngram import NgramDrafter


@dataclass
class Sampler:
    """Greedy at temperature 0, else sampling with one seeded generator per stage."""

    temperature: float
    generator: torch.Generator = field(default_factory=torch.Generator)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def choose(self, logits: torch.Tensor) -> tuple[int, torch.Tensor | None]:
        """(token, its distribution) from one row of logits."""
        if self.greedy:
            return int(logits.argmax().item()), None
        probs = probabilities(logits, self.temperature)
        return int(torch.multinomial(probs, 1, generator=self.generator).item()), probs


class ModelStage:
    """One model of the chain. `probs[i]` is the distribution token i was drawn from (sampling only)."""

    def __init__(self, name: str, decoder: Decoder, sampler: Sampler) -> None:
        self.name, self.decoder, self.sampler = name, decoder, sampler
        self.stats = StageStats(name)
        self.probs: list[torch.Tensor | None] = []

    @property
    def models(self) -> list[torch.nn.Module]:
        """What it loaded (the run's result records them: `devices.loaded_facts`)."""
        return [self.decoder.model]

    @property
    def tokens(self) -> list[int]:
        return self.decoder.tokens

    @property
    def features(self) -> torch.Tensor | None:
        """Its final hidden state at positions 0..len(tokens) - 2 (built with `features`), else None."""
        return self.decoder.features

    def reset(self, prompt: Sequence[int]) -> None:
        self.decoder.reset(prompt)
        self.probs = [None] * len(prompt)

    def _forward(self, drafts: Sequence[int]) -> tuple[torch.Tensor, int]:
        """(logits, tokens fed): the uncached tokens and the drafts in one timed forward."""
        fed = len(self.tokens) - self.decoder.kv_len + len(drafts)
        return timed(self.decoder.device, self.stats, self.decoder.forward, drafts), fed

    def generate(self) -> int:
        """One token of its own (an autoregressive step)."""
        logits, fed = self._forward(())
        token, probs = self.sampler.choose(logits[0])
        self.decoder.keep((), 0, token)
        self.probs.append(probs)
        self.stats.count("generate", fed, 1)
        return token

    def verify(self, drafts: Sequence[int], draft_probs: Sequence[torch.Tensor | None]) -> Verdict:
        """Score drafts in one forward, keep the accepted prefix plus its own next token."""
        logits, fed = self._forward(drafts)
        if self.sampler.greedy:
            verdict = verify_greedy(logits, drafts)
            own = [None] * (verdict.accepted + 1)
        else:
            p = probabilities(logits, self.sampler.temperature)  # (n + 1, V)
            q = torch.stack([_as_probs(d, t, p.shape[-1]) for d, t in zip(draft_probs, drafts, strict=True)]) \
                if drafts else p[:0]
            verdict = verify_sampling(p, q, drafts, self.sampler.generator)
            own = [p[j] for j in range(verdict.accepted + 1)]  # what this stage would have drawn each from
        self.decoder.keep(drafts, verdict.accepted, verdict.next_token)
        self.probs.extend(own)
        self.stats.count("verify", fed, verdict.accepted + 1)
        return verdict

    def adopt(self, tokens: Sequence[int], probs: Sequence[torch.Tensor | None]) -> int:
        common = self.decoder.adopt(tokens)
        if common < len(tokens):
            self.probs = self.probs[:common] + list(probs[common:])
        return common


class FeatureStage:
    """A feature draft (eagle.py) as stage 0: it drafts from its verifier's hidden states, which `observe` hands
    it with the verifier's sequence; until it holds them for the whole prefix (`ready`) it cannot draft."""

    def __init__(self, name: str, drafter: FeatureDrafter, sampler: Sampler) -> None:
        self.name, self.drafter, self.sampler = name, drafter, sampler
        self.stats = StageStats(name)
        self.probs: list[torch.Tensor | None] = []
        self.models: list[torch.nn.Module] = [drafter.draft]

    @property
    def tokens(self) -> list[int]:
        return self.drafter.tokens

    @property
    def ready(self) -> bool:
        return self.drafter.ready

    def reset(self, prompt: Sequence[int]) -> None:
        self.drafter.reset(prompt)
        self.probs = [None] * len(prompt)

    def observe(self, tokens: Sequence[int], probs: Sequence[torch.Tensor | None], rows: torch.Tensor,
                rows_from: int = 0) -> int:
        """Resynchronise to the verifier's sequence with its features `rows` (positions rows_from on)."""
        common = self.drafter.observe(tokens, rows, rows_from)
        if common < len(tokens):
            self.probs = self.probs[:common] + list(probs[common:])
        return common

    def generate(self) -> int:
        fed = len(self.tokens) - 1 - self.drafter.slice.length
        logits = timed(self.drafter.device, self.stats, self.drafter.step)
        token, probs = self.sampler.choose(logits)
        self.drafter.append(token)
        self.probs.append(probs)
        self.stats.count("generate", fed, 1)
        return token


class NgramStage:
    """Prompt lookup as stage 0: proposes what followed the last n-gram; one-hot distributions."""

    def __init__(self, name: str, drafter: NgramDrafter) -> None:
        self.name, self.drafter = name, drafter
        self.stats = StageStats(name)
        self.models: list[torch.nn.Module] = []  # model-free

    @property
    def tokens(self) -> list[int]:
        return self.drafter.tokens

    def reset(self, prompt: Sequence[int]) -> None:
        self.drafter.reset(prompt)

    def propose(self, count: int) -> list[int]:
        drafts = timed("cpu", self.stats, self.drafter.propose, count)
        self.stats.count("generate", 0, len(drafts))
        return drafts

    def adopt(self, tokens: Sequence[int], probs: Sequence[torch.Tensor | None]) -> int:
        return self.drafter.adopt(tokens)


def _as_probs(probs: torch.Tensor | None, token: int, vocab: int) -> torch.Tensor:
    """A draft's distribution; None means the draft was deterministic (one-hot on its token)."""
    if probs is not None:
        return probs
    one_hot = torch.zeros(vocab)
    one_hot[token] = 1.0
    return one_hot


Stage = ModelStage | FeatureStage | NgramStage


def build_stage(ref: object, name: str, device: str, temperature: float, seed: int = 0,
                dtype: str = "float32", quantize: str = "none", features: bool = False) -> Stage:
    """Load a --chain entry as a stage (model, feature draft or n-gram drafter), its weights in `dtype` or
    quantised; with `features` a model stage keeps its hidden states for the feature draft below it."""
    from .loading import load_model

    loaded = load_model(ref, device, dtype, quantize)  # type: ignore[arg-type]
    if isinstance(loaded, NgramDrafter):
        return NgramStage(name, loaded)
    sampler = Sampler(temperature, torch.Generator().manual_seed(seed))
    if isinstance(loaded, FeatureDraft):
        return FeatureStage(name, FeatureDrafter(loaded, device), sampler)
    return ModelStage(name, Decoder(loaded, device, features), sampler)


def feeds_features(refs: Sequence[object], index: int) -> bool:
    """Whether stage `index` verifies a feature draft (so keeps its hidden states for it)."""
    from .models import is_feature_draft

    return index > 0 and is_feature_draft(getattr(refs[index - 1], "path", None))
