"""The schemes as SimPy processes over the shared stage machinery of engine.py.

- ar: the final model alone, one token per forward.
- sd: a synchronous chain M_0 … M_k: level i verifies γ_i drafts of level i-1 per round (fixed, or
  the dynamic schedule +2 after a full acceptance, -1 otherwise); lower levels roll back to the
  verifier's output after every round. Where a model-free draft has nothing to propose, the round
  is the verifier's own forward.
- pipespec: every stage is its own process; a stage verifies all drafts its upstream has published
  beyond its own sequence (optionally capped) or, when there are none, generates one token; a
  rejection rolls the upstream stages back downstream-first, interrupting their work in flight (with
  rollback "finish", a verifying stage the verifier outran compares when its forward ends and keeps
  what agrees). A model-free first stage with nothing to propose waits until its sequence changes.
  With coordination "reference" (the PipeSpec authors' protocol), after every step a stage waits until its
  upstream has answered its sync request, which the upstream does between two of its own steps.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import simpy

from ..schedule import Window
from .clock import Clock
from .engine import Stage
from .pairs import Pair


def rollback_upstream(stages: Sequence[Stage], verifier: int, new_length: int) -> None:
    """Downstream-first: stages verifier-1, …, 0 adopt the verifier's first `new_length` tokens."""
    j = verifier - 1
    while j >= 0:  # (not a range object per rollback)
        stages[j].adopt(new_length)
        j -= 1


def settle_upstream(stages: Sequence[Stage], pair: Pair, verifier: int, own_position: int, rejected: bool,
                    now: float) -> None:
    """After stage `verifier` appended its own token at `own_position` (at `now`), bring its upstream in line.

    rejected: the token replaces a draft the verifier just rejected, so upstream must roll back.
    Otherwise (bonus or generated token) an upstream that already holds a token there keeps its
    buffer iff its token agrees; an upstream that is behind resynchronises to the verifier.
    """
    upstream = stages[verifier - 1]
    new_length = own_position + 1
    if rejected:
        pair.stats.rollbacks += 1
    elif upstream.visible_length(now) > own_position:
        if pair.agrees(own_position):
            return
        pair.stats.rollbacks += 1
    else:
        pair.stats.resyncs += 1
        if upstream.defers_resync():
            if upstream.pending_resync is None:
                upstream.pending_resync = own_position
            return
    rollback_upstream(stages, verifier, new_length)


def settle_deferred_resync(stages: Sequence[Stage], pair: Pair, index: int) -> None:
    """Stage `index` ended a forward during which its verifier decoded tokens of its own (from position
    `pending_resync`): it keeps its sequence if its tokens agree with all of those, else (or when it is
    still behind) it adopts the verifier's."""
    stage, verifier = stages[index], stages[index + 1]
    start, stage.pending_resync = stage.pending_resync, None
    assert start is not None
    overlap = range(start, min(stage.length, verifier.length))
    agrees = stage.length > start and all(pair.agrees(p) for p in overlap)
    if not agrees:
        pair.stats.rollbacks += 1
    if not agrees or stage.length < verifier.length:
        rollback_upstream(stages, index + 1, verifier.length)


def ar_process(env: simpy.Environment, stage: Stage, num_tokens: int, done: simpy.Event) -> Generator:
    while stage.length < num_tokens:
        yield from stage.forward(stage.uncached(), "generate")
        stage.after_forward(0, 0)
    done.succeed()


def sd_process(env: simpy.Environment, stages: Sequence[Stage], pairs: Sequence[Pair], windows: Sequence[Window],
               num_tokens: int, done: simpy.Event, drafts_bonus: bool = False) -> Generator:
    """One driver: the final level extends its output round by round, recursively asking lower levels.

    drafts_bonus (the PipeSpec reference chain): after a fully accepted window the drafter is not given the
    verifier's bonus token; it drafts that position itself, and where its token differs there the next
    verification is the verifier's own single-token step."""

    def extend(level: int, target_length: int) -> Generator:
        stage = stages[level]
        while stage.length < target_length:
            if level == 0:
                yield from stage.forward(stage.uncached(), "generate")
                stage.after_forward(0, 0)
                continue
            below = stages[level - 1]
            stale = drafts_bonus and below.length == stage.length - 1  # it has yet to draft the bonus position
            if below.length < stage.length and not stale:
                below.adopt(stage.length)  # the draft continues from the verifier's sequence
            window = windows[level - 1]
            position = stage.length
            if not pairs[level - 1].proposes(position):  # a model-free draft with nothing: decode alone
                yield from stage.forward(stage.uncached(), "generate")
                stage.after_forward(0, 0)
                continue
            num_drafts = window.gamma
            yield from extend(level - 1, stage.length + num_drafts)
            if stale and not pairs[level - 1].agrees(position - 1):  # its bonus-position token differs
                yield from stage.forward(stage.uncached(), "generate")
                stage.after_forward(0, 0)
                rollback_upstream(stages, level, stage.length)
                continue
            yield from stage.forward(stage.uncached() + num_drafts, "verify")
            accepted = pairs[level - 1].verify(position, num_drafts)
            stage.after_forward(num_drafts, accepted)
            window.update(accepted == num_drafts)
            if drafts_bonus and accepted == num_drafts:
                continue  # the drafter holds a prefix of the verifier's sequence: left as it is
            settle_upstream(stages, pairs[level - 1], level, position + accepted, accepted < num_drafts,
                            env.now)

    yield from extend(len(stages) - 1, num_tokens)
    done.succeed()


