"""`pipespec reproduce`: regenerate the project's figures from inputs committed in it."""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import environment, to_json, write_text_atomic
from .common import subparser


def _theory(out: Path) -> list[Path]:
    from ..figures import theory

    return [theory.plot_rho_and_tokens(out / "theory_rho_tokens.png"),
            theory.plot_async_vs_sync(out / "theory_async_vs_sync.png"),
            theory.plot_specpipe(out / "theory_specpipe.png"),
            theory.plot_ppsd(out / "theory_ppsd.png")]


def _sim_vs_closed_form(out: Path, quick: bool) -> list[Path]:
    import csv
    import io

    from ..figures.sim_vs_theory import plot_sim_vs_closed_form
    from ..validation.sim_vs_theory import grid

    rows = grid(seeds=2 if quick else 4, num_tokens=600 if quick else 2000)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return [write_text_atomic(out / "sim_vs_closed_form.csv", buffer.getvalue()),
            plot_sim_vs_closed_form(out / "sim_vs_closed_form.png", rows)]


def _calibrated_timeline(out: Path, quick: bool) -> list[Path]:
    from ..figures.timeline import plot_timeline
    from ..sim.presets import preset
    from ..sim.run import simulate

    result = simulate(preset("pipespec-a100").with_values(num_tokens=120 if quick else 300, timeline=True))
    return [plot_timeline(out / "sim_pipespec_a100_timeline.png", result, until_s=3.0,
                          title=f"PipeSpec {{1B, 8B, 70B-NF4}} simulated from the A100 calibration: "
                                f"{result.ms_per_token:.1f} ms/token, {result.speedup:.2f}x over AR (first 3 s)")]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    out = Path(args.out)
    steps: list[tuple[str, Callable[[], list[Path]]]] = [
        ("closed forms", lambda: _theory(out)),
        ("simulator vs closed forms", lambda: _sim_vs_closed_form(out, args.quick)),
        ("calibrated PipeSpec timeline", lambda: _calibrated_timeline(out, args.quick)),
    ]
    started = time.perf_counter()
    written: dict[str, Any] = {}
    for name, step in tqdm(steps, desc="reproduce", unit="figure set", file=sys.stderr, disable=None):
        t0 = time.perf_counter()
        written[name] = {"files": [str(p) for p in step()], "wall_time_s": time.perf_counter() - t0}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {"kind": "reproduce", "config": {"out": str(out), "quick": args.quick}, "environment": environment(),
               "results": written, "wall_time_s": time.perf_counter() - started, "peak_rss_mib": peak_mib}
    write_text_atomic(out / "reproduce.json", to_json(summary))
    if args.json:
        print(to_json(summary), end="")
        return 0
    for name, entry in written.items():
        print(f"{name}: " + ", ".join(entry["files"]))
    print(f"done in {summary['wall_time_s']:.1f} s, peak memory {peak_mib:.0f} MiB -> {out / 'reproduce.json'}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands, "reproduce", help="regenerate the figures from committed inputs",
        description="Regenerate the project's figures: closed forms (ρ and E[N] against α, where the "
                    "asynchronous pipeline beats SD, SpecPipe and PPSD speedups), the simulator against "
                    "the closed forms, and the calibrated PipeSpec A100 pipeline's timeline. Records its "
                    "own wall time and peak memory in reproduce.json.",
        examples="  pipespec reproduce\n  pipespec reproduce --out /tmp/figs --quick\n")
    parser.add_argument("--out", default="figures/out", help="output folder (default: figures/out)")
    parser.add_argument("--quick", action="store_true", help="fewer seeds and tokens (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    parser.set_defaults(handler=run)
