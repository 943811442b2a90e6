"""The torch.distributed transport: every pipelined engine on 2-4 gloo ranks on 127.0.0.1 (the engine starts the
stage ranks itself), token-identical to the target's greedy output, rings travelling with the tokens, and a rank
that dies stopping the run with its name."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pipespec.backend.engines import DecodeOptions, decode_ar
from pipespec.backend.models import resolve
from pipespec.backend.pipeline import PipelineEngine, Placement, StageFailed
from pipespec.backend.ppsd import PPSDEngine
from pipespec.backend.specpipe import SpecPipeEngine
from pipespec.backend.stages import build_stage

pytestmark = pytest.mark.slow
TARGET = "tiny:1:3:64"


def prompts(count=2):
    rng = np.random.default_rng(4)
    return [rng.integers(3, 49152, size=int(rng.integers(8, 30))).tolist() for _ in range(count)]


def expected(options, target=TARGET):
    stage = build_stage(resolve(target), "T", "cpu", 0.0)
    return [decode_ar([stage], p, options).output for p in prompts()]


@pytest.mark.parametrize("chain", [["tiny:1:1:64", TARGET], ["tiny:3:1:32", "tiny:2:2:32", TARGET],
                                   ["ngram", "tiny:1:1:64", TARGET]], ids=lambda c: "+".join(c))
def test_pipespec_over_dist_is_the_targets_greedy_output(chain):
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=40, max_drafts=6)
    refs = [resolve(s) for s in chain]
    with PipelineEngine(refs, [Placement()] * len(refs), options, transport="dist") as engine:
        got = [engine.decode(p) for p in prompts()]
    assert [r.output for r in got] == expected(options)
    assert sum(r.pairs[-1].verifications for r in got) > 0
    assert len(got[0].stages) == len(chain)


def test_ppsd_over_dist_carries_the_hidden_rows():
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=32, max_lead=8)
    target = "tiny:1:4:64"
    with PPSDEngine(resolve(target), 2, [Placement(), Placement()], options, transport="dist") as engine:
        got = [engine.decode(p) for p in prompts()]
    assert [r.output for r in got] == expected(options, target)
    assert sum(r.pairs[0].verifications for r in got) > 0


@pytest.mark.parametrize("stages, width", [(2, 2), (3, 1)])
def test_specpipe_over_dist_carries_the_tree_levels(stages, width):
    torch.set_num_threads(1)
    options = DecodeOptions(max_new_tokens=24)
    with SpecPipeEngine(resolve(TARGET), resolve("tiny:1:1:64"), [Placement()] * (stages + 1), options, width,
                        transport="dist") as engine:
        got = [engine.decode(p) for p in prompts()]
    assert [r.output for r in got] == expected(options)
    assert len(got[0].stages) == stages + 1


def test_sampling_over_dist_runs_speculative_sampling():
    torch.set_num_threads(1)
    refs = [resolve("tiny:1:1:16:6"), resolve("tiny:0:2:16:6")]
    with PipelineEngine(refs, [Placement()] * 2, DecodeOptions(max_new_tokens=16, max_lead=4), temperature=1.0,
                        seed=3, transport="dist") as engine:
        outputs = [engine.decode([1, 4, 2, 4, 2]).output for _ in range(3)]
    assert all(len(o) == 16 and all(0 <= t < 6 for t in o) for o in outputs)


def _ranks(names, rings):
    """Every rank of a pipeline's group in this process, one thread each joining: (coordinator channel, stages)."""
    import threading

    from torch.distributed import TCPStore

    from pipespec.backend.channel import Channel, connect
    from pipespec.backend.dist import DistHarness, _DistStage

    world = len(names) + 1
    store = TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False)
    spec = DistHarness(tuple(names), tuple(rings), (1.0, 0), ("127.0.0.1", store.port), 30.0)
    groups = {}
    joins = [threading.Thread(target=lambda r=r: groups.__setitem__(r, connect(
        spec.address, r, world, 30.0, store if r == 0 else None))) for r in range(world)]
    for join in joins:
        join.start()
    for join in joins:
        join.join(30)
    coordinator = Channel(groups[0], 0, names)
    stages = [_DistStage(spec, j, Channel(groups[j + 1], j + 1, names)) for j in range(len(names))]
    return coordinator, stages


