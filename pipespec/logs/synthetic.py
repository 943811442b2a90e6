"""The reference synchronous chain run forward on known agreement bits: the log it would write. The replay in
`replay.py` inverts it; tests check one against the other."""

from __future__ import annotations

from collections.abc import Sequence

from .records import Request


def synthetic_chain_log(bits: Sequence[Sequence[int]], lookahead: int, num_tokens: int) -> Request:
    """The log the reference chain writes for known agreement bits (bits[pair][p]; a middle pair's bits given the
    final prefix): the forward model of `replay_chain`, for testing it. Tokens are decoded exactly as the
    decoder does, with model i's token at p equal to model i+1's where pair i agrees (and distinct otherwise)."""
    k = len(bits) + 1
    ahead = max(lookahead - 1, 0)

    def token(m: int, prefix: Sequence[object]) -> object:
        p = len(prefix)
        if any(t != ("final", q) for q, t in enumerate(prefix)):
            return ("off", m, tuple(prefix))
        j = m
        while j < k - 1 and bits[j][p]:
            j += 1
        return ("final", p) if j == k - 1 else ("own", j, p)

    seqs: list[list[object]] = [[token(m, [])] for m in range(k)]
    settle_all(seqs)
    added: list[list[int]] = [[] for _ in range(k - 1)]
    drafting = 0
    while len(seqs[-1]) < num_tokens:
        while len(seqs[0]) - len(seqs[1]) < ahead:
            seqs[0].append(token(0, seqs[0]))
            drafting += 1
        for i in range(1, k):
            d, s = seqs[i - 1], seqs[i]
            v = len(s)
            before = v
            if len(d) > v and d[:v] == s:
                j = v
                while j < len(d) and d[j] == token(i, d[:j]):
                    j += 1
                seqs[i] = s = [*d[:j], token(i, d[:j])]
            else:
                s.append(token(i, s))
            added[i - 1].append(len(s) - before)
            if i < k - 1:
                while len(seqs[i]) - len(seqs[i + 1]) < ahead:
                    seqs[i].append(token(i, seqs[i]))
        settle_all(seqs)
    times = tuple(tuple(0.01 for _ in range(n)) for n in [drafting] + [len(added[0])] * (k - 1))
    return Request(len(seqs[-1]), None, tuple(tuple(a) for a in added), (None,) * (k - 1), times)


def settle_all(seqs: list[list[object]]) -> None:
    """Rule 3 on concrete tokens: adopt the last sequence at the first difference."""
    final = seqs[-1]
    for m in range(len(seqs) - 1):
        s = seqs[m]
        if any(a != b for a, b in zip(s, final, strict=False)):
            seqs[m] = list(final)
