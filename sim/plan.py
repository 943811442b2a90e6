"""Pipeline-depth capacity planning: which chain, window and placement decodes fastest on these devices?

Candidates, every one ending in the target:
- `ar`: the target alone;
- `sd`: synchronous chains (the target's drafts any ordered subset of the other models), one window γ
  at every level from `gammas`; its stages run one after another, so with `allow_sharing` they share
  one set of devices (without it, every stage has devices of its own, as for PipeSpec);
- `pipespec`: the same chains run asynchronously, each stage verifying what is available, capped at
  each of `max_drafts` (None: all available); placed on dedicated devices, or — with `allow_sharing` —
  with neighbouring stages grouped onto shared devices (every contiguous grouping that fits).
A model needs `devices[model]` devices (default 1); a group of stages needs as many as its largest
member. Every candidate is ranked by the closed forms; the best `finalists` are simulated with the
measured latency profiles and acceptance behaviour, and the final ranking is the simulator's.

The closed forms per scheme (`theory.timing`): SD chains by the mean-rate recursion; PipeSpec by the
final stage's time per token with the window the upstream pipeline can fill during one verification
(γ solving γ = t_target(γ+1) / T_upstream, capped), the upstream pipeline's T by the same rule. A
placement that shares devices gets its dedicated twin's figure, a best case (sharing can only slow a
pipeline), ranked right after that twin; the simulator measures what sharing costs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..acceptance import Acceptance, Bernoulli
from ..errors import require
from ..latency import LatencyModel
from ..schemes import get
from ..theory import timing
from .config import SimConfig
from .run import simulate_seeds


@dataclass(frozen=True)
class Candidate:
    scheme: str
    chain: tuple[str, ...]
    window: int | None  # sd: γ at every level; pipespec: cap on drafts per verification (None: all)
    groups: tuple[int, ...]  # device group of each stage; equal numbers share devices
    devices_used: int
    closed_s: float  # closed-form seconds per token
    sim: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def depth(self) -> int:
        return len(self.chain)

    def placement(self) -> str:
        members: dict[int, list[str]] = {}
        for name, g in zip(self.chain, self.groups, strict=True):
            members.setdefault(g, []).append(name)
        return " | ".join("+".join(m) for m in members.values())


@dataclass(frozen=True)
class Inputs:
    """What planning reads: each model's latency, device needs, pairwise acceptance (typed models: whoever read
    the specs or files parsed them)."""

    latency: Mapping[str, LatencyModel]
    acceptance: Mapping[tuple[str, str], Acceptance]
    target: str
    device_needs: Mapping[str, int]
    context: int = 128

    def t(self, model: str, num_tokens: int) -> float:
        return self.latency[model].median_s(num_tokens, self.context)

    def alpha(self, draft: str, target: str) -> float:
        return self.acceptance[(draft, target)].mean_alpha()


def chains(inputs: Inputs, depths: Sequence[int]) -> tuple[list[tuple[str, ...]], list[str]]:
    """(chains ending in the target whose adjacent pairs all have acceptance data, pairs lacking it)."""
    others = [m for m in inputs.latency if m != inputs.target]
    found, missing = [], set()
    for k in depths:
        for drafts in itertools.permutations(others, k - 1):
            chain = (*drafts, inputs.target)
            lacking = [f"{a}->{b}" for a, b in itertools.pairwise(chain) if (a, b) not in inputs.acceptance]
            if lacking:
                missing.update(lacking)
            else:
                found.append(chain)
    return found, sorted(missing)


def _groupings(depth: int) -> list[tuple[int, ...]]:
    """Contiguous groupings of `depth` stages: (0, 1, 2) dedicated, (0, 0, 1) the first two sharing, ..."""
    out = []
    for cuts in itertools.product((False, True), repeat=depth - 1):
        groups, g = [0], 0
        for cut in cuts:
            g += 1 if cut else 0
            groups.append(g)
        out.append(tuple(groups))
    return out


def _devices_used(chain: Sequence[str], groups: Sequence[int], needs: Mapping[str, int]) -> int:
    per_group: dict[int, int] = {}
    for name, g in zip(chain, groups, strict=True):
        per_group[g] = max(per_group.get(g, 0), needs.get(name, 1))
    return sum(per_group.values())


def sd_seconds(inputs: Inputs, chain: Sequence[str], gamma: int) -> float:
    if len(chain) == 1:
        return inputs.t(chain[0], 1)
    alphas = [inputs.alpha(a, b) for a, b in itertools.pairwise(chain)]
    latencies = [lambda n, m=m: inputs.t(m, n) for m in chain]
    return timing.sd_chain_time_per_token(latencies, alphas, [gamma] * (len(chain) - 1))


def pipespec_seconds(inputs: Inputs, chain: Sequence[str], cap: int | None) -> tuple[float, int]:
    """(seconds per token at the final stage, the window it verifies) for a dedicated-device pipeline."""
    upstream = inputs.t(chain[0], 1)
    gamma = 1
    for draft, verifier in itertools.pairwise(chain):
        alpha = inputs.alpha(draft, verifier)
        limit = cap or 256
        gamma = 1
        for _ in range(32):  # fixed point of γ = t(γ+1) / T_upstream: drafts made while one verification runs
            fill = max(1, min(limit, math.floor(inputs.t(verifier, gamma + 1) / upstream)))
            if fill == gamma:
                break
            gamma = fill
        upstream = float(timing.pipeline_time(alpha, gamma, inputs.t(verifier, 1), inputs.t(verifier, gamma + 1)))
    return upstream, gamma


def enumerate_candidates(inputs: Inputs, depths: Sequence[int], devices: int, gammas: Sequence[int],
                         max_drafts: Sequence[int | None], allow_sharing: bool,
                         schemes: Sequence[str] = ("ar", "sd", "pipespec")) -> list[Candidate]:
    """Every feasible candidate with its closed-form seconds per token, best first."""
    found, _ = chains(inputs, depths)
    out: list[Candidate] = []
    for chain in found:
        if len(chain) == 1:
            used = _devices_used(chain, (0,), inputs.device_needs)
            if "ar" in schemes and used <= devices:
                out.append(Candidate("ar", chain, None, (0,), used, inputs.t(chain[0], 1)))
            continue
        if "sd" in schemes:
            groups = (0,) * len(chain) if allow_sharing else tuple(range(len(chain)))
            used = _devices_used(chain, groups, inputs.device_needs)
            if used <= devices:
                out += [Candidate("sd", chain, g, groups, used, sd_seconds(inputs, chain, g)) for g in gammas]
        if "pipespec" not in schemes:
            continue
        for groups in _groupings(len(chain)):
            shared = len(set(groups)) < len(groups)
            used = _devices_used(chain, groups, inputs.device_needs)
            if (shared and not allow_sharing) or used > devices:
                continue
            for cap in max_drafts:
                seconds = pipespec_seconds(inputs, chain, cap)[0]  # a shared placement's best case
                out.append(Candidate("pipespec", chain, cap, groups, used, seconds))
    return sorted(out, key=lambda c: (c.closed_s, -len(set(c.groups))))


def sim_config(inputs: Inputs, candidate: Candidate, num_tokens: int, seed: int,
               rollback: str = "abort", sharing: str = "queue") -> SimConfig:
    """The simulator's configuration of one candidate (`sharing`: how stages on one device share it)."""
    pairs = list(itertools.pairwise(candidate.chain))
    values: dict[str, Any] = {
        "scheme": candidate.scheme, "latency": tuple(inputs.latency[m] for m in candidate.chain),
        "acceptance": tuple(inputs.acceptance[p] for p in pairs) or (Bernoulli(1.0),), "names": candidate.chain,
        "num_tokens": num_tokens, "prompt_len": inputs.context, "seed": seed, "rollback": rollback,
        "devices": tuple(f"dev{g}" for g in candidate.groups), "device_sharing": sharing}
    values |= get(candidate.scheme).window_values(candidate.window)
    return SimConfig.from_flat(values)


