"""The latency profile `pipespec validate` and the benchmarks take, in rounds beside the measurements,
and the acceptance traces the predictions replay."""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schemes import get
from .setups import Process, Progress, Setup, Workload, profile_key, trace_name

if TYPE_CHECKING:
    from torch import nn

    from ..backend.ngram import NgramDrafter
    from ..backend.profiler import LatencyProfiler, TreeStageForward

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
        # the most drafts one verification of these setups scores (AR: none): its forward's n is one more
        drafts = max(get(s.scheme).drafts_scored(s, workload.max_lead) or 0 for s in setups)
        lengths = [len(ids) for ids in workload.encoded]
        # the contexts every run passes through, so the simulator interpolates rather than extrapolates
        self.contexts = tuple(sorted({min(lengths), max(lengths) + workload.max_new_tokens + drafts}))
        self.sizes = sorted(n for n in {1, 2, 3, 4, 5, 6, 8, 12, 16, 24, drafts + 1} if n <= drafts + 1)
        # a SpecPipe process forwards one tree level: 1 .. width nodes (the prompt's prefill is not decode time)
        self.level_sizes = list(range(1, max([get(s.scheme).trace_width(s) for s in setups] + [2]) + 1))
        self.passes_per_round = -(-PROFILE_PASSES // rounds)
        self.models: dict[str, nn.Module] = {}
        self.profilers: dict[str, LatencyProfiler] = {}
        self.co_runners: dict[str, str | None] = {}
        self.ngram_s: dict[str, float] = {}  # the n-gram drafter's cost per proposal: it has no forward
        self.rounds = 0
        self.interference: list[float | None] = []  # other processes' share of the CPUs, per round

    def round(self, progress: Progress) -> None:
        """One round: every profile point of every model timed `passes_per_round` more times."""
        import torch

        from ..backend.loading import load_model
        from ..backend.models import resolve
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
                        self.ngram_s.setdefault(model, time_ngram(loaded, self.workload.encoded))
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

    def _passes(self, key: str, model: nn.Module, process: Process | None) -> None:
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


def _process_forward(model: nn.Module, process: Process) -> Callable[..., TreeStageForward]:
    """The builder of what a SpecPipe process runs, for `LatencyProfiler(forward=...)`."""
    from ..backend.profiler import TreeStageForward

    span = process.layers or range(model.config.num_hidden_layers)
    return lambda device, contexts, rng: TreeStageForward(model, span, process.head, device, contexts, rng)


def time_ngram(drafter: NgramDrafter, prompts: Sequence[Sequence[int]]) -> float:
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

    from ..backend.loading import load_model
    from ..backend.models import resolve
    from ..backend.profiler import greedy_continuation, match_bits
    from ..traces import pair_entry, write_traces

    pairs = dict.fromkeys([(a, b, 1) for s in setups for a, b in itertools.pairwise(s.chain)]
                          + [s.trace_pair() for s in setups if len(s.chain) > 1])
    torch.set_num_threads(2)
    models: dict[str, nn.Module] = {}
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
        matches = [match_bits(models[draft], workload.device, ids, ref, width, models[verifier])
                   for ids, ref in zip(workload.encoded, references[verifier], strict=True)]
        out[trace_name(draft, verifier, width)] = pair_entry(draft, verifier, matches, top_k=width)
    write_traces(path, out)
