"""Benchmark the simulator; writes JSON (medians over repeats, with the environment).

1. Simulated output tokens per wall-clock second of one 3-stage PipeSpec run with the calibrated
   1B/8B/70B latencies, on one core. Goal: >= 100,000.
2. A 1,000-point sweep of 3-stage pipelines at 2,000 tokens each, on 2 worker processes locally and
   through a Dask LocalCluster of 2 single-threaded workers on 127.0.0.1.

    .venv/bin/python benchmarks/bench_sim.py [--points 1000] [--repeats 5] [--output FILE] [--skip-dask]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from pipespec.interference import Watch, disturbed, warning
from pipespec.io import result_document, write_json
from pipespec.sim import sweep
from pipespec.sim.presets import preset
from pipespec.sim.run import simulate

GOAL_TOKENS_PER_S = 100_000


def single_run(num_tokens: int, repeats: int) -> dict:
    config = preset("pipespec-a100").with_values(num_tokens=num_tokens)
    simulate(config.with_values(num_tokens=200), with_ar_baseline=False)  # warm-up
    rates, shares = [], []
    for seed in range(repeats):
        with Watch() as watch:
            start = time.perf_counter()
            result = simulate(config.with_values(seed=seed), with_ar_baseline=False)
            rates.append(result.num_tokens / (time.perf_counter() - start))
        shares.append(watch.share)
    median = statistics.median(rates)
    return {"num_tokens": num_tokens, "tokens_per_wall_s": rates, "median_tokens_per_wall_s": median,
            "goal_tokens_per_wall_s": GOAL_TOKENS_PER_S, "meets_goal": median >= GOAL_TOKENS_PER_S,
            "repeats_interference": shares, "disturbed": disturbed(shares)}


def sweep_points(count: int) -> tuple[object, list[dict]]:
    """count points of the calibrated 3-stage pipeline: α × final-stage latency grid, 2,000 tokens each."""
    base = preset("pipespec-a100").with_values(latency=("12", "28", "431"), acceptance=("0.9",), max_drafts=None,
                                               num_tokens=2000)
    alphas = [f"{0.5 + 0.49 * i / 39:.4f}" for i in range(40)]
    finals = [str(200 + 25 * i) for i in range(max(1, count // 40))]
    grid = sweep.points([sweep.Axis("alpha", tuple(alphas)), sweep.Axis("latency[2]", tuple(finals))], 1)
    return base, grid[:count]


def timed_sweep(count: int, engine: str) -> dict:
    base, grid = sweep_points(count)
    rows: list = []
    start = time.perf_counter()
    if engine == "local":
        sweep.run_local(base, grid, 2, lambda p, r: rows.append(r))
        wall = time.perf_counter() - start
        return {"engine": "local", "workers": 2, "points": len(rows), "wall_time_s": wall}
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        start = time.perf_counter()  # the cluster's start-up is not the sweep's
        sweep.run_dask(base, grid, cluster.scheduler_address, lambda p, r: rows.append(r))
        wall = time.perf_counter() - start
    return {"engine": "dask LocalCluster", "workers": 2, "points": len(rows), "wall_time_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--output", default="results/bench_sim.json")
    args = parser.parse_args()
    results = {"single_run": single_run(args.tokens, args.repeats),
               "sweep": [timed_sweep(args.points, "local")]}
    if not args.skip_dask:
        results["sweep"].append(timed_sweep(args.points, "dask"))
    write_json(Path(args.output), result_document("bench_sim", vars(args), results))
    one = results["single_run"]
    message = warning("bench_sim", "the single run", one["repeats_interference"])
    if message:
        print(message, file=sys.stderr)
    print(f"single run: median {one['median_tokens_per_wall_s']:,.0f} simulated tokens per wall second "
          f"(goal >= {GOAL_TOKENS_PER_S:,})")
    for s in results["sweep"]:
        print(f"{s['points']}-point sweep, {s['engine']}, {s['workers']} workers: {s['wall_time_s']:.1f} s")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
