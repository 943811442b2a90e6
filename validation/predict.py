"""Predictions of measured configurations from a profile and traces alone: the simulator (each prompt from
its own context and trace sequence) and the closed forms."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .setups import ROLLBACK, Setup, Workload, trace_name, window


def planning_inputs(setup: Setup, profile_path: Path, traces_path: Path | None, ngram_s: dict[str, float],
                    context: int, processes: bool = True, acceptance: Sequence[str] | None = None) -> Any:
    """The setup's stages as `sim.plan.Inputs`: latency by profile key (with `processes`, also of each
    SpecPipe process as it runs, where the profile has it); acceptance replayed from the traces, or (given
    `acceptance`) one acceptance spec per pair (an i.i.d. α as "0.85")."""
    from ..profiles import profile_models
    from ..sim.plan import Inputs

    keys = setup.profile_keys()
    latency_spec = {k: (f"{ngram_s[m] * 1e3:.6g}" if m in ngram_s else f"profile:{profile_path}#{k}")
                    for k, m in zip(keys, setup.chain, strict=True)}
    profiled = profile_models(profile_path) if processes and setup.process_parts() else ()
    # a run from before processes were profiled as they run has none: its stages are priced by share
    latency_spec |= {k: f"profile:{profile_path}#{k}" for k in setup.process_keys() if k in profiled}
    pairs = list(zip(itertools.pairwise(keys), itertools.pairwise(setup.chain), strict=True))
    if acceptance is not None:
        acceptance_spec = {p: spec for (p, _), spec in zip(pairs, acceptance, strict=True)}
    else:
        width = setup.trace_pair()[2] if pairs else 1
        acceptance_spec = {p: f"trace:{traces_path}#{trace_name(ma, mb, width if i == len(pairs) - 1 else 1)}"
                           for i, (p, (ma, mb)) in enumerate(pairs)}
    return Inputs.from_specs(latency_spec, acceptance_spec, keys[-1], {}, context)


def closed_form_ms(setup: Setup, inputs: Any, max_lead: int) -> float:
    """The closed forms' decode ms/token: t(1) for AR, the SD-chain recursion, the pipeline's final stage."""
    from ..schemes import get

    return get(setup.scheme).closed_form_s(inputs, setup.profile_keys(), window(setup, max_lead)) * 1e3


Prompts = Sequence[tuple[int, int]]  # (prompt length, output tokens) per prompt: Workload.prompt_shapes()


def predict(setup: Setup, inputs: Any, workload: Workload, prompts: Prompts, seeds: int) -> dict[str, Any]:
    """Simulated (median over seeds, each prompt of `prompts` simulated from its own context and its own
    trace sequence) and closed-form decode ms/token for one setup."""
    from ..sim.plan import Candidate, sim_config
    from ..sim.run import simulate_prompts

    keys = setup.profile_keys()
    if setup.scheme == "ppsd":
        return _predict_ppsd(setup, inputs, prompts, seeds)
    if setup.scheme == "specpipe":
        return _predict_specpipe(setup, inputs, prompts, seeds, device_sharing(workload))
    groups = tuple(range(len(keys)))
    if setup.scheme == "pipespec" and setup.cpus:
        names = list(dict.fromkeys(setup.cpus))
        groups = tuple(names.index(c) for c in setup.cpus)
        # a model-free stage does no device work worth queueing for: give it a device of its own
        groups = tuple(len(names) + i if m.startswith("ngram") else g
                       for i, (m, g) in enumerate(zip(setup.chain, groups, strict=True)))
    candidate = Candidate(setup.scheme, keys, window(setup, workload.max_lead), groups, 0, 0.0)
    num_tokens = sum(n for _, n in prompts)
    config = sim_config(inputs, candidate, num_tokens, 0, ROLLBACK, device_sharing(workload))
    runs = simulate_prompts(config, prompts, seeds)
    alphas = {f"{a}->{b}": inputs.alpha(a, b) for a, b in itertools.pairwise(keys)}
    return {"sim_ms_per_token": statistics.median(r.ms_per_token for r in runs),
            "closed_ms_per_token": closed_form_ms(setup, inputs, workload.max_lead), "trace_alpha": alphas,
            **_sim_counters(runs)}


def _sim_counters(runs: Sequence[Any]) -> dict[str, Any]:
    """The first seed's pair statistics and per-stage counters (steps, verifications, busy time), to set
    beside the backend's."""
    return {"sim_pairs": runs[0].pairs, "sim_stages": runs[0].summary()["stages"]}