def simulate_finalists(inputs: Inputs, ranked: Sequence[Candidate], finalists: int, num_tokens: int, seeds: int,
                       progress: Callable[[Any], Any] = lambda it: it) -> list[Candidate]:
    """The best `finalists` by closed form, plus the best of every depth (so the AR baseline), simulated;
    ranked by the simulator."""
    chosen = list(ranked[:finalists])
    for depth in sorted({c.depth for c in ranked}):
        best = next(c for c in ranked if c.depth == depth)
        if best not in chosen:
            chosen.append(best)
    ar_s = inputs.t(inputs.target, 1)
    out = []
    for candidate in progress(chosen):
        runs = simulate_seeds(sim_config(inputs, candidate, num_tokens, 0), seeds)
        per_token = sorted(r.elapsed_s / r.num_tokens for r in runs)
        seconds = per_token[len(per_token) // 2]
        final = runs[0].stages[-1]
        out.append(Candidate(candidate.scheme, candidate.chain, candidate.window, candidate.groups,
                             candidate.devices_used, candidate.closed_s,
                             {"ms_per_token": seconds * 1e3, "speedup": ar_s / seconds,
                              "rho": runs[0].rho(final), "tokens_per_step": runs[0].tokens_per_step(final)}))
    return sorted(out, key=lambda c: c.sim["ms_per_token"])


def check_depths(depths: Sequence[int], inputs: Inputs, devices: int, allow_sharing: bool) -> None:
    """One-line errors for depths no plan can meet."""
    models = len(inputs.latency)
    for k in depths:
        require(1 <= k <= models, f"--depth {k}: {models} models are given, so 1 <= depth <= {models}")
    target_needs = inputs.device_needs.get(inputs.target, 1)
    require(target_needs <= devices, f"--devices {devices}: the target {inputs.target} alone needs {target_needs}")
    if not allow_sharing:
        for k in depths:
            least = target_needs + k - 1
            require(least <= devices, f"--depth {k}: {k} stages on devices of their own need at least {least} "
                                      f"devices, --devices is {devices} (add --allow-sharing to co-locate stages)")
