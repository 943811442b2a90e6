"""`pipespec theory`: the closed forms evaluated over a parameter grid, derived on request, plotted."""

from __future__ import annotations

import argparse
import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import sympy as sp

from ..config import add_arguments, from_args, option
from ..errors import MAX_WINDOW, check_int, check_nonnegative, check_positive, check_probability, require
from ..table import format_table
from ..theory import pipespec, ppsd, sd, specpipe, timing
from .common import OutputConfig, emit, subparser

SECTIONS = ("pipespec", "timing", "specpipe", "ppsd")
DERIVATIONS = {"sd": sd.derivation, "pipespec": pipespec.derivation, "timing": timing.derivation,
               "specpipe": specpipe.derivation, "ppsd": ppsd.derivation}


@dataclass(frozen=True)
class TheoryConfig:
    alpha: tuple[float, ...] = option((0.6, 0.8, 0.9), "per-token acceptance rate α, in [0, 1]")
    gamma: tuple[int, ...] = option((4, 8), "window γ: drafts per verification, integer >= 0")
    c: tuple[float, ...] = option((0.1,), "cost ratio c = t_draft / t_target >= 0 (Leviathan's convention: "
                                  "0 is a free draft; the PipeSpec paper writes t_target / t_draft)")
    c_hat: float | None = option(None, "operations ratio ĉ = draft/target FLOPs per token (default: c)")
    gamma_max: int = option(64, "largest γ searched for the optimal integer window")
    target_ms: float | None = option(None, "final model's single-token forward t_k(1) in ms: adds ms/token rows")
    verify_ms: float | None = option(None, "final model's (γ+1)-token verification forward in ms "
                                     "(default: target-ms, i.e. verification costs one AR step)")
    hit_rate: tuple[float, ...] = option((0.5, 0.7, 0.9), "SpecPipe tree hit rate h, in [0, 1]")
    pp_stages: tuple[int, ...] = option((2, 4, 8), "SpecPipe pipeline stages P, integer >= 1")
    exit_layer: tuple[int, ...] = option((4, 8, 16), "PPSD exit layer E, integer in [1, N)")
    num_layers: int = option(32, "PPSD layers N of the model, integer >= 2")

    def __post_init__(self) -> None:
        for a in self.alpha:
            check_probability("--alpha", a)
        for g in self.gamma:
            check_int("--gamma", g, 0, MAX_WINDOW)
        for value in self.c:
            check_nonnegative("--c", value)
        if self.c_hat is not None:
            check_nonnegative("--c-hat", self.c_hat)
        check_int("--gamma-max", self.gamma_max, 1, MAX_WINDOW)
        for name in ("target_ms", "verify_ms"):
            if getattr(self, name) is not None:
                check_positive("--" + name.replace("_", "-"), getattr(self, name))
        require(self.verify_ms is None or self.target_ms is not None, "--verify-ms needs --target-ms")
        for h in self.hit_rate:
            check_probability("--hit-rate", h)
        for p in self.pp_stages:
            check_int("--pp-stages", p, 1)
        check_int("--num-layers", self.num_layers, 2)
        for e in self.exit_layer:
            check_int("--exit-layer", e, 1)
            require(e < self.num_layers, f"--exit-layer must be < --num-layers ({self.num_layers}), got {e}")


