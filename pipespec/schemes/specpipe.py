"""specpipe: pipeline-parallel tree speculation (SpecPipe): the target's layers over P stages, a draft
growing a token tree a level per pipeline step, so that every stage always has work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import require
from .base import Scheme, layer_latency

if TYPE_CHECKING:
    import simpy

    from ..backend.engines import DecodeOptions
    from ..backend.models import ModelRef
    from ..backend.pipeline import Placement
    from ..backend.runner import RunConfig
    from ..latency import LatencyModel
    from ..sim.config import SimConfig
    from ..sim.engine import Pair, Stage


class SpecPipe(Scheme):
    name = "specpipe"
    exact_models = 2
    exact_models_message = "--latency: specpipe takes exactly a draft and a target"
    layer_stages = True
    pipelined = True

    def check_sim(self, config: SimConfig) -> None:
        require(config.pp_stages <= config.num_layers,
                f"--pp-stages ({config.pp_stages}) must be <= --num-layers ({config.num_layers})")

    def sim_pairs(self, config: SimConfig) -> int:
        return 1

    def sim_stage_devices(self, config: SimConfig) -> int:
        return config.pp_stages + 1

    def stage_plan(self, config: SimConfig) -> list[tuple[str, LatencyModel]]:
        names, models = config.model_names, config.latency_models
        layers = [config.num_layers // config.pp_stages + (1 if i < config.num_layers % config.pp_stages else 0)
                  for i in range(config.pp_stages)]
        return [(names[0], models[0])] + [(f"{names[1]}[stage {i}]",
                                           layer_latency(config, models[1], i, n, i == len(layers) - 1))
                                          for i, n in enumerate(layers)]

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.layerpipe import LayerPipeline, specpipe_controller

        pipeline = LayerPipeline(env, stages[1:], tokens_per_item=config.tree_width)
        stages[0].process = env.process(
            specpipe_controller(env, pipeline, stages[0], pairs[0], config.tree_width, config.num_tokens, done,
                                config.tree_depth))

    def produced(self, config: SimConfig, stages: Any) -> int:
        return config.num_tokens

    def check_run(self, config: RunConfig) -> None:
        super().check_run(config)
        require(len(config.chain) == 2, f"--chain: specpipe takes a draft and a target, got {len(config.chain)}")
        require(config.temperature == 0, "--temperature: specpipe decodes greedily (0) only")

    def run_stages(self, config: RunConfig) -> int:
        return config.pp_stages + 1

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        from ..backend.specpipe import SpecPipeEngine

        return SpecPipeEngine(refs[-1], refs[0], placements, options, config.tree_width, config.tree_depth,
                              config.tree_threshold)


SCHEME = SpecPipe()
