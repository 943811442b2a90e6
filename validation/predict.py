"""Predictions of measured configurations from a profile and traces alone: the simulator (each prompt from
its own context and trace sequence) and the closed forms."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import require
from ..schemes import get
from .setups import ROLLBACK, Setup, Workload, trace_name

if TYPE_CHECKING:
    from ..acceptance import Acceptance
    from ..metrics import PairStats, RunResult
    from ..sim.plan import Inputs


def planning_inputs(setup: Setup, profile_path: Path, traces_path: Path | None, ngram_s: dict[str, float],
                    context: int, processes: bool = True, acceptance: Sequence[Acceptance] | None = None) -> Inputs:
    """The setup's stages as `sim.plan.Inputs`: latency by profile key (with `processes`, also of each
    SpecPipe process as it runs, where the profile has it); acceptance replayed from the traces, or (given
    `acceptance`) one model per pair."""
    from ..latency import ConstantLatency
    from ..profiles import pick_profile, read_profiles
    from ..sim.plan import Inputs
    from ..traces import load_trace

    keys = setup.profile_keys()
    profiled = read_profiles(profile_path)
    latency = {k: (ConstantLatency(ngram_s[m]) if m in ngram_s else pick_profile(profiled, profile_path, k))
               for k, m in zip(keys, setup.chain, strict=True)}
    if processes and setup.process_parts():
        # a run from before processes were profiled as they run has none: its stages are priced by share
        latency |= {k: pick_profile(profiled, profile_path, k) for k in setup.process_keys() if k in profiled}
    pairs = list(zip(itertools.pairwise(keys), itertools.pairwise(setup.chain), strict=True))
    if acceptance is not None:
        models = {p: model for (p, _), model in zip(pairs, acceptance, strict=True)}
    else:
        require(traces_path is not None or not pairs, "planning_inputs: a chain's acceptance needs traces")
        width = setup.trace_pair()[2] if pairs else 1
        models = {p: load_trace(traces_path, trace_name(ma, mb, width if i == len(pairs) - 1 else 1))  # type: ignore[arg-type]
                  for i, (p, (ma, mb)) in enumerate(pairs)}
    return Inputs(latency, models, keys[-1], {}, context)


def closed_form_ms(setup: Setup, inputs: Inputs, max_lead: int) -> float:
    """The closed forms' decode ms/token: t(1) for AR, the SD-chain recursion, the pipeline's final stage."""
    scheme = get(setup.scheme)
    return scheme.closed_form_s(inputs, setup.profile_keys(), scheme.drafts_scored(setup, max_lead)) * 1e3


Prompts = Sequence[tuple[int, int]]  # (prompt length, output tokens) per prompt: Workload.prompt_shapes()


class SimCounters(TypedDict):
    """The first seed's pair statistics and stage rows (RunResult.summary()'s), beside the backend's."""

    sim_pairs: list[PairStats]
    sim_stages: list[dict[str, Any]]


class Prediction(SimCounters):
    """One setup's predicted decode ms/token and what the first seed's simulation counted (validate's columns)."""

    sim_ms_per_token: float  # median over seeds
    closed_ms_per_token: float
    trace_alpha: dict[str, float]  # the acceptance replayed, by pair "A->B"


def predict(setup: Setup, inputs: Inputs, workload: Workload, prompts: Prompts, seeds: int) -> Prediction:
    """Simulated (median over seeds, each prompt of `prompts` simulated from its own context and its own
    trace sequence) and closed-form decode ms/token for one setup, as its scheme predicts it."""
    return get(setup.scheme).predict(setup, inputs, workload, prompts, seeds)


def predict_chain(setup: Setup, inputs: Inputs, workload: Workload, prompts: Prompts, seeds: int) -> Prediction:
    """A chain of whole models (AR, SD, PipeSpec): the simulator with the planner's configuration of the
    setup (models on one device share it: `stage_groups`) and the chain's closed form."""
    from ..sim.plan import Candidate, sim_config
    from ..sim.run import simulate_prompts

    keys = setup.profile_keys()
    groups = stage_groups(setup, workload)
    window = get(setup.scheme).drafts_scored(setup, workload.max_lead)
    candidate = Candidate(setup.scheme, keys, window, groups, 0, 0.0)
    num_tokens = sum(n for _, n in prompts)
    config = sim_config(inputs, candidate, num_tokens, 0, ROLLBACK, device_sharing(workload))
    runs = simulate_prompts(config, prompts, seeds)
    alphas = {f"{a}->{b}": inputs.alpha(a, b) for a, b in itertools.pairwise(keys)}
    return Prediction(sim_ms_per_token=statistics.median(r.ms_per_token for r in runs),
                      closed_ms_per_token=closed_form_ms(setup, inputs, workload.max_lead), trace_alpha=alphas,
                      **sim_counters(runs))


def stage_groups(setup: Setup, workload: Workload) -> tuple[int, ...]:
    """The simulated device of each model of a chain, as `sim.plan.Candidate` numbers them: on a GPU all share
    the one device (cores pin host threads only); on the CPU, models pinned to one core share it, unpinned ones
    get one each; a model-free stage does no device work worth queueing for and always gets its own."""
    chain = setup.chain
    if on_accelerator(workload):
        groups = [0] * len(chain)
    elif setup.cpus:
        names = list(dict.fromkeys(setup.cpus))
        groups = [names.index(c) for c in setup.cpus]
    else:
        return tuple(range(len(chain)))
    offset = max(groups) + 1
    return tuple(offset + i if m.startswith("ngram") else g for i, (m, g) in enumerate(zip(chain, groups, strict=True)))


def sim_counters(runs: Sequence[RunResult]) -> SimCounters:
    """The first seed's pair statistics and per-stage counters (steps, verifications, busy time), to set
    beside the backend's."""
    return SimCounters(sim_pairs=runs[0].pairs, sim_stages=runs[0].summary()["stages"])


def on_accelerator(workload: Workload) -> bool:
    """Whether the runs' models are on a GPU (`--device cuda:N`): every stage's forwards then share it."""
    return workload.device != "cpu"


def layer_stage_devices(setup: Setup, workload: Workload, stages: int) -> tuple[str, ...]:
    """The simulated device of each of a layer pipeline's `stages` processes: on a GPU all one; on the CPU the
    core each is pinned to (processes on one core share it), or () where they are not pinned (a core each)."""
    if on_accelerator(workload):
        return (workload.device,) * stages
    return tuple(f"cpu{c}" for c in setup.cpus) if setup.cpus else ()


def device_sharing(workload: Workload) -> str:
    """How the simulator runs stages placed on one device: the OS time-slices processes pinned to one CPU
    core (each of two runs at half speed), where a GPU's stream would queue their kernels."""
    return "timeslice" if workload.device == "cpu" else "queue"
