"""The torch.distributed transport (`--transport dist`): every stage is a rank of a gloo process group, rank 0
the coordinator, rank j + 1 stage j. On one host the engine starts the ranks itself; under torchrun it joins the
group torchrun made (`launched_rank`), and every rank but 0 serves as a stage.

What the shared-memory transport keeps in shared memory each rank keeps as replicas, fed by point-to-point
messages of the process group (pickled, two sends each: a length, then the bytes):
- a stage's token buffer: its owner publishes the whole sequence (with the ring rows written since its last
  publish: distributions when sampling, ppsd's hidden rows, and on a second ring a feature draft's verifier's
  hidden states) to its neighbours, which read their replicas;
- the prompt, its epoch and each buffer's initial tokens, from the coordinator; the end of an epoch, from the stage
  that decides the output; stop;
- specpipe's levels, results and drops, to the stage they are for; every stage's results, to the coordinator.

A peer that dies closes its connections (channel.py): the rank stops, naming it. The messages are CPU objects on
GPU hosts too (rows leave the device before they are published), so gloo carries them there as well: NCCL has no
receive on a listening thread from a peer that is not waited on.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .channel import COORDINATOR, Channel, Lost, connect, launched_rank
from .links import Link, RingShape
from .workers import Harness, StageFailed


class _Replica:
    """Stage `owner`'s token buffer as this rank sees it: its owner's copy (which publishes) or a neighbour's
    replica (fed by the owner's publishes)."""

    def __init__(self, harness: _DistStage, owner: int) -> None:
        self.harness, self.owner = harness, owner
        self.tokens: list[int] = []
        self._version = 0

    def set(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self._version += 2

    def version(self) -> int:
        self.harness.pump()
        return self._version

    def publish(self, tokens: Sequence[int], also: Callable[[], None] | None = None) -> None:
        """Owner only: `also` writes the ring rows that travel with the tokens."""
        if also is not None:
            also()
        self.set(list(tokens))
        self.harness.published(self.owner, self.tokens)

    def read(self, also: Callable[[list[int]], Any] | None = None) -> tuple[int, list[int], Any]:
        self.harness.pump()
        tokens = list(self.tokens)
        return self._version, tokens, also(tokens) if also is not None else None


class _Ring:
    """A stage's rows by position modulo its slots, as `shared.ProbRing`; its owner's writes since the last
    publish travel with it."""

    def __init__(self, slots: int, width: int) -> None:
        self.tensor = torch.zeros(slots, width, dtype=torch.float32)
        self.written: dict[int, torch.Tensor] = {}

    def write(self, position: int, row: torch.Tensor) -> None:
        self.tensor[position % len(self.tensor)] = row
        self.written[position] = row

    def rows(self, positions: Sequence[int]) -> torch.Tensor:
        return self.tensor[[p % len(self.tensor) for p in positions]].clone()

    def take(self) -> tuple[list[int], np.ndarray] | None:
        """The rows written since the last take, to publish."""
        if not self.written:
            return None
        positions = list(self.written)
        rows = torch.stack([self.written[p].float().cpu() for p in positions]).numpy()
        self.written = {}
        return positions, rows

    def put(self, rows: tuple[list[int], np.ndarray]) -> None:
        positions, values = rows
        self.tensor[[p % len(self.tensor) for p in positions]] = torch.from_numpy(values)


@dataclass(frozen=True)
class DistHarness:
    """What a stage process is given (picklable): it connects in the stage process (`connect`)."""

    names: tuple[str, ...]
    rings: tuple[RingShape | None, ...]
    sampling: tuple[float, int]
    address: tuple[str, int] | None  # the coordinator's store; None: env:// (torchrun)
    timeout_s: float

    def connect(self, index: int) -> Harness:
        world = len(self.names) + 1
        group = connect(self.address, index + 1, world, self.timeout_s)
        return _DistStage(self, index, Channel(group, index + 1, self.names))


class _DistStage(Harness):
    """Stage `index`'s harness over the process group: replicas, pumped from the channel on every look."""

    def __init__(self, spec: DistHarness, index: int, channel: Channel) -> None:
        self.spec, self.index, self.channel = spec, index, channel
        self.sampling = spec.sampling
        stages = len(spec.names)
        self.buffers = [_Replica(self, j) for j in range(stages)]
        self.rings = [_Ring(*shape) if shape is not None else None for shape in spec.rings]
        self._epoch, self._done, self._stopped = 0, 0, False
        self._prompt: list[int] = []
        self._early: dict[int, list[tuple]] = collections.defaultdict(list)  # publishes of an epoch not yet begun
        self._inbox: collections.deque[tuple] = collections.deque()

    def pump(self, timeout_s: float = 0.0) -> None:
        """Apply every message that has arrived (waiting at most timeout_s for the first)."""
        item = self.channel.get(timeout_s)
        while item is not None:
            self._apply(*item)
            item = self.channel.get(0)

    def _apply(self, src: int, message: Any) -> None:
        if isinstance(message, Lost):
            if self._stopped:
                return
            raise self.channel.lost(src, message.reason)
        kind = message[0]
        if kind == "prompt":
            _, epoch, prompt, initial = message
            self._epoch, self._prompt = epoch, prompt
            for buffer, tokens in zip(self.buffers, initial, strict=True):
                buffer.set(list(tokens))
            for ring in self.rings:
                if ring is not None:
                    ring.written = {}
            for early in self._early.pop(epoch, []):
                self._apply(src, early)
        elif kind == "publish":
            _, epoch, owner, tokens, rows = message
            if epoch > self._epoch:
                self._early[epoch].append(message)
            elif epoch == self._epoch:
                self.buffers[owner].set(tokens)
                for ring, written in zip(self._rings_of(owner), rows, strict=True):
                    if written is not None and ring is not None:
                        ring.put(written)
        elif kind == "done":
            self._done = max(self._done, message[1])
        elif kind == "stop":
            self._stopped = True
        elif kind == "message":
            self._inbox.append(message[1])

    def published(self, owner: int, tokens: list[int]) -> None:
        """Send stage `owner`'s (this stage's) new sequence, with its ring's new rows, to its neighbours."""
        rows = tuple(ring.take() if ring is not None else None for ring in self._rings_of(owner))
        message = ("publish", self._epoch, owner, tokens, rows)
        for j in (owner - 1, owner + 1):
            if 0 <= j < len(self.buffers):
                self.channel.send(j + 1, message)

    def _rings_of(self, owner: int) -> list[_Ring | None]:
        """Stage `owner`'s ring and, where the pipeline gives one, its second ring (`Harness.rings`)."""
        second = owner + len(self.buffers)
        return [self.rings[owner]] + ([self.rings[second]] if second < len(self.rings) else [])

    def epoch(self) -> int:
        self.pump()
        return self._epoch

    def prompt(self) -> list[int]:
        return list(self._prompt)

    def done(self, epoch: int) -> bool:
        self.pump()
        return self._done >= epoch

    def stopped(self) -> bool:
        return self._stopped

    def wait(self, index: int, timeout_s: float) -> None:
        self.pump(timeout_s)

    def ring(self, index: int) -> None:
        return None  # a publish is its own doorbell

    def finish_prompt(self, epoch: int) -> None:
        self._done = max(self._done, epoch)
        for j in range(len(self.buffers)):
            if j != self.index:
                self.channel.send(j + 1, ("done", epoch))

    def put_result(self, message: tuple) -> None:
        self.channel.send(COORDINATOR, ("result", message))

    def send(self, index: int, message: tuple) -> None:
        if index == self.index:
            self._inbox.append(message)
        else:
            self.channel.send(index + 1, ("message", message))

    def receive(self, index: int, timeout_s: float) -> tuple | None:
        if not self._inbox:
            self.pump(timeout_s)
        return self._inbox.popleft() if self._inbox else None

    def close(self) -> None:
        self._stopped = True
        self.channel.goodbye()
        self.channel.join()


class DistLink(Link):
    """Rank 0 of the process group: the coordinator's side (`links.Link`)."""

    def __init__(self, names: Sequence[str], rings: Sequence[RingShape | None], sampling: tuple[float, int],
                 timeout_s: float) -> None:
        from torch.distributed import TCPStore

        self.names, self.world, self.timeout_s = list(names), len(names) + 1, timeout_s
        self.channel: Channel | None = None
        self.stopping = False
        rank = launched_rank()
        self.store: Any = None
        if rank is None:  # one host: the ranks are this process and the stage processes the engine starts
            self.store = TCPStore("127.0.0.1", 0, self.world, is_master=True, wait_for_workers=False,
                                  timeout=datetime.timedelta(seconds=timeout_s))
            address: tuple[str, int] | None = ("127.0.0.1", self.store.port)
        else:
            world = int(os.environ["WORLD_SIZE"])
            if world != self.world:
                raise ConfigError(f"--transport dist: this pipeline has {len(names)} stages, so it runs on "
                                  f"{self.world} ranks (rank 0 coordinates), but torchrun started {world}")
            address = None
        self.address = address
        self.harness = DistHarness(tuple(names), tuple(rings), sampling, address, timeout_s)

    def open(self, alive: Callable[[], None], deadline: float) -> None:
        """Join the group (rank 0) while the stages join it, watching that none died."""
        joined: dict[str, Any] = {}

        def join() -> None:
            try:
                joined["group"] = connect(self.address, COORDINATOR, self.world, self.timeout_s, self.store)
            except Exception as exc:
                joined["error"] = exc

        thread = threading.Thread(target=join, daemon=True, name="pipespec-join")
        thread.start()
        while thread.is_alive():
            alive()
            if time.monotonic() > deadline:
                raise StageFailed("timed out waiting for the pipeline's ranks to join the process group")
            thread.join(0.05)
        if "error" in joined:
            raise StageFailed(f"the process group could not be formed: {joined['error']}")
        self.channel = Channel(joined["group"], COORDINATOR, self.names)

    def start_prompt(self, epoch: int, prompt: Sequence[int], initial: Sequence[Sequence[int]]) -> None:
        assert self.channel is not None
        message = ("prompt", epoch, list(prompt), [list(t) for t in initial])
        for rank in range(1, self.world):
            self.channel.send(rank, message)

    def get(self, timeout_s: float) -> tuple | None:
        assert self.channel is not None, "open() first"
        item = self.channel.get(timeout_s)
        if item is None:
            return None
        src, message = item
        if isinstance(message, Lost):
            if self.stopping:
                return None
            raise self.channel.lost(src, message.reason)
        return message[1]

    def stop(self) -> None:
        self.stopping = True
        if self.channel is not None:
            for rank in range(1, self.world):
                with contextlib.suppress(Exception):
                    self.channel.send(rank, ("stop",))
            self.channel.goodbye()

    def close(self) -> None:
        """Once the stage processes ended (or, under torchrun, were asked to)."""
        if self.channel is not None:
            self.channel.join()
            self.channel = None
