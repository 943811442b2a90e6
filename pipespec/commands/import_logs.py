"""`pipespec import-logs FORMAT PATH... --out DIR`: per-round speculative-decoding logs as the simulator's files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import require
from ..table import format_table
from .common import emit, subparser


def run(args: argparse.Namespace) -> int:
    from ..config import from_args
    from ..logs.build import import_runs, write_import
    from ..logs.records import read_logs
    from .common import OutputConfig

    out = from_args(OutputConfig, args)
    target = Path(args.out)
    require(not target.exists() or target.is_dir(), f"--out must be a folder, got the file {str(target)!r}")
    started = time.perf_counter()
    runs = read_logs(args.format, args.paths)  # every file checked before anything is written
    imported = import_runs(runs)
    files = write_import(imported, target)
    elapsed = time.perf_counter() - started
    pairs = [{"pair": name, "runs": len(v["runs"]), "positions": v["positions"], "imputed": v["imputed_positions"],
              "disagreeing": v["disagreeing_positions"], "alpha": v["observed_alpha"]}
             for name, v in imported.traces.items()]
    profiles = [{"model": key, "widths": " ".join(str(p["num_tokens"]) for p in v["points"]
                                                  if p.get("source") == "measured"),
                 "fit_error": (v.get("fit") or {}).get("max_rel_error")} for key, v in imported.profiles.items()]
    text = "\n\n".join([
        f"imported {len(runs)} runs in {elapsed:.1f} s -> {files['traces']}, {files['profile']}, {files['summary']}",
        format_table(pairs, [("pair", "pair", "s"), ("runs", "runs", "d"), ("positions", "positions", "d"),
                             ("imputed", "imputed", "d"), ("disagreeing", "runs disagree", "d"),
                             ("alpha", "α observed", ".3f")], "acceptance traces"),
        format_table(profiles, [("model", "model", "s"), ("widths", "measured tokens/forward", "s"),
                                ("fit_error", "affine fit max error", ".1%")], "latency profiles"),
        "use them as: pipespec simulate --latency profile:"
        f"{files['profile']}#MODEL ... --acceptance trace:{files['traces']}#PAIR ..."])
    emit(out, "import-logs", {"format": args.format, "paths": list(args.paths), "out": str(target)},
         {"runs": imported.replays, "pairs": pairs, "profiles": profiles,
          "files": {k: str(v) for k, v in files.items()}, "wall_time_s": elapsed}, text)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from ..config import add_arguments
    from ..logs.records import FORMATS
    from .common import OutputConfig

    parser = subparser(
        commands, "import-logs", help="turn per-round speculative-decoding logs into traces and latency profiles",
        description="Read per-round logs of speculative decoding (the PipeSpec reference implementation's result "
                    "JSON, or the plain per-round JSONL documented in pipespec/logs/records.py that vLLM's and "
                    "SGLang's per-request metrics convert to) and write the simulator's own files: per-pair "
                    "acceptance traces (agreement at every output position, reconstructed round by round; "
                    "positions no log observes are imputed and counted) and per-model latency profiles (step "
                    "time against tokens per forward, prefill kept apart, an affine fit where few widths were "
                    "seen). simulate, sweep and plan then read them as trace:FILE#PAIR and profile:FILE#MODEL.",
        examples="  pipespec import-logs reference pipespec/data/pipespec-humaneval-logs --out results/a100\n"
                 "  pipespec import-logs jsonl my-engine.jsonl --out results/mine --json\n")
    parser.add_argument("format", choices=FORMATS, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="log files, or folders of them")
    parser.add_argument("--out", required=True, help="folder for traces.json, profile.json and import.json")
    add_arguments(parser, OutputConfig)
    parser.set_defaults(handler=run)
