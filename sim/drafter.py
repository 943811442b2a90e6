"""Stage 0 of a pipeline computed on demand (`LazyDrafter`), instead of one SimPy event per draft token."""

from __future__ import annotations

import math

from .engine import _CUT, _IDLE, _RUNNING, Stage


class LazyDrafter(Stage):
    """Stage 0 of a pipeline on a device of its own: it only ever generates, so its progress is computed on
    demand from its step durations instead of one SimPy event per draft token. Its steps run back to back
    through the same phases, counters and sequence updates as an eager stage's forwards; a cut step under
    "finish" runs to its end as CUT."""

    __slots__ = ("_batches", "_step_s", "_unbooked")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batches = self.latency.steady and self.timeline is None  # see _advance
        self._step_s = self.duration_s(1) if self._batches else 0.0  # a batched step's duration
        self._unbooked = 0  # batched steps not yet in the statistics' counters
        self._start_step(0.0)

    def _advance(self, now: float) -> int:
        """Complete every step that has ended by `now`; returns its length then. With a steady latency (and no
        timeline to record) the step in flight and every later one-token step ending by `now` complete at once,
        their durations all equal: `count` steps of _count_step and after_forward."""
        if self._end > now:
            return self.length
        if self._batches and self.phase is _RUNNING and self.forward_tokens == 1:
            step_s = self._step_s
            count = math.floor((now - self._end) // step_s) + 1  # (an integral float: floor is int, and cheaper)
            self.verified = False
            self._unbooked += count  # each one generate step forwarding and adding one token: see finish()
            self.stats.busy_s += count * step_s  # (a float sum: added batch by batch, in the same order)
            self.length += count
            self.kv_len = self.length - 1
            # the next step (_start_step's, unrolled: one uncached token, and it has drafted, so not silent)
            at = self.forward_start = self._end + (count - 1) * step_s  # the end of the last completed step
            self._end = at + step_s
        while self._end <= now:
            start, end, tokens = self.forward_start, self._end, self.forward_tokens
            if self.phase is _CUT:
                self._count_lost(start, end, tokens)
            else:
                self._count_step(start, end, "generate", tokens)
                self.after_forward(0, 0)
            self._start_step(end)
        return self.length

    def _start_step(self, at: float) -> None:
        self.forward_start = at
        if self.proposes is not None and self.silent():  # idle until adopt()
            self.phase, self.forward_tokens, self._end = _IDLE, 0, math.inf
            return
        self.phase = _RUNNING
        self.forward_tokens = self.uncached()
        self._end = at + self.duration_s(self.forward_tokens)

    visible_length = _advance  # what a downstream stage reads at `now`: every step ended by then completed

    def next_progress_s(self, now: float) -> float | None:
        self._advance(now)
        return None if self.phase is _IDLE else self._end

    def step_boundary_s(self, at: float) -> float:
        """Its steps run back to back: the end of the one in flight at `at` (computed, not advanced to)."""
        self._advance(self.env._now)
        if self.phase is _IDLE:
            return at
        end = self._end
        while end < at:
            end += self.duration_s(1)  # later steps each feed the token drafted before
        return end

    def adopt(self, new_length: int) -> None:
        now = self.env._now
        if self._end <= now:
            self._advance(now)
        self._take(new_length)
        if self.phase is _IDLE:
            self._start_step(now)
        elif self.policy == "finish":
            self.phase = _CUT
        else:
            self._count_lost(self.forward_start, now, self.forward_tokens)
            self._start_step(now)

    def finish(self, now: float) -> None:
        self._advance(now)
        stats, count, self._unbooked = self.stats, self._unbooked, 0
        stats.steps += count
        stats.generate_steps += count
        stats.tokens_forwarded += count
        stats.tokens_added += count
        if self.phase is not _IDLE:
            self.stats.busy_s += now - self.forward_start
