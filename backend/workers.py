"""What every stage process of the pipelined engines (pipespec, ppsd, specpipe) shares: where it runs
(`Placement`), what it shares with the coordinator (`Harness`: shared token buffers, rings, the control slots,
doorbells, the results queue), the one report it sends per prompt (`StageReport`), and the loop it serves
(`StageWorker`), started by `_stage_main` in each spawned process."""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import RunFailed
from ..metrics import PairStats, StageStats
from .decoding import timed
from .devices import loaded_facts
from .engines import DecodeOptions, Output
from .shared import ProbRing, TokenBuffer

EPOCH, DONE, STOP = 0, 1, 2  # control slots


@dataclass(frozen=True)
class Placement:
    """Where a stage runs: a torch device, its thread count, and (on CPUs) the cores it may use."""

    device: str = "cpu"
    threads: int = 1
    cpus: tuple[int, ...] = ()
    dtype: str = "float32"  # of the stage's weights (--dtype)
    quantize: str = "none"  # nf4 or int8 weights through bitsandbytes (--quantize)


class StageFailed(RunFailed):
    """A stage raised or died; the message names it."""


@dataclass(frozen=True)
class Harness:
    """What the coordinator and every stage process share: a token buffer per stage, the distribution (or hidden
    row) rings, the prompt, the control slots (EPOCH, DONE, STOP), a doorbell per stage, the results queue, and
    the sampling temperature and seed."""

    buffers: Sequence[TokenBuffer]
    rings: Sequence[ProbRing | None]
    prompt: TokenBuffer
    control: torch.Tensor
    wake: Sequence[Any]
    results: Any
    sampling: tuple[float, int] = (0.0, 0)


@dataclass
class StageReport:
    """A stage's report on one prompt, the one message every engine's stages send when it is done."""

    stats: StageStats
    pair: PairStats | None = None  # the pair this stage verifies, if it reports one
    resyncs: int = 0  # times it caught up with its verifier's sequence without a conflict
    output: list[int] | None = None  # the stage that decides the output: its new tokens,
    first_token_at: float | None = None  # when the first was decided (perf_counter),
    finished_at: float | None = None  # and when the last was


def _stage_main(index: int, factory: Callable[..., StageWorker], placement: Placement, options: DecodeOptions,
                harness: Harness) -> None:
    """Entry point of a stage process: `factory(index, placement, options, harness)` builds the worker that serves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C and stops us
    try:
        torch.set_num_threads(placement.threads)
        if placement.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, placement.cpus)
        worker = factory(index, placement, options, harness)
        harness.results.put(("ready", index, [loaded_facts(m) for m in worker.models]))
        worker.serve()
    except BaseException as exc:
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        with contextlib.suppress(Exception):
            harness.results.put(("error", index, summary))


class StageWorker(abc.ABC):
    """The loop every stage process runs: wait for a prompt (an epoch), decode it, report, repeat."""

    models: Sequence[Any] = ()  # what it loaded, read back into the run's result (`devices.loaded_facts`)
    stats: StageStats

    def __init__(self, index: int, placement: Placement, options: DecodeOptions, harness: Harness) -> None:
        self.index, self.options, self.device = index, options, placement.device
        self.buffers, self.rings, self.prompt = harness.buffers, harness.rings, harness.prompt
        self.control, self.wake, self.results = harness.control, harness.wake, harness.results
        self.parent = os.getppid()

    def stopped(self) -> bool:
        """Asked to stop, or orphaned (the coordinator died without asking)."""
        return bool(self.control.numpy()[STOP]) or os.getppid() != self.parent

    def serve(self) -> None:
        seen = 0
        control = self.control.numpy()
        while not self.stopped():
            if control[EPOCH] == seen:
                self.wake[self.index].wait(0.1)
                continue
            seen = int(control[EPOCH])
            self.decode(seen)

    def notify(self) -> None:
        """Ring the neighbours: something they read changed."""
        for j in (self.index - 1, self.index + 1):
            if 0 <= j < len(self.wake):
                self.wake[j].ring()

    def timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), its wall time (device synchronised) added to the stage's busy time."""
        return timed(self.device, self.stats, fn, *args)

    def finish_prompt(self, epoch: int) -> None:
        """The stage that decides the output has all of it: every stage stops decoding `epoch`."""
        self.control.numpy()[DONE] = epoch
        for bell in self.wake:
            bell.ring()

    def report(self, epoch: int, report: StageReport) -> None:
        self.results.put(("done", self.index, epoch, report))

    @staticmethod
    def final_report(stats: StageStats, pair: PairStats | None, output: Output, tokens: Sequence[int],
                     resyncs: int = 0) -> StageReport:
        """The report of the stage that decides the output, from its sequence once it is done."""
        first = None if output.ttft_s is None else output.started + output.ttft_s
        return StageReport(stats, pair, resyncs, output.tokens(tokens), first, time.perf_counter())

    @abc.abstractmethod
    def decode(self, epoch: int) -> None:
        """Decode the prompt of `epoch` and put this stage's report on the results queue."""
