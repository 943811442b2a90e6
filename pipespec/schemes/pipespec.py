"""pipespec: the asynchronous hierarchical pipeline (PipeSpec): every stage its own process, verifying
what its upstream has published or generating a token itself, rolling its upstream back on a rejection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Scheme

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


class PipeSpec(Scheme):
    name = "pipespec"
    pipelined = True

    def lazy_first_stage(self, config: SimConfig) -> bool:
        return config.lazy_drafter

    def first_stage_may_be_silent(self) -> bool:
        return True

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.drafter import LazyDrafter
        from ..sim.schemes import pipespec_process

        for index, stage in enumerate(stages):
            if not isinstance(stage, LazyDrafter):
                stage.process = env.process(pipespec_process(env, stages, pairs, index, config.max_drafts,
                                                             config.num_tokens, done, config.min_drafts,
                                                             config.coordination))

    def window_values(self, window: int | None) -> dict[str, Any]:
        return {"max_drafts": window}

    def closed_form_s(self, inputs: Inputs, chain: Sequence[str], window: int | None) -> float:
        from ..sim.plan import pipespec_seconds

        return pipespec_seconds(inputs, chain, window)[0]

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        from ..backend.pipeline import PipelineEngine

        return PipelineEngine(refs, placements, options, temperature=config.temperature, seed=config.seed,
                              transport=config.transport)


SCHEME = PipeSpec()
