"""The machinery every simulated scheme shares: stages on devices, interruptible forwards, token
buffers with rollback, and the statistics a result reports. Devices that stages share by time-slicing are in
sharing.py, the lazily computed first drafter in drafter.py, the acceptance between two stages in pairs.py.

A stage holds an abstract token sequence: `length` tokens decided so far (its output buffer O_i)
and `kv_len` of them in its KV cache. A forward feeds the tokens not yet cached plus any drafts, so
after a rollback or a resync that adopted several tokens the next forward is wider (and, with a
measured profile, slower). Times are SimPy time in seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from typing import Literal

import numpy as np
import simpy

from ..latency import LatencyModel, SteadyDurations
from ..metrics import StageStats
from .clock import Clock
from .result import Event, Kind
from .sharing import TimeSlicedDevice, _Slice

RollbackPolicy = Literal["abort", "finish"]


class Phase(enum.Enum):
    """Where a stage is in its forward; the rollback protocol is the transitions between them.

        IDLE --forward()--> QUEUED --device granted (at once without a shared queue)--> RUNNING --ends--> IDLE
        QUEUED or RUNNING --a rollback (adopt) or a flush interrupts it--> CUT --> IDLE, forward() raises
        RUNNING, a generate forward ending at the rollback's very instant --adopt--> COUNTED --> IDLE, raises

    CUT: the forward is lost; with rollback policy "finish" it still holds its device to its end (a GPU kernel
    cannot be cancelled), then is recorded as discarded ("aborted" under "abort", where it stops at once).
    COUNTED: it completed at the instant of the rollback (its token existed when the rollback was decided, as a
    lazily computed drafter sees it): adopt() counted it, and the process only leaves it. A second rollback
    while CUT or COUNTED changes the sequence only."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    CUT = "cut"
    COUNTED = "counted"


_IDLE, _QUEUED, _RUNNING, _CUT, _COUNTED = Phase


