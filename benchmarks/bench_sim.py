"""Benchmark the simulator against SimPy itself; writes JSON (medians over repeats, with the environment).

SimPy's raw event rate (a bare process doing `yield env.timeout(1)`) is timed just before and just after every
run, and each run is reported as simulated output tokens per raw event time: tokens per wall second divided by
raw events per wall second, a figure the machine's speed and load mostly cancel out of. Runs, 20,000 tokens
each, one core:
- calibrated: the 3-stage PipeSpec {1B, 8B, 70B-NF4} on A100s (`--preset pipespec-a100`). Goal >= 0.10.
- trace replay: the authors' {1B, 8B, 70B} chain replayed from their imported logs (agreement traces, step-time
  profiles), under their coordination protocol, work in flight finishing: `reproduce`'s asynchronous prediction
  of that chain. Goal >= 0.05.
- time-sliced: the calibrated chain with its two verifiers time-sliced on one device. Goal >= 0.05.
- time-sliced, draft beside the middle stage (as `validate`'s pipespec-k3 runs a draft and the int8 model on one
  core) and a 4-stage PPSD layer pipeline: measured, no goal.
Then a 1,000-point sweep of 3-stage pipelines at 2,000 tokens each on 2 local worker processes (goal < 30 s)
and, unless --skip-dask, through a Dask LocalCluster of 2 single-threaded workers on 127.0.0.1.

With --instructions, each run is also counted in CPU instructions per simulated token (valgrind's callgrind,
--instruction-tokens tokens per run after a 50-token warm-up, the cost of starting Python, building the
configuration and warming up subtracted; one BLAS thread, a fixed hash seed):
no goal, but the same on every machine load, so a change of a few percent shows where wall-clock figures on a
shared machine cannot tell it from noise.

    .venv/bin/python benchmarks/bench_sim.py [--tokens 20000] [--repeats 5] [--points 1000] [--skip-dask]
                                             [--instructions] [--instruction-tokens 5000] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import simpy
from goals import Goal, report

from pipespec.acceptance import Bernoulli
from pipespec.interference import Watch, disturbed, warning
from pipespec.io import result_document, write_json
from pipespec.logs.build import import_runs, write_import
from pipespec.logs.records import read_logs
from pipespec.sim import sweep
from pipespec.sim.config import SimConfig
from pipespec.sim.presets import preset
from pipespec.sim.run import simulate
from pipespec.validation import gpu_logs

RAW_EVENTS = 200_000
GOALS = {"calibrated": 0.10, "trace replay": 0.05, "time-sliced": 0.05}  # simulated tokens per raw event
SWEEP_GOAL_S = 30.0


def raw_event_rate(events: int = RAW_EVENTS) -> float:
    """Events per wall second of a bare SimPy process doing `yield env.timeout(1)`."""
    env = simpy.Environment()

    def tick():
        for _ in range(events):
            yield env.timeout(1)

    env.process(tick())
    start = time.perf_counter()
    env.run()
    return events / (time.perf_counter() - start)


def runs(num_tokens: int, imported: dict[str, Path]) -> dict[str, SimConfig]:
    calibrated = preset("pipespec-a100").with_values(num_tokens=num_tokens)
    chain = next(t for t in gpu_logs.targets(read_logs("reference", [gpu_logs.logs_folder()]))
                 if len(t.sync.model_names) == 3)
    replay = gpu_logs.base_config(gpu_logs.Imported.read(imported), chain.sync, "pipespec",
                                  coordination="reference", rollback="finish", min_drafts=max(chain.lookahead - 1, 1),
                                  max_drafts=chain.max_drafts, num_tokens=num_tokens)
    sliced = calibrated.with_values(devices=("d0", "d1", "d1"), device_sharing="timeslice")
    return {"calibrated": calibrated, "trace replay": replay, "time-sliced": sliced,
            "time-sliced, draft beside the middle stage": sliced.with_values(devices=("d0", "d0", "d1")),
            "layer pipeline (ppsd, 4 stages)": SimConfig.from_flat(dict(
                scheme="ppsd", latency=calibrated.latency[-1:], acceptance=(Bernoulli(0.6),), num_layers=80,
                exit_layer=20, pp_stages=4, num_tokens=num_tokens))}


def measure(config: SimConfig, repeats: int) -> dict:
    simulate(config.with_values(num_tokens=500), with_ar_baseline=False)  # warm-up
    ratios, rates, raw, shares = [], [], [], []
    for seed in range(repeats):
        with Watch() as watch:
            before = raw_event_rate()
            start = time.perf_counter()
            result = simulate(config.with_values(seed=seed), with_ar_baseline=False)
            rate = result.num_tokens / (time.perf_counter() - start)
            after = raw_event_rate()
        rates.append(rate)
        raw.append((before + after) / 2)
        ratios.append(rate / raw[-1])
        shares.append(watch.share)
    return {"num_tokens": config.num_tokens, "tokens_per_wall_s": rates, "raw_events_per_wall_s": raw,
            "tokens_per_raw_event": ratios, "median_tokens_per_raw_event": statistics.median(ratios),
            "range_tokens_per_raw_event": (min(ratios), max(ratios)),
            "median_tokens_per_wall_s": statistics.median(rates), "repeats_interference": shares,
            "disturbed": disturbed(shares)}


# simulate the configuration in sys.argv[1] (its config block, as a result records it) sys.argv[2] times, after a
# 50-token warm-up (the first run's one-time costs: lazy imports, memoised durations, the interpreter's warm-up)
_ONE_RUN = ("import json, sys\n"
            "from pipespec.sim.config import SimConfig\n"
            "from pipespec.sim.run import simulate\n"
            "config = SimConfig.from_text(**json.load(open(sys.argv[1], encoding='utf-8')))\n"
            "simulate(config.with_values(num_tokens=50), with_ar_baseline=False)\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    simulate(config, with_ar_baseline=False)\n")


def instructions_per_token(config: SimConfig, folder: Path) -> float:
    """CPU instructions per simulated token of one run (callgrind), less those of the same process not running it
    (both warmed up by a short run first)."""
    path = folder / "config.json"
    path.write_text(json.dumps(config.to_dict()), encoding="utf-8")

    # one BLAS thread: OpenBLAS's idle pool threads spin for a while, and callgrind counts their instructions too
    # (a few percent, differing run to run); a fixed hash seed makes every dict and set the same each time
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}

    def counted(runs: int) -> int:
        done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                               "-P", "-c", _ONE_RUN, str(path), str(runs)], capture_output=True, text=True, check=True,
                              env=env)
        return int(re.search(r"Collected : (\d+)", done.stderr).group(1))

    return (counted(1) - counted(0)) / config.num_tokens


def sweep_points(count: int) -> tuple[SimConfig, list[dict]]:
    """count points of the calibrated 3-stage pipeline: α × final-stage latency grid, 2,000 tokens each."""
    base = preset("pipespec-a100").with_text(latency=("12", "28", "431"), acceptance=("0.9",), max_drafts=None,
                                             num_tokens=2000)
    alphas = [f"{0.5 + 0.49 * i / 39:.4f}" for i in range(40)]
    finals = [str(200 + 25 * i) for i in range(max(1, count // 40))]
    grid = sweep.points([sweep.Axis("alpha", tuple(alphas)), sweep.Axis("latency[2]", tuple(finals))], 1)
    return base, grid[:count]


def timed_sweep(count: int, engine: str) -> dict:
    base, grid = sweep_points(count)
    rows: list = []
    if engine == "local":
        with Watch() as watch:
            start = time.perf_counter()
            sweep.run_local(base, grid, 2, lambda p, r: rows.append(r))
            wall = time.perf_counter() - start
        return {"engine": "local", "workers": 2, "points": len(rows), "wall_time_s": wall,
                "interference": watch.share, "disturbed": watch.disturbed}
    from distributed import LocalCluster

    with (LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
          Watch() as watch):  # the cluster's start-up is not the sweep's
        start = time.perf_counter()
        sweep.run_dask(base, grid, cluster.scheduler_address, lambda p, r: rows.append(r))
        wall = time.perf_counter() - start
    return {"engine": "dask LocalCluster", "workers": 2, "points": len(rows), "wall_time_s": wall,
            "interference": watch.share, "disturbed": watch.disturbed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--instructions", action="store_true", help="also count instructions per token (valgrind)")
    parser.add_argument("--instruction-tokens", type=int, default=5000)
    parser.add_argument("--output", default="results/bench_sim.json")
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        sys.exit("bench_sim: --instructions needs valgrind on the PATH (Debian: apt install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        imported = write_import(import_runs(read_logs("reference", [gpu_logs.logs_folder()])), Path(tmp))
        configs = runs(args.tokens, imported)
        measured = {name: measure(config, args.repeats) for name, config in configs.items()}
        if args.instructions:
            for name, config in configs.items():
                counted = instructions_per_token(config.with_values(num_tokens=args.instruction_tokens), Path(tmp))
                measured[name]["instructions_per_token"] = counted
                print(f"{name}: {counted:,.0f} instructions per simulated token ({args.instruction_tokens:,} tokens)")
    sweeps = [timed_sweep(args.points, "local")]
    if not args.skip_dask:
        sweeps.append(timed_sweep(args.points, "dask"))
    for name, entry in measured.items():
        message = warning("bench_sim", f"the {name} run", entry["repeats_interference"])
        if message:
            print(message, file=sys.stderr)
        low, high = entry["range_tokens_per_raw_event"]
        print(f"{name}: median {entry['median_tokens_per_raw_event']:.3f} simulated tokens per raw SimPy event "
              f"(repeats {low:.3f}–{high:.3f}; {entry['median_tokens_per_wall_s']:,.0f} tokens per wall second)")
    for s in sweeps:
        print(f"{s['points']}-point sweep, {s['engine']}, {s['workers']} workers: {s['wall_time_s']:.1f} s")
    goals = [Goal(f"{name} run, simulated tokens per raw SimPy event", measured[name]["median_tokens_per_raw_event"],
                  target, "", higher_is_better=True, spread=measured[name]["range_tokens_per_raw_event"])
             for name, target in GOALS.items()]
    goals.append(Goal(f"{args.points:,}-point sweep, 2 local workers", sweeps[0]["wall_time_s"], SWEEP_GOAL_S, "s"))
    document = result_document("bench_sim", vars(args), {"runs": measured, "sweep": sweeps})
    write_json(Path(args.output), {**document, "goals": report("bench_sim", goals)})
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
