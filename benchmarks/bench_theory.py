"""Benchmark: evaluate the PipeSpec and SD closed forms over 10^6 parameter points on one core (NumPy's
elementwise kernels are single-threaded).

Goal (foundation issue): under 1 s. Writes JSON (median of repeats, with the environment):
    .venv/bin/python benchmarks/bench_theory.py [--points 1000000] [--repeats 5] [--output FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from goals import Goal, report

from pipespec.io import result_document, write_json
from pipespec.theory import pipespec, sd

GOAL_S = 1.0


def evaluate(alpha: np.ndarray, gamma: np.ndarray, c: np.ndarray) -> float:
    """All four closed forms once; returns a checksum so nothing is optimised away."""
    total = pipespec.rho(alpha, gamma).sum() + pipespec.expected_tokens(alpha, gamma).sum()
    total += sd.expected_tokens(alpha, gamma).sum() + sd.speedup(alpha, gamma, c).sum()
    return float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="results/bench_theory.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0, 1, args.points)
    gamma = rng.integers(0, 33, args.points).astype(float)
    c = rng.uniform(0, 1, args.points)
    evaluate(alpha[:10], gamma[:10], c[:10])  # warm-up: derives and lambdifies, excluded from timing
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        checksum = evaluate(alpha, gamma, c)
        seconds.append(time.perf_counter() - start)
    median_s = statistics.median(seconds)
    results = {"points": args.points, "repeats_s": seconds, "median_s": median_s,
               "points_per_s": args.points / median_s,
               "checksum": checksum, "functions": ["pipespec.rho", "pipespec.expected_tokens",
                                                   "sd.expected_tokens", "sd.speedup"]}
    goals = [Goal(f"{args.points:,} points of 4 closed forms, one core", median_s, GOAL_S, "ms")]
    document = result_document("bench_theory", vars(args), results)
    write_json(args.output, {**document, "goals": report("bench_theory", goals)})
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