def answer_time_s(stages: Sequence[Stage], index: int, now: float) -> float:
    """Coordination "reference": when stage `index` answers a sync request posted at `now`. It answers between
    two of its own steps: once its forward in flight (if any) has ended and it is no longer waiting for its
    own upstream. A middle stage that answers then posts its own request and is blocked until that is answered."""
    stage = stages[index]
    blocked = stage.blocked_until
    at = stage.step_boundary_s(blocked if blocked > now else now)  # (max(), without the builtin's call)
    if index > 0:
        _post_request(stages, index, at)
    return at


def _post_request(stages: Sequence[Stage], index: int, at: float) -> float:
    """Stage `index` posts a sync request to its upstream at `at`: it is blocked until the answer; returns
    until when."""
    stage = stages[index]
    answer = answer_time_s(stages, index - 1, at)
    if answer > stage.blocked_until:
        stage.blocked_until = answer
    return stage.blocked_until


def _sync_request(env: Clock, stages: Sequence[Stage], index: int) -> Generator:
    """Coordination "reference", after a step of verifier `index`: post a sync request to its upstream and wait
    until it is answered (`answer_time_s`)."""
    yield from _hold(env, _post_request(stages, index, env._now))


def _hold(env: Clock, until: float) -> Generator:
    """Wait until `until`; a rollback meanwhile does not cut the wait short (the protocol polls)."""
    while env._now < until:
        try:  # noqa: SIM105 (contextlib.suppress is an object and two calls per wait, on the hot path)
            yield env.timeout(until - env._now)
        except simpy.Interrupt:
            pass


def _wait_for_upstream(env: Clock, stage: Stage, upstream: Stage) -> Generator:
    """pipespec --min-drafts, too few drafts: wait for the upstream's next progress (its forward in flight
    ending, or what it waits for itself) and return True to look again; False when it is idle (generate)."""
    now = env._now
    until = upstream.next_progress_s(now)
    if until is None or until <= now:
        return False
    stage.waiting_until = until
    try:  # noqa: SIM105 (as in _hold)
        yield env.timeout(until - now)
    except simpy.Interrupt:  # rolled back meanwhile: look again
        pass
    stage.waiting_until = None
    return True


def pipespec_process(env: Clock, stages: Sequence[Stage], pairs: Sequence[Pair], index: int,
                     max_drafts: int | None, num_tokens: int, done: simpy.Event, min_drafts: int = 1,
                     coordination: str = "lockfree") -> Generator:
    """Stage `index` of an asynchronous pipeline, looping until the final stage has num_tokens. With
    min_drafts > 1 a stage that finds fewer drafts waits for its upstream's forward in flight instead
    of generating (it generates when the upstream is idle). With coordination "reference" every step of a
    verifier ends with a sync request it waits on (`_sync_request`)."""
    stage = stages[index]
    upstream, pair = (stages[index - 1], pairs[index - 1]) if index > 0 else (None, None)
    last = stages[-1]  # it never rolls back, and fires `done` in the step that reaches num_tokens
    reference = coordination == "reference"
    read_after_peers = upstream is not None and upstream.process is not None  # an eager upstream
    at_once, after_forward = stage.starts_at_once, stage.after_forward
    while last.length < num_tokens:  # `not done.triggered` (see `last`), without the property's call
        num_drafts, now = 0, env._now
        if reference and stage.blocked_until > now:  # only the reference protocol blocks a stage
            yield from _hold(env, stage.blocked_until)
            continue
        if stage.proposes is not None and stage.silent():  # a model-free drafter with nothing to propose
            yield from stage.wait_for_change()
            continue
        if upstream is not None:
            if read_after_peers and env.peek() <= now:
                yield env.timeout(0)  # see every forward that completes at this same instant first
            num_drafts = upstream.visible_length(now) - stage.length
            if num_drafts < min_drafts:
                num_drafts = num_drafts if num_drafts > 0 else 0  # (an upstream rolled back behind it: none)
                if min_drafts > 1 and (yield from _wait_for_upstream(env, stage, upstream)):
                    continue
            if max_drafts is not None and num_drafts > max_drafts:
                num_drafts = max_drafts
        position = stage.length
        kind = "verify" if num_drafts else "generate"
        if at_once:  # stage.forward(), unrolled: the simulator's hot path
            uncached = stage.length - stage.kv_len  # (stage.uncached(), inline)
            finished = stage.begin((uncached if uncached > 1 else 1) + num_drafts, kind)
            if finished is not None:
                try:
                    yield finished
                except simpy.Interrupt:  # rolled back by a downstream stage: its new state is already in place
                    yield from stage.cut(finished)
                    continue
            stage.complete()
        else:
            try:
                yield from stage.forward(stage.uncached() + num_drafts, kind)
            except simpy.Interrupt:
                continue
        if pair is None:
            after_forward(0, 0)
        else:
            accepted = pair.verify(position, num_drafts) if num_drafts else 0
            after_forward(num_drafts, accepted)
            settle_upstream(stages, pair, index, position + accepted, accepted < num_drafts, env._now)
        if stage.pending_resync is not None:
            settle_deferred_resync(stages, pairs[index], index)
        if stage is last and stage.length >= num_tokens:
            done.succeed()
        elif reference and upstream is not None:
            yield from _sync_request(env, stages, index)
