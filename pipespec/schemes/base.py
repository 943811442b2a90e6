"""What a scheme is to the rest of the product: one object, registered once (`pipespec/schemes/__init__.py`).

The simulator (`sim/config.py` checks, `sim/run.py` runs), the backend (`backend/runner.py`), the
closed forms that validation, benchmarks and planning price runs with, and the planner's candidates all
ask the scheme instead of branching on its name. A new scheme is a module with a subclass of `Scheme`
and one line in the registry.

The default behaviour is a chain of whole models, draft first, each adjacent pair a draft and its verifier
(`sd`, `pipespec`); the layer pipelines (`ppsd`, `specpipe`) and the target alone (`ar`) override it.

A scheme's own simulator options are its `options` dataclass (`SimConfig.options` holds one), checked when it is
built; the options every scheme shares are `SimConfig`'s own fields. Flags, config files and sweep axes name
both kinds as flat keys (`pipespec.config.option_fields`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..config import option
from ..errors import check_int, require
from ..latency import LatencyModel, parse_latency
from ..specs import spec_text

if TYPE_CHECKING:
    import simpy

    from ..backend.engines import DecodeOptions
    from ..backend.models import ModelRef
    from ..backend.pipeline import Placement
    from ..backend.runner import RunConfig
    from ..sim.config import SimConfig
    from ..sim.engine import Stage
    from ..sim.pairs import Pair
    from ..sim.plan import Inputs
    from ..validation.predict import Prediction
    from ..validation.setups import Process, Setup, Workload


OptionsT = TypeVar("OptionsT")


def options_as(kind: type[OptionsT], config: SimConfig | RunConfig) -> OptionsT:
    """`config.options` as the scheme's own dataclass `kind` (the configuration checked that it is one)."""
    return cast(OptionsT, config.options)


def even_split(total: int, parts: int) -> tuple[int, ...]:
    """`total` layers over `parts` stages, the first `total % parts` one layer longer."""
    base, extra = divmod(total, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))


@dataclass(frozen=True)
class NoOptions:
    """The options of a scheme that has none of its own."""


@dataclass(frozen=True)
class RunOptions:
    """A scheme's own backend options (`RunConfig.options`): none here; a scheme's subclass adds its fields."""

    def decode_values(self) -> dict[str, Any]:
        """The `backend.engines.DecodeOptions` fields these options set."""
        return {}


@dataclass(frozen=True)
class LayerOptions:
    """How a layer pipeline (ppsd, specpipe) splits one model's layers over its stages, and what each costs."""

    num_layers: int = option(32, "layers N of the model")
    pp_stages: int = option(2, "pipeline stages P the model's layers are split over")
    stage_latency: tuple[LatencyModel, ...] = option(
        (), "the latency of each layer stage, timed as it runs (default: the model's, times its layers' share plus "
        "the head's)", parse=parse_latency, text=spec_text)
    head_share: float = option(0.0, "share of one forward spent in the output head (final norm and vocabulary "
                               "projection), paid by the stage holding it: the last, and in ppsd also the exit's")

    def __post_init__(self) -> None:
        if any(isinstance(v, str) for v in self.stage_latency):
            raise TypeError("stage_latency holds parsed models, not spec text: parse it at the edge "
                            "(SimConfig.from_text, parse_latency)")
        check_int("--num-layers", self.num_layers, 2)
        check_int("--pp-stages", self.pp_stages, 1)
        require(0.0 <= self.head_share < 1.0, f"--head-share must be in [0, 1), got {self.head_share}")
        require(self.pp_stages <= self.num_layers,
                f"--pp-stages ({self.pp_stages}) must be <= --num-layers ({self.num_layers})")
        require(not self.stage_latency or len(self.stage_latency) == self.pp_stages,
                f"--stage-latency: give one per stage ({self.pp_stages}), got {len(self.stage_latency)}")


