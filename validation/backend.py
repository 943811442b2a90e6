"""Predicted against measured on the machine at hand (`pipespec validate`).

1. Record acceptance traces for every draft → verifier pair on the prompts (greedy agreement along the
   verifier's own output).
2. Measure each configuration with the backend (`backend.runner.run`, medians over repeats run in
   rounds across configurations), and before each round of measurements run a round of the latency
   profile of every model at the thread count each configuration runs it with (forward latency against
   tokens per pass and context: the simulator's profile format), and of each SpecPipe process as it runs
   (the draft's tree forward, each target stage's layers), so that profile and measurements see the
   machine in the same states.
3. Predict the same runs from the profile and traces alone — nothing from step 2 — with the simulator
   (trace replay; stages pinned to one core sharing a simulated device the OS time-slices; a forward in
   flight at a rollback running to its end as the backend's do; SpecPipe's stages priced by their own
   profiles, PPSD's by their layers' share of the target's forward plus the output head's where they hold
   a head) and with the closed forms (α = the trace's match rate,
   `sim.plan`'s SD-chain and pipeline formulas, the derived PPSD and SpecPipe speedups).

Compared: decode ms/token, (wall time − time to first token) / (tokens − 1) over all prompts, since
neither prediction models the prefill; speedups are over the measured and predicted AR respectively.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import require
from ..interference import disturbed

Progress = Callable[..., Any]
# the backend's stages look for a rollback between forwards: a forward in flight runs to its end
ROLLBACK = "finish"
TARGET = "smollm2"  # the built-in target: the family's last model


@dataclass(frozen=True)
class Setup:
    """One measured configuration: scheme, chain, and where each stage runs."""

    name: str
    scheme: str  # ar | sd | pipespec | ppsd (chain: the exit "smollm2-exit:E", then the target)
    chain: tuple[str, ...]
    threads: tuple[int, ...]  # one per stage (ar/sd: one value for the process)
    cpus: tuple[str, ...] = ()  # pipespec: cores per stage ("0", "1", "0,1")
    gamma: int = 4
    max_drafts: int | None = None
    pp_stages: int = 2  # specpipe: target stages (one process each, after the draft's); ppsd: stages (predictions only)
    tree_width: int = 1
    tree_depth: int | None = None  # specpipe: levels in flight (default P); 1 is plain pipeline parallelism

    def stage_threads(self) -> tuple[int, ...]:
        """Threads of each model of the chain (a pipeline's target stages all run at the last value)."""
        if len(self.threads) == 1:
            return self.threads * len(self.chain)
        return (*self.threads[:len(self.chain) - 1], self.threads[-1])

    def trace_pair(self) -> tuple[str, str, int]:
        """(draft, verifier, width) of the acceptance trace a prediction replays, for the final pair."""
        width = self.tree_width if self.scheme == "specpipe" else 1
        return self.chain[-2], self.chain[-1], width

    @property
    def exit_layer(self) -> int:
        """ppsd: E, the target layers of the early stage (a trained exit draft's layer takes their output)."""
        if self.chain[0].startswith("draft:"):
            from ..backend.models import resolve
            from ..backend.ppsd import exit_draft_layer

            return int(exit_draft_layer(resolve(self.chain[0]))) - 1
        return int(self.chain[0].rpartition(":")[2])

    def stage_neighbours(self) -> tuple[str | None, ...]:
        """Per model of the chain, when it runs as a one-thread stage pinned to a core: the model forwarding on
        the other core at the same time (the memory system they share slows both), or None when only
        model-free stages run there. PPSD's and SpecPipe's stages are the target's own layers on both cores
        (plain pipeline parallelism's run one at a time: alone); a pipeline's stage has the last model on
        another core (its verifier, or its nearest draft)."""
        if not self.cpus:
            return (None,) * len(self.chain)
        if self.scheme in ("ppsd", "specpipe"):
            # plain pipeline parallelism's stages forward one at a time (and its draft never runs)
            last = None if self.scheme == "specpipe" and self.tree_depth == 1 else self.chain[-1]
            return (*(self.chain[-1],) * (len(self.chain) - 1), last)
        return tuple(next((m for m, c in zip(reversed(self.chain), reversed(self.cpus), strict=True)
                           if c != cpu and not m.startswith("ngram")), None) for cpu in self.cpus)

    def profile_keys(self) -> tuple[str, ...]:
        return tuple(profile_key(m, t, n)
                     for m, t, n in zip(self.chain, self.stage_threads(), self.stage_neighbours(), strict=True))

    def process_parts(self) -> tuple[tuple[str, int, str | None, Process], ...]:
        """specpipe: (model, threads, neighbour, process) of each of its processes as it runs, profiled as
        such to price the simulator's stages: the draft's whole tree forward, then each target stage's
        layers; plain pipeline parallelism never runs its draft. Other schemes run whole models: none."""
        if self.scheme != "specpipe":
            return ()
        from ..backend.models import num_layers, resolve
        from ..backend.specpipe import stage_layers

        (draft, target), (t_draft, t_target) = self.chain, self.stage_threads()
        n_draft, n_target = self.stage_neighbours()
        stages = stage_layers(num_layers(resolve(target)), self.pp_stages)
        draft_part = () if self.tree_depth == 1 else ((draft, t_draft, n_draft, Process("tree", None, "topk")),)
        last = stages[-1].stop
        return (*draft_part, *((target, t_target, n_target,
                                Process(f"tree {r.start}-{r.stop - 1}", r, "argmax" if r.stop == last else None))
                               for r in stages))

    def process_keys(self) -> tuple[str, ...]:
        """The profile keys of `process_parts`."""
        return tuple(profile_key(m, t, n, process.label) for m, t, n, process in self.process_parts())


@dataclass(frozen=True)
class Process:
    """What one SpecPipe process forwards (backend/specpipe.py), as `TreeStageForward` times it."""

    label: str  # in its profile key: "tree" (the draft) or "tree A-B" (target layers A..B)
    layers: range | None  # None: the whole model (the draft)
    head: str | None  # "topk" (the draft's children), "argmax" (the target's token), None (hidden rows out)


def profile_key(model: str, threads: int, neighbour: str | None = TARGET, part: str | None = None) -> str:
    """How a model's latency was profiled: "NAME@Nt" (a one-thread stage beside the built-in target
    forwarding on the other core, or an in-process run), "NAME@1t~OTHER" (beside OTHER), "NAME@1t-alone"
    (the other core idle), with "[PART]" when a part of it was timed as one pipeline process runs it (see
    Setup.process_parts); the n-gram drafter has no forward and keeps its name."""
    if model.startswith("ngram"):
        return model
    suffix = f"[{part}]" if part else ""
    if threads != 1 or neighbour == TARGET:
        return f"{model}@{threads}t{suffix}"
    return (f"{model}@1t-alone" if neighbour is None else f"{model}@1t~{neighbour}") + suffix


def builtin_setups(gamma: int = 4, draft: str | None = None, lookahead: Sequence[int] = (),
                   ppsd_exits: Sequence[int] = (), specpipe_widths: Sequence[int] = (),
                   exit_drafts: Sequence[str] = ()) -> list[Setup]:
    """The built-in family on a 2-core CPU: in-process runs on both cores, pipelines one core per stage
    (a model-free n-gram stage shares core 0); PPSD (early and late stage on a core each; untrained exits
    after E layers, and trained exit drafts) beside SD with the same exit as its draft (the non-pipelined
    early-exit baseline); SpecPipe over 2 target
    stages (a core each, the draft sharing core 0) beside plain pipeline parallelism on them."""
    setups = [
        Setup("ar", "ar", ("smollm2",), (2,)),
        Setup("sd-ngram", "sd", ("ngram", "smollm2"), (2,), gamma=gamma),
        Setup("sd-int8", "sd", ("smollm2-int8", "smollm2"), (2,), gamma=gamma),
        Setup("pipespec-k2-ngram", "pipespec", ("ngram", "smollm2"), (1, 1), ("0", "1")),
        Setup("pipespec-k2-int8", "pipespec", ("smollm2-int8", "smollm2"), (1, 1), ("0", "1")),
        Setup("pipespec-k3", "pipespec", ("ngram", "smollm2-int8", "smollm2"), (1, 1, 1), ("0", "0", "1")),
    ]
    if draft:
        label = draft.removeprefix("draft:")
        setups += [Setup(f"sd-{label}", "sd", (draft, "smollm2"), (2,), gamma=gamma),
                   Setup(f"pipespec-k2-{label}", "pipespec", (draft, "smollm2"), (1, 1), ("0", "1")),
                   Setup(f"pipespec-k3-{label}", "pipespec", (draft, "smollm2-int8", "smollm2"), (1, 1, 1),
                         ("0", "0", "1"))]
    exits = [(f"exit{e}", f"smollm2-exit:{e}") for e in ppsd_exits]
    exits += [(name.removeprefix("draft:"), name) for name in exit_drafts]
    for label, exit_model in exits:
        setups += [Setup(f"sd-{label}", "sd", (exit_model, "smollm2"), (2,), gamma=gamma),
                   Setup(f"ppsd-{label}", "ppsd", (exit_model, "smollm2"), (1, 1), ("0", "1"))]
    for w in specpipe_widths:
        setups.append(Setup(f"specpipe-p2-w{w}", "specpipe", ("smollm2-int8", "smollm2"), (1, 1, 1),
                            ("0", "0", "1"), tree_width=w))
    if specpipe_widths:
        setups.append(Setup("pp-p2", "specpipe", ("smollm2-int8", "smollm2"), (1, 1, 1), ("0", "0", "1"),
                            tree_width=1, tree_depth=1))
    for g in lookahead:
        setups += [Setup(f"sd-int8-g{g}", "sd", ("smollm2-int8", "smollm2"), (2,), gamma=g),
                   Setup(f"pipespec-k2-int8-max{g}", "pipespec", ("smollm2-int8", "smollm2"), (1, 1), ("0", "1"),
                         max_drafts=g)]
    return [s for i, s in enumerate(setups) if s.name not in {t.name for t in setups[:i]}]


@dataclass
class Workload:
    """The prompts and decoding limits every configuration runs with."""

    prompts: str | None = None
    limit: int | None = 6
    max_new_tokens: int = 64
    repeats: int = 3
    max_lead: int = 32
    device: str = "cpu"
    contended: bool = True  # profile one-thread (pipeline-stage) models with the other core busy
    encoded: list[list[int]] = field(default_factory=list)
    eos: int | None = None

    @property
    def context(self) -> int:
        """The mean context of a decode forward (the prompts' mean length plus half the output): where the
        closed forms price forwards."""
        return int(statistics.mean(map(len, self.encoded)) + self.max_new_tokens / 2)

    def prompt_shapes(self, new_tokens: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """(prompt length, output tokens) of each prompt, as `sim.run.simulate_prompts` takes them: the
        output lengths of a measured run, or max_new_tokens each."""
        counts = [self.max_new_tokens] * len(self.encoded) if new_tokens is None else new_tokens
        return [(len(ids), n) for ids, n in zip(self.encoded, counts, strict=True)]


def prepare(workload: Workload) -> Workload:
    from ..backend.models import load_tokenizer, resolve
    from ..backend.prompts import encode, load_prompts

    prompts = load_prompts(workload.prompts, workload.limit)
    tokenizer = load_tokenizer(resolve("smollm2"))
    return replace(workload, encoded=[encode(p, tokenizer) for p in prompts], eos=tokenizer.eos_token_id)


PROFILE_PASSES = 7  # timed passes over every profile point, in all (the median of each point is over them)
PROFILE_WARMUP = 2  # passes left out, before a model's first timed one


class Profiling:
    """The latency profile of every (model, threads, neighbour) the setups use, gathered in rounds.

    `measure_interleaved` runs a round before each of its rounds of measurements, so the profile sees the
    machine in the same states (frequency, neighbours on the host, drift over half an hour) as the runs it
    predicts, rather than in the minutes before them. Models stay loaded between rounds."""

    def __init__(self, setups: Sequence[Setup], workload: Workload, rounds: int = 1) -> None:
        self.workload = workload
        # (model, threads, neighbour, process): process None for the whole model's forward
        whole = [(m, t, n if t == 1 else None, None) for s in setups for m, t, n in
                 zip(s.chain, s.stage_threads(), s.stage_neighbours(), strict=True)]
        self.needed = list(dict.fromkeys(whole + [p for s in setups for p in s.process_parts()]))
        window = max([s.gamma for s in setups] + [s.max_drafts or workload.max_lead for s in setups])
        lengths = [len(ids) for ids in workload.encoded]
        # the contexts every run passes through, so the simulator interpolates rather than extrapolates
        self.contexts = tuple(sorted({min(lengths), max(lengths) + workload.max_new_tokens + window}))
        self.sizes = sorted(n for n in {1, 2, 3, 4, 5, 6, 8, 12, 16, 24, window + 1} if n <= window + 1)
        # a SpecPipe process forwards one tree level: 1 .. width nodes (the prompt's prefill is not decode time)
        self.level_sizes = list(range(1, max([s.tree_width for s in setups if s.scheme == "specpipe"] + [2]) + 1))
        self.passes_per_round = -(-PROFILE_PASSES // rounds)
        self.models: dict[str, Any] = {}
        self.profilers: dict[str, Any] = {}
        self.co_runners: dict[str, str | None] = {}
        self.ngram_s: dict[str, float] = {}  # the n-gram drafter's cost per proposal: it has no forward
        self.rounds = 0
        self.interference: list[float | None] = []  # other processes' share of the CPUs, per round

    def round(self, progress: Progress) -> None:
        """One round: every profile point of every model timed `passes_per_round` more times."""
        import torch

        from ..backend.models import load_model, resolve
        from ..backend.profiler import co_runner
        from ..interference import Watch

        device = self.workload.device
        before = torch.get_num_threads()
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self.rounds += 1
        with Watch() as watch:  # other processes' share of the CPUs during this round
            try:
                for model, threads, neighbour, process in progress(self.needed, desc=f"profiling, round {self.rounds}"):
                    if model not in self.models:
                        self.models[model] = load_model(resolve(model), device)
                    loaded = self.models[model]
                    if model.startswith("ngram"):
                        self.ngram_s.setdefault(model, _time_ngram(loaded, self.workload.encoded))
                        continue
                    torch.set_num_threads(threads)
                    # a one-thread model runs as a pipeline stage pinned to one core, and usually while another
                    # stage's model forwards on the other core: time it that way (on core 0, its neighbour on core 1)
                    pin = threads == 1 and device == "cpu" and {0, 1} <= affinity
                    load = pin and self.workload.contended and neighbour is not None
                    key = profile_key(model, threads, neighbour, process and process.label)
                    self.co_runners[key] = f"{neighbour} forwards on core 1 (profiled on core 0)" if load else None
                    with co_runner(str(neighbour), core=1) if load else contextlib.nullcontext():
                        if pin:
                            os.sched_setaffinity(0, {0})
                        try:
                            self._passes(key, loaded, process)
                        finally:
                            if pin:
                                os.sched_setaffinity(0, affinity)
            finally:
                torch.set_num_threads(before)
        self.interference.append(watch.share)

    def _passes(self, key: str, model: Any, process: Process | None) -> None:
        """A model's (or a SpecPipe process's) warm-up (PROFILE_WARMUP passes in its first round, one later) and this
        round's passes."""
        from ..backend.profiler import LatencyProfiler

        first = key not in self.profilers
        if first:
            device = self.workload.device
            if process is None:
                self.profilers[key] = LatencyProfiler(model, device, self.sizes, self.contexts)
            else:
                self.profilers[key] = LatencyProfiler(None, device, self.level_sizes, self.contexts,
                                                      forward=_process_forward(model, process))
        for _ in range(PROFILE_WARMUP if first else 1):
            self.profilers[key].run_pass(record=False)
        for _ in range(self.passes_per_round):
            self.profilers[key].run_pass()

    def write(self, path: Path) -> None:
        """The profile file, with the medians over every round so far."""
        from ..io import environment
        from ..profiles import write_profiles

        profiles = {key: {"device": self.workload.device, "threads": threads, "dtype": "float32",
                          "source": "pipespec validate", "co_runner": self.co_runners[key],
                          "rounds": self.rounds, "points": self.profilers[key].points(),
                          "interference_by_round": self.interference,
                          "environment": environment(self.workload.device)}
                    for key, threads in ((profile_key(m, t, n, p and p.label), t) for m, t, n, p in self.needed)
                    if key in self.profilers}
        write_profiles(path, profiles)


def _process_forward(model: Any, process: Process) -> Callable[..., Any]:
    """The builder of what a SpecPipe process runs, for `LatencyProfiler(forward=...)`."""
    from ..backend.profiler import TreeStageForward

    span = process.layers or range(model.config.num_hidden_layers)
    return lambda device, contexts, rng: TreeStageForward(model, span, process.head, device, contexts, rng)


def _time_ngram(drafter: Any, prompts: Sequence[Sequence[int]]) -> float:
    times = []
    for ids in prompts:
        drafter.reset(ids)
        start = time.perf_counter()
        drafter.propose(8)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def record_traces(setups: Sequence[Setup], workload: Workload, path: Path, progress: Progress) -> None:
    """Greedy agreement of every adjacent pair along the verifier's own greedy output, on the prompts."""
    import torch

    from ..backend.models import load_model, resolve
    from ..backend.profiler import greedy_continuation, match_bits
    from ..traces import pair_entry, write_traces

    pairs = dict.fromkeys([(a, b, 1) for s in setups for a, b in itertools.pairwise(s.chain)]
                          + [s.trace_pair() for s in setups if len(s.chain) > 1])
    torch.set_num_threads(2)
    models: dict[str, Any] = {}
    references: dict[str, list[list[int]]] = {}
    out: dict[str, Any] = {}
    for draft, verifier, width in progress(list(pairs), desc="acceptance traces"):
        for name in (draft, verifier):
            if name not in models:
                models[name] = load_model(resolve(name), workload.device)
        if verifier not in references:
            references[verifier] = [greedy_continuation(models[verifier], workload.device, ids,
                                                        workload.max_new_tokens, workload.eos)
                                    for ids in workload.encoded]
        matches = [match_bits(models[draft], workload.device, ids, ref, width)
                   for ids, ref in zip(workload.encoded, references[verifier], strict=True)]
        out[trace_name(draft, verifier, width)] = pair_entry(draft, verifier, matches, top_k=width)
    write_traces(path, out)


def placement(setup: Setup) -> str:
    """Threads and cores of each process ("1t@cpu0, 1t@cpu1": a markdown cell), or of the one in-process run ("2t")."""
    if not setup.cpus:
        return f"{setup.threads[0]}t"
    threads = setup.threads * len(setup.cpus) if len(setup.threads) == 1 else setup.threads
    return ", ".join(f"{t}t@cpu{c}" for t, c in zip(threads, setup.cpus, strict=True))


def trace_name(draft: str, verifier: str, width: int = 1) -> str:
    return f"{draft}->{verifier}" + (f"@top{width}" if width > 1 else "")


def measure_interleaved(setups: Sequence[Setup], workload: Workload, progress: Progress,
                        profiling: Profiling | None = None) -> dict[str, dict[str, Any]]:
    """Every configuration `repeats` times in rounds (each round runs every configuration once), so that
    drift and bursts of interference on a shared machine spread over configurations, where the medians
    reject them, instead of biasing the one measured while they lasted; with `profiling`, a round of the
    latency profile before each round of measurements."""
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in setups}
    for r in range(workload.repeats):
        if profiling is not None:
            profiling.round(progress)
        for setup in progress(list(setups), desc=f"measuring, round {r + 1}/{workload.repeats}"):
            runs[setup.name].append(measure_once(setup, workload))
    return {name: combine(records) for name, records in runs.items()}


def measure_once(setup: Setup, workload: Workload) -> dict[str, Any]:
    """One run of a configuration over the prompts: decode and overall ms/token, outputs, pair and stage stats."""
    from ..backend.runner import RunConfig, run

    ppsd = setup.scheme == "ppsd"
    trained_exit = setup.chain[0] if ppsd and setup.chain[0].startswith("draft:") else None
    config = RunConfig(scheme=setup.scheme, chain=setup.chain[-1:] if ppsd else setup.chain,
                       exit_layer=setup.exit_layer if ppsd else 8, exit_draft=trained_exit,
                       prompts=workload.prompts, limit=workload.limit,
                       max_new_tokens=workload.max_new_tokens, gamma=setup.gamma, max_drafts=setup.max_drafts,
                       max_lead=workload.max_lead, device=workload.device, threads=setup.threads, cpus=setup.cpus,
                       pp_stages=setup.pp_stages, tree_width=setup.tree_width, tree_depth=setup.tree_depth,
                       warmup=1)
    from ..interference import Watch

    with Watch() as watch:
        result = run(config)
    rows, summary = result["prompts"], result["summary"]
    tokens = sum(r["new_tokens"] for r in rows)
    return {"decode_ms_per_token": sum(r["elapsed_s"] - r["ttft_s"] for r in rows) / (tokens - len(rows)) * 1e3,
            "ms_per_token": summary["ms_per_token"], "num_tokens": summary["num_tokens"],
            "outputs": [r["output_ids"] for r in rows], "pairs": summary["pairs"], "stages": summary["stages"],
            "interference": watch.share}


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one configuration: medians of decode and overall ms/token, the last run's outputs
    (None unless every run produced the same) and statistics."""
    last = runs[-1]
    decode_ms = [r["decode_ms_per_token"] for r in runs]
    same = all(r["outputs"] == last["outputs"] for r in runs)
    return {**last, "decode_ms_per_token": statistics.median(decode_ms),
            "repeats_interference": [r.get("interference") for r in runs],
            "ms_per_token": statistics.median(r["ms_per_token"] for r in runs),
            "repeats_decode_ms_per_token": decode_ms, "outputs": last["outputs"] if same else None}


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


def window(setup: Setup, max_lead: int) -> int | None:
    """Drafts one verification may score: SD's γ; a pipeline's cap (or how far a stage may run ahead)."""
    return {"ar": None, "sd": setup.gamma}.get(setup.scheme, setup.max_drafts or max_lead)


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


def spread(repeats_ms: Sequence[float]) -> float:
    """The repeats' range over their median: how far this machine moved the measurement itself."""
    return (max(repeats_ms) - min(repeats_ms)) / statistics.median(repeats_ms)


def measured_row(setup: Setup, measured: dict[str, Any], reference: list[list[int]] | None) -> dict[str, Any]:
    """A table row's measured half: what the backend did for one setup (medians over its repeats)."""
    return {
        "config": setup.name, "scheme": setup.scheme, "chain": " -> ".join(setup.chain),
        "placement": placement(setup),
        "window": {"sd": str(setup.gamma), "ar": "-", "ppsd": "-",
                   "specpipe": f"w{setup.tree_width} d{setup.tree_depth or setup.pp_stages}"}.get(
            setup.scheme, str(setup.max_drafts or "all")),
        "measured_ms_per_token": measured["decode_ms_per_token"],
        "measured_overall_ms_per_token": measured["ms_per_token"],
        "lossless": reference is not None and measured["outputs"] == reference,
        "output_lengths": None if measured["outputs"] is None else [len(o) for o in measured["outputs"]],
        "measured_alpha": [p["alpha_estimate"] for p in measured["pairs"]],
        "measured_mean_accepted_length": [p["mean_accepted_length"] for p in measured["pairs"]],
        "measured_histograms": [p["tokens_added_histogram"] for p in measured["pairs"]],
        "repeats_ms_per_token": measured["repeats_decode_ms_per_token"],
        "measured_stages": measured["stages"],
        # the share of the CPUs other processes took during each repeat (None: unknown), and the flag
        "repeats_interference": measured.get("repeats_interference", []),
        "disturbed": disturbed(measured.get("repeats_interference", [])),
    }


MEASURED_KEYS = ("config", "scheme", "chain", "placement", "window", "measured_ms_per_token",
                 "measured_overall_ms_per_token", "lossless", "measured_alpha", "measured_mean_accepted_length",
                 "measured_histograms", "repeats_ms_per_token")


def previous_measurements(out: Path, setups: Sequence[Setup],
                          workload: Workload) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The measured halves of the rows a finished run left in `out` (on the same prompts and limits as
    `workload`), and what else of that run a prediction keeps: the n-gram drafter's cost, and the measuring
    run's wall time, peak memory and environment."""
    import json

    path = out / "validate.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    config = document.get("config", {})
    for key in ("prompts", "limit", "max_new_tokens"):
        require(config.get(key) == getattr(workload, key),
                f"--repredict: {path} measured --{key.replace('_', '-')} {config.get(key)}, "
                f"not {getattr(workload, key)}: give the same")
    results = document.get("results", {})
    rows = {r.get("config"): r for r in results.get("rows", [])}
    for setup in setups:
        require(setup.name in rows and all(k in rows[setup.name] for k in MEASURED_KEYS),
                f"--repredict: {path} has no measurement of {setup.name} (run it without --repredict)")
    measured = {}
    for setup in setups:
        row = rows[setup.name]
        measured[setup.name] = {**{k: row[k] for k in MEASURED_KEYS}, "output_lengths": row.get("output_lengths"),
                                "measured_stages": row.get("measured_stages"),
                                "repeats_interference": row.get("repeats_interference", []),
                                "disturbed": row.get("disturbed", False)}
    run = results.get("measurement_run") or {"wall_time_s": results.get("wall_time_s"),
                                              "peak_rss_mib": results.get("peak_rss_mib"),
                                              "environment": document.get("environment")}
    return measured, {"ngram_cost_s": results.get("ngram_cost_s", {}), "measurement_run": run}


def _target_output_lengths(traces_path: Path) -> list[int]:
    """The target's greedy output length on each prompt: its traces' sequences are along that output."""
    from ..traces import read_traces

    entry = next((e for e in read_traces(traces_path).values() if e.get("target") == TARGET), None)
    require(entry is not None, f"{traces_path} has no trace along {TARGET}'s output: measure the run again")
    return [len(seq) for seq in entry["sequences"]]


def validate(setups: Sequence[Setup], workload: Workload, out: Path, seeds: int = 3,
             progress: Progress = lambda it, **_: it, repredict: bool = False) -> dict[str, Any]:
    """Profile, measure, predict (or, with `repredict`, predict again from a finished run's profile, traces
    and measurements in `out`); returns rows (one per setup) and the files written."""
    require(setups[0].scheme == "ar", "validate: the first configuration must be the AR baseline")
    workload = prepare(workload)
    out.mkdir(parents=True, exist_ok=True)
    profile_path, traces_path = out / "profile.json", out / "traces.json"
    profile_interference: list[float | None] = []
    if repredict:
        from ..backend.models import load_model, resolve

        measured, previous = previous_measurements(out, setups, workload)
        ngram_s = {m: previous["ngram_cost_s"].get(m) or _time_ngram(load_model(resolve(m), "cpu"), workload.encoded)
                   for s in setups for m in s.chain if m.startswith("ngram")}
    else:
        record_traces(setups, workload, traces_path, progress)
        profiling = Profiling(setups, workload, rounds=workload.repeats)
        measurements = measure_interleaved(setups, workload, progress, profiling)
        profiling.write(profile_path)
        profile_interference = profiling.interference
        ngram_s = profiling.ngram_s
        reference = measurements[setups[0].name]["outputs"]
        measured = {s.name: measured_row(s, measurements[s.name], reference) for s in setups}
    lengths = measured[setups[0].name]["output_lengths"] or _target_output_lengths(traces_path)
    rows = []
    for setup in setups:
        row = dict(measured[setup.name])
        inputs = planning_inputs(setup, profile_path, traces_path, ngram_s, workload.context)
        predicted = predict(setup, inputs, workload, workload.prompt_shapes(lengths), seeds)
        print(f"{setup.name}: measured {row['measured_ms_per_token']:.1f} ms/token, simulated "
              f"{predicted['sim_ms_per_token']:.1f}, closed form {predicted['closed_ms_per_token']:.1f}",
              file=sys.stderr, flush=True)
        row.update({"sim_ms_per_token": predicted["sim_ms_per_token"],
                    "closed_ms_per_token": predicted["closed_ms_per_token"],
                    "trace_alpha": list(predicted["trace_alpha"].values()),
                    "sim_histograms": [{str(k): v for k, v in sorted(p.tokens_added_histogram.items())}
                                       for p in predicted["sim_pairs"]],
                    "sim_stages": predicted["sim_stages"]})
        rows.append(row)
    ar = rows[0]
    for row in rows:
        for kind in ("measured", "sim", "closed"):
            row[f"{kind}_speedup"] = ar[f"{kind}_ms_per_token"] / row[f"{kind}_ms_per_token"]
        row["measured_spread"] = spread(row["repeats_ms_per_token"])
        row["sim_error"] = row["sim_ms_per_token"] / row["measured_ms_per_token"] - 1
        row["closed_error"] = row["closed_ms_per_token"] / row["measured_ms_per_token"] - 1
    results = {"rows": rows, "profile": str(profile_path), "traces": str(traces_path), "ngram_cost_s": ngram_s,
               "profile_interference": profile_interference}
    if repredict:
        results["measurement_run"] = previous["measurement_run"]  # this run's own time is prediction only
    return results
