"""Lock-free shared token buffers for the asynchronous pipeline: one writer, many readers.

Layout of a stage's buffer (int64, shared memory): [version, length, token_0, token_1, ...]. The
writer makes the version odd, writes, then makes it even again (a seqlock); a reader copies and
retries only if the version moved or was odd meanwhile. No lock round trip on reads, and a reader
can tell cheaply whether anything changed since it last looked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


class TokenBuffer:
    def __init__(self, capacity: int) -> None:
        self.tensor = torch.zeros(capacity + 2, dtype=torch.int64).share_memory_()

    def __getstate__(self) -> dict:
        return {"tensor": self.tensor}

    def __setstate__(self, state: dict) -> None:
        self.tensor = state["tensor"]

    @property
    def _array(self) -> np.ndarray:
        return self.tensor.numpy()

    @property
    def capacity(self) -> int:
        return len(self.tensor) - 2

    def version(self) -> int:
        return int(self._array[0])

    def publish(self, tokens: Sequence[int], also: Callable[[], None] | None = None) -> None:
        """Writer only. `also` writes companion data (probability rows) inside the same critical section."""
        array = self._array
        if len(tokens) > self.capacity:
            raise ValueError(f"{len(tokens)} tokens exceed the shared buffer's {self.capacity}")
        n = len(tokens)
        array[0] += 1  # odd: being written
        if also is not None:
            also()
        array[2:2 + n] = tokens
        array[1] = n
        array[0] += 1  # even: stable

    def read(self, also: Callable[[list[int]], T] | None = None) -> tuple[int, list[int], T | None]:
        """(version, tokens, also(tokens)): a consistent snapshot of the tokens and their companion data."""
        array = self._array
        while True:
            before = int(array[0])
            if before % 2 == 0:
                n = int(array[1])
                tokens = array[2:2 + n].tolist()
                extra = also(tokens) if also is not None else None
                if int(array[0]) == before:
                    return before, tokens, extra
            time.sleep(0)  # a writer is mid-copy (microseconds): yield the core, then look again


class ProbRing:
    """The distributions a stage drew its most recent tokens from (sampling), by position modulo `slots`:
    what its verifier needs as q for speculative sampling. Written inside the stage's publish."""

    def __init__(self, slots: int, vocab: int) -> None:
        self.tensor = torch.zeros(slots, vocab, dtype=torch.float32).share_memory_()

    def __getstate__(self) -> dict:
        return {"tensor": self.tensor}

    def __setstate__(self, state: dict) -> None:
        self.tensor = state["tensor"]

    def write(self, position: int, row: torch.Tensor) -> None:
        self.tensor[position % len(self.tensor)] = row

    def rows(self, positions: Sequence[int]) -> torch.Tensor:
        return self.tensor[[p % len(self.tensor) for p in positions]].clone()  # (n, V)


class Doorbell:
    """Wake a waiting stage without spinning. A semaphore rather than multiprocessing.Event: posting to
    it never blocks, even when the process that waited on it was killed (an Event's notify_all would
    wait for the dead sleeper forever)."""

    def __init__(self, context: object) -> None:
        self._semaphore = context.Semaphore(0)  # type: ignore[attr-defined]

    def ring(self) -> None:
        self._semaphore.release()

    def wait(self, timeout_s: float) -> None:
        """Until rung or timeout_s passes; rings that piled up meanwhile are absorbed."""
        if self._semaphore.acquire(timeout=timeout_s):
            while self._semaphore.acquire(block=False):
                pass
