"""`pipespec sweep`: a grid of simulations in parallel, with a progress bar, resumable, CSV or Parquet."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require
from ..io import environment, to_json, write_atomic, write_text_atomic
from ..table import csv_text
from .common import subparser
from .simulate import resolve_config


def write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("--output .parquet needs pyarrow (pip install 'pipespec[sweep]')") from None
        table = pa.table({c: [row.get(c) for row in rows] for c in columns})
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        return
    write_text_atomic(path, csv_text(rows))


def _check_options(args: argparse.Namespace) -> Path:
    """The sweep's own options (the output, workers capped at the usable CPUs, the engine); the output path."""
    output = Path(args.output)
    require(output.suffix.lower() in (".csv", ".parquet"),
            f"--output must end in .csv or .parquet, got {args.output!r}")
    require(isinstance(args.workers, int) and args.workers >= 1,
            f"--workers must be an integer >= 1, got {args.workers}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.engine == "local" and args.workers > cpus:
        print(f"pipespec sweep: --workers {args.workers} capped at {cpus}, the CPUs this process may use",
              file=sys.stderr)
        args.workers = cpus
    require(args.engine == "local" or args.scheduler, "--engine dask needs --scheduler ADDRESS")
    require(args.engine == "dask" or args.scheduler is None, "--scheduler applies only with --engine dask")
    return output


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..sim import sweep

    output = _check_options(args)
    base = resolve_config(args)
    axes = [sweep.parse_axis(text) for text in args.grid or []]
    grid = sweep.points(axes, args.replicates)
    sweep.check_axes(base, axes)
    for point in grid:  # validate every point before any work: a bad value is a one-line error
        sweep.apply(base, point)
    resolved = {"base": base.to_dict(), "grid": {a.name: list(a.values) for a in axes},
                "replicates": args.replicates, "points": len(grid)}
    client = sweep.connect(args.scheduler) if args.engine == "dask" else None  # before any file is written
    checkpoint = sweep.Checkpoint.open(output, sweep.fingerprint(resolved), args.fresh)
    todo = [p for p in grid if sweep.point_key(p) not in checkpoint.rows]
    started = time.perf_counter()
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), desc="sweep", unit="pt", file=sys.stderr,
               disable=None if not args.progress else False)

    def on_row(point: dict[str, Any], row: dict[str, Any]) -> None:
        checkpoint.add(sweep.point_key(point), row)
        bar.update(1)

    try:
        if client is not None:
            sweep.run_dask(base, todo, client, on_row)
        else:
            sweep.run_local(base, todo, args.workers, on_row)
    except KeyboardInterrupt:
        bar.close()
        print(f"pipespec sweep: interrupted; {len(checkpoint.rows)}/{len(grid)} points kept in {checkpoint.path}, "
              "run the same command again to resume", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        bar.close()
        print(f"pipespec sweep: error: {exc} ({checkpoint.path})", file=sys.stderr)
        return 1
    bar.close()
    rows = list(sweep.iter_rows(grid, checkpoint))
    write_table(output, rows)
    meta = {"kind": "sweep", "config": resolved, "engine": args.engine, "workers": args.workers,
            "environment": environment(), "wall_time_s": time.perf_counter() - started, "output": str(output)}
    write_text_atomic(output.with_name(output.name + ".config.json"), to_json(meta))
    checkpoint.remove()
    if args.json:
        print(to_json({**meta, "results": rows}), end="")
    else:
        print(f"{len(rows)} points -> {output} (resolved config: {output.name}.config.json)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from ..config import add_arguments
    from ..sim.config import SimConfig
    from ..sim.presets import PRESETS

    parser = subparser(
        commands, "sweep", help="a grid of simulations, in parallel, resumable",
        description="Run the simulator over the cartesian product of --grid axes (any simulate option, "
                    "an element of a list option such as latency[2], or alpha for every pair), times "
                    "--replicates seeds. Writes one row per point (CSV or Parquet) and the resolved sweep "
                    "configuration beside it. Finished points are checkpointed: run the same command "
                    "again after an interruption to resume.",
        examples="  pipespec sweep --preset pipespec-a100 --grid alpha=0.7,0.8,0.9 --grid max_drafts=4,8,16,100 "
                 "--output sweep.csv\n"
                 "  pipespec sweep --scheme sd --latency 10 100 --grid gamma=1,2,4,8 --grid alpha=0.6,0.8 "
                 "--replicates 5 --output sd.parquet\n"
                 "  pipespec sweep --preset toy --grid 'latency[2]=500,1000,2000' --engine dask "
                 "--scheduler tcp://127.0.0.1:8786 --output toy.csv\n")
    parser.add_argument("--grid", action="append", metavar="NAME=V1,V2,...", help="a swept parameter (repeat)")
    parser.add_argument("--replicates", type=int, default=1, help="seeds per grid point (default: 1)")
    parser.add_argument("--output", required=True, metavar="FILE.csv|FILE.parquet", help="the results table")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default: 2)")
    parser.add_argument("--engine", choices=("local", "dask"), default="local", help="where points run")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address (with --engine dask)")
    parser.add_argument("--fresh", action="store_true", help="discard a partial sweep at --output and start over")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    parser.add_argument("--json", action="store_true", help="also print the resolved config and rows as JSON")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="base configuration")
    parser.add_argument("--config", metavar="FILE", help="TOML/YAML base configuration")
    add_arguments(parser, SimConfig, "base simulation (as for simulate)", only_given=True)
    parser.set_defaults(handler=run, trace=None, plot=None)
