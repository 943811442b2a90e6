"""Devices that several simulated stages share by time-slicing (processor sharing), as an OS shares a CPU
core between the processes pinned to it. (A queue for a device is SimPy's own Resource.)"""

from __future__ import annotations

import simpy

from .clock import Clock


class _Slice:
    """One forward on a time-sliced device: the work left (seconds at full speed) and its completion event."""

    __slots__ = ("done", "work_s")

    def __init__(self, work_s: float, done: simpy.Event) -> None:
        self.work_s, self.done = work_s, done


class TimeSlicedDevice:
    """A device whose forwards all run at once, sharing it: with n in flight on `capacity` units, each
    advances at min(1, capacity / n) of its own speed (processor sharing, as an OS time-slices the
    processes on a CPU core). A forward alone runs at full speed; two halve each other's speed, so the one
    that started first no longer finishes first and the other after it, as they would in a queue."""

    def __init__(self, env: Clock, capacity: int = 1) -> None:
        self.env, self.capacity = env, capacity
        self.running: list[_Slice] = []
        self._rate = 1.0  # the speed of each forward in flight, set whenever `running` changes
        self._settled = env.now
        self._version = 0
        self._deferred: int | None = None  # the version whose completion timer is still to be scheduled

    def _set_running(self, running: list[_Slice]) -> None:
        self.running = running
        self._rate = min(1.0, self.capacity / len(running)) if running else 1.0

    def _settle(self) -> None:
        """Charge the time since the last change to every forward in flight."""
        now = self.env._now
        if now != self._settled:  # (at the same instant there is nothing to charge)
            done = (now - self._settled) * self._rate
            for job in self.running:
                job.work_s -= done
            self._settled = now

    def _schedule(self) -> None:
        self._version += 1
        self._deferred = None
        running = self.running
        if not running:
            return
        version = self._version
        least = running[0].work_s
        for job in running:
            if job.work_s < least:
                least = job.work_s
        delay = (least if least > 0.0 else 0.0) / self._rate
        self.env.timeout(delay).callbacks.append(lambda _: self._complete(version))

    def _complete(self, version: int) -> None:
        if version != self._version:  # the set of forwards changed since: superseded
            return
        self._settle()
        finished = [job for job in self.running if job.work_s <= 1e-12]
        if not finished:
            self._schedule()
            return
        self._set_running([job for job in self.running if job.work_s > 1e-12])
        # Their stages mostly start their next forward at this instant, which reschedules: the timer for the
        # forwards left is made once their resumptions are done (the last done event's callbacks run after
        # them), unless the device is read (end_s) or changed first, so that a timer made from its state is
        # still scheduled before any event computed from that state, and one made for nothing is not made.
        self._version += 1
        self._deferred = version = self._version
        last = finished[-1].done
        last.callbacks.append(lambda _: self._schedule() if self._deferred == version else None)
        if len(finished) == 1:
            self.env.succeed_now(last)  # one forward ended: its done event, processed at once if it is next
            return
        for job in finished:
            job.done.succeed()

    def start(self, work_s: float) -> _Slice:
        """Begin a forward of `work_s` seconds at full speed; its `done` fires when it has run them."""
        self._settle()
        job = _Slice(work_s, self.env.event())
        self._set_running([*self.running, job])
        self._schedule()
        return job

    def cancel(self, job: _Slice) -> None:
        """Stop a forward in flight (an aborted one): the others speed up."""
        if job in self.running:
            self._settle()
            self._set_running([other for other in self.running if other is not job])
            self._schedule()

    def end_s(self, job: _Slice) -> float:
        """When `job` ends if nothing starts or stops before."""
        if self._deferred is not None:
            self._schedule()
        self._settle()
        return self.env._now + max(job.work_s, 0.0) / self._rate
