"""The step, verify and rollback helpers every engine shares.

A `Decoder` is one model with its KV cache and its token sequence (prompt + output). `forward`
feeds the tokens not yet cached plus any drafts in one pass and returns the logits that predict
each following position; `keep` appends the accepted drafts and the model's own next token and
crops the cache to what is still valid; `adopt` rolls back (or catches up) to another stage's
sequence by cropping the cache to the common prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .devices import members, primary

if TYPE_CHECKING:
    from ..metrics import StageStats


def synchronize(device: str) -> None:
    """Wait for queued kernels before reading the clock, on every GPU of a device group (CUDA); a no-op on the
    CPU."""
    for member in members(device):
        if member.startswith("cuda"):
            torch.cuda.synchronize(member)


def timed(device: str, stats: StageStats, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), its wall time added to `stats.busy_s`, every GPU of `device` synchronised before the clock is
    read at either end (the one timing of a measured forward)."""
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args)
    synchronize(device)
    stats.busy_s += time.perf_counter() - start
    return out


class Decoder:
    """With `features`, it also keeps `features`: the final (post-norm) hidden state of every cached position, on
    the CPU, what a feature draft (eagle.py) drafts from."""

    def __init__(self, model: torch.nn.Module, device: str, features: bool = False) -> None:
        from transformers import DynamicCache

        self.model, self.device = model, device
        self.features: torch.Tensor | None = torch.zeros(0, model.config.hidden_size) if features else None
        self.input_device = primary(device)  # a device group's first GPU holds the embeddings
        self._cache_cls = DynamicCache
        self.tokens: list[int] = []
        self.cache = DynamicCache(config=model.config)
        self.kv_len = 0  # positions of `tokens` held in the cache

    def reset(self, prompt: Sequence[int]) -> None:
        self.tokens = list(prompt)
        self.cache = self._cache_cls(config=self.model.config)
        self.kv_len = 0
        if self.features is not None:
            self.features = self.features[:0]

    @torch.inference_mode()
    def forward(self, drafts: Sequence[int] = ()) -> torch.Tensor:
        """Logits (len(drafts) + 1, vocab): row j predicts position len(tokens) + j."""
        if self.kv_len >= len(self.tokens):  # the last token must be fed to predict the next one
            self.crop(len(self.tokens) - 1)
        feed = self.tokens[self.kv_len:] + list(drafts)
        ids = torch.tensor([feed], dtype=torch.long, device=self.input_device)  # (1, n)
        if self.features is None:
            out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True)
            self.kv_len += len(feed)
            return out.logits[0, -(len(drafts) + 1):].float()  # (len(drafts) + 1, V)
        hidden = self.model.model(input_ids=ids, past_key_values=self.cache, use_cache=True).last_hidden_state[0]
        self.features = torch.cat([self.features[:self.kv_len], hidden.float().cpu()])
        self.kv_len += len(feed)
        return self.model.lm_head(hidden[-(len(drafts) + 1):]).float()

    def keep(self, drafts: Sequence[int], accepted: int, next_token: int) -> None:
        """Append drafts[:accepted] and next_token; the cache keeps the accepted drafts only."""
        base = len(self.tokens)
        self.tokens.extend(drafts[:accepted])
        self.tokens.append(next_token)
        self.crop(base + accepted)

    def crop(self, length: int) -> None:
        """Rollback: drop cached positions from `length` on (a negative crop removes that many, in
        transformers 4.x and 5.x alike)."""
        if self.kv_len > length:
            self.cache.crop(length - self.kv_len)
            self.kv_len = length
            if self.features is not None:
                self.features = self.features[:length]

    def adopt(self, tokens: Sequence[int]) -> int:
        """Resynchronise to a downstream stage's sequence: crop to the first position that differs and take
        the rest from `tokens`; a sequence that already extends `tokens` is kept. Returns that position."""
        common = common_prefix(self.tokens, tokens)
        if common < len(tokens):
            self.tokens = list(tokens)
            self.crop(min(common, len(tokens) - 1))
        return common


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class Verdict:
    accepted: int  # leading drafts accepted
    next_token: int  # the verifier's own token after them (correction or bonus)


def verify_greedy(logits: torch.Tensor, drafts: Sequence[int]) -> Verdict:
    """Greedy verification: accept drafts while they equal the verifier's argmax."""
    predicted = logits.argmax(dim=-1).tolist()  # (len(drafts) + 1,)
    accepted = 0
    while accepted < len(drafts) and predicted[accepted] == drafts[accepted]:
        accepted += 1
    return Verdict(accepted, predicted[accepted])


def verify_sampling(target_probs: torch.Tensor, draft_probs: torch.Tensor, drafts: Sequence[int],
                    generator: torch.Generator) -> Verdict:
    """Speculative sampling (Leviathan et al. 2023, Alg. 1; Chen et al. 2023): the output is distributed
    exactly as the verifier's own sampling.

    target_probs: (len(drafts) + 1, V), the verifier's p for each position; draft_probs: (len(drafts), V),
    the distribution q each draft token was sampled from.
    """
    for j, token in enumerate(drafts):
        p, q = target_probs[j, token].item(), draft_probs[j, token].item()
        # q <= p: always accept; otherwise accept with probability p / q
        if q <= p or torch.rand((), generator=generator).item() * q < p:
            continue
        residual = torch.clamp(target_probs[j] - draft_probs[j], min=0.0)  # norm(max(0, p − q))
        return Verdict(j, int(torch.multinomial(residual / residual.sum(), 1, generator=generator).item()))
    bonus = torch.multinomial(target_probs[len(drafts)], 1, generator=generator).item()
    return Verdict(len(drafts), int(bonus))


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, dim=-1)