class Stage:
    """One model of a pipeline: its latency, its device (None: a device of its own), its token buffer
    and its statistics. A drafter given `proposes` (position → does it propose there from the verified
    prefix) may have nothing to propose after adopting a verifier's sequence: it then waits for the
    sequence to change (a model-free drafter; a model always proposes).

    State: the sequence (`length`, `kv_len`, `verified`), the forward in flight (`phase`, and from its start
    `forward_start`, `forward_kind`, `forward_tokens`), and what the scheme's process waits for besides
    (`wake`, `waiting_until`, `blocked_until`, `pending_resync`)."""

    __slots__ = ("_end", "_slice", "_sliced", "blocked_until", "device", "duration_s", "env", "forward_kind",
                 "forward_start", "forward_tokens", "index", "jitter_rng", "kv_len", "latency", "length", "name",
                 "pending_resync", "phase", "policy", "process", "prompt_len", "proposes", "stats", "timeline",
                 "verified", "waiting_until", "wake")

    def __init__(self, env: Clock, index: int, name: str, latency: LatencyModel,
                 device: simpy.Resource | TimeSlicedDevice | None, jitter_rng: np.random.Generator | None,
                 prompt_len: int, policy: RollbackPolicy, timeline: list[Event] | None,
                 proposes: Callable[[int], bool] | None = None) -> None:
        self.env, self.index, self.name, self.latency, self.device = env, index, name, latency, device
        self.jitter_rng, self.prompt_len, self.policy, self.timeline = jitter_rng, prompt_len, policy, timeline
        self.proposes = proposes
        self.length = 0
        self.kv_len = 0
        self.verified = True  # its sequence is a verifier's: nothing of its own drafted since it adopted it
        self.wake: simpy.Event | None = None  # a silent drafter waiting for adopt()
        self.pending_resync: int | None = None  # see defers_resync()
        self.stats = StageStats(name)
        self.process: simpy.Process | None = None
        self.phase = _IDLE
        self.forward_start: float | None = None  # the forward in flight, once it holds its device
        self.forward_kind: Kind = "generate"
        self.forward_tokens = 0
        self._end = 0.0
        self._slice: _Slice | None = None  # the forward in flight on a time-sliced device
        self._sliced = isinstance(device, TimeSlicedDevice)
        self.waiting_until: float | None = None  # pipespec --min-drafts: waiting for upstream progress
        self.blocked_until = 0.0  # coordination "reference": a middle stage waiting for its upstream's answer
        # duration_s(num_tokens): one forward's time; a steady latency's (context-free and jitter-free) memoised
        self.duration_s: Callable[[int], float] = (SteadyDurations(latency).__getitem__ if latency.steady
                                                   else self._sampled_s)

    @property
    def busy(self) -> bool:
        """Inside forward(): queued for or holding the device."""
        return self.phase is not _IDLE

    @property
    def forward_end(self) -> float:
        """When the forward in flight ends (on a time-sliced device: if no other forward starts or ends first)."""
        if self._slice is not None:
            return self.env._now if self._slice.done.triggered else self.device.end_s(self._slice)
        return self._end

    def silent(self) -> bool:
        """Nothing to propose from the verified sequence it holds."""
        return self.verified and self.proposes is not None and not self.proposes(self.length)

    def defers_resync(self) -> bool:
        """Policy "finish": a verifying stage whose verifier decoded on without it (no conflict yet) lets its
        forward in flight end and then compares, as the backend's stages do between forwards; its work is
        kept if it agrees with the verifier's tokens (`pending_resync`: the first of them). A first-stage
        drafter's steps are short: it adopts at once."""
        return self.policy == "finish" and self.index > 0 and self.forward_start is not None

    def wait_for_change(self):
        """Generator: a silent drafter idles until a verifier's sequence is adopted."""
        self.wake = self.env.event()
        yield self.wake

    def uncached(self) -> int:
        """Tokens of its own sequence a forward must feed before any drafts (>= 1 once started)."""
        uncached = self.length - self.kv_len
        return uncached if uncached > 1 else 1

    def _sampled_s(self, num_tokens: int) -> float:
        """One forward's time at the stage's context (drawn from the profile's jitter, if any)."""
        return self.latency.sample_s(num_tokens, self.prompt_len + self.kv_len, self.jitter_rng)

    def forward(self, num_tokens: int, kind: Kind) -> Generator:
        """Generator: hold the device for one forward of `num_tokens`; raises simpy.Interrupt if it is cut
        (see Phase)."""
        return self._forward_now(num_tokens, kind) if self.starts_at_once else self._forward_queued(num_tokens, kind)

    @property
    def starts_at_once(self) -> bool:
        """Its forwards start when asked: on a device of its own, or time-sliced on a shared one (not queued)."""
        return self.device is None or self._sliced

    def _forward_now(self, num_tokens: int, kind: Kind) -> Generator:
        """forward() of a stage whose forwards start at once."""
        finished = self.begin(num_tokens, kind)
        if finished is not None:
            try:
                yield finished
            except simpy.Interrupt:
                yield from self.cut(finished)
                raise
        self.complete()

    def begin(self, num_tokens: int, kind: Kind) -> simpy.Event | None:
        """Start a forward that starts at once; returns the event of its end, or None when it ends on a device of
        its own before anything else is scheduled: the clock has then been moved to its end (Clock.skip_to).
        _forward_now in three calls, for a scheme's hot loop: `finished = stage.begin(...)`, then, unless it is
        None, `yield finished`, then `stage.complete()`, or on an interrupt `yield from stage.cut(finished)`."""
        env = self.env
        self.phase = _RUNNING
        start = self.forward_start = env._now
        durations = self.duration_s  # (read, then called: see Pair.__init__)
        duration = durations(num_tokens)
        self.forward_kind, self.forward_tokens = kind, num_tokens
        if self._sliced:
            job = self._slice = self.device.start(duration, run_through=True)
            return None if job is None else job.done  # (None: it ran through at once)
        end = self._end = start + duration
        return None if env.skip_to(end) else env.timeout(duration)

    def complete(self) -> None:
        """The forward begun has ended (now: on a device of its own at `_end`, the very float its timeout was
        scheduled at): count it."""
        start = self.forward_start
        self.phase, self.forward_start, self._slice = _IDLE, None, None  # (no more than 3: a 4-tuple is built)
        self._count_step(start, self.env._now, self.forward_kind, self.forward_tokens)

    def cut(self, finished: simpy.Event) -> Generator:
        """Generator: the forward begun was interrupted (see Phase); on a time-sliced device the device's other
        forwards speed up (once it has ended, under "finish", there is nothing to stop)."""
        yield from self._cut(finished)
        job, self.phase, self.forward_start, self._slice = self._slice, _IDLE, None, None
        if job is not None:
            self.device.cancel(job)

    def _forward_queued(self, num_tokens: int, kind: Kind) -> Generator:
        """forward() on a device whose stages queue for it (an interrupt while queued leaves the queue)."""
        env, device = self.env, self.device
        self.phase = _QUEUED
        request = device.request()
        try:
            yield request
            if self.phase is _QUEUED:
                self.phase = _RUNNING
            start = self.forward_start = env._now
            duration = self.duration_s(num_tokens)
            finished = env.timeout(duration)
            self._end = start + duration
            self.forward_kind, self.forward_tokens = kind, num_tokens
            try:
                yield finished
            except simpy.Interrupt:
                yield from self._cut(finished)
                raise
        finally:
            self.phase = _IDLE
            self.forward_start = None
            if request.triggered:
                device.release(request)
            else:
                request.cancel()
        self._count_step(start, env._now, kind, num_tokens)

    def _cut(self, finished: simpy.Event) -> Generator:
        """Generator body of an interrupted forward: unless adopt() counted it (COUNTED) it is CUT, runs to its
        end under "finish" (later cuts change nothing), and its time is counted as lost."""
        if self.phase is _COUNTED:
            return
        self.phase = _CUT
        if self.policy == "finish":
            while not finished.processed:
                try:  # noqa: SIM105 (contextlib.suppress is an object and two calls per wait, on the hot path)
                    yield finished
                except simpy.Interrupt:
                    pass
        self._count_lost(self.forward_start, self.env.now, self.forward_tokens)

    def _count_step(self, start: float, end: float, kind: Kind, num_tokens: int) -> None:
        """A completed forward's statistics (and its timeline event, as _record)."""
        stats = self.stats
        stats.busy_s += end - start
        if self.timeline is not None:
            self.timeline.append(Event(self.index, start, end, kind, num_tokens))
        stats.steps += 1
        stats.tokens_forwarded += num_tokens
        if kind == "verify":
            stats.verify_steps += 1
        elif kind == "generate":
            stats.generate_steps += 1

    def _count_lost(self, start: float, end: float, num_tokens: int) -> None:
        """A cut forward's statistics (one cut at the instant it began cost nothing)."""
        if end > start:
            self._record(start, end, "aborted" if self.policy == "abort" else "discarded", num_tokens)
            self.stats.aborted_steps += 1
            self.stats.wasted_s += end - start

    def _record(self, start: float, end: float, kind: Kind, num_tokens: int) -> None:
        self.stats.busy_s += end - start
        if self.timeline is not None:
            self.timeline.append(Event(self.index, start, end, kind, num_tokens))

    def after_forward(self, fed_drafts: int, accepted: int) -> int:
        """Update the buffer after a completed forward that fed `fed_drafts` drafts, `accepted` of them
        accepted (0 for a generate step): its KV now covers its sequence plus the accepted drafts, and it
        appends its own correction/bonus/next token. Returns the tokens added."""
        self.kv_len = self.length + accepted
        added = accepted + 1
        self.length += added
        self.verified = False
        self.stats.tokens_added += added
        return added

    def visible_length(self, now: float) -> int:
        """Tokens a downstream stage can read at `now`."""
        return self.length

    def next_progress_s(self, now: float) -> float | None:
        """When the stage next makes progress: its forward in flight completes, or the upstream progress it
        waits for arrives (None: neither)."""
        if self.forward_start is not None:
            return self.forward_end
        if self.blocked_until > now:  # waiting for its upstream's answer (coordination "reference")
            return self.blocked_until
        return self.waiting_until if self.waiting_until is not None and self.waiting_until > now else None

    def step_boundary_s(self, at: float) -> float:
        """The first instant at or after `at` between two of its steps (its forward in flight ends)."""
        if self.forward_start is not None and self.forward_end > at:
            return self.forward_end
        return at

    def _take(self, new_length: int) -> None:
        """Hold a downstream sequence of `new_length` tokens: everything up to new_length - 2 agrees with what
        this stage had cached; the last token is the downstream's own."""
        self.length = new_length
        if self.kv_len >= new_length:
            self.kv_len = new_length - 1
        self.verified = True
        self.pending_resync = None
        if self.wake is not None:
            self.wake.succeed()
            self.wake = None

    def adopt(self, new_length: int) -> None:
        """Roll back or resynchronise to a downstream sequence of `new_length` tokens (see _take). Work in
        flight is for a superseded position: it is cut (see Phase)."""
        phase = self.phase
        if (phase is _RUNNING or phase is _QUEUED) and self.process is not None and self.process.is_alive:
            if (phase is _RUNNING and self.forward_kind == "generate" and self.forward_end <= self.env._now):
                self._count_step(self.forward_start, self.forward_end, "generate", self.forward_tokens)
                self.after_forward(0, 0)
                self.phase = _COUNTED
            else:
                self.phase = _CUT
            self.process.interrupt("rollback")
        self._take(new_length)

    def finish(self, now: float) -> None:
        """Close the books at the end of a run (a forward still in flight counts as busy, not as a step)."""
        if self.forward_start is not None:
            self.stats.busy_s += now - self.forward_start
