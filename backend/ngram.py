"""A model-free drafter: prompt lookup. The longest recent n-gram (n ≤ N, down to 1) of the sequence
that occurred earlier is looked up and the tokens that followed it are proposed. It shines when the
output copies the input (summaries, code edits); elsewhere it proposes nothing and costs nothing."""

from __future__ import annotations

from collections.abc import Sequence


class NgramDrafter:
    def __init__(self, max_ngram: int = 3) -> None:
        self.max_ngram = max_ngram
        self.tokens: list[int] = []

    def reset(self, prompt: Sequence[int]) -> None:
        self.tokens = list(prompt)

    def propose(self, count: int) -> list[int]:
        """Up to `count` tokens continuing the sequence (possibly none)."""
        tokens = self.tokens
        for n in range(min(self.max_ngram, len(tokens) - 1), 0, -1):
            tail = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):  # most recent earlier occurrence first
                if tokens[start:start + n] == tail:
                    follow = tokens[start + n:start + n + count]
                    if follow:
                        return follow
        return []

    def adopt(self, tokens: Sequence[int]) -> int:
        from .decoding import common_prefix

        common = common_prefix(self.tokens, tokens)
        if common < len(tokens):
            self.tokens = list(tokens)
        return common
