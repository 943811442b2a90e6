"""ppsd: the early-exit pipeline (PPSD): one model's layers split over P stages, an exit head after layer E
drafting, the late layers verifying each draft as it reaches them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import require
from .base import Scheme, layer_latency, layer_neighbours

if TYPE_CHECKING:
    import simpy

    from ..backend.engines import DecodeOptions
    from ..backend.models import ModelRef
    from ..backend.pipeline import Placement
    from ..backend.runner import RunConfig
    from ..latency import LatencyModel
    from ..sim.config import SimConfig
    from ..sim.engine import Stage
    from ..sim.pairs import Pair
    from ..sim.plan import Inputs
    from ..validation.predict import Prediction
    from ..validation.setups import Setup, Workload


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
        name, model = config.model_names[0], config.latency[0]
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
        return PPSDEngine(refs[-1], config.exit_layer, placements, options, exit_draft, transport=config.transport)

    # a setup's chain is the exit ("smollm2-exit:E", or a trained exit draft:NAME), then the target
    def run_values(self, setup: Setup) -> dict[str, Any]:
        trained = setup.chain[0] if setup.chain[0].startswith("draft:") else None
        return {"chain": setup.chain[-1:], "exit_layer": setup.exit_layer, "exit_draft": trained}

    def stage_neighbours(self, setup: Setup) -> tuple[str | None, ...]:
        return layer_neighbours(setup, last_alone=False)

    def window_of(self, setup: Setup) -> str:
        return "-"

    def predict(self, setup: Setup, inputs: Inputs, workload: Workload, prompts: Sequence[tuple[int, int]],
                seeds: int) -> Prediction:
        """The simulator's layer pipeline over the target's profiled latency (P stages, exit after E)
        replaying the exit's trace, and the derived closed form t_AR / (1 − α(1 − E/N))."""
        import statistics

        from ..backend.models import head_share, num_layers, resolve
        from ..sim.config import SimConfig
        from ..sim.run import simulate_prompts
        from ..theory import ppsd
        from ..validation.predict import Prediction, device_sharing, on_accelerator, sim_counters
        from ..validation.setups import ROLLBACK

        exit_key, target_key = setup.profile_keys()
        target = resolve(setup.chain[-1])
        layers = num_layers(target)
        config = SimConfig(scheme="ppsd", latency=(inputs.latency[target_key],),
                           acceptance=(inputs.acceptance[(exit_key, target_key)],), names=(setup.chain[-1],),
                           num_layers=layers, exit_layer=setup.exit_layer, pp_stages=setup.pp_stages,
                           rollback=ROLLBACK, head_share=head_share(target), device_sharing=device_sharing(workload),
                           devices=(workload.device,) * setup.pp_stages if on_accelerator(workload) else ())
        runs = simulate_prompts(config, prompts, seeds)
        alpha = inputs.alpha(exit_key, target_key)
        closed_ms = inputs.t(target_key, 1) * 1e3 / float(ppsd.pipelined_speedup(alpha, setup.exit_layer, layers))
        return Prediction(sim_ms_per_token=statistics.median(r.ms_per_token for r in runs),
                          closed_ms_per_token=closed_ms, trace_alpha={f"{exit_key}->{target_key}": alpha},
                          **sim_counters(runs))


SCHEME = PPSD()
