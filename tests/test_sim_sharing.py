"""Stages sharing a device (--device-sharing): queued one forward at a time, or time-sliced as an OS shares
a CPU core; and layer stages priced as they were timed (--stage-latency) instead of by their layers' share."""

import itertools

import pytest

from pipespec.errors import ConfigError
from pipespec.sim.clock import Clock
from pipespec.sim.config import SimConfig
from pipespec.sim.run import simulate
from pipespec.sim.sharing import TimeSlicedDevice


def _ends(jobs, capacity=1, cancel=None):
    """End time of each (start, work) forward on one time-sliced device; `cancel` = (job, time) stops one."""
    env = Clock()
    device = TimeSlicedDevice(env, capacity)
    ends = {}

    def run(i, start, work):
        yield env.timeout(start)
        job = device.start(work)
        if cancel and cancel[0] == i:
            yield env.timeout(cancel[1] - start)
            device.cancel(job)
            return
        yield job.done
        ends[i] = env.now

    for i, (start, work) in enumerate(jobs):
        env.process(run(i, start, work))
    env.run()
    return ends


def test_a_forward_alone_runs_at_full_speed():
    assert _ends([(0, 10)]) == {0: pytest.approx(10)}


def test_two_forwards_started_together_share_the_core_and_end_together():
    assert _ends([(0, 10), (0, 10)]) == {0: pytest.approx(20), 1: pytest.approx(20)}


def test_a_later_forward_slows_the_one_in_flight():
    """A runs alone for 5, then both at half speed: A's last 5 take 10 (ends at 15), B has done 5 by then
    and finishes its other 5 alone (at 20). A queue would end them at 10 and 20."""
    assert _ends([(0, 10), (5, 10)]) == {0: pytest.approx(15), 1: pytest.approx(20)}


def test_capacity_runs_that_many_at_full_speed():
    assert _ends([(0, 10), (0, 10)], capacity=2) == {0: pytest.approx(10), 1: pytest.approx(10)}
    assert _ends([(0, 12), (0, 12), (0, 12)], capacity=2) == {i: pytest.approx(18) for i in range(3)}


def test_a_cancelled_forward_gives_its_share_back():
    """B is aborted at 4: A has done 2 by then and runs its other 8 alone."""
    assert _ends([(0, 10), (0, 10)], cancel=(1, 4)) == {0: pytest.approx(12)}


def _specpipe(**values):
    base = dict(scheme="specpipe", latency=("40", "60"), acceptance=("0.9",), num_layers=30, pp_stages=2,
                num_tokens=300, devices=("core0", "core0", "core1"), head_share=0.2, seed=1)
    return SimConfig.from_text(**{**base, **values})


def test_time_slicing_stretches_the_shared_stages_not_the_work():
    """The draft and target stage 0 share core 0: time-sliced, each forward's wall time (busy_s per step)
    is longer than its work whenever they overlap; queued, it is exactly its work. The core's work done
    per step is the same either way."""
    queued = simulate(_specpipe(), with_ar_baseline=False)
    sliced = simulate(_specpipe(device_sharing="timeslice"), with_ar_baseline=False)
    stage0_s = 0.060 * (0.8 * 15 / 30)
    assert queued.stages[1].busy_s / queued.stages[1].steps == pytest.approx(stage0_s)
    assert sliced.stages[1].busy_s / sliced.stages[1].steps > 1.2 * stage0_s
    assert sliced.stages[2].busy_s / sliced.stages[2].steps == pytest.approx(0.060 * (0.8 * 15 / 30 + 0.2))
    assert sliced.ms_per_token != queued.ms_per_token


def test_stages_on_devices_of_their_own_do_not_depend_on_the_sharing_policy():
    alone = _specpipe(devices=("a", "b", "c"))
    assert simulate(alone, with_ar_baseline=False).ms_per_token == \
        simulate(alone.with_values(device_sharing="timeslice"), with_ar_baseline=False).ms_per_token


