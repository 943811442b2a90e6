"""`pipespec plan`: pipeline-depth capacity planning over candidate models, windows and placements."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..config import add_arguments, from_args, option
from ..errors import check_int, require
from ..schemes import get
from ..table import format_table
from .common import OutputConfig, emit, subparser

if TYPE_CHECKING:
    from ..acceptance import Acceptance
    from ..latency import LatencyModel
    from ..sim.plan import Inputs

PRESETS = ("a100",)


@dataclass(frozen=True)
class PlanConfig:
    preset: str | None = option(None, "a100: the PipeSpec authors' LLaMA 1B/8B/70B-NF4 A100 calibration "
                                "(profiles, acceptance, the 70B on 2 devices)", choices=PRESETS)
    profile: tuple[str, ...] = option((), "latency-profile files (`pipespec profile --output`); every model "
                                      "in them is a candidate", metavar="FILE")
    traces: tuple[str, ...] = option((), "acceptance-trace files (`pipespec profile --traces`): each pair "
                                     "DRAFT->TARGET in them is replayed", metavar="FILE")
    acceptance: tuple[str, ...] = option((), "pairwise acceptance DRAFT->TARGET=SPEC (SPEC as for simulate "
                                         "--acceptance: α, pos:A1,A2,..., trace:FILE#PAIR); overrides traces",
                                         metavar="PAIR=SPEC")
    models: tuple[str, ...] = option((), "restrict the candidates to these models (default: all profiled)")
    target: str | None = option(None, "the model whose output is wanted (default: the slowest per token)")
    devices: int | None = option(None, "devices available (default: one per candidate model)")
    device_count: tuple[str, ...] = option((), "devices one copy of a model needs, MODEL=N (default: as many as its "
                                           "profile was measured on, a device group or an imported log's, else 1)",
                                           metavar="MODEL=N")
    allow_sharing: bool = option(False, "let stages share devices (synchronous chains share one set; "
                                 "pipelines group neighbouring stages)")
    depth: tuple[int, ...] = option((), "chain depths k to consider (default: every depth that fits)")
    schemes: tuple[str, ...] = option(("ar", "sd", "pipespec"), "schemes to consider")
    gammas: tuple[int, ...] = option((1, 2, 3, 4, 5, 6, 8, 10, 12, 16), "sd: windows γ to consider")
    max_drafts: tuple[str, ...] = option(("all", "4", "8", "16"), "pipespec: caps on drafts per verification "
                                         "to consider ('all': verify everything available)")
    finalists: int = option(8, "candidates (best by closed form) to simulate; the AR baseline is added")
    num_tokens: int = option(1000, "simulated output tokens per finalist and seed")
    seeds: int = option(3, "simulator seeds per finalist (median reported)")
    context: int = option(128, "context length the latencies are read at")
    plot: str | None = option(None, "plot predicted speedup against depth", metavar="FILE.png")

    def __post_init__(self) -> None:
        require(self.preset is not None or self.profile,
                "--profile: give at least one latency-profile file, or --preset a100")
        for s in self.schemes:
            require(s in ("ar", "sd", "pipespec"), f"--schemes: each must be ar, sd or pipespec, got {s!r}")
        for g in self.gammas:
            check_int("--gammas", g, 1)
        for m in self.max_drafts:
            require(m == "all" or (m.isdigit() and int(m) >= 1),
                    f"--max-drafts: each must be 'all' or an integer >= 1, got {m!r}")
        for d in self.depth:
            check_int("--depth", d, 1)
        if self.devices is not None:
            check_int("--devices", self.devices, 1)
        check_int("--finalists", self.finalists, 1)
        check_int("--num-tokens", self.num_tokens, 1)
        check_int("--seeds", self.seeds, 1)
        check_int("--context", self.context, 0)
        for item in (*self.acceptance, *self.device_count):
            require("=" in item, f"--acceptance/--device-count: expected NAME=VALUE, got {item!r}")
        for item in self.device_count:
            name, _, n = item.partition("=")
            require(n.isdigit() and int(n) >= 1, f"--device-count {name}: N must be an integer >= 1, got {n!r}")
        require(self.plot is None or self.plot.endswith(".png"), f"--plot must name a .png file, got {self.plot!r}")


def _pair(name: str, item: str | None = None) -> tuple[str, str]:
    draft, arrow, target = name.partition("->")
    require(bool(arrow and draft and target), f"--acceptance: expected DRAFT->TARGET=SPEC, got {item or name!r}")
    return draft, target


def _trace_acceptance(paths: Sequence[str], profiled: dict[str, str]) -> dict[tuple[str, str], Acceptance]:
    """The acceptance of every pair the trace files hold (a tree's hit-rate traces left out), keyed by profile
    entry: `profiled` maps each to the model it times, and a model profiled at several thread counts (NAME@2t,
    as `pipespec validate` writes) shares its trace."""
    from ..traces import entry_trace, read_traces

    out: dict[tuple[str, str], Acceptance] = {}
    for path in paths:
        for name, entry in read_traces(path).items():
            if entry.get("top_k", 1) != 1:
                continue
            draft, target = _pair(name)
            draft, target = entry.get("draft", draft), entry.get("target", target)
            trace = entry_trace(name, entry, f"trace:{path}#{name}")
            for a in [m for m, model in profiled.items() if model == draft] or [draft]:
                for b in [m for m, model in profiled.items() if model == target] or [target]:
                    out[(a, b)] = trace
    return out


def resolve_inputs(config: PlanConfig) -> tuple[Inputs, list[str]]:
    """(planning Inputs, notes) from presets, profile and trace files and --acceptance items: each spec and file
    parsed here, once."""
    from ..acceptance import parse_acceptance
    from ..profiles import ProfileKey, devices_needed, entry_latency, read_profiles
    from ..sim.plan import Inputs

    latency: dict[str, LatencyModel] = {}
    acceptance: dict[tuple[str, str], Acceptance] = {}
    needs: dict[str, int] = {}
    tokenizers: dict[str, str] = {}
    if config.preset:
        from ..sim import calibration

        latency = calibration.latency_models()
        acceptance = {_pair(name): model for name, model in calibration.acceptance_models().items()}
        needs = dict(calibration.DEVICES_NEEDED)
    for path in config.profile:
        for name, entry in read_profiles(path).items():
            latency[name] = entry_latency(path, name, entry)
            if entry.get("tokenizer"):
                tokenizers[name] = entry["tokenizer"]
            if (count := devices_needed(entry)) is not None:  # a device group: one stage over all of it
                needs[name] = count
    acceptance |= _trace_acceptance(config.traces, {m: ProfileKey.parse(m).model for m in latency})
    for item in config.acceptance:
        pair, _, spec = item.partition("=")
        acceptance[_pair(pair, item)] = parse_acceptance(spec, f"--acceptance {item}")
    for item in config.device_count:
        name, _, n = item.partition("=")
        require(name in latency, f"--device-count: no profile for model {name!r} (profiled: {', '.join(latency)})")
        needs[name] = int(n)
    if config.models:
        for name in config.models:
            require(name in latency, f"--models: no latency profile for {name!r} (profiled: "
                                     f"{', '.join(latency) or 'none'})")
        latency = {m: latency[m] for m in config.models}
    target = config.target or max(latency, key=lambda m: latency[m].median_s(1, config.context))
    require(target in latency, f"--target: no latency profile for {target!r} (profiled: {', '.join(latency)})")
    notes = []
    profiled = list(latency)  # (the pairs named on the command line are checked against every profiled model)
    if target in tokenizers:
        mismatched = [m for m in latency if m in tokenizers and tokenizers[m] != tokenizers[target]]
        require(not (config.models and mismatched),
                f"--models: {', '.join(mismatched)} and the target {target} do not share a tokenizer")
        notes += [f"{m} left out: its tokenizer differs from {target}'s" for m in mismatched]
        latency = {m: v for m, v in latency.items() if m not in mismatched}
    for item in config.acceptance:  # (the pair's models, not the target's name: it is the planned chain's)
        for model in _pair(item.partition("=")[0], item):
            require(model in profiled,
                    f"--acceptance {item}: no latency profile for {model!r} (profiled: {', '.join(profiled)})")
    acceptance = {p: v for p, v in acceptance.items() if p[0] in latency and p[1] in latency}
    return Inputs(latency, acceptance, target, needs, config.context), notes


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..sim import plan

    config = from_args(PlanConfig, args)
    out = from_args(OutputConfig, args)
    inputs, notes = resolve_inputs(config)
    devices = config.devices or sum(inputs.device_needs.get(m, 1) for m in inputs.latency)
    plan.check_depths(config.depth, inputs, devices, config.allow_sharing)
    depths = config.depth or tuple(range(1, len(inputs.latency) + 1))
    _, missing = plan.chains(inputs, depths)
    if missing:
        notes.append(f"chains through {', '.join(missing)} left out: no acceptance data for those pairs "
                     "(give --acceptance PAIR=SPEC or a trace)")
    caps = [None if m == "all" else int(m) for m in config.max_drafts]
    ranked = plan.enumerate_candidates(inputs, depths, devices, config.gammas, caps, config.allow_sharing,
                                       config.schemes)
    require(bool(ranked), f"--devices {devices}: no candidate fits (target {inputs.target} needs "
                          f"{inputs.device_needs.get(inputs.target, 1)}; add devices or --allow-sharing)")
    bar = lambda it: tqdm(it, desc="simulating finalists", file=sys.stderr, disable=None)  # noqa: E731
    finalists = plan.simulate_finalists(inputs, ranked, config.finalists, config.num_tokens, config.seeds, bar)
    ar_s = inputs.t(inputs.target, 1)
    rows = [{"rank": i, **_row(c, ar_s)} for i, c in enumerate(finalists, 1)]
    by_depth = _best_by_depth(ranked, ar_s)
    if config.plot:
        from ..figures.plan import plot_speedup_vs_depth

        plot_speedup_vs_depth(config.plot, by_depth, finalists, ar_s, title=f"target {inputs.target}, "
                              f"{devices} devices" + (", sharing allowed" if config.allow_sharing else ""))
    results = {"target": inputs.target, "devices": devices, "candidates_ranked": len(ranked), "finalists": rows,
               "best_closed_form_by_depth": by_depth, "notes": notes}
    text = "\n\n".join([
        f"target {inputs.target} on {devices} devices: {len(ranked)} candidates ranked by closed form, "
        f"{len(finalists)} simulated ({config.seeds} seeds x {config.num_tokens} tokens)",
        format_table(rows, [("rank", "#", "d"), ("scheme", "scheme", "s"), ("chain", "chain", "s"),
                            ("window", "window", "s"), ("placement", "placement", "s"),
                            ("devices", "devices", "d"), ("sim_ms_per_token", "sim ms/token", ".2f"),
                            ("sim_speedup", "sim speedup", ".2f"), ("closed_ms_per_token", "closed-form ms/token",
                                                                     ".2f")], "ranked by the simulator"),
        format_table(by_depth, [("depth", "depth", "d"), ("scheme", "best scheme", "s"), ("chain", "chain", "s"),
                                ("closed_speedup", "closed-form speedup", ".2f")], "best by closed form per depth"),
        *notes])
    emit(out, "plan", {**asdict(config), "devices": devices}, results, text)
    return 0


def _row(c: Any, ar_s: float) -> dict[str, Any]:
    return {"scheme": c.scheme, "chain": " -> ".join(c.chain), "depth": c.depth,
            "window": get(c.scheme).window_label(c.window),
            "placement": c.placement(), "devices": c.devices_used,
            "closed_ms_per_token": c.closed_s * 1e3, "closed_speedup": ar_s / c.closed_s,
            **{f"sim_{k}": v for k, v in c.sim.items()}}


def _best_by_depth(ranked: list[Any], ar_s: float) -> list[dict[str, Any]]:
    best: dict[int, Any] = {}
    for c in ranked:
        best.setdefault(c.depth, c)
    return [_row(best[k], ar_s) for k in sorted(best)]


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands, "plan", help="capacity planning: rank chains, windows and placements by predicted ms/token",
        description="Enumerate chains ending in the target (which models, in which order, depth k), windows "
                    "and device placements from latency profiles and pairwise acceptance; rank every candidate "
                    "by the closed forms, simulate the best with the measured profiles and acceptance, and "
                    "print the simulator's ranking with the closed forms' beside it.",
        examples="  pipespec plan --preset a100 --devices 4\n"
                 "  pipespec plan --preset a100 --devices 3 --allow-sharing --plot depth.png\n"
                 "  pipespec plan --profile results/profile.json --traces results/traces.json --devices 2\n")
    add_arguments(parser, PlanConfig, "plan")
    add_arguments(parser, OutputConfig, "output")
    parser.set_defaults(handler=run)

