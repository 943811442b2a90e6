"""The PipeSpec reference implementation's synchronous chain (decoding.py, `ChainSpeculativeDecoder`),
replayed round by round from its per-round log, to recover each pair's agreement at every output position.

The log gives, per verification, only the tokens the verifier added. The replay tracks every model's
sequence as symbolic tokens and applies the decoder's rules, so that each logged count becomes bits:

1. Window rule: model 0 drafts one token per step until it is L-1 tokens ahead of model 1; a middle model
   verifies, then drafts until it is L-1 tokens ahead of the next; a verification offers every upstream
   token beyond the verifier's length (so a middle model's window can exceed L-1).
2. A verifier first checks that its upstream's sequence extends its own; if not, it decodes one token
   alone (logged 1) and nothing is learnt of the drafts.
3. After the last model's verification, every lower model compares its sequence with the last model's and
   adopts it at the first difference. One holding a prefix of it (the verifier added a bonus token beyond
   the drafts) is not rolled back: it drafts the bonus position itself, and if its token differs there,
   rule 2 makes the next verification a single-token step.
4. A logged 1 right after a fully accepted window is ambiguous: the drafter's own token at the bonus
   position differed (rule 2), or it agreed and the first draft was rejected. It is read as the likelier,
   the first (probability 1 - α against α(1 - α)); the position after it is then unobserved.
5. A middle model's bits count only where its prefix is the final output: an observation made while the
   middle model's own earlier tokens were still unverified is kept only if the last model later accepts
   those tokens.

A token is FINAL (the last model's), G(i) (model i's greedy token given the final prefix: equal to G(i+1)
where pair i agrees) or unique (decoded from a prefix that left the final output). Position 0 is the
prefill's token. `replay_chain` also counts model 0's drafting steps, which must equal the log's;
`synthetic.synthetic_chain_log` is the forward model it inverts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .records import Request

Label = tuple  # ("F",) | ("G", model) | ("U", serial)
FINAL: Label = ("F",)


@dataclass
class Forward:
    """One logged step of a model, as the replay sees it: tokens fed, its own drafting steps after it (middle
    models log a verification and its drafting steps as one entry), the logged seconds."""

    model: int
    num_tokens: int
    time_s: float
    extra_steps: int = 0


@dataclass
class Replay:
    """What one request's replay recovered. bits[pair][p]: 1 agree, 0 differ, None unobserved."""

    bits: list[list[int | None]]
    forwards: list[Forward]
    drafting_steps: int
    conflicts: int = 0  # logged counts the replayed state could not produce (clamped)
    ambiguous: int = 0  # rule-4 readings
    undetermined: int = 0  # comparisons left open (two unknown bits at once)


