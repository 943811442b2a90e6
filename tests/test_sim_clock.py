"""The simulator's clock (sim/clock.py): a forward that ends before anything else is scheduled is taken without a
SimPy event, and a time-sliced device's one finished forward is processed at once. Both must compute exactly
what one event per step computes: the same results and timelines, event for event."""

import pytest
import simpy

from pipespec.sim import run
from pipespec.sim.clock import Clock
from pipespec.sim.config import SimConfig
from pipespec.sim.presets import preset


def test_skip_to_moves_only_before_every_scheduled_event():
    clock = Clock()
    assert clock.skip_to(2.0) and clock.now == 2.0  # nothing scheduled
    clock.timeout(3.0)  # at 5.0
    assert not clock.skip_to(5.0) and clock.now == 2.0  # a tie: the scheduled event was first
    assert not clock.skip_to(6.0) and clock.now == 2.0
    assert clock.skip_to(4.5) and clock.now == 4.5


def test_succeed_now_processes_the_event_or_schedules_it_behind_one_at_the_same_instant():
    clock = Clock()
    calls: list[str] = []
    event = clock.event()
    event.callbacks += [lambda e: calls.append(f"first {e.processed}"), lambda e: calls.append("second")]
    clock.succeed_now(event)
    assert calls == ["first True", "second"] and event.ok

    calls.clear()
    clock.timeout(0).callbacks.append(lambda _: calls.append("earlier"))
    later = clock.event()
    later.callbacks.append(lambda _: calls.append("later"))
    clock.succeed_now(later)
    assert calls == [] and later.triggered and not later.processed
    clock.run()
    assert calls == ["earlier", "later"]


def test_event_constructors_are_bound_as_on_a_plain_environment():
    assert {"timeout", "event", "process"} <= set(vars(Clock())) & set(vars(simpy.Environment()))


class _EventPerStep(Clock):
    """Every forward and every finished time slice as its own scheduled event, as plain SimPy does it."""

    def skip_to(self, at: float) -> bool:
        return False

    def succeed_now(self, event: simpy.Event) -> None:
        event.succeed()


def _fingerprint(result) -> tuple:
    return (result.num_tokens, result.elapsed_s, result.ar_elapsed_s, repr(result.stages), repr(result.pairs),
            repr(result.notes), result.timeline)


_CAL = preset("pipespec-a100").with_values(num_tokens=400)
_AFFINE = SimConfig.from_text(latency=("affine:2,0.1,0.001", "affine:10,0.2,0.002", "affine:50,1,0.01"), num_tokens=300)
CONFIGS = {
    "calibrated": _CAL,
    "calibrated, finish, reference": _CAL.with_values(rollback="finish", coordination="reference"),
    "calibrated, min drafts": _CAL.with_values(min_drafts=3, max_drafts=8),
    "constant latencies (ties)": _CAL.with_text(latency=("12", "28", "431"), acceptance=("0.6",), max_drafts=None),
    "time-sliced": _CAL.with_values(devices=("d0", "d1", "d1"), device_sharing="timeslice"),
    "time-sliced, one device": _CAL.with_values(devices=("d0",) * 3, device_sharing="timeslice"),
    "queued": _CAL.with_values(devices=("d0", "d1", "d1")),
    "toy, time-sliced": preset("toy").with_values(devices=("a", "b", "b"), device_sharing="timeslice"),
    "sd": preset("sd-a100").with_values(num_tokens=400),
    "markov, finish": _AFFINE.with_text(acceptance=("markov:0.9,0.4",), rollback="finish"),
    "4 stages": _AFFINE.with_text(latency=("1", *_AFFINE.latency), acceptance=("0.6", "0.8", "0.9")),
    "ppsd": SimConfig.from_text(scheme="ppsd", latency=("affine:50,1,0.01",), acceptance=("0.6",), num_layers=32,
                      exit_layer=8, pp_stages=4, num_tokens=300),
    "specpipe": SimConfig.from_text(scheme="specpipe", latency=("affine:2,0.1,0", "affine:50,1,0.01"),
                                    acceptance=("0.8",), tree_width=4, pp_stages=3, num_tokens=300),
}


@pytest.mark.parametrize("timeline", [True, False], ids=["timeline", "no timeline"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_skipping_events_computes_what_one_event_per_step_computes(name, timeline, monkeypatch):
    config = CONFIGS[name].with_values(timeline=timeline, seed=3)
    fast = _fingerprint(run.simulate(config))
    monkeypatch.setattr(run, "Clock", _EventPerStep)
    run._ar_elapsed_s.cache_clear()
    assert _fingerprint(run.simulate(config)) == fast
