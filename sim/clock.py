"""The simulation's clock: SimPy's environment, plus taking a timeout that would be the next event anyway without
scheduling it."""

from __future__ import annotations

from collections.abc import Callable

import simpy


class Clock(simpy.Environment):
    """A SimPy environment in which a process may move time forward itself (`skip_to`) when nothing is scheduled
    before the instant it would wait for. Processing that timeout as an event would pop it next, set the clock to
    it and resume the same process: skipping it computes the same thing, in the same order, without the event.
    (Only the event ids of later events shift, all by the same amount, so their order is unchanged.)

    A time-sliced device runs a forward through the same way (`TimeSlicedDevice._run_through`); what its timer's
    event would have done after the stage's process yielded it does at the end of the event being processed
    (`after_step`).

    The simulator's hot paths read the clock as `env._now`, SimPy's own field that its `now` property returns:
    a property call costs as much as several of the operations a stage's step is made of."""

    def __init__(self) -> None:
        super().__init__()
        # SimPy binds its event constructors (timeout, event, process, …) to the environment once, for speed, but
        # only those of the instance's own class: bind the base class's for this subclass.
        for name, attribute in vars(simpy.Environment).items():
            if type(attribute) is simpy.core.BoundClass:
                setattr(self, name, getattr(self, name))
        self.after_step: Callable[[], None] | None = None  # run once the event being processed is done

    def step(self) -> None:
        super().step()
        if self.after_step is not None:
            after, self.after_step = self.after_step, None
            after()

    def skip_to(self, at: float) -> bool:
        """Move the clock to `at` if every scheduled event comes strictly after it (one at the same instant was
        scheduled first, so it would be processed first); returns whether it moved."""
        queue = self._queue  # (peek(), without its call: this is the simulator's hottest line)
        if not queue or at < queue[0][0]:
            self._now = at  # what step() sets before processing the event that is not scheduled
            return True
        return False

    def succeed_now(self, event: simpy.Event) -> None:
        """Trigger `event` and process it at once if nothing else is scheduled at this instant: what succeed()
        and the step that pops it next would do (its callbacks run in order, with it processed); else succeed()."""
        queue = self._queue
        if queue and queue[0][0] <= self._now:
            event.succeed()
            return
        event._ok, event._value = True, None  # succeed()'s fields, then step()'s processing of it
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