@dataclass
class _Chain:
    num_models: int
    seqs: list[list[Label]] = field(default_factory=list)
    base: list[int] = field(default_factory=list)  # seqs[m][:base[m]] are the last model's tokens (FINAL)
    belief: list[dict[int, int]] = field(default_factory=list)
    observed: list[dict[int, list[tuple[int, tuple[tuple[int, Label], ...]]]]] = field(default_factory=list)
    serial: itertools.count = field(default_factory=itertools.count)
    conflicts: int = 0
    ambiguous: int = 0
    undetermined: int = 0

    @property
    def last(self) -> int:
        return self.num_models - 1

    def canonical(self, label: Label, p: int) -> Label:
        if label[0] != "G":
            return label
        i = label[1]
        while i < self.last and self.belief[i].get(p) == 1:
            i += 1
        return FINAL if i == self.last else ("G", i)

    def eq(self, x: Label, y: Label, p: int) -> bool | int:
        """True / False, or the pair whose unknown bit at p decides."""
        x, y = self.canonical(x, p), self.canonical(y, p)
        if x == y:
            return True
        if x[0] == "U" or y[0] == "U":
            return False
        ix, iy = (x[1] if x[0] == "G" else self.last), (y[1] if y[0] == "G" else self.last)
        if ix > iy:
            ix, iy, y = iy, ix, x
        if self.belief[ix].get(p) == 0:
            return False
        if self.canonical(("G", ix + 1), p) == y:
            return ix
        self.undetermined += 1
        return False

    def own_token(self, m: int) -> Label:
        """Model m's greedy token at the end of its sequence."""
        seq = self.seqs[m]
        if m == self.last:
            return FINAL
        for q in range(self.base[m], len(seq)):
            c = self.canonical(seq[q], q)
            if c[0] == "U" or (c[0] == "G" and self.belief[c[1]].get(q) == 0):
                return ("U", next(self.serial))
        return ("G", m)

    def observe(self, verifier: int, draft: Label, own: Label, p: int, bit: int) -> None:
        e = self.eq(draft, own, p)
        if isinstance(e, bool):
            if e != bool(bit):
                self.conflicts += 1
            return
        seq = self.seqs[verifier]
        condition = () if verifier == self.last else tuple((q, seq[q]) for q in range(self.base[verifier], p))
        self.belief[e][p] = bit
        self.observed[e].setdefault(p, []).append((bit, condition))

    def verify(self, i: int, added: int) -> int:
        """Model i verifies model i-1's sequence; returns the tokens its forward fed."""
        drafts_seq, seq = self.seqs[i - 1], self.seqs[i]
        v = len(seq)
        consistent, unknown = len(drafts_seq) >= v, []
        if consistent:
            for p in range(min(self.base[i - 1], self.base[i]), v):
                e = self.eq(drafts_seq[p], seq[p], p)
                if e is False:
                    consistent = False
                    break
                if e is not True:
                    unknown.append((e, p))
        offered = len(drafts_seq) - v if consistent else 0
        if unknown and added == 1 and offered > 0:  # rule 4
            self.ambiguous += 1
            pair, p = unknown[0]
            self.belief[pair][p] = 0
            self.observed[pair].setdefault(p, []).append((0, ()))
            consistent, offered = False, 0
        elif unknown and (added >= 2 or offered == 0):
            for pair, p in unknown:
                if added >= 2:
                    self.belief[pair][p] = 1
                    self.observed[pair].setdefault(p, []).append((1, ()))
        if offered == 0:
            if added != 1:
                self.conflicts += 1
            seq.append(self.own_token(i))
            return 1
        accepted = added - 1
        if accepted > offered:
            self.conflicts += 1
            accepted = offered
        for j in range(accepted):
            p = v + j
            self.observe(i, drafts_seq[p], self.own_token(i), p, 1)
            seq.append(drafts_seq[p])
        if accepted < offered:
            self.observe(i, drafts_seq[v + accepted], self.own_token(i), v + accepted, 0)
        seq.append(self.own_token(i))
        return 1 + offered

    def _purge(self) -> None:
        """Rule 5 as the last model decides: drop observations made on a prefix it has now rejected (and the
        beliefs they set), make those on a prefix it accepted unconditional."""
        for pair, positions in enumerate(self.observed):
            for p, observations in positions.items():
                if not any(cond for _, cond in observations):
                    continue
                kept = []
                for bit, cond in observations:
                    states = [self.canonical(lbl, q) for q, lbl in cond]
                    if any(s[0] == "U" or (s[0] == "G" and self.belief[s[1]].get(q) == 0)
                           for s, (q, _) in zip(states, cond, strict=True)):
                        continue
                    kept.append((bit, () if all(s == FINAL for s in states) else cond))
                positions[p] = kept
                if kept:
                    self.belief[pair][p] = kept[-1][0]
                else:
                    self.belief[pair].pop(p, None)

    def settle(self) -> list[int]:
        """Rule 3: lower models adopt the last model's sequence at their first difference. Returns, per model,
        the tokens its next forward feeds (re-fed from the difference on), 0 where it kept its sequence."""
        if self.num_models > 2:
            self._purge()
        final = self.seqs[-1]
        feeds = [0] * self.num_models
        for m in range(self.last):
            seq = self.seqs[m]
            diverged = None
            for p in range(self.base[m], min(len(seq), len(final))):
                e = self.eq(seq[p], FINAL, p)
                if e is False:
                    diverged = p
                    break
                if e is not True and p == len(seq) - 1:
                    seq[p] = FINAL  # its last token: equal, or adopted from here: FINAL either way
            if diverged is not None:
                self.seqs[m] = list(final)
                self.base[m] = len(final)
                feeds[m] = len(final) - diverged + 1
        return feeds

    def final_bits(self, length: int) -> list[list[int | None]]:
        """Rule 5 applied, then each position's majority over its kept observations."""
        out = []
        for pair in range(self.last):
            bits: list[int | None] = [None] * length
            for p, observations in self.observed[pair].items():
                kept = [b for b, cond in observations if all(self.canonical(lbl, q) == FINAL for q, lbl in cond)]
                if kept and p < length:
                    bits[p] = 1 if 2 * sum(kept) > len(kept) else 0
            out.append(bits)
        return out


