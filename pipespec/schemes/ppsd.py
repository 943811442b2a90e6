"""ppsd: the early-exit pipeline (PPSD): one model's layers split over P stages, an exit head after layer E
drafting, the late layers verifying each draft as it reaches them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..config import option
from ..errors import check_int, require
from .base import LayerOptions, Scheme, even_split, layer_latency, layer_neighbours, options_as
from .pipespec import LeadOptions

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


@dataclass(frozen=True)
class PPSDOptions(LayerOptions):
    exit_layer: int = option(8, "early-exit layer E (1 <= E < N)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("--exit-layer", self.exit_layer, 1)
        require(self.exit_layer < self.num_layers,
                f"--exit-layer must be < --num-layers ({self.num_layers}), got {self.exit_layer}")
        require(self.pp_stages >= 2, f"--pp-stages: ppsd needs >= 2 stages (early, late), got {self.pp_stages}")
        self.split  # noqa: B018  (validates the split)

    @cached_property
    def split(self) -> tuple[tuple[int, ...], int]:
        """(layers per stage, index of the last early stage): the exit sits on a stage boundary, the
        early layers split evenly over round(P·E/N) stages (at least 1) and the late ones over the rest."""
        p, e, n = self.pp_stages, self.exit_layer, self.num_layers
        early = min(max(1, round(p * e / n)), p - 1)
        late = p - early
        require(e >= early and n - e >= late,
                f"--pp-stages {p} cannot split {e} early and {n - e} late layers into non-empty stages")
        return even_split(e, early) + even_split(n - e, late), early - 1



@dataclass(frozen=True)
class PPSDRunOptions(LeadOptions):
    exit_layer: int = option(8, "the early stage runs the target's first E layers and drafts from an exit after "
                             "them; the late stage runs the rest")
    exit_draft: str | None = option(None, "a trained exit (draft:smollm2-exit8, trained after layer L: then "
                                    "E = L - 1); default: the target's own norm and head after layer E")

    def __post_init__(self) -> None:
        super().__post_init__()
        # an integer >= 0 here; E = 0 passes on to the split against the target's layers (`check_run_models`),
        # whose message names the range 1 <= E < N
        check_int("--exit-layer", self.exit_layer, 0)



class PPSD(Scheme):
    name = "ppsd"
    options = PPSDOptions
    run_options = PPSDRunOptions
    min_models = 1
    exact_models = 1
    exact_models_message = "--latency: ppsd takes exactly one model (it drafts from itself)"
    layer_stages = True
    target_only = True
    pipelined = True

    def sim_pairs(self, config: SimConfig) -> int:
        return 1

    def sim_stage_devices(self, config: SimConfig) -> int:
        return options_as(PPSDOptions, config).pp_stages

    def stage_plan(self, config: SimConfig) -> list[tuple[str, LatencyModel]]:
        name, model, options = config.model_names[0], config.latency[0], options_as(PPSDOptions, config)
        layers, last_early = options.split
        heads = {last_early, len(layers) - 1}  # the exit head, the model's head
        return [(f"{name}[{sum(layers[:i]) + 1}-{sum(layers[: i + 1])}]",
                 layer_latency(options, model, i, n, i in heads)) for i, n in enumerate(layers)]

    def pair_names(self, config: SimConfig) -> list[str]:
        name = config.model_names[0]
        return [f"{name}@exit{options_as(PPSDOptions, config).exit_layer}->{name}"]

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.layerpipe import LayerPipeline, ppsd_controller

        pipeline = LayerPipeline(env, stages, tokens_per_item=1)
        ppsd_controller(env, pipeline, pairs[0], options_as(PPSDOptions, config).split[1], config.num_tokens, done)

    def produced(self, config: SimConfig, stages: Any) -> int:
        return config.num_tokens

    def notes(self, config: SimConfig) -> dict[str, Any]:
        return {"layers_per_stage": list(options_as(PPSDOptions, config).split[0])}

    def check_run(self, config: RunConfig) -> None:  # --exit-layer is checked against the target's layers
        from ..backend.models import resolve

        require(config.temperature == 0, "--temperature: ppsd decodes greedily (0) only")
        require(config.chain[-1].split(":")[0] not in ("ngram",), "--chain: ppsd needs a model target")
        exit_draft = options_as(PPSDRunOptions, config).exit_draft
        if exit_draft is not None:
            resolve(exit_draft, "--exit-draft")  # a one-line error before any prompt or weight is read

    def check_run_models(self, config: RunConfig) -> None:
        """The target's layers from its config (nothing is loaded): 1 <= E < N."""
        from ..backend.layers import split_layers
        from ..backend.models import num_layers, resolve

        split_layers(num_layers(resolve(config.chain[-1])), options_as(PPSDRunOptions, config).exit_layer)

    def run_stages(self, config: RunConfig) -> int:
        return 2

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        from ..backend.models import resolve
        from ..backend.ppsd import PPSDEngine

        run = options_as(PPSDRunOptions, config)
        exit_draft = resolve(run.exit_draft, "--exit-draft") if run.exit_draft else None
        return PPSDEngine(refs[-1], run.exit_layer, placements, options, exit_draft, transport=config.transport)

    # a setup's chain is the exit ("smollm2-exit:E", or a trained exit draft:NAME), then the target
    def run_values(self, setup: Setup, workload: Workload) -> dict[str, Any]:
        trained = setup.chain[0] if setup.chain[0].startswith("draft:") else None
        return {"chain": setup.chain[-1:], "exit_layer": setup.exit_layer, "exit_draft": trained,
                "max_drafts": setup.max_drafts, "max_lead": workload.max_lead}

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
        options = PPSDOptions(num_layers=layers, exit_layer=setup.exit_layer, pp_stages=setup.pp_stages,
                              head_share=head_share(target))
        config = SimConfig(scheme="ppsd", latency=(inputs.latency[target_key],),
                           acceptance=(inputs.acceptance[(exit_key, target_key)],), names=(setup.chain[-1],),
                           options=options, rollback=ROLLBACK, device_sharing=device_sharing(workload),
                           devices=(workload.device,) * setup.pp_stages if on_accelerator(workload) else ())
        runs = simulate_prompts(config, prompts, seeds)
        alpha = inputs.alpha(exit_key, target_key)
        closed_ms = inputs.t(target_key, 1) * 1e3 / float(ppsd.pipelined_speedup(alpha, setup.exit_layer, layers))
        return Prediction(sim_ms_per_token=statistics.median(r.ms_per_token for r in runs),
                          closed_ms_per_token=closed_ms, trace_alpha={f"{exit_key}->{target_key}": alpha},
                          **sim_counters(runs))


SCHEME = PPSD()
