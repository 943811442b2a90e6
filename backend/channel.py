"""Messages between the ranks of a gloo process group (`Channel`), the transport under `dist.DistHarness`.

Each message is pickled and sent as two point-to-point sends (its length, then its bytes). gloo's irecv cannot be
polled (its work reports completion only once waited on) and a timed-out wait closes the connection, so a rank
listens with one thread per peer, blocked in a recv from that peer, and queues what arrives; a peer whose
connection closes (it died) is queued as `Lost`. Sends are not waited on until the next send to the same peer.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import pickle
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .workers import StageFailed, stage_name

COORDINATOR = 0
_HEADER, _PAYLOAD = 1, 2  # tags
_BYE = "bye"  # a peer's last message to us: its listener for us ends
FOREVER = datetime.timedelta(days=7)  # an op's timeout: gloo closes a connection whose op times out


def launched_rank() -> int | None:
    """This process's rank when torchrun (or another launcher using env:// rendezvous) started it, else None."""
    if all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return int(os.environ["RANK"])
    return None


@dataclass(frozen=True)
class Lost:
    """A peer's connection closed (it died, or stopped without saying goodbye)."""

    reason: str


class Channel:
    """Pickled messages to and from every other rank of a gloo process group (see the module docstring)."""

    def __init__(self, group: Any, rank: int, names: Sequence[str]) -> None:
        self.group, self.rank, self.names, self.world = group, rank, list(names), len(names) + 1
        self.inbox: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._sending: dict[int, list[tuple[Any, torch.Tensor, torch.Tensor]]] = collections.defaultdict(list)
        self._listeners = [threading.Thread(target=self._listen, args=(src,), daemon=True, name=f"pipespec-recv-{src}")
                           for src in range(self.world) if src != rank]
        for listener in self._listeners:
            listener.start()

    def _listen(self, src: int) -> None:
        try:
            while True:
                header = torch.zeros(1, dtype=torch.int64)
                self.group.recv([header], src, _HEADER).wait()
                payload = torch.empty(int(header[0]), dtype=torch.uint8)
                self.group.recv([payload], src, _PAYLOAD).wait()
                message = pickle.loads(payload.numpy().tobytes())
                if message == _BYE:
                    return
                self.inbox.put((src, message))
        except Exception as exc:  # the connection closed
            self.inbox.put((src, Lost(_reason(exc))))

    def name(self, rank: int) -> str:
        return "the coordinator" if rank == COORDINATOR else stage_name(self.names, rank - 1)

    def lost(self, rank: int, reason: str) -> StageFailed:
        """The error of this rank's losing `rank`: it names both."""
        return StageFailed(f"{self.name(self.rank)} lost {self.name(rank)}: {reason}")

    def send(self, dst: int, message: Any) -> None:
        """Queue `message` for `dst` without waiting for it to arrive (the sends before it to `dst` are waited on
        first: they are long done unless `dst` is slow to read, which then holds the sender back)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        header = torch.tensor([len(data)], dtype=torch.int64)
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        with self._lock:  # a message's two sends are adjacent on their connection
            self._drain(dst)
            try:
                work = self.group.send([header], dst, _HEADER), self.group.send([payload], dst, _PAYLOAD)
            except RuntimeError as exc:  # its connection closed
                raise self.lost(dst, _reason(exc)) from None
            self._sending[dst].append((work, header, payload))  # the tensors live until their sends end

    def _drain(self, dst: int) -> None:
        """Wait for every send to `dst` still in flight."""
        try:
            for works, _, _ in self._sending.pop(dst, []):
                for work in works:
                    work.wait()
        except RuntimeError as exc:
            raise self.lost(dst, _reason(exc)) from None

    def get(self, timeout_s: float) -> tuple[int, Any] | None:
        """The next (source rank, message), waiting at most timeout_s (0: only what has arrived)."""
        try:
            return self.inbox.get(timeout=timeout_s) if timeout_s > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None

    def goodbye(self) -> None:
        """Tell every peer this rank sends nothing more (its listener for us ends)."""
        for dst in range(self.world):
            if dst != self.rank:
                with contextlib.suppress(Exception):
                    self.send(dst, _BYE)
                with contextlib.suppress(Exception), self._lock:
                    self._drain(dst)

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait until every peer said goodbye or its connection closed."""
        deadline = time.monotonic() + timeout_s
        for listener in self._listeners:
            listener.join(max(0.0, deadline - time.monotonic()))


def _reason(exc: BaseException) -> str:
    """gloo's error, without its source location and advice."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.split("] ", 1)[-1] if text.startswith("[") else text
    return text.split(". This is typically")[0]


def connect(address: tuple[str, int] | None, rank: int, world: int, timeout_s: float, store: Any = None) -> Any:
    """A gloo process group of `world` ranks, this one `rank`: through `store` (the coordinator's own), the
    coordinator's store at `address`, or (address None) the env:// rendezvous a launcher set up."""
    from torch.distributed import PrefixStore, ProcessGroupGloo, TCPStore, rendezvous

    wait = datetime.timedelta(seconds=timeout_s)
    if store is None and address is None:
        store, rank, world = next(rendezvous("env://", timeout=wait))
    elif store is None:
        store = TCPStore(address[0], address[1], world, is_master=False, timeout=wait)
    return ProcessGroupGloo(PrefixStore("pipespec", store), rank, world, FOREVER)