def test_a_publish_carries_its_ring_rows_to_the_neighbour_replica():
    coordinator, (draft, verifier) = _ranks(["d", "t"], [(8, 3), None])
    try:
        # a publish (with no ring rows) of an epoch not yet begun waits for its prompt
        later = ("publish", 2, 0, [9, 9], (None,))
        draft.channel.send(2, later)
        for j in (1, 2):
            coordinator.send(j, ("prompt", 1, [1, 2], [[1, 2], [1, 2]]))
        rows = {2: torch.tensor([0.1, 0.2, 0.7]), 3: torch.tensor([0.5, 0.25, 0.25])}
        deadline = time.monotonic() + 10
        while draft.epoch() != 1 and time.monotonic() < deadline:
            draft.wait(0, 0.1)
        draft.buffers[0].publish([1, 2, 5, 4], lambda: [draft.rings[0].write(p, r) for p, r in rows.items()])
        while verifier.buffers[0].read()[1] != [1, 2, 5, 4] and time.monotonic() < deadline:
            verifier.wait(1, 0.1)
        assert verifier.epoch() == 1 and verifier.buffers[0].read()[1] == [1, 2, 5, 4]
        assert torch.equal(verifier.rings[0].rows([2, 3]), torch.stack([rows[2], rows[3]]))
        coordinator.send(2, ("prompt", 2, [3], [[3], [3]]))
        while verifier.epoch() != 2 and time.monotonic() < deadline:
            verifier.wait(1, 0.1)
        assert verifier.buffers[0].read()[1] == [9, 9], "the early publish was not applied once its epoch began"
        draft.finish_prompt(2)
        while not verifier.done(2) and time.monotonic() < deadline:
            verifier.wait(1, 0.1)
        assert verifier.done(2)
    finally:
        coordinator.goodbye()
        for stage in (draft, verifier):
            stage.channel.goodbye()
        for channel in (coordinator, draft.channel, verifier.channel):
            channel.join(5)


def test_a_killed_rank_stops_the_run_within_seconds_with_its_name():
    refs = [resolve("tiny:1:1:64"), resolve("tiny:2:1:64"), resolve(TARGET)]
    engine = PipelineEngine(refs, [Placement()] * 3, DecodeOptions(max_new_tokens=100_000), capacity=200_100,
                            transport="dist")
    with engine:
        started = time.monotonic()
        os.kill(engine.processes[1].pid, signal.SIGKILL)
        with pytest.raises(StageFailed, match=r"stage 1 \(tiny:2:1:64\)"):
            engine.decode(prompts(1)[0])
        assert time.monotonic() - started < 10
    assert [p for p in engine.processes if p.is_alive()] == []


def test_a_rank_that_loses_its_peer_stops_by_itself():
    """Without the coordinator's help: a stage whose neighbour died ends its process, naming the neighbour."""
    refs = [resolve("tiny:1:1:64"), resolve(TARGET)]
    engine = PipelineEngine(refs, [Placement()] * 2, DecodeOptions(max_new_tokens=100_000), capacity=200_100,
                            transport="dist")
    with engine:
        engine.link.start_prompt(1, prompts(1)[0], engine._initial(prompts(1)[0]))
        time.sleep(1.0)
        os.kill(engine.processes[0].pid, signal.SIGKILL)
        engine.processes[1].join(10)
        assert not engine.processes[1].is_alive(), "the stage beside the dead one kept running"
        said = []  # what reached the coordinator: stage 0's loss, stage 1's error, stage 1's loss
        while (item := engine.link.channel.get(2)) is not None:
            said.append(item[1])
        errors = [m[1][2] for m in said if isinstance(m, tuple) and m[0] == "result" and m[1][0] == "error"]
        assert any("stage 1 (tiny:1:3:64) lost stage 0 (tiny:1:1:64)" in e for e in errors), said


def test_torchrun_ranks_join_the_group_it_made(tmp_path):
    """`pipespec run --transport dist` under torchrun: rank 0 coordinates and writes the result, the others serve."""
    out = tmp_path / "run.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", "-m",
               "pipespec", "run", "--scheme", "pipespec", "--chain", "tiny:1:1:64", TARGET, "--transport", "dist",
               "--prompts", str(tmp_path / "p.jsonl"), "--max-new-tokens", "16", "--warmup", "0", "--output", str(out)]
    (tmp_path / "p.jsonl").write_text('{"id": "a", "input_ids": [5, 9, 200, 31, 7, 4000, 12]}\n')
    done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    document = json.loads(out.read_text())
    options = DecodeOptions(max_new_tokens=16)
    reference = decode_ar([build_stage(resolve(TARGET), "T", "cpu", 0.0)], [5, 9, 200, 31, 7, 4000, 12], options)
    assert document["results"]["prompts"][0]["output_ids"] == reference.output
    assert document["config"]["transport"] == "dist"