class Scheme(ABC):
    name = ""
    options: type = NoOptions  # its own simulator options (a frozen dataclass of `option` fields, checked when built)
    run_options: type = RunOptions  # its own backend options (a `RunOptions` subclass, likewise)
    # the simulator's --latency: at least this many models (and exactly `exact_models` where it is set)
    min_models = 2
    exact_models: int | None = None
    exact_models_message = ""
    layer_stages = False  # its stages are layer ranges of one model (--stage-latency, --pp-stages apply)
    # the backend's --chain: the target alone (its drafts come from itself) rather than a chain
    target_only = False
    pipelined = False  # one process per stage (placement options: one value per stage)
    feature_drafts = False  # its backend hands a verifier's hidden states to a feature draft below it (eagle.py)

    # --- the simulator -------------------------------------------------------------------------------
    def check_sim(self, config: SimConfig) -> None:
        """Checks of the scheme's own options, once the shared ones passed (none by default)."""
        return None

    def sim_pairs(self, config: SimConfig) -> int:
        """Adjacent (draft, verifier) pairs whose acceptance the run draws."""
        return len(config.latency) - 1

    def sim_stage_devices(self, config: SimConfig) -> int:
        """Simulated stages (one --devices entry each)."""
        return len(config.latency)

    def stage_plan(self, config: SimConfig) -> list[tuple[str, LatencyModel]]:
        """(name, latency) of each simulated stage, in pipeline order."""
        return list(zip(config.model_names, config.latency, strict=True))

    def pair_names(self, config: SimConfig) -> list[str]:
        names = config.model_names
        return [f"{names[i]}->{names[i + 1]}" for i in range(self.sim_pairs(config))]

    def lazy_first_stage(self, config: SimConfig) -> bool:
        """Whether a dedicated stage 0 may be computed on demand (`sim.drafter.LazyDrafter`)."""
        return False

    def first_stage_may_be_silent(self) -> bool:
        """Whether stage 0 asks its pair whether it proposes at a position (a model-free drafter)."""
        return False

    @abstractmethod
    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        """Start the scheme's SimPy processes over the built stages and pairs; `done` fires when it has
        produced config.num_tokens."""

    def produced(self, config: SimConfig, stages: Sequence[Stage]) -> int:
        """Output tokens a finished run counts."""
        return stages[-1].length

    def notes(self, config: SimConfig) -> dict[str, Any]:
        return {}

    # --- planning ------------------------------------------------------------------------------------
    def window_values(self, window: int | None) -> dict[str, Any]:
        """The simulator options a planning candidate's window sets."""
        return {}

    def window_label(self, window: int | None) -> str:
        return "all" if window is None else str(window)

    def closed_form_s(self, inputs: Inputs, chain: Sequence[str], window: int | None) -> float:
        """Seconds per output token by the closed forms, from planning inputs over the chain's models. The layer
        pipelines have none over a chain (their closed forms need the layer split: see their `predict`)."""
        raise TypeError(f"{self.name} has no closed form over a chain of models")

    # --- the backend ---------------------------------------------------------------------------------
    def check_run(self, config: RunConfig) -> None:
        """The backend's checks of the run beyond its options' own (nothing is loaded; none by default)."""
        return None

    def check_run_models(self, config: RunConfig) -> None:
        """Checks that read the models' configs (after every option passed; none by default)."""
        return None

    def run_stages(self, config: RunConfig) -> int:
        """Processes (pipelines) or models (in-process schemes) one placement option value is given for."""
        return len(config.chain)

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        """A pipelined scheme's engine (`backend.pipeline.PipelineEngine` or a subclass); only asked of a scheme
        with `pipelined` set."""
        raise TypeError(f"{self.name} runs in-process: it has no pipeline engine")

    def decode_in_process(self) -> Any:
        """An in-process scheme's decoder: decode(stages, prompt_ids, options) -> PromptResult; only asked of a
        scheme without `pipelined`."""
        raise TypeError(f"{self.name} runs one process per stage: it has no in-process decoder")

    # --- validation: a measured configuration (`validation.setups.Setup`) -----------------------------
    baseline = False  # the configuration every measured speedup is over (AR)

    def run_values(self, setup: Setup, workload: Workload) -> dict[str, Any]:
        """The backend options (`backend.runner.RunConfig`, flat keys) that run the setup, beyond the shared ones."""
        return {"chain": setup.chain}

    def trace_width(self, setup: Setup) -> int:
        """Draft tokens per level the final pair's replayed trace scores (1: a chain's top-1 agreement)."""
        return 1

    def stage_neighbours(self, setup: Setup) -> tuple[str | None, ...]:
        """Per model of a pinned setup's chain: the model forwarding on another core at the same time (the
        memory system they share slows both), or None when only model-free stages run there: for a chain of
        whole models, the last model on another core (its verifier, or its nearest draft)."""
        return tuple(next((m for m, c in zip(reversed(setup.chain), reversed(setup.cpus), strict=True)
                           if c != cpu and not m.startswith("ngram")), None) for cpu in setup.cpus)

    def process_parts(self, setup: Setup) -> tuple[tuple[str, int, str | None, Process], ...]:
        """(model, threads, neighbour, process) of each process that runs part of a model, profiled as it
        runs to price the simulator's stages; schemes that run whole models: none."""
        return ()

    def window_of(self, setup: Setup) -> str:
        """The setup's window, as validate's table shows it."""
        return str(setup.max_drafts or "all")

    def drafts_scored(self, setup: Setup, max_lead: int) -> int | None:
        """Drafts one verification may score (what the profile must reach and the closed forms' window): a
        pipeline's cap, or how far a stage may run ahead; None where nothing is drafted."""
        return setup.max_drafts or max_lead

    def predict(self, setup: Setup, inputs: Inputs, workload: Workload, prompts: Sequence[tuple[int, int]],
                seeds: int) -> Prediction:
        """Simulated and closed-form decode ms/token of a setup, from a profile and traces alone."""
        from ..validation.predict import predict_chain

        return predict_chain(setup, inputs, workload, prompts, seeds)


def layer_neighbours(setup: Setup, last_alone: bool) -> tuple[str | None, ...]:
    """A layer pipeline's stages are the target's own layers on both cores: each forwards beside the target;
    the last alone where stages forward one at a time (plain pipeline parallelism)."""
    return (*(setup.chain[-1],) * (len(setup.chain) - 1), None if last_alone else setup.chain[-1])


def layer_latency(options: LayerOptions, model: LatencyModel, index: int, layers: int, head: bool) -> LatencyModel:
    """A layer stage's latency: as timed (--stage-latency), or the model's share: its layers' part of the
    body, plus the output head if it holds one."""
    from ..latency import ScaledLatency

    if options.stage_latency:
        return options.stage_latency[index]
    h = options.head_share
    return ScaledLatency(model, (1 - h) * layers / options.num_layers + (h if head else 0.0))
