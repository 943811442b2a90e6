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
        self._flush_version = -1  # that version, when a forward run through deferred it (see _run_through)
        self._flush_bound = self._flush  # (one bound method, which Clock.after_step holds and is compared with)

    def _set_running(self, running: list[_Slice]) -> None:
        self.running = running
        n = len(running)  # (min(1.0, capacity / n), without the builtin's call)
        self._rate = 1.0 if n <= self.capacity else self.capacity / n

    def _without(self, job: _Slice) -> list[_Slice]:
        """The forwards in flight but `job` (one of them), in order: list.remove finds it by identity first (a
        _Slice equals only itself), without a comprehension's function call."""
        running = self.running.copy()
        running.remove(job)
        return running

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
        self.env.timeout(self._delay()).callbacks.append(lambda _: self._complete(version))

    def _delay(self) -> float:
        """From now until the first of the forwards in flight ends, if none starts or stops before."""
        least = self.running[0].work_s
        for job in self.running:
            if job.work_s < least:
                least = job.work_s
        return (least if least > 0.0 else 0.0) / self._rate

    def _complete(self, version: int) -> None:
        if version != self._version:  # the set of forwards changed since: superseded
            return
        self._settle()
        finished, left = [], []
        for job in self.running:
            (finished if job.work_s <= 1e-12 else left).append(job)
        if not finished:
            self._schedule()
            return
        self._set_running(left)
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

    def start(self, work_s: float, run_through: bool = False) -> _Slice | None:
        """Begin a forward of `work_s` seconds at full speed; its `done` fires when it has run them. With
        `run_through` (a caller whose process goes on at once, as the done event's callback would resume it),
        returns None instead when it has run them already (`_run_through`)."""
        self._settle()
        job = _Slice(work_s, self.env.event())
        self._set_running([*self.running, job])
        if run_through and self._run_through(job):
            return None
        self._schedule()
        return job

    def _run_through(self, job: _Slice) -> bool:
        """If `job` is the one forward to end first, before anything else is scheduled, move the clock to its end
        and complete it at once: what its completion timer would do when processed next (_schedule, then
        _complete with one forward finished and its done event processed at once by the stage's own process,
        which goes on as it would on being resumed), without the timer's event. The timer for the forwards left
        is deferred as _complete defers it, here to the end of the event being processed (Clock.after_step):
        the stage's process runs until it yields within that event, as the done event's callbacks would have."""
        env = self.env
        if env.after_step is not None and env.after_step is not self._flush_bound:  # another device's timer is due
            return False
        at = env._now + self._delay()  # (the timer's instant, as Timeout computes it)
        queue = env._queue
        if queue and queue[0][0] <= at:
            return False
        done = (at - self._settled) * self._rate  # (what _settle will charge at that instant)
        for other in self.running:
            if (other.work_s - done <= 1e-12) is not (other is job):
                return False  # another forward ends with it, or it does not end first
        env._now = at
        self._settle()
        self._set_running(self._without(job))
        self._version += 2  # _schedule's, then _complete's
        self._deferred = self._flush_version = self._version
        env.after_step = self._flush_bound
        return True

    def _flush(self) -> None:
        """The deferred timer of the last forward run through, unless the device was read or changed since."""
        if self._deferred == self._flush_version:
            self._schedule()

    def cancel(self, job: _Slice) -> None:
        """Stop a forward in flight (an aborted one): the others speed up."""
        if job in self.running:
            self._settle()
            self._set_running(self._without(job))
            self._schedule()

    def end_s(self, job: _Slice) -> float:
        """When `job` ends if nothing starts or stops before."""
        if self._deferred is not None:
            self._schedule()
        self._settle()
        work = job.work_s
        return self.env._now + (work if work > 0.0 else 0.0) / self._rate
