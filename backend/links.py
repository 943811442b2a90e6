"""The coordinator's side of a transport (`Link`): it hands the stage processes their harness, starts each
prompt, collects the stages' messages and asks them to stop. `ShmLink` is one host's shared memory; `dist.DistLink`
is rank 0 of a torch.distributed process group. `PipelineEngine` starts and stops the processes around either."""

from __future__ import annotations

import abc
import queue
from collections.abc import Callable, Sequence

import torch
import torch.multiprocessing as mp

from .shared import Doorbell, ProbRing, TokenBuffer
from .workers import EPOCH, STOP, Harness, ShmHarness

RingShape = tuple[int, int]  # (slots, row width) of a stage's ring


class Link(abc.ABC):
    harness: Harness  # what every stage process is given (it connects in the stage process)

    def open(self, alive: Callable[[], None], deadline: float) -> None:
        """Once the stage processes started: connect to them; `alive()` raises if one died."""
        return None

    @abc.abstractmethod
    def start_prompt(self, epoch: int, prompt: Sequence[int], initial: Sequence[Sequence[int]]) -> None:
        """Every stage's buffer holds `initial[j]` and the prompt's epoch begins."""

    @abc.abstractmethod
    def get(self, timeout_s: float) -> tuple | None:
        """The stages' next message (see `Harness.put_result`), or None after timeout_s."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask every stage to stop (it does not wait)."""

    def close(self) -> None:
        """After the processes ended (or were killed)."""
        return None


class ShmLink(Link):
    """Shared memory on one host: the buffers, rings, prompt and control slots are tensors in shared memory,
    the doorbells semaphores, the inboxes and the results queues of the spawn context."""

    def __init__(self, stages: int, rings: Sequence[RingShape | None], capacity: int, sampling: tuple[float, int],
                 inboxes: bool) -> None:
        context = mp.get_context("spawn")
        self.buffers = [TokenBuffer(capacity) for _ in range(stages)]
        self.prompt = TokenBuffer(capacity)
        self.control = torch.zeros(3, dtype=torch.int64).share_memory_()
        self.wake = [Doorbell(context) for _ in range(stages)]
        self.results = context.Queue()
        self.inboxes = [context.Queue() for _ in range(stages)] if inboxes else []
        shared = [ProbRing(*shape) if shape is not None else None for shape in rings]
        self.harness = ShmHarness(self.buffers, shared, self.prompt, self.control, self.wake, self.results,
                                  self.inboxes, sampling)

    def start_prompt(self, epoch: int, prompt: Sequence[int], initial: Sequence[Sequence[int]]) -> None:
        self.prompt.publish(list(prompt))
        for buffer, tokens in zip(self.buffers, initial, strict=True):
            buffer.publish(list(tokens))  # no stage may read another's tokens from the previous prompt (all idle)
        self.control.numpy()[EPOCH] = epoch
        for bell in self.wake:
            bell.ring()

    def get(self, timeout_s: float) -> tuple | None:
        try:
            return self.results.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def stop(self) -> None:
        self.control.numpy()[STOP] = 1
        for bell in self.wake:
            bell.ring()

    def close(self) -> None:
        for q in (self.results, *self.inboxes):
            q.close()
            q.join_thread()


def make_link(transport: str, names: Sequence[str], rings: Sequence[RingShape | None], capacity: int,
              sampling: tuple[float, int], inboxes: bool, start_timeout_s: float) -> Link:
    """The coordinator's link for `transport` (shm | dist)."""
    if transport == "dist":
        from .dist import DistLink

        return DistLink(names, rings, sampling, start_timeout_s)
    return ShmLink(len(names), rings, capacity, sampling, inboxes)