def _predict_ppsd(setup: Setup, inputs: Any, prompts: Prompts, seeds: int) -> dict[str, Any]:
    """PPSD over the target's profiled latency: the simulator's layer pipeline (P stages, exit after E)
    replaying the exit's trace, and the derived closed form t_AR / (1 − α(1 − E/N))."""
    from ..backend.models import head_share, num_layers, resolve
    from ..sim.config import SimConfig
    from ..sim.run import simulate_prompts
    from ..theory import ppsd

    exit_key, target_key = setup.profile_keys()
    target = resolve(setup.chain[-1])
    layers = num_layers(target)
    config = SimConfig(scheme="ppsd", latency=(inputs.latency_spec[target_key],),
                       acceptance=(inputs.acceptance_spec[(exit_key, target_key)],), names=(setup.chain[-1],),
                       num_layers=layers, exit_layer=setup.exit_layer, pp_stages=setup.pp_stages,
                       rollback=ROLLBACK, head_share=head_share(target))
    runs = simulate_prompts(config, prompts, seeds)
    alpha = inputs.alpha(exit_key, target_key)
    closed_ms = inputs.t(target_key, 1) * 1e3 / float(ppsd.pipelined_speedup(alpha, setup.exit_layer, layers))
    return {"sim_ms_per_token": statistics.median(r.ms_per_token for r in runs), "closed_ms_per_token": closed_ms,
            "trace_alpha": {f"{exit_key}->{target_key}": alpha}, **_sim_counters(runs)}


def device_sharing(workload: Workload) -> str:
    """How the simulator runs stages placed on one device: the OS time-slices processes pinned to one CPU
    core (each of two runs at half speed), where a GPU's stream would queue their kernels."""
    return "timeslice" if workload.device == "cpu" else "queue"


def _predict_specpipe(setup: Setup, inputs: Any, prompts: Prompts, seeds: int, sharing: str) -> dict[str, Any]:
    """SpecPipe over the profiled draft and target: the simulator's layer pipeline (P target stages, the
    draft growing a level per step, the tree's hit rate replayed from the top-width trace; processes
    pinned to one core share a simulated device, time-sliced on a CPU; each process priced by its own
    profile where the run has one) and the derived T_s·(h + (1 − h)·P) per token, with
    plain pipeline parallelism at h = 0."""
    from ..backend.models import head_share, num_layers, resolve
    from ..sim.config import SimConfig
    from ..sim.run import simulate_prompts
    from ..theory import specpipe

    draft_key, target_key = setup.profile_keys()
    target = resolve(setup.chain[-1])
    plain = setup.tree_depth == 1
    # each process as it runs (Setup.process_parts) where profiled; else the whole models' forwards, by share
    timed = [inputs.latency_spec.get(k) for k in setup.process_keys()]
    drafts, stages = timed[:-setup.pp_stages], timed[-setup.pp_stages:]  # no draft process in plain PP
    stage_latency = tuple(stages) if all(stages) else ()
    draft_latency = drafts[0] if drafts and drafts[0] else inputs.latency_spec[draft_key]
    acceptance = "0" if plain else inputs.acceptance_spec[(draft_key, target_key)]
    names = list(dict.fromkeys(setup.cpus)) if setup.cpus else []
    devices = tuple(f"cpu{c}" for c in setup.cpus) if setup.cpus else ()
    config = SimConfig(scheme="specpipe", latency=(draft_latency, inputs.latency_spec[target_key]),
                       stage_latency=stage_latency,
                       acceptance=(acceptance,), names=setup.chain, num_layers=num_layers(target),
                       pp_stages=setup.pp_stages, tree_width=setup.tree_width, tree_depth=setup.tree_depth,
                       head_share=head_share(target), devices=devices if names else (),
                       device_sharing=sharing, rollback=ROLLBACK)
    runs = simulate_prompts(config, prompts, seeds)
    h = 0.0 if plain else inputs.alpha(draft_key, target_key)
    closed_ms = inputs.t(target_key, 1) * 1e3 / float(specpipe.speedup(h, setup.pp_stages))
    return {"sim_ms_per_token": statistics.median(r.ms_per_token for r in runs), "closed_ms_per_token": closed_ms,
            "trace_alpha": {f"{draft_key}->{target_key}": h}, **_sim_counters(runs)}
