"""Layer pipelines: one model's layers split over P stages, each stage a SimPy process on its own
device, items (tokens or token-tree levels) flowing stage to stage through inboxes. A miss flushes
every item younger than the decided one: queued items are dropped, in-flight work is interrupted.

- ppsd: the early layers end in an exit head; when token t leaves the last early stage, the next
  token enters stage 0 on the exit's draft while the late stages verify t ("verify-while-draft").
  When t leaves the last stage, the draft for t+1 is accepted or all younger work is discarded and
  t+1 re-enters with the model's own token.
- specpipe: each pipeline step the next level of a draft's token tree enters stage 0 (as long as the
  draft has built it); when the oldest level leaves the last stage the target's next token is
  decided: a hit keeps the subtree in flight, a miss flushes and the target's token becomes the new
  root, entering at once.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import simpy

from .engine import Stage
from .pairs import Pair


class Inbox:
    """A stage's queue of items: what simpy.Store(env) computes, event for event, without its request objects and
    queues (an unbounded store never holds a put back). A put appends its item at once and schedules its event,
    whose processing hands the oldest item to the oldest waiting get; a get takes an item at once if there is one
    (its event scheduled), else waits."""

    __slots__ = ("_getters", "_serve_bound", "env", "items")

    def __init__(self, env: simpy.Environment) -> None:
        self.env, self.items = env, []
        self._getters: list[simpy.Event] = []
        self._serve_bound = self._serve

    def put(self, item: Item) -> None:
        self.items.append(item)
        event = self.env.event()
        event.callbacks.append(self._serve_bound)
        event.succeed()

    def get(self) -> simpy.Event:
        event = self.env.event()
        self._getters.append(event)
        self._serve()
        return event

    def _serve(self, _: simpy.Event | None = None) -> None:
        if self._getters and self.items:
            self._getters.pop(0).succeed(self.items.pop(0))


@dataclass
class Item:
    position: int  # output position this item computes for
    epoch: int  # flush generation it belongs to


class LayerPipeline:
    """Stages 0..P-1 connected by inboxes; `on_exit(stage_index, item)` is called as items leave stages."""

    def __init__(self, env: simpy.Environment, stages: Sequence[Stage], tokens_per_item: int) -> None:
        self.env, self.stages, self.tokens_per_item = env, stages, tokens_per_item
        self.inboxes = [Inbox(env) for _ in stages]
        self.current: list[Item | None] = [None] * len(stages)
        self.epoch = 0
        self.listeners: list = []
        for index, stage in enumerate(stages):
            stage.process = env.process(self._run(index))

    def submit(self, position: int) -> None:
        self.inboxes[0].put(Item(position, self.epoch))

    def flush(self) -> None:
        """Drop everything queued or in flight (items of older epochs are skipped or interrupted)."""
        self.epoch += 1
        for inbox in self.inboxes:
            inbox.items.clear()
        for stage, item in zip(self.stages, self.current, strict=True):
            if item is not None and stage.busy:
                stage.process.interrupt("flush")

    def _run(self, index: int) -> Generator:
        stage, inbox = self.stages[index], self.inboxes[index]
        while True:
            item = yield inbox.get()
            if item.epoch != self.epoch:
                continue
            self.current[index] = item
            try:
                yield from stage.forward(self.tokens_per_item, "forward")
            except simpy.Interrupt:
                continue
            finally:
                self.current[index] = None
            if item.epoch != self.epoch:
                continue
            if index + 1 < len(self.stages):
                self.inboxes[index + 1].put(item)
            for listener in self.listeners:
                listener(index, item)


def ppsd_controller(env: simpy.Environment, pipeline: LayerPipeline, pair: Pair, last_early_stage: int,
                    num_tokens: int, done: simpy.Event) -> None:
    """Wire PPSD's rules onto the pipeline; token 0 (the prompt's next token) enters at once."""
    last = len(pipeline.stages) - 1
    state = {"decided": 0, "drafted_upto": 0}

    def on_exit(index: int, item: Item) -> None:
        if index == last_early_stage and item.position == state["drafted_upto"]:
            state["drafted_upto"] = item.position + 1
            pipeline.submit(item.position + 1)  # enters on the exit head's draft
        if index != last:
            return
        state["decided"] = item.position + 1  # the model's token for position + 1 is now known
        if state["decided"] >= num_tokens:
            if not done.triggered:
                done.succeed()
            return
        if state["drafted_upto"] > item.position:  # the next token entered on a draft: check it
            if pair.verify(item.position + 1, 1) == 1:
                return
            pair.stats.rollbacks += 1
            pipeline.flush()
        state["drafted_upto"] = item.position + 1
        pipeline.submit(item.position + 1)

    pipeline.listeners.append(on_exit)
    pipeline.submit(0)


class _Levels:
    """SpecPipe's token tree as the controller sees it: the position decided, the next level to submit, the levels
    the draft has built and not yet submitted, and the controller's wake-up."""

    def __init__(self, env: simpy.Environment, pipeline: LayerPipeline, draft: Stage, pair: Pair, num_tokens: int,
                 done: simpy.Event) -> None:
        self.pipeline, self.draft, self.pair, self.num_tokens, self.done = pipeline, draft, pair, num_tokens, done
        self.last = len(pipeline.stages) - 1
        self.decided, self.next_level, self.built = 0, 1, 0
        self.wake = env.event()

    def notify(self) -> None:
        if not self.wake.triggered:
            self.wake.succeed()

    def try_submit(self) -> None:
        """A built level enters stage 0 as soon as it is idle."""
        pipeline = self.pipeline
        if self.built > 0 and pipeline.current[0] is None and not pipeline.inboxes[0].items:
            self.built -= 1
            pipeline.submit(self.next_level)
            self.next_level += 1
            self.notify()

    def on_exit(self, index: int, item: Item) -> None:
        """An item left stage `index`; from the last stage it decides a token, verifying the level in flight."""
        if index == 0:
            self.try_submit()
        if index != self.last:
            return
        self.decided = item.position + 1
        if self.decided >= self.num_tokens:
            if not self.done.triggered:
                self.done.succeed()
            return
        if self.next_level > self.decided:  # the level for the next position is in flight
            if self.pair.verify(item.position + 1, 1) == 1:
                self.notify()
                return
            self.pair.stats.rollbacks += 1
            self.pipeline.flush()
            if self.draft.busy:
                self.draft.process.interrupt("flush")
        self.built = 0
        self.next_level = self.decided + 1
        self.pipeline.submit(self.decided)  # the target's token is the new root
        self.notify()


def specpipe_controller(env: simpy.Environment, pipeline: LayerPipeline, draft: Stage, pair: Pair,
                        tree_width: int, num_tokens: int, done: simpy.Event, depth: int | None = None) -> Generator:
    """The draft keeps one tree level built ahead of stage 0 (the tree spans at most depth + 1 levels
    beyond the decided token, depth = P by default); a level enters stage 0 as soon as both are ready.
    At depth 1 the draft is never consulted: plain pipeline parallelism, one token per pass."""
    depth = depth or len(pipeline.stages)
    levels = _Levels(env, pipeline, draft, pair, num_tokens, done)
    pipeline.listeners.append(levels.on_exit)
    pipeline.submit(0)
    if depth == 1:
        yield done
        return
    while not done.triggered:
        if levels.built >= 1 or levels.next_level - levels.decided + levels.built > depth:
            levels.wake = env.event()
            yield levels.wake
            continue
        try:
            yield from draft.forward(tree_width, "generate")
        except simpy.Interrupt:
            continue
        levels.built += 1
        levels.try_submit()
