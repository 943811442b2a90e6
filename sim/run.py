"""simulate(config) -> SimResult: builds the stages, devices and random sources, runs the scheme."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import simpy

from ..acceptance import Acceptance, Bernoulli, Trace, may_be_silent
from ..errors import require
from ..metrics import PairStats, RunResult, StageStats
from .clock import Clock
from .config import SimConfig
from .drafter import LazyDrafter
from .engine import Stage
from .pairs import Pair
from .result import Event, SimResult
from .sharing import TimeSlicedDevice


def simulate(config: SimConfig, with_ar_baseline: bool = True) -> SimResult:
    """Run one simulation; with_ar_baseline also times the final model alone on the same inputs."""
    scheme = config.scheme_info
    plan = scheme.stage_plan(config)
    pair_names = scheme.pair_names(config)
    seeds = np.random.SeedSequence(config.seed).spawn(len(plan) + len(pair_names))
    rngs = [np.random.default_rng(s) for s in seeds]
    env = Clock()
    timeline: list[Event] | None = [] if config.timeline else None
    device_names = list(config.devices) or [f"dev{i}" for i in range(len(plan))]
    shared = {name for name in device_names if device_names.count(name) > config.device_capacity}
    share = TimeSlicedDevice if config.device_sharing == "timeslice" else simpy.Resource
    devices = {name: share(env, capacity=config.device_capacity) if name in shared else None
               for name in dict.fromkeys(device_names)}

    models = config.acceptance_models[: len(pair_names)]
    pairs = [Pair(name, model, rngs[len(plan) + i], _trace_offset(model, config))
             for i, (name, model) in enumerate(zip(pair_names, models, strict=True))]
    stages: list[Stage] = []
    for index, (name, latency) in enumerate(plan):
        lazy = index == 0 and scheme.lazy_first_stage(config) and device_names[0] not in shared
        cls = LazyDrafter if lazy else Stage
        # a pipeline's first drafter may have nothing to propose (a model-free drafter's silent positions)
        silent = index == 0 and scheme.first_stage_may_be_silent() and may_be_silent(pairs[0].acceptance)
        proposes = pairs[0].proposes if silent else None
        stages.append(cls(env, index, name, latency, devices[device_names[index]], rngs[index],
                          config.prompt_len, config.rollback, timeline, proposes))  # type: ignore[arg-type]
    done = env.event()
    scheme.start(config, env, stages, pairs, done)
    env.run(until=done)
    for stage in stages:
        stage.finish(env.now)
    produced = scheme.produced(config, stages)
    result = SimResult(config.scheme, produced, env.now, [s.stats for s in stages],
                       [p.stats for p in pairs], timeline=timeline)
    result.notes["acceptance"] = [m.describe() for m in config.acceptance_models[: len(pairs)]]
    result.notes |= scheme.notes(config)
    if with_ar_baseline:
        result.ar_elapsed_s = ar_elapsed_s(config.with_values(num_tokens=produced))
    return result


def _trace_offset(acceptance: Acceptance, config: SimConfig) -> int:
    """Where output position 0 falls in a replayed trace (--trace-sequence, --trace-position); 0 otherwise."""
    if not isinstance(acceptance, Trace):
        return 0
    start = 0 if config.trace_sequence is None else acceptance.start(config.trace_sequence)
    return start + config.trace_position


def ar_elapsed_s(config: SimConfig) -> float:
    """The final model decoding alone (for ppsd/specpipe: the whole model on one device)."""
    baseline = config.with_values(scheme="ar", latency=config.latency[-1:], acceptance=(Bernoulli(1.0),), names=(),
                                  stage_latency=(), devices=(), timeline=False, trace_sequence=None,
                                  trace_position=0)
    return _ar_elapsed_s(baseline)


@functools.lru_cache(maxsize=256)
def _ar_elapsed_s(baseline: SimConfig) -> float:
    """One AR baseline per distinct configuration (its latency model by value): the points of a sweep over the
    other models' options share it."""
    return simulate(baseline, with_ar_baseline=False).elapsed_s


def simulate_seeds(config: SimConfig, seeds: int) -> list[SimResult]:
    """The same configuration at seeds 0 .. seeds - 1 (no AR baseline): replicates for medians and CIs."""
    return [simulate(config.with_values(seed=seed), with_ar_baseline=False) for seed in range(seeds)]


def prompt_replay(config: SimConfig, prompt: int) -> dict[str, int]:
    """The options that replay prompt `prompt`'s traces from its second output token (its first comes from the
    prefill); none when no acceptance is a trace."""
    if any(isinstance(m, Trace) for m in config.acceptance_models):
        return {"trace_sequence": prompt, "trace_position": 1}
    return {}


def simulate_prompts(config: SimConfig, prompts: Sequence[tuple[int, int]], seeds: int) -> list[RunResult]:
    """A prompt set decoded as the backend decodes and measures it, once per seed.

    prompts: (prompt length, output tokens) of each prompt, in the order of the acceptance traces'
    sequences. Prompt k is simulated alone from its second output token on (the first comes from the
    prefill, which the backend's decode time leaves out; the first forward feeds it over the prompt's
    context) and its traces replay from that prompt's sequence. Per seed: the total time over the total tokens
    counted (a last verification may pass a prompt's count; its time counts, its extra tokens do not, as
    the backend truncates them), with stage and pair counters summed over the prompts."""
    results = []
    for seed in range(seeds):
        total: RunResult | None = None
        for k, (prompt_len, new_tokens) in enumerate(prompts):
            if new_tokens < 2:
                continue
            one = simulate(config.with_values(seed=seed * len(prompts) + k, prompt_len=prompt_len,
                                              num_tokens=new_tokens - 1, **prompt_replay(config, k)),
                           with_ar_baseline=False)
            if total is None:
                total = RunResult(config.scheme, 0, 0.0, [StageStats(s.name) for s in one.stages],
                                  [PairStats(p.name) for p in one.pairs])
            total.num_tokens += new_tokens - 1
            total.elapsed_s += one.elapsed_s
            for stage, more in zip(total.stages, one.stages, strict=True):
                stage.add(more)
            for pair, more in zip(total.pairs, one.pairs, strict=True):
                pair.add(more)
        require(total is not None, "simulate_prompts: no prompt has 2 or more output tokens")
        results.append(total)
    return results