def _grid(config: TheoryConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = np.array(list(itertools.product(config.alpha, config.gamma, config.c)), dtype=float)
    return points[:, 0], points[:, 1], points[:, 2]


def pipespec_rows(config: TheoryConfig) -> list[dict[str, Any]]:
    """SD and PipeSpec closed forms side by side over the α × γ × c grid."""
    a, g, c = _grid(config)
    c_hat = c if config.c_hat is None else np.full_like(c, config.c_hat)
    best_gamma, best_speedup = sd.optimal_gamma(a, c, config.gamma_max)
    continuous = [sd.continuous_optimal_gamma(x, y) for x, y in zip(a, c, strict=True)]
    columns = {
        "alpha": a, "gamma": g.astype(int), "c": c,
        "sd_tokens_per_round": sd.expected_tokens(a, g), "sd_speedup": sd.speedup(a, g, c),
        "sd_operations_factor": sd.operations(a, g, c_hat),
        "sd_optimal_gamma": best_gamma, "sd_optimal_speedup": best_speedup, "sd_optimal_gamma_real": continuous,
        "rho": pipespec.rho(a, g), "pipespec_tokens_per_step": pipespec.expected_tokens(a, g),
        "breakeven_c": pipespec.breakeven_c(a, g),
    }
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    for row in rows:
        row["winner"] = "pipespec" if row["pipespec_tokens_per_step"] > row["sd_speedup"] else "sd"
    return rows


def timing_rows(config: TheoryConfig) -> list[dict[str, Any]]:
    """Predicted ms/token for AR, SD and the asynchronous pipeline from stage latencies."""
    assert config.target_ms is not None
    target_s = config.target_ms / 1e3
    verify_s = (config.verify_ms or config.target_ms) / 1e3
    a, g, c = _grid(config)
    sd_s = timing.sd_time(a, g, c * target_s, verify_s)
    pipe_s = timing.pipeline_time(a, g, target_s, verify_s)
    rows = []
    for i in range(len(a)):
        best_s = verify_s / (g[i] + 1)  # α → 1: γ+1 tokens per verification forward
        rows.append({"alpha": a[i], "gamma": int(g[i]), "c": c[i], "ar_ms_per_token": target_s * 1e3,
                     "sd_ms_per_token": sd_s[i] * 1e3, "pipespec_ms_per_token": pipe_s[i] * 1e3,
                     "sd_speedup": target_s / sd_s[i], "pipespec_speedup": target_s / pipe_s[i],
                     "pipespec_best_ms_per_token": best_s * 1e3,
                     "breakeven_verify_ms": target_s * sd.expected_tokens(a[i], g[i]) * 1e3})
    return rows


def specpipe_rows(config: TheoryConfig) -> list[dict[str, Any]]:
    points = list(itertools.product(config.hit_rate, config.pp_stages))
    h, p = (np.array(x, dtype=float) for x in zip(*points, strict=True))
    speedups = specpipe.speedup(h, p)
    return [{"hit_rate": hi, "pp_stages": int(pi), "steps_per_token": hi + (1 - hi) * pi, "speedup_over_pp": s}
            for hi, pi, s in zip(h, p, speedups, strict=True)]


def ppsd_rows(config: TheoryConfig) -> list[dict[str, Any]]:
    rows = []
    for a, e, g in itertools.product(config.alpha, config.exit_layer, config.gamma):
        rows.append({"alpha": a, "exit_layer": e, "num_layers": config.num_layers, "gamma": g,
                     "ppsd_speedup": float(ppsd.pipelined_speedup(a, e, config.num_layers)),
                     "early_exit_speedup": float(ppsd.early_exit_speedup(a, g, e, config.num_layers))})
    return rows


def compute(config: TheoryConfig, sections: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The report as data: one list of rows per section."""
    builders = {"pipespec": pipespec_rows, "timing": timing_rows, "specpipe": specpipe_rows, "ppsd": ppsd_rows}
    return {name: builders[name](config) for name in sections}


COLUMNS = {
    "pipespec": [("alpha", "α", ".3g"), ("gamma", "γ", "d"), ("c", "c", ".3g"),
                 ("sd_tokens_per_round", "E_round", ".3f"), ("sd_speedup", "S_SD", ".3f"),
                 ("sd_optimal_gamma", "γ*", "d"), ("sd_optimal_speedup", "S_SD(γ*)", ".3f"),
                 ("rho", "ρ", ".3f"), ("pipespec_tokens_per_step", "E[N]", ".3f"),
                 ("breakeven_c", "c*", ".3f"), ("winner", "closed form favours", "s")],
    "timing": [("alpha", "α", ".3g"), ("gamma", "γ", "d"), ("c", "c", ".3g"),
               ("ar_ms_per_token", "AR ms/tok", ".2f"), ("sd_ms_per_token", "SD ms/tok", ".2f"),
               ("pipespec_ms_per_token", "PipeSpec ms/tok", ".2f"), ("sd_speedup", "SD ×", ".2f"),
               ("pipespec_speedup", "PipeSpec ×", ".2f"), ("pipespec_best_ms_per_token", "best ms/tok", ".2f"),
               ("breakeven_verify_ms", "verify ms ≤ (beats AR)", ".1f")],
    "specpipe": [("hit_rate", "h", ".3g"), ("pp_stages", "P", "d"), ("steps_per_token", "steps/token", ".3f"),
                 ("speedup_over_pp", "speedup over PP", ".3f")],
    "ppsd": [("alpha", "α", ".3g"), ("exit_layer", "E", "d"), ("num_layers", "N", "d"), ("gamma", "γ", "d"),
             ("ppsd_speedup", "PPSD ×", ".3f"), ("early_exit_speedup", "early-exit SD ×", ".3f")],
}
TITLES = {
    "pipespec": "Synchronous SD (Leviathan) vs asynchronous PipeSpec, closed forms (c = t_draft / t_target; "
                "c* = cost ratio above which E[N] > S_SD)",
    "timing": "Predicted time per token from stage latencies (final verifier; best = α → 1)",
    "specpipe": "SpecPipe: speedup over plain pipeline parallelism (derived model)",
    "ppsd": "PPSD: pipelined early exit vs non-pipelined early-exit SD (derived model)",
}


def render(report: dict[str, list[dict[str, Any]]]) -> str:
    return "\n\n".join(format_table(rows, COLUMNS[name], TITLES[name]) for name, rows in report.items())


def render_derivations(sections: tuple[str, ...]) -> str:
    blocks = []
    for name in sections:
        lines = [f"== {name} =="]
        for step in DERIVATIONS[name]():
            check = "" if step.holds is None else ("  [holds]" if step.holds else "  [FAILS]")
            lines.append(f"-- {step.title}{check}" + (f"  ({step.note})" if step.note else ""))
            lines.append(sp.pretty(step.expr, use_unicode=True))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _sections(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def run(args: argparse.Namespace) -> int:
    config = from_args(TheoryConfig, args)
    out = from_args(OutputConfig, args)
    if args.derive:
        chosen = args.only or tuple(DERIVATIONS)
        unknown = sorted(set(chosen) - set(DERIVATIONS))
        require(not unknown, f"--only must name sections among {', '.join(DERIVATIONS)}, got {', '.join(unknown)}")
        print(render_derivations(chosen))
        return 0
    sections = args.only or tuple(s for s in SECTIONS if s != "timing" or config.target_ms)
    unknown = sorted(set(sections) - set(SECTIONS))
    require(not unknown, f"--only must name sections among {', '.join(SECTIONS)}, got {', '.join(unknown)}")
    require("timing" not in sections or config.target_ms is not None, "section timing needs --target-ms")
    if args.plot is not None:
        from ..figures.theory import plot_rho_and_tokens

        plot_rho_and_tokens(args.plot, gammas=config.gamma)
    report = compute(config, sections)
    emit(out, "theory", {**asdict(config), "sections": list(sections)}, report, render(report))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands, "theory", help="closed forms for SD, PipeSpec, SpecPipe and PPSD",
        description="Evaluate the closed forms (derived with SymPy) over a grid of parameters: "
                    "expected tokens per round or step, speedups, the steady-state verification "
                    "probability ρ, where the asynchronous pipeline beats synchronous SD, and "
                    "predicted ms/token from stage latencies.",
        examples="  pipespec theory --alpha 0.8 --gamma 4 --c 0.1\n"
                 "  pipespec theory --alpha 0.8 --gamma 5 --c 0 --json\n"
                 "  pipespec theory --target-ms 120 --verify-ms 430 --gamma 8 --only timing\n"
                 "  pipespec theory --derive --only pipespec\n"
                 "  pipespec theory --gamma 1 2 4 8 --plot rho.png\n")
    parser.add_argument("--only", type=_sections, default=(), metavar="SECTION[,SECTION]",
                        help=f"which tables: {', '.join(SECTIONS)} (default: all; timing needs --target-ms); "
                             f"with --derive also sd")
    add_arguments(parser, TheoryConfig, "parameters")
    parser.add_argument("--derive", action="store_true", help="print the SymPy derivations instead of numbers")
    parser.add_argument("--plot", metavar="FILE.png", help="draw ρ and E[N] against α for each --gamma")
    add_arguments(parser, OutputConfig, "output")
    parser.set_defaults(handler=run)
