"""specpipe: pipeline-parallel tree speculation (SpecPipe): the target's layers over P stages, a draft
growing a token tree a level per pipeline step, so that every stage always has work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import option
from ..errors import MAX_WINDOW, check_int, require
from .base import LayerOptions, RunOptions, Scheme, even_split, layer_latency, layer_neighbours, options_as

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
    from ..validation.setups import Process, Setup, Workload


@dataclass(frozen=True)
class TreeOptions(LayerOptions):
    tree_width: int = option(1, "tree nodes per level (tokens each pipeline step forwards)")
    tree_depth: int | None = option(None, "tree levels in flight (default: P; 1 is plain pipeline parallelism, the "
                                    "draft never consulted)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("--tree-width", self.tree_width, 1)
        if self.tree_depth is not None:
            check_int("--tree-depth", self.tree_depth, 1)



@dataclass(frozen=True)
class TreeRunOptions(RunOptions):
    pp_stages: int = option(2, "pipeline stages P the target's layers are split over (the draft runs in a process "
                            "of its own: P + 1 processes)")
    tree_width: int = option(2, "tree nodes per level (the most probable draft paths)")
    tree_depth: int | None = option(None, "tree levels in flight (default: P); 1 is plain pipeline parallelism")
    tree_threshold: float = option(0.0, "minimum draft path probability for a node (the best path is always kept)")

    def __post_init__(self) -> None:
        check_int("--pp-stages", self.pp_stages, 1)
        check_int("--tree-width", self.tree_width, 1, MAX_WINDOW)
        if self.tree_depth is not None:
            check_int("--tree-depth", self.tree_depth, 1)
        require(0 <= self.tree_threshold <= 1, f"--tree-threshold must be in [0, 1], got {self.tree_threshold}")



class SpecPipe(Scheme):
    name = "specpipe"
    options = TreeOptions
    run_options = TreeRunOptions
    exact_models = 2
    exact_models_message = "--latency: specpipe takes exactly a draft and a target"
    layer_stages = True
    pipelined = True

    def sim_pairs(self, config: SimConfig) -> int:
        return 1

    def sim_stage_devices(self, config: SimConfig) -> int:
        return options_as(TreeOptions, config).pp_stages + 1

    def stage_plan(self, config: SimConfig) -> list[tuple[str, LatencyModel]]:
        names, models, options = config.model_names, config.latency, options_as(TreeOptions, config)
        layers = even_split(options.num_layers, options.pp_stages)
        return [(names[0], models[0])] + [(f"{names[1]}[stage {i}]",
                                           layer_latency(options, models[1], i, n, i == len(layers) - 1))
                                          for i, n in enumerate(layers)]

    def start(self, config: SimConfig, env: simpy.Environment, stages: list[Stage], pairs: list[Pair],
              done: simpy.Event) -> None:
        from ..sim.layerpipe import LayerPipeline, specpipe_controller

        options = options_as(TreeOptions, config)
        pipeline = LayerPipeline(env, stages[1:], tokens_per_item=options.tree_width)
        stages[0].process = env.process(
            specpipe_controller(env, pipeline, stages[0], pairs[0], options.tree_width, config.num_tokens, done,
                                options.tree_depth))

    def produced(self, config: SimConfig, stages: Any) -> int:
        return config.num_tokens

    def check_run(self, config: RunConfig) -> None:
        super().check_run(config)
        require(len(config.chain) == 2, f"--chain: specpipe takes a draft and a target, got {len(config.chain)}")
        require(config.temperature == 0, "--temperature: specpipe decodes greedily (0) only")

    def run_stages(self, config: RunConfig) -> int:
        return options_as(TreeRunOptions, config).pp_stages + 1

    def engine(self, config: RunConfig, refs: list[ModelRef], placements: list[Placement],
               options: DecodeOptions) -> Any:
        from ..backend.specpipe import SpecPipeEngine

        run = options_as(TreeRunOptions, config)
        return SpecPipeEngine(refs[-1], refs[0], placements, options, run.tree_width, run.tree_depth,
                              run.tree_threshold, transport=config.transport)

    def run_values(self, setup: Setup, workload: Workload) -> dict[str, Any]:
        return {"chain": setup.chain, "pp_stages": setup.pp_stages, "tree_width": setup.tree_width,
                "tree_depth": setup.tree_depth}

    def trace_width(self, setup: Setup) -> int:
        return setup.tree_width

    def stage_neighbours(self, setup: Setup) -> tuple[str | None, ...]:
        # plain pipeline parallelism's stages forward one at a time (and its draft never runs)
        return layer_neighbours(setup, last_alone=setup.tree_depth == 1)

    def process_parts(self, setup: Setup) -> tuple[tuple[str, int, str | None, Process], ...]:
        """The draft's whole tree forward, then each target stage's layers; plain pipeline parallelism
        never runs its draft."""
        from ..backend.models import num_layers, resolve
        from ..backend.specpipe import stage_layers
        from ..validation.setups import Process

        (draft, target), (t_draft, t_target) = setup.chain, setup.stage_threads()
        n_draft, n_target = setup.stage_neighbours()
        stages = stage_layers(num_layers(resolve(target)), setup.pp_stages)
        draft_part = () if setup.tree_depth == 1 else ((draft, t_draft, n_draft, Process("tree", None, "topk")),)
        last = stages[-1].stop
        return (*draft_part, *((target, t_target, n_target,
                                Process(f"tree {r.start}-{r.stop - 1}", r, "argmax" if r.stop == last else None))
                               for r in stages))

    def window_of(self, setup: Setup) -> str:
        return f"w{setup.tree_width} d{setup.tree_depth or setup.pp_stages}"

    def predict(self, setup: Setup, inputs: Inputs, workload: Workload, prompts: Sequence[tuple[int, int]],
                seeds: int) -> Prediction:
        """The simulator's layer pipeline over the profiled draft and target (P target stages, the draft
        growing a level per step, the tree's hit rate replayed from the top-width trace; processes pinned to
        one core share a simulated device, time-sliced on a CPU; each process priced by its own profile
        where the run has one) and the derived T_s·(h + (1 − h)·P) per token, with plain pipeline
        parallelism at h = 0."""
        import statistics

        from ..acceptance import Bernoulli
        from ..backend.models import head_share, num_layers, resolve
        from ..sim.config import SimConfig
        from ..sim.run import simulate_prompts
        from ..theory import specpipe
        from ..validation.predict import Prediction, device_sharing, layer_stage_devices, sim_counters
        from ..validation.setups import ROLLBACK

        draft_key, target_key = setup.profile_keys()
        target = resolve(setup.chain[-1])
        plain = setup.tree_depth == 1
        # each process as it runs (Setup.process_parts) where profiled; else the whole models' forwards, by share
        timed = [inputs.latency.get(k) for k in setup.process_keys()]
        drafts, stages = timed[:-setup.pp_stages], timed[-setup.pp_stages:]  # no draft process in plain PP
        stage_latency = tuple(stages) if all(s is not None for s in stages) else ()
        draft_latency = drafts[0] if drafts and drafts[0] is not None else inputs.latency[draft_key]
        acceptance = Bernoulli(0.0) if plain else inputs.acceptance[(draft_key, target_key)]
        options = TreeOptions(num_layers=num_layers(target), pp_stages=setup.pp_stages, stage_latency=stage_latency,
                              head_share=head_share(target), tree_width=setup.tree_width, tree_depth=setup.tree_depth)
        config = SimConfig(scheme="specpipe", latency=(draft_latency, inputs.latency[target_key]),
                           acceptance=(acceptance,), names=setup.chain, options=options,
                           devices=layer_stage_devices(setup, workload, 1 + setup.pp_stages),
                           device_sharing=device_sharing(workload), rollback=ROLLBACK)
        runs = simulate_prompts(config, prompts, seeds)
        h = 0.0 if plain else inputs.alpha(draft_key, target_key)
        closed_ms = inputs.t(target_key, 1) * 1e3 / float(specpipe.speedup(h, setup.pp_stages))
        return Prediction(sim_ms_per_token=statistics.median(r.ms_per_token for r in runs),
                          closed_ms_per_token=closed_ms, trace_alpha={f"{draft_key}->{target_key}": h},
                          **sim_counters(runs))


SCHEME = SpecPipe()
