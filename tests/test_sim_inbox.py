"""sim/layerpipe.py's Inbox must compute what simpy.Store computes, event for event: which item each get receives,
and when its process resumes relative to every other process at the same instant."""

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from pipespec.sim.layerpipe import Inbox

# one action per step of a producer: (delay before it, what it does)
_ACTIONS = st.lists(st.tuples(st.sampled_from([0.0, 0.0, 1.0, 2.5]), st.sampled_from(["put", "put", "clear"])),
                    max_size=12)


def _run(make, producers: list[list[tuple[float, str]]], consumers: int) -> list[tuple]:
    env = simpy.Environment()
    box = make(env)
    log: list[tuple] = []
    count = iter(range(10_000))

    def producer(name: int, actions):
        for delay, action in actions:
            if delay:
                yield env.timeout(delay)
            if action == "put":
                item = next(count)
                box.put(item)
                log.append((env.now, f"p{name}", "put", item))
            else:
                box.items.clear()
                log.append((env.now, f"p{name}", "clear"))
            yield env.timeout(0)  # let same-instant events interleave

    def consumer(name: int):
        while True:
            item = yield box.get()
            log.append((env.now, f"c{name}", "got", item))
            yield env.timeout(0.5)

    for name, actions in enumerate(producers):
        env.process(producer(name, actions))
    for name in range(consumers):
        env.process(consumer(name))
    env.run(until=100)
    return [*log, ("left", list(box.items))]


@settings(max_examples=200, deadline=None)
@given(st.lists(_ACTIONS, min_size=1, max_size=3), st.integers(1, 2))
def test_an_inbox_hands_out_items_as_a_simpy_store_does(producers, consumers):
    assert _run(Inbox, producers, consumers) == _run(simpy.Store, producers, consumers)
