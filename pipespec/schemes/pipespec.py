"""pipespec: the asynchronous hierarchical pipeline (PipeSpec): every stage its own process, verifying
what its upstream has published or generating a token itself, rolling its upstream back on a rejection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import check_choices, option
from ..errors import MAX_WINDOW, check_int, require
from .base import RunOptions, Scheme, options_as
from .sd import COORDINATION

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
    from ..validation.setups import Setup, Workload


@dataclass(frozen=True)
class PipeSpecOptions:
    max_drafts: int | None = option(None, "cap on drafts one step verifies (default: all available)")
    min_drafts: int = option(1, "a stage finding fewer drafts waits for its upstream's forward in flight instead of "
                             "generating a token itself (1: never waits)")
    coordination: str = option(
        "lockfree", "how stages synchronise: lockfree (a verifier rolls its upstream back at once and goes on) or "
        "reference (the PipeSpec authors' protocol: after every step a verifier waits until its upstream has "
        "answered its sync request, which the upstream does between two of its own steps; a middle stage then asks "
        "its own upstream and waits)", choices=COORDINATION)
    lazy_drafter: bool = option(True, "compute a dedicated stage 0's progress on demand instead of one event per "
                                "draft token (same results, faster)")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.max_drafts is not None:
            check_int("--max-drafts", self.max_drafts, 1, MAX_WINDOW)
        check_int("--min-drafts", self.min_drafts, 1, MAX_WINDOW)
        require(self.max_drafts is None or self.min_drafts <= self.max_drafts,
                f"--min-drafts ({self.min_drafts}) must be <= --max-drafts ({self.max_drafts})")


@dataclass(frozen=True)
class LeadOptions(RunOptions):
    """How far a pipelined stage runs ahead of its verifier (pipespec, and ppsd's early stage)."""

    max_drafts: int | None = option(None, "cap on drafts a verification scores (default: all)")
    max_lead: int = option(32, "tokens a stage may run ahead of its verifier before it waits")

    def __post_init__(self) -> None:
        if self.max_drafts is not None:
            check_int("--max-drafts", self.max_drafts, 1, MAX_WINDOW)
        check_int("--max-lead", self.max_lead, 1, MAX_WINDOW)

    def decode_values(self) -> dict[str, Any]:
        return {"max_drafts": self.max_drafts, "max_lead": self.max_lead}


class PipeSpec(Scheme):
    name = "pipespec"
    options = PipeSpecOptions
    run_options = LeadOptions
    pipelined = True
    feature_drafts = True

    def lazy_first_stage(self, config: SimConfig) -> bool:
        return options_as(PipeSpecOptions, config).lazy_drafter

    def first_stage_may_be_silent(self) -> bool:
        return True

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.drafter import LazyDrafter
        from ..sim.schemes import pipespec_process

        options = options_as(PipeSpecOptions, config)
        for index, stage in enumerate(stages):
            if not isinstance(stage, LazyDrafter):
                stage.process = env.process(pipespec_process(env, stages, pairs, index, options.max_drafts,
                                                             config.num_tokens, done, options.min_drafts,
                                                             options.coordination))

    def window_values(self, window: int | None) -> dict[str, Any]:
        return {"max_drafts": window}

    def closed_form_s(self, inputs: Inputs, chain: Sequence[str], window: int | None) -> float:
        from ..sim.plan import pipespec_seconds

        return pipespec_seconds(inputs, chain, window)[0]

    def run_values(self, setup: Setup, workload: Workload) -> dict[str, Any]:
        return {**super().run_values(setup, workload), "max_drafts": setup.max_drafts, "max_lead": workload.max_lead}

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        from ..backend.pipeline import PipelineEngine

        return PipelineEngine(refs, placements, options, temperature=config.temperature, seed=config.seed,
                              transport=config.transport)


SCHEME = PipeSpec()