def test_timed_stage_latencies_replace_the_layer_share():
    """Stage latencies equal to the share model's reproduce it exactly; slower ones slow the run."""
    shared = simulate(_specpipe(), with_ar_baseline=False).ms_per_token
    same = simulate(_specpipe(stage_latency=("24", "36")), with_ar_baseline=False).ms_per_token
    slower = simulate(_specpipe(stage_latency=("30", "45")), with_ar_baseline=False).ms_per_token
    assert same == pytest.approx(shared) and slower > shared


@pytest.mark.parametrize("values, message", [
    ({"device_sharing": "fair"}, "--device-sharing must be one of"),
    ({"stage_latency": ("24",)}, "--stage-latency: give one per stage (2), got 1"),
    ({"stage_latency": ("24", "x")}, "--stage-latency[1]"),
    ({"scheme": "sd", "devices": (), "stage_latency": ("24", "36")}, "--stage-latency applies to ppsd and specpipe"),
])
def test_sharing_and_stage_options_are_validated(values, message):
    with pytest.raises(ConfigError) as error:
        _specpipe(**values)
    assert message in str(error.value)


@pytest.mark.parametrize("min_drafts", [1, 3])
def test_a_pipeline_on_a_time_sliced_core_never_overbooks_it(min_drafts):
    """PipeSpec's first two stages on one core (rollbacks interrupt forwards sharing it, waiting stages read
    an upstream forward's projected end): every forward there takes at least its own work in wall time, and
    the core's total work fits in the run's time."""
    config = SimConfig.from_text(scheme="pipespec", latency=("5", "20", "60"), acceptance=("0.7", "0.8"),
                                 num_tokens=300, devices=("core0", "core0", "core1"), device_sharing="timeslice",
                                 rollback="finish", min_drafts=min_drafts, timeline=True)
    result = simulate(config, with_ar_baseline=False)
    assert result.num_tokens >= 300
    work = {0: 0.005, 1: 0.020}
    on_core0 = [e for e in result.timeline if e.stage in work]
    assert all(e.end_s - e.start_s >= work[e.stage] - 1e-9 for e in on_core0)
    assert sum(work[e.stage] for e in on_core0) <= result.elapsed_s + 1e-9
    overlapping = sum(1 for a, b in itertools.pairwise(on_core0) if b.start_s < a.end_s - 1e-9)
    assert overlapping > 0  # the two stages did share the core


_PIPESPEC = dict(latency=("12", "28", "431"), acceptance=("pos:0.9,0.8,0.7",), num_tokens=400)
_RUN_THROUGH_CASES = [
    *({**_PIPESPEC, "devices": devices, "rollback": rollback} for devices in
      (("d0", "d1", "d1"), ("d0", "d0", "d1"), ("d0", "d0", "d0")) for rollback in ("abort", "finish")),
    dict(scheme="specpipe", latency=("40", "60"), acceptance=("0.9",), num_layers=30, pp_stages=2, num_tokens=300,
         devices=("core0", "core0", "core1"), head_share=0.2),
    dict(scheme="ppsd", latency=("100",), acceptance=("0.7",), num_layers=32, exit_layer=8, pp_stages=4,
         num_tokens=300, devices=("c0", "c1", "c0", "c1")),
]


@pytest.mark.parametrize("values", _RUN_THROUGH_CASES)
def test_a_forward_run_through_at_once_computes_what_its_completion_event_would(monkeypatch, values):
    """TimeSlicedDevice._run_through completes a forward without its timer's event: the run, every forward of
    its timeline included, is the one the events compute."""
    config = SimConfig.from_text(**values, device_sharing="timeslice", timeline=True)
    ran_through = []
    run_through = TimeSlicedDevice._run_through
    monkeypatch.setattr(TimeSlicedDevice, "_run_through",
                        lambda self, job: ran_through.append(run_through(self, job)) or ran_through[-1])
    fast = simulate(config)
    assert "scheme" in values or any(ran_through)  # (pipespec's middle stage takes the shortcut)
    monkeypatch.setattr(TimeSlicedDevice, "_run_through", lambda self, job: False)
    slow = simulate(config)
    assert fast.summary() == slow.summary()
    assert fast.timeline == slow.timeline and len(fast.timeline) > 300