def replay_chain(request: Request, lookahead: int, num_models: int) -> Replay:
    """Replay one request of a synchronous reference chain at `lookahead` (see the module docstring)."""
    chain = _Chain(num_models)
    chain.belief = [{} for _ in range(num_models - 1)]
    chain.observed = [{} for _ in range(num_models - 1)]
    chain.seqs = [[FINAL if m == num_models - 1 else ("G", m)] for m in range(num_models)]  # the prefill's token
    chain.base = [1 if m == num_models - 1 else 0 for m in range(num_models)]
    ahead = max(lookahead - 1, 0)
    feeds = chain.settle()
    forwards: list[Forward] = []
    times = request.model_times_s
    steps = 0
    rounds = len(request.added[-1])
    for r in range(rounds):
        while (len(chain.seqs[0]) - len(chain.seqs[1]) < ahead
               or (ahead == 0 and len(chain.seqs[0]) < len(chain.seqs[1]))):
            fed = feeds[0] or 1
            feeds[0] = 0
            chain.seqs[0].append(chain.own_token(0))
            if steps < len(times[0]):
                forwards.append(Forward(0, fed, times[0][steps]))
            steps += 1
        for i in range(1, num_models):
            fed = chain.verify(i, request.added[i - 1][r] if r < len(request.added[i - 1]) else 1)
            extra = 0
            if i < num_models - 1:
                while len(chain.seqs[i]) - len(chain.seqs[i + 1]) < ahead:
                    chain.seqs[i].append(chain.own_token(i))
                    extra += 1
            if r < len(times[i]):
                forwards.append(Forward(i, fed, times[i][r], extra))
        feeds = chain.settle()
    length = max(len(chain.seqs[-1]), request.tokens_generated)
    return Replay(chain.final_bits(length), forwards, steps, chain.conflicts, chain.ambiguous, chain.undetermined)


def replay_rounds(request: Request) -> Replay:
    """A per-round JSONL log: each step offered `drafted` drafts right after the verified prefix (the drafter
    saw every bonus token), so bits run from the step's first position: `accepted` ones, then a 0 if it
    stopped short. Steps without drafts observe nothing."""
    drafted = request.drafted[0] or ()
    length = 1 + sum(request.added[0])
    bits: list[int | None] = [None] * max(length, request.tokens_generated)
    verify_s = request.model_times_s[1] if len(request.model_times_s) > 1 else ()
    forwards = []
    position = 1  # position 0 comes from the prefill
    for j, (offered, added) in enumerate(zip(drafted, request.added[0], strict=True)):
        accepted = added - 1
        for q in range(accepted):
            bits[position + q] = 1
        if accepted < offered:
            bits[position + accepted] = 0
        if j < len(verify_s):
            forwards.append(Forward(1, 1 + offered, verify_s[j]))
        position += added
    return Replay([bits], forwards, 0)
