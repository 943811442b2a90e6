"""`pipespec simulate`: one discrete-event run from flags, a preset or a TOML/YAML config file."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..config import add_arguments, from_args, given_values, load_config_file, mapping_values
from ..errors import ConfigError, require
from ..io import to_json, write_text_atomic
from ..table import format_table
from .common import OutputConfig, emit, subparser


def resolve_config(args: argparse.Namespace) -> Any:
    """Defaults < --preset < --config file < flags typed on the command line."""
    from ..sim.config import SimConfig
    from ..sim.presets import preset

    base = preset(args.preset) if args.preset else SimConfig()
    values = {}
    if args.config:
        values.update(mapping_values(SimConfig, load_config_file(args.config), f"--config {args.config}"))
    values.update(given_values(SimConfig, args))
    if args.trace or args.plot:
        values["timeline"] = True
    try:
        return base.with_values(**values)
    except TypeError as exc:
        raise ConfigError(f"configuration: {exc}") from None


def render(summary: dict[str, Any]) -> str:
    head = (f"{summary['scheme']}: {summary['ms_per_token']:.2f} ms/token, {summary['tokens_per_s']:.2f} tokens/s "
            f"over {summary['num_tokens']} tokens")
    if summary["speedup_over_ar"] is not None:
        head += f"; AR {summary['ar_ms_per_token']:.2f} ms/token -> speedup {summary['speedup_over_ar']:.3f}x"
    stages = format_table(summary["stages"], [
        ("name", "stage", "s"), ("steps", "steps", "d"), ("rho", "ρ (verify share)", ".3f"),
        ("tokens_per_step", "tokens/step", ".3f"), ("busy_fraction", "busy", ".1%"),
        ("aborted_steps", "aborted", "d"), ("wasted_s", "wasted s", ".3f")], "stages")
    blocks = [head, stages]
    if summary["pairs"]:
        pairs = format_table(summary["pairs"], [
            ("name", "pair", "s"), ("verifications", "verifications", "d"),
            ("acceptance_rate", "accepted/drafted", ".3f"), ("alpha_estimate", "α (per token)", ".3f"),
            ("mean_accepted_length", "τ mean accepted length", ".3f"), ("rollbacks", "rollbacks", "d"),
            ("resyncs", "resyncs", "d")], "pairs (τ includes the correction/bonus token)")
        blocks.append(pairs)
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    from ..sim.run import simulate

    config = resolve_config(args)
    out = from_args(OutputConfig, args)
    for name, suffix in (("trace", ".json"), ("plot", "")):
        path = getattr(args, name)
        require(path is None or path.endswith(suffix), f"--{name} must name a {suffix} file, got {path!r}")
    require(args.plot_until_s is None or (math.isfinite(args.plot_until_s) and args.plot_until_s > 0),
            f"--plot-until-s must be a finite number of seconds > 0, got {args.plot_until_s}")
    result = simulate(config)
    summary = result.summary()
    if args.trace:
        write_text_atomic(args.trace, to_json(result.to_chrome_trace(run_name=config.scheme)))
    if args.plot:
        from ..figures.timeline import plot_timeline

        plot_timeline(args.plot, result, until_s=min(result.elapsed_s, args.plot_until_s or result.elapsed_s))
    emit(out, "simulate", config.to_dict(), summary, render(summary))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from ..sim.config import SimConfig
    from ..sim.presets import PRESETS

    parser = subparser(
        commands, "simulate", help="discrete-event simulation of one pipeline run",
        description="Simulate AR, synchronous SD chains, asynchronous PipeSpec pipelines, PPSD or SpecPipe "
                    "with latencies from constants, affine fits or measured profiles, and acceptance from "
                    "α, per-position α_j or replayed traces. Reports ms/token, tokens/s, speedup over AR, "
                    "per-stage busy share and ρ, per-pair acceptance and rollbacks.\n\npresets:\n"
                    + "\n".join(f"  {k:14s} {v[0]}" for k, v in PRESETS.items()),
        examples="  pipespec simulate --preset pipespec-a100\n"
                 "  pipespec simulate --scheme sd --latency 12 431 --acceptance 0.8 --gamma 5\n"
                 "  pipespec simulate --scheme pipespec --latency 10 25 affine:100,2,0.01 --acceptance 0.9 0.8\n"
                 "  pipespec simulate --preset toy --trace toy.trace.json --plot toy.png\n"
                 "  pipespec simulate --config run.toml --seed 3 --json\n"
                 "  pipespec simulate --scheme ppsd --latency 100 --acceptance 0.8 --num-layers 32 "
                 "--exit-layer 8 --pp-stages 4\n")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration")
    parser.add_argument("--config", metavar="FILE", help="TOML or YAML file of options (keys as below, "
                        "with underscores); flags on the command line override it")
    add_arguments(parser, SimConfig, "simulation", only_given=True)
    parser.add_argument("--trace", metavar="FILE.json", help="write a Chrome/Perfetto trace (pid = run, tid = stage)")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the per-stage timeline")
    parser.add_argument("--plot-until-s", type=float, metavar="SECONDS", help="timeline plot: stop at this time")
    add_arguments(parser, OutputConfig, "output")
    parser.set_defaults(handler=run)
