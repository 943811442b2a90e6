"""Benchmark log import and the predictions made from it; writes JSON (medians over repeats, with the
environment and the machine's other load during each repeat).

1. `import-logs` of the 26 committed runs of the PipeSpec authors (read, replay, merge, fit, write).
   Goal: < 10 s.
2. Every prediction `reproduce` makes from them (25 asynchronous runs under two coordination models,
   23 synchronous checks). Goal: < 120 s on 2 cores.

    .venv/bin/python benchmarks/bench_logs.py [--repeats 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from goals import Goal, report

from pipespec.interference import Watch, disturbed, warning
from pipespec.io import result_document, write_json
from pipespec.logs.build import import_runs, write_import
from pipespec.logs.records import read_logs
from pipespec.validation.gpu_logs import logs_folder, predict_all

GOALS_S = {"import": 10.0, "predict": 120.0}


def timed(work: Callable[[], object], repeats: int) -> dict:
    walls, others = [], []
    for _ in range(repeats):
        with Watch() as watch:
            start = time.perf_counter()
            work()
            walls.append(time.perf_counter() - start)
        others.append(watch.share)
    return {"wall_time_s": walls, "median_wall_time_s": statistics.median(walls),
            "repeats_interference": others, "disturbed": disturbed(others)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="results/bench_logs.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        imported = timed(lambda: write_import(import_runs(read_logs("reference", [logs_folder()])), Path(tmp) / "i"),
                         args.repeats)
        predicted = timed(lambda: predict_all(Path(tmp) / "p"), max(1, args.repeats - 1))
    results = {"import": imported, "predict": predicted}
    for name, entry in results.items():
        message = warning("bench_logs", name, entry["repeats_interference"])
        if message:
            print(message, file=sys.stderr)
    goals = [Goal("import-logs of the authors' 26 runs", imported["median_wall_time_s"], GOALS_S["import"], "s"),
             Goal("every prediction reproduce makes from them", predicted["median_wall_time_s"], GOALS_S["predict"],
                  "s")]
    document = result_document("bench-logs", vars(args), results)
    write_json(args.output, {**document, "goals": report("bench_logs", goals)})
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
