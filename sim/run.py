"""simulate(config) -> SimResult: builds the stages, devices and random sources, runs the scheme."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import simpy

from ..acceptance import Acceptance, Trace
from ..errors import require
from ..latency import LatencyModel, ScaledLatency
from ..metrics import PairStats, RunResult, StageStats
from ..schedule import Window
from .config import SimConfig
from .engine import Event, LazyDrafter, Pair, Stage, TimeSlicedDevice
from .layerpipe import LayerPipeline, ppsd_controller, specpipe_controller
from .result import SimResult
from .schemes import ar_process, pipespec_process, sd_process


def _stage_plan(config: SimConfig) -> list[tuple[str, LatencyModel]]:
    """(name, latency) of each simulated stage, in pipeline order."""
    names, models = config.model_names, config.latency_models
    if config.scheme == "ar":
        return [(names[-1], models[-1])]
    h, timed = config.head_share, config.stage_latency_models

    def stage(model: LatencyModel, index: int, layers: int, head: bool) -> LatencyModel:
        """A layer stage's latency: as timed, or the model's share: its layers' part of the body, plus the
        head if it has one."""
        if timed:
            return timed[index]
        return ScaledLatency(model, (1 - h) * layers / config.num_layers + (h if head else 0.0))

    if config.scheme == "ppsd":
        layers, last_early = config.ppsd_split
        heads = {last_early, len(layers) - 1}  # the exit head, the model's head
        return [(f"{names[0]}[{sum(layers[:i]) + 1}-{sum(layers[: i + 1])}]",
                 stage(models[0], i, n, i in heads)) for i, n in enumerate(layers)]
    if config.scheme == "specpipe":
        layers = [config.num_layers // config.pp_stages + (1 if i < config.num_layers % config.pp_stages else 0)
                  for i in range(config.pp_stages)]
        return [(names[0], models[0])] + [(f"{names[1]}[stage {i}]", stage(models[1], i, n, i == len(layers) - 1))
                                          for i, n in enumerate(layers)]
    return list(zip(names, models, strict=True))


def _pair_names(config: SimConfig) -> list[str]:
    names = config.model_names
    if config.scheme == "ppsd":
        return [f"{names[0]}@exit{config.exit_layer}->{names[0]}"]
    return [f"{names[i]}->{names[i + 1]}" for i in range(config.num_pairs)]


def simulate(config: SimConfig, with_ar_baseline: bool = True) -> SimResult:
    """Run one simulation; with_ar_baseline also times the final model alone on the same inputs."""
    plan = _stage_plan(config)
    pair_names = _pair_names(config)
    seeds = np.random.SeedSequence(config.seed).spawn(len(plan) + len(pair_names))
    rngs = [np.random.default_rng(s) for s in seeds]
    env = simpy.Environment()
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
        lazy = (config.scheme == "pipespec" and index == 0 and config.lazy_drafter
                and device_names[0] not in shared)
        cls = LazyDrafter if lazy else Stage
        # a pipeline's first drafter may have nothing to propose (a model-free drafter's silent positions)
        proposes = pairs[0].proposes if config.scheme == "pipespec" and index == 0 else None
        stages.append(cls(env, index, name, latency, devices[device_names[index]], rngs[index],
                          config.prompt_len, config.rollback, timeline, proposes))  # type: ignore[arg-type]
    done = env.event()
    _start(config, env, stages, pairs, done)
    env.run(until=done)
    for stage in stages:
        stage.finish(env.now)
    produced = stages[-1].length if config.scheme in ("ar", "sd", "pipespec") else config.num_tokens
    result = SimResult(config.scheme, produced, env.now, [s.stats for s in stages],
                       [p.stats for p in pairs], timeline=timeline)
    result.notes["acceptance"] = [m.describe() for m in config.acceptance_models[: len(pairs)]]
    if config.scheme == "ppsd":
        result.notes["layers_per_stage"] = list(config.ppsd_split[0])
    if with_ar_baseline:
        result.ar_elapsed_s = ar_elapsed_s(config.with_values(num_tokens=produced))
    return result


def _trace_offset(acceptance: Acceptance, config: SimConfig) -> int:
    """Where output position 0 falls in a replayed trace (--trace-sequence, --trace-position); 0 otherwise."""
    if not isinstance(acceptance, Trace):
        return 0
    start = 0 if config.trace_sequence is None else acceptance.start(config.trace_sequence)
    return start + config.trace_position


def _start(config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
           done: simpy.Event) -> None:
    n = config.num_tokens
    if config.scheme == "ar":
        env.process(ar_process(env, stages[0], n, done))
    elif config.scheme == "sd":
        windows = [Window(config.gamma, config.schedule == "dynamic") for _ in pairs]
        env.process(sd_process(env, stages, pairs, windows, n, done, config.coordination == "reference"))
    elif config.scheme == "pipespec":
        for index, stage in enumerate(stages):
            if not isinstance(stage, LazyDrafter):
                stage.process = env.process(pipespec_process(env, stages, pairs, index, config.max_drafts, n, done,
                                                             config.min_drafts, config.coordination))
    elif config.scheme == "ppsd":
        pipeline = LayerPipeline(env, stages, tokens_per_item=1)
        ppsd_controller(env, pipeline, pairs[0], config.ppsd_split[1], n, done)
    else:  # specpipe
        pipeline = LayerPipeline(env, stages[1:], tokens_per_item=config.tree_width)
        stages[0].process = env.process(
            specpipe_controller(env, pipeline, stages[0], pairs[0], config.tree_width, n, done,
                                config.tree_depth))


def ar_elapsed_s(config: SimConfig) -> float:
    """The final model decoding alone (for ppsd/specpipe: the whole model on one device)."""
    baseline = config.with_values(scheme="ar", latency=config.latency[-1:], acceptance=("1",), names=(),
                                  stage_latency=(), devices=(), timeline=False, trace_sequence=None,
                                  trace_position=0)
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
