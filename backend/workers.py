"""What every stage process of the pipelined engines (pipespec, ppsd, specpipe) shares: where it runs
(`Placement`), how it talks to the coordinator and the other stages (`Harness`: token buffers, rings, prompts,
the end of a prompt, doorbells, messages, results), the one report it sends per prompt (`StageReport`), and the
loop it serves (`StageWorker`), started by `_stage_main` in each stage process.

A harness is a transport: `ShmHarness` (one host: shared memory, semaphores and queues) or `dist.DistHarness`
(ranks of a torch.distributed process group). The coordinator's side of each is a `Link` (links.py)."""

from __future__ import annotations

import abc
import contextlib
import os
import queue
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


def stage_name(names: Sequence[str], index: int) -> str:
    """How errors name stage `index` of a pipeline."""
    return f"stage {index} ({names[index]})"


class Harness(abc.ABC):
    """A stage process's side of the transport. `buffers[j]` is stage j's token buffer (its owner publishes, its
    neighbours read) and `rings[j]` the rows published with it (distributions when sampling, hidden rows in ppsd);
    a pipeline may give a second ring per stage, `rings[len(buffers) + j]`, published with the same sequence (a
    verifier's hidden states for the feature draft below it); prompts arrive as epochs; the stage that decides the
    output ends an epoch (`finish_prompt`)."""

    buffers: Sequence[Any]
    rings: Sequence[Any]
    sampling: tuple[float, int]  # temperature, seed

    def connect(self, index: int) -> Harness:
        """In the stage process, before anything else: join the transport as stage `index`."""
        return self

    @abc.abstractmethod
    def epoch(self) -> int:
        """The newest prompt's epoch (0: none yet)."""

    @abc.abstractmethod
    def prompt(self) -> list[int]:
        """The tokens of the newest prompt."""

    @abc.abstractmethod
    def done(self, epoch: int) -> bool:
        """The output of `epoch` is complete."""

    @abc.abstractmethod
    def stopped(self) -> bool:
        """The coordinator asked every stage to stop."""

    @abc.abstractmethod
    def wait(self, index: int, timeout_s: float) -> None:
        """Stage `index` waits until a neighbour rings it, a message arrives, or timeout_s passes."""

    @abc.abstractmethod
    def ring(self, index: int) -> None:
        """Wake stage `index`: something it reads changed."""

    @abc.abstractmethod
    def finish_prompt(self, epoch: int) -> None:
        """Every stage stops decoding `epoch`."""

    @abc.abstractmethod
    def put_result(self, message: tuple) -> None:
        """A message for the coordinator: ("ready", index, facts), ("done", index, epoch, report) or ("error",
        index, summary)."""

    @abc.abstractmethod
    def send(self, index: int, message: tuple) -> None:
        """A message for stage `index` (specpipe's levels, results and drops), in order per sender."""

    @abc.abstractmethod
    def receive(self, index: int, timeout_s: float) -> tuple | None:
        """Stage `index`'s next message, or None after timeout_s."""

    def close(self) -> None:
        """In the stage process, on its way out."""
        return None


