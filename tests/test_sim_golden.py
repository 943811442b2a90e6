"""The simulator's outputs, pinned: a speed-up must compute exactly what the simulator computed before (every
counter, every float, every forward of the timeline). Each case's full summary (and timeline, where recorded) is
compared by digest with tests/golden/sim_outputs.json, its headline figure kept beside it for a readable diff.

A change that means to alter what the simulator computes rewrites the file, and says so in its commit:

    .venv/bin/python tests/test_sim_golden.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from pipespec.sim.config import SimConfig
from pipespec.sim.presets import preset
from pipespec.sim.run import simulate

GOLDEN = Path(__file__).parent / "golden" / "sim_outputs.json"


def cases() -> dict[str, SimConfig]:
    cal = preset("pipespec-a100").with_values(num_tokens=1500)
    plain = SimConfig.from_text(latency=("12", "28", "431"), acceptance=("0.7",), num_tokens=1500)
    affine = SimConfig.from_text(latency=("affine:5,1,0.01", "affine:20,2,0.02", "affine:300,5,0.1"),
                                 acceptance=("pos:0.9,0.8,0.5",), num_tokens=1000)
    return {
        "pipespec-a100": cal,
        "pipespec-a100 timeline": cal.with_values(num_tokens=300, timeline=True),
        "sd-a100": preset("sd-a100").with_values(num_tokens=1500),
        "toy": preset("toy"),
        "finish, reference, min-drafts 3": cal.with_values(rollback="finish", coordination="reference", min_drafts=3),
        "time-sliced verifiers": cal.with_values(devices=("d0", "d1", "d1"), device_sharing="timeslice"),
        "time-sliced draft beside": cal.with_values(devices=("d0", "d0", "d1"), device_sharing="timeslice",
                                                    timeline=True, num_tokens=400),
        "queued on one device": cal.with_values(devices=("d", "d", "d")),
        "bernoulli, uncapped": plain,
        "bernoulli, eager drafter": plain.with_values(lazy_drafter=False),
        "markov": plain.with_text(acceptance=("markov:0.9,0.3",)),
        "affine, positional": affine,
        "sd dynamic, affine": affine.with_values(scheme="sd", schedule="dynamic"),
        "sd reference chain": plain.with_values(scheme="sd", coordination="reference"),
        "ppsd": SimConfig.from_text(scheme="ppsd", latency=("431",), acceptance=("0.6",), num_layers=80,
                                    exit_layer=20, pp_stages=4, num_tokens=500),
        "specpipe": SimConfig.from_text(scheme="specpipe", latency=("12", "431"), acceptance=("0.7",), pp_stages=4,
                                        tree_width=2, num_tokens=500, timeline=True),
    }


def outputs(config: SimConfig) -> dict:
    result = simulate(config)
    summary = result.summary()
    digest = hashlib.sha256(json.dumps(summary, sort_keys=True, default=repr).encode())
    if result.timeline is not None:
        digest.update(repr(result.timeline).encode())
    return {"ms_per_token": summary["ms_per_token"], "digest": digest.hexdigest()}


def test_the_simulator_computes_what_it_computed_before():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = {name: outputs(config) for name, config in cases().items()}
    assert got.keys() == golden.keys()
    changed = {name: (golden[name], got[name]) for name in got if got[name] != golden[name]}
    assert not changed, f"outputs changed (rewrite {GOLDEN.name} only if that is meant): {changed}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python {Path(__file__).name} --write")
    GOLDEN.write_text(json.dumps({n: outputs(c) for n, c in cases().items()}, indent=1) + "\n", encoding="utf-8")
    print(f"-> {GOLDEN}")
