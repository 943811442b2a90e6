"""Pipeline depth for SpecPipe and PPSD, from the profile and traces of a `pipespec validate` run.

- predicted: the simulator (and the derived closed forms) for P stages on devices of their own, each at
  the target's profiled one-thread latency scaled by its layers plus the output head's share;
- measured (`--measure`): plain pipeline parallelism and SpecPipe at P = 2 and P = 4 on this 2-core CPU,
  in rounds across configurations, beside the simulator's prediction for the same cores (processes on one
  core time-sliced; at P = 2 each process priced by its own profile from the validate run, as validate
  does; at P = 4, which validate does not profile, by share).

    python -m pipespec.validation.depth results/validate [--measure] [--output depth.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .backend import measure_interleaved
from .predict import planning_inputs, predict
from .setups import Progress, Setup, Workload, prepare

DRAFT_CHAIN = ("smollm2-int8", "smollm2")
EXIT_DRAFTS = ("draft:smollm2-exit16", "draft:smollm2-exit8")


def depth_setups(depths: Sequence[int]) -> list[Setup]:
    """Plain PP, SpecPipe (widths 1, 2) and PPSD (the trained exits) at each depth, a device per process."""
    setups = []
    for p in depths:
        own = tuple(str(i) for i in range(p + 1))  # distinct cores: a device each
        setups += [Setup(f"pp-p{p}", "specpipe", DRAFT_CHAIN, (1, 1), own, pp_stages=p, tree_depth=1),
                   Setup(f"specpipe-p{p}-w1", "specpipe", DRAFT_CHAIN, (1, 1), own, pp_stages=p),
                   Setup(f"specpipe-p{p}-w2", "specpipe", DRAFT_CHAIN, (1, 1), own, pp_stages=p, tree_width=2)]
        setups += [Setup(f"ppsd-{d.removeprefix('draft:smollm2-')}-p{p}", "ppsd", (d, "smollm2"), (1, 1),
                         ("0", "1"), pp_stages=p) for d in EXIT_DRAFTS]
    return setups


def two_core_setups() -> list[Setup]:
    """Plain PP and SpecPipe (width 1) at P = 2 and P = 4 on cores 0 and 1 (the draft on core 0)."""
    two, four = ("0", "0", "1"), ("0", "0", "1", "0", "1")
    return [Setup("pp-p2", "specpipe", DRAFT_CHAIN, (1,) * 3, two, tree_depth=1),
            Setup("pp-p4-on-2-cores", "specpipe", DRAFT_CHAIN, (1,) * 5, four, pp_stages=4, tree_depth=1),
            Setup("specpipe-p2-w1", "specpipe", DRAFT_CHAIN, (1,) * 3, two),
            Setup("specpipe-p4-w1-on-2-cores", "specpipe", DRAFT_CHAIN, (1,) * 5, four, pp_stages=4)]


def predict_depths(run: Path, workload: Workload, depths: Sequence[int] = (2, 4, 8),
                   seeds: int = 3) -> list[dict[str, Any]]:
    """Predicted ms/token and speedup over AR on one core (the same profile) for every depth setup."""
    from ..acceptance import Bernoulli
    from ..sim.config import SimConfig
    from ..sim.run import simulate_prompts

    prompts = workload.prompt_shapes()
    ar_ms_by_target: dict[str, float] = {}  # every setup decodes the same target profile
    rows = []
    for setup in depth_setups(depths):
        # every depth priced alike (the layers' share of the target's forward), though validate also
        # profiled its own two stages as they run: a depth sweep compares depths
        inputs = planning_inputs(setup, run / "profile.json", run / "traces.json", {}, workload.context,
                                 processes=False)
        target = setup.profile_keys()[-1]
        if target not in ar_ms_by_target:
            ar = SimConfig(scheme="ar", latency=(inputs.latency[target],), acceptance=(Bernoulli(1.0),))
            ar_ms_by_target[target] = simulate_prompts(ar, prompts, 1)[0].ms_per_token
        ar_ms = ar_ms_by_target[target]
        got = predict(setup, inputs, workload, prompts, seeds)
        rows.append({"config": setup.name, "scheme": setup.scheme, "pp_stages": setup.pp_stages,
                     "tree_width": setup.tree_width, "ar_ms_per_token": ar_ms,
                     "sim_ms_per_token": got["sim_ms_per_token"], "sim_speedup": ar_ms / got["sim_ms_per_token"],
                     "closed_speedup": ar_ms / got["closed_ms_per_token"], "acceptance": got["trace_alpha"]})
    return rows


def measure_two_cores(run: Path, workload: Workload, seeds: int = 3,
                      progress: Progress = lambda it, **_: it) -> list[dict[str, Any]]:
    """Measured decode ms/token of two_core_setups() beside the simulator's prediction for the same cores."""
    setups = two_core_setups()
    measured = measure_interleaved(setups, workload, progress)
    reference = measured[setups[0].name]["outputs"]
    rows = []
    for setup in setups:
        m = measured[setup.name]
        inputs = planning_inputs(setup, run / "profile.json", run / "traces.json", {}, workload.context)
        lengths = [len(o) for o in m["outputs"]] if m["outputs"] is not None else None
        sim_ms = predict(setup, inputs, workload, workload.prompt_shapes(lengths), seeds)["sim_ms_per_token"]
        rows.append({"config": setup.name, "cpus": list(setup.cpus), "measured_ms_per_token": m["decode_ms_per_token"],
                     "repeats_ms_per_token": m["repeats_decode_ms_per_token"], "sim_ms_per_token": sim_ms,
                     "sim_error": sim_ms / m["decode_ms_per_token"] - 1,
                     "same_output": reference is not None and m["outputs"] == reference})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from ..io import environment, write_json

    parser = argparse.ArgumentParser(prog="python -m pipespec.validation.depth", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a `pipespec validate --out` folder (profile.json, traces.json)")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--measure", action="store_true", help="also measure P = 2 and 4 on cores 0 and 1")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="write the JSON document here (atomically)")
    args = parser.parse_args(argv)
    try:
        if not (args.run / "profile.json").is_file() or not (args.run / "traces.json").is_file():
            raise ConfigError(f"run: {args.run} has no profile.json and traces.json (run `pipespec validate --out`)")
        if min(args.depths) < 2 or min(args.limit, args.max_new_tokens, args.repeats) < 1:
            raise ConfigError("--depths must be >= 2; --limit, --max-new-tokens and --repeats >= 1")
        workload = prepare(Workload(limit=args.limit, max_new_tokens=args.max_new_tokens, repeats=args.repeats))
        predicted = predict_depths(args.run, workload, args.depths)
        measured = measure_two_cores(args.run, workload) if args.measure else []
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| config | P | sim ms/token | sim speedup | closed-form speedup |\n|---|---:|---:|---:|---:|")
    for r in predicted:
        print(f"| {r['config']} | {r['pp_stages']} | {r['sim_ms_per_token']:.1f} | {r['sim_speedup']:.2f}x | "
              f"{r['closed_speedup']:.2f}x |")
    if measured:
        print("\n| config | cores | measured ms/token | sim ms/token | sim error |\n|---|---|---:|---:|---:|")
        for r in measured:
            print(f"| {r['config']} | {', '.join(r['cpus'])} | {r['measured_ms_per_token']:.1f} | "
                  f"{r['sim_ms_per_token']:.1f} | {r['sim_error']:+.1%} |")
    if args.output:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        write_json(args.output, {"kind": "depth", "config": config, "environment": environment("cpu"),
                                 "predicted": predicted, "measured": measured})
    return 0


if __name__ == "__main__":
    sys.exit(main())
