"""ppsd: the early-exit pipeline (PPSD): one model's layers split over P stages, an exit head after layer E
drafting, the late layers verifying each draft as it reaches them."""

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


class PPSD(Scheme):
    name = "ppsd"
    min_models = 1
    exact_models = 1
    exact_models_message = "--latency: ppsd takes exactly one model (it drafts from itself)"
    layer_stages = True
    target_only = True
    pipelined = True

    def check_sim(self, config: SimConfig) -> None:
        require(config.exit_layer < config.num_layers,
                f"--exit-layer must be < --num-layers ({config.num_layers}), got {config.exit_layer}")
        require(config.pp_stages >= 2, f"--pp-stages: ppsd needs >= 2 stages (early, late), got {config.pp_stages}")
        require(config.pp_stages <= config.num_layers,
                f"--pp-stages ({config.pp_stages}) must be <= --num-layers ({config.num_layers})")
        config.ppsd_split  # noqa: B018  (validates the split)

    def sim_pairs(self, config: SimConfig) -> int:
        return 1

    def sim_stage_devices(self, config: SimConfig) -> int:
        return config.pp_stages

    def stage_plan(self, config: SimConfig) -> list[tuple[str, LatencyModel]]:
        name, model = config.model_names[0], config.latency_models[0]
        layers, last_early = config.ppsd_split
        heads = {last_early, len(layers) - 1}  # the exit head, the model's head
        return [(f"{name}[{sum(layers[:i]) + 1}-{sum(layers[: i + 1])}]",
                 layer_latency(config, model, i, n, i in heads)) for i, n in enumerate(layers)]

    def pair_names(self, config: SimConfig) -> list[str]:
        name = config.model_names[0]
        return [f"{name}@exit{config.exit_layer}->{name}"]

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.layerpipe import LayerPipeline, ppsd_controller

        pipeline = LayerPipeline(env, stages, tokens_per_item=1)
        ppsd_controller(env, pipeline, pairs[0], config.ppsd_split[1], config.num_tokens, done)

    def produced(self, config: SimConfig, stages: Any) -> int:
        return config.num_tokens

    def notes(self, config: SimConfig) -> dict[str, Any]:
        return {"layers_per_stage": list(config.ppsd_split[0])}

    def check_run(self, config: RunConfig) -> None:  # --exit-layer is checked against the target's layers
        require(config.temperature == 0, "--temperature: ppsd decodes greedily (0) only")
        require(config.chain[-1].split(":")[0] not in ("ngram",), "--chain: ppsd needs a model target")

    def check_run_models(self, config: RunConfig) -> None:
        """The target's layers from its config (nothing is loaded): 1 <= E < N."""
        from ..backend.layers import split_layers
        from ..backend.models import num_layers, resolve

        split_layers(num_layers(resolve(config.chain[-1])), config.exit_layer)

    def run_stages(self, config: RunConfig) -> int:
        return 2

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        from ..backend.models import resolve
        from ..backend.ppsd import PPSDEngine

        exit_draft = resolve(config.exit_draft, "--exit-draft") if config.exit_draft else None
        return PPSDEngine(refs[-1], config.exit_layer, placements, options, exit_draft)


SCHEME = PPSD()