@dataclass(frozen=True)
class ShmHarness(Harness):
    """One host: a shared-memory token buffer per stage, the rings, the prompt, the control slots (EPOCH, DONE,
    STOP), a doorbell per stage, an inbox queue per stage (specpipe), the results queue."""

    buffers: Sequence[TokenBuffer]
    rings: Sequence[ProbRing | None]
    prompt_buffer: TokenBuffer
    control: torch.Tensor
    wake: Sequence[Any]
    results: Any
    inboxes: Sequence[Any] = ()
    sampling: tuple[float, int] = (0.0, 0)

    def epoch(self) -> int:
        return int(self.control.numpy()[EPOCH])

    def prompt(self) -> list[int]:
        return self.prompt_buffer.read()[1]

    def done(self, epoch: int) -> bool:
        return bool(self.control.numpy()[DONE] >= epoch)

    def stopped(self) -> bool:
        return bool(self.control.numpy()[STOP])

    def wait(self, index: int, timeout_s: float) -> None:
        self.wake[index].wait(timeout_s)

    def ring(self, index: int) -> None:
        self.wake[index].ring()

    def finish_prompt(self, epoch: int) -> None:
        self.control.numpy()[DONE] = epoch
        for bell in self.wake:
            bell.ring()

    def put_result(self, message: tuple) -> None:
        self.results.put(message)

    def send(self, index: int, message: tuple) -> None:
        self.inboxes[index].put(message)

    def receive(self, index: int, timeout_s: float) -> tuple | None:
        try:
            return self.inboxes[index].get(timeout=timeout_s)
        except queue.Empty:
            return None


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
                harness: Harness) -> str | None:
    """Entry point of a stage process: `factory(index, placement, options, harness)` builds the worker that serves.
    Returns the error it reported to the coordinator, if it failed (None when it served to the end)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C and stops us
    connected: Harness | None = None
    try:
        torch.set_num_threads(placement.threads)
        if placement.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, placement.cpus)
        connected = harness.connect(index)
        worker = factory(index, placement, options, connected)
        connected.put_result(("ready", index, [loaded_facts(m) for m in worker.models]))
        worker.serve()
    except BaseException as exc:
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        with contextlib.suppress(Exception):
            (connected or harness).put_result(("error", index, summary))
        return summary
    finally:
        if connected is not None:
            connected.close()
    return None


class StageWorker(abc.ABC):
    """The loop every stage process runs: wait for a prompt (an epoch), decode it, report, repeat."""

    models: Sequence[Any] = ()  # what it loaded, read back into the run's result (`devices.loaded_facts`)
    stats: StageStats

    def __init__(self, index: int, placement: Placement, options: DecodeOptions, harness: Harness) -> None:
        self.index, self.options, self.device = index, options, placement.device
        self.harness = harness
        self.buffers, self.rings = harness.buffers, harness.rings
        self.parent = os.getppid()

    def stopped(self) -> bool:
        """Asked to stop, or orphaned (the process that started it died without asking)."""
        return self.harness.stopped() or os.getppid() != self.parent

    def active(self, epoch: int) -> bool:
        """Still decoding `epoch`: its output is not complete, and nobody asked to stop."""
        return not self.harness.done(epoch) and not self.stopped()

    def wait(self, timeout_s: float) -> None:
        """Until a neighbour rings this stage (or a message arrives), at most timeout_s."""
        self.harness.wait(self.index, timeout_s)

    def serve(self) -> None:
        seen = 0
        while not self.stopped():
            if self.harness.epoch() == seen:
                self.wait(0.1)
                continue
            seen = self.harness.epoch()
            self.decode(seen)

    def notify(self) -> None:
        """Ring the neighbours: something they read changed."""
        for j in (self.index - 1, self.index + 1):
            if 0 <= j < len(self.buffers):
                self.harness.ring(j)

    def timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), its wall time (device synchronised) added to the stage's busy time."""
        return timed(self.device, self.stats, fn, *args)

    def finish_prompt(self, epoch: int) -> None:
        """The stage that decides the output has all of it: every stage stops decoding `epoch`."""
        self.harness.finish_prompt(epoch)

    def report(self, epoch: int, report: StageReport) -> None:
        self.harness.put_result(("done", self.index, epoch, report))

    @staticmethod
    def final_report(stats: StageStats, pair: PairStats | None, output: Output, tokens: Sequence[int],
                     resyncs: int = 0) -> StageReport:
        """The report of the stage that decides the output, from its sequence once it is done."""
        first = None if output.ttft_s is None else output.started + output.ttft_s
        return StageReport(stats, pair, resyncs, output.tokens(tokens), first, time.perf_counter())

    @abc.abstractmethod
    def decode(self, epoch: int) -> None:
        """Decode the prompt of `epoch` and put this stage's report on the coordinator's results."""
