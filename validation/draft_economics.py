"""Which drafts pay on this machine: the closed forms' speedup over AR for any (α, draft cost), priced with
the target's measured t(n), and the drafts measured beside it.

A draft is two numbers to the closed forms: its per-token acceptance α and its step time, here as the
ratio c = t_draft(1) / t_target(1) of one-thread forwards taken as they run in the pipeline (a draft on
core 0 while the target forwards on core 1). PipeSpec's final stage then verifies the window the draft
fills during one verification (γ = t_target(γ+1) / t_draft, capped by how far a stage may run ahead) and
its time per token is `theory.timing.pipeline_time(α, γ, t(1), t(γ+1))` (`sim.plan.pipespec_seconds`, the
same rule `plan` and the benchmark's closed-form column use). Synchronous SD runs both models on both
cores: γ drafts at c·t(1) of the two-thread target, then one verification (`sim.plan.sd_seconds`).
The reference is the benchmark's measured AR decode ms/token (both cores). The limit of any draft is the
target's own verification throughput: α → 1, c → 0, max over n of n / t(n).

    .venv/bin/python -m pipespec.validation.draft_economics figures/out/bench/bench_backend.json \
        --out figures/out/draft_economics
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..acceptance import Bernoulli
from ..errors import ConfigError, require
from ..io import read_user_text, write_text_atomic
from ..latency import ConstantLatency, LatencyModel
from ..profiles import load_profiles
from ..schemes import get
from ..schemes.pipespec import PipeSpec
from ..sim.plan import Inputs, pipespec_seconds, sd_seconds
from .setups import Setup

ALPHAS = np.round(np.linspace(0.05, 0.98, 63), 4)
COSTS = np.round(np.geomspace(0.01, 1.0, 25), 5)
CAPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # PipeSpec's --max-drafts, SD's γ: the best of them is what a user runs
GOAL = 1.5


Targets = Mapping[str, LatencyModel]  # the profiled models by profile key, read once: the grid prices thousands


def _inputs(targets: Targets, target_key: str, draft_ms: float, alpha: float) -> Inputs:
    return Inputs({"draft": ConstantLatency(draft_ms / 1e3), target_key: targets[target_key]},
                  {("draft", target_key): Bernoulli(alpha)}, target_key, {})


def speedups(targets: Targets, target_1t: str, target_2t: str, ar_ms: float, alpha: float, cost: float,
             max_lead: int) -> tuple[float, float, int, int]:
    """(PipeSpec speedup, SD speedup, PipeSpec's window, SD's γ) over AR's measured decode ms/token, each at
    its best cap on the window (verifying more tokens costs more on a CPU: the best window is a choice)."""
    pipe = _inputs(targets, target_1t, cost * _t(targets, target_1t, 1) * 1e3, alpha)
    pipe_s, window = min(pipespec_seconds(pipe, ("draft", target_1t), cap) for cap in CAPS if cap <= max_lead)
    sd = _inputs(targets, target_2t, cost * _t(targets, target_2t, 1) * 1e3, alpha)
    sd_s, gamma = min((sd_seconds(sd, ("draft", target_2t), g), g) for g in CAPS if g <= 8)
    return ar_ms / (pipe_s * 1e3), ar_ms / (sd_s * 1e3), window, gamma


def _t(targets: Targets, key: str, n: int) -> float:
    return targets[key].median_s(n, Inputs.context)


def analyse(bench_path: Path) -> dict[str, Any]:
    """The grid of closed-form speedups and the measured drafts, from a `bench_backend.py` result."""
    try:
        doc = json.loads(read_user_text(bench_path, "BENCH"))
        config, rows = doc["config"], doc["results"]
        setups = [Setup(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
                  for s in config["setups"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"BENCH: {bench_path} is not a bench_backend.py result") from None
    profile = bench_path.with_suffix(".profile.json")
    require(profile.is_file(), f"BENCH: its latency profile {profile} is missing")
    targets = load_profiles(profile)
    pipelines = [s for s in setups if isinstance(get(s.scheme), PipeSpec) and len(s.chain) == 2]
    require(bool(pipelines), "BENCH: no two-stage pipespec run to price drafts against")
    # the grid prices the target as it runs beside a trained draft (the memory system the cores share slows it)
    priced = next((s for s in reversed(pipelines) if s.chain[0].startswith("draft:")), pipelines[-1])
    target_1t = priced.profile_keys()[-1]
    target_2t = next(s for s in setups if s.name == "ar").profile_keys()[0]
    ar_ms = rows["ar"]["decode_ms_per_token"]
    max_lead = config.get("max_lead", 32)
    grid = [(a, c, *speedups(targets, target_1t, target_2t, ar_ms, a, c, max_lead))
            for a in ALPHAS for c in COSTS]
    t1 = _t(targets, target_1t, 1)
    best = max(range(1, max_lead + 2), key=lambda n: n / _t(targets, target_1t, n))
    limit = ar_ms / (_t(targets, target_1t, best) / best * 1e3)
    drafts = []
    for setup in pipelines:
        draft, alpha = setup.chain[0], rows[setup.name]["alpha"][0]
        if alpha is None:
            continue
        key, beside = setup.profile_keys()
        own = _t(targets, beside, 1)
        cost = (config.get("ngram_cost_s", {}).get(draft, 0.0) if draft.startswith("ngram")
                else _t(targets, key, 1)) / own
        predicted = speedups(targets, beside, target_2t, ar_ms, alpha, cost, max_lead)
        need = next((float(a) for a in ALPHAS
                     if speedups(targets, beside, target_2t, ar_ms, a, cost, max_lead)[0] >= GOAL), None)
        drafts.append({"draft": draft, "alpha": alpha, "cost": cost, "draft_ms": cost * own * 1e3,
                       "closed_pipespec_speedup": predicted[0], "closed_sd_speedup": predicted[1],
                       "best_max_drafts": predicted[2], "best_sd_gamma": predicted[3],
                       "measured_pipespec_speedup": rows[setup.name]["speedup_over_ar"],
                       "alpha_for_goal": need})
    return {"grid": grid, "drafts": drafts, "ar_decode_ms": ar_ms, "target_1t_ms": t1 * 1e3,
            "target_key": target_1t, "limit_speedup": limit, "limit_window": best - 1,
            "t_n_ms": {n: _t(targets, target_1t, n) * 1e3 for n in (1, 2, 3, 4, 5, 8, 16, 33)}}


def write(result: dict[str, Any], out: Path) -> list[Path]:
    """The map (.png), its grid (.csv) and the drafts' table (.md)."""
    from ..figures.drafts import plot_economics

    grid = np.array([(a, c, p, s) for a, c, p, s, _, _ in result["grid"]])
    title = (f"Which drafts pay: target t(1) = {result['target_1t_ms']:.1f} ms, AR {result['ar_decode_ms']:.1f} "
             f"ms/token\n(dotted: SD breaks even; limit at α→1, c→0: {result['limit_speedup']:.2f}x)")
    png = plot_economics(out.with_suffix(".png"), ALPHAS, COSTS, grid[:, 2].reshape(len(ALPHAS), len(COSTS)),
                         grid[:, 3].reshape(len(ALPHAS), len(COSTS)), result["drafts"], GOAL, title)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["alpha", "cost", "pipespec_speedup", "sd_speedup", "pipespec_window", "sd_gamma"])
    writer.writerows([f"{a:.4f}", f"{c:.5f}", f"{p:.4f}", f"{s:.4f}", w, g] for a, c, p, s, w, g in result["grid"])
    csv_path = write_text_atomic(out.with_suffix(".csv"), buffer.getvalue())
    lines_md = ["| draft | α | draft ms (c) | closed-form PipeSpec (best cap) | closed-form SD (best γ) | "
                "measured PipeSpec | α for 1.5x at this c |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d in result["drafts"]:
        need = "unreachable" if d["alpha_for_goal"] is None else f"{d['alpha_for_goal']:.2f}"
        lines_md.append(f"| {d['draft']} | {d['alpha']:.3f} | {d['draft_ms']:.1f} ({d['cost']:.3f}) | "
                        f"{d['closed_pipespec_speedup']:.2f}x ({d['best_max_drafts']}) | "
                        f"{d['closed_sd_speedup']:.2f}x ({d['best_sd_gamma']}) | "
                        f"{d['measured_pipespec_speedup']:.2f}x | {need} |")
    t_n = ", ".join(f"t({n}) = {v:.1f}" for n, v in result["t_n_ms"].items())
    lines_md += ["", f"Target {result['target_key']}: {t_n} ms. AR decode {result['ar_decode_ms']:.1f} ms/token. "
                 f"Limit (α → 1, c → 0, window {result['limit_window']}): {result['limit_speedup']:.2f}x."]
    md = write_text_atomic(out.with_suffix(".md"), "\n".join(lines_md) + "\n")
    return [png, csv_path, md]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", metavar="BENCH", help="a bench_backend.py result (its .profile.json beside it)")
    parser.add_argument("--out", default="figures/out/draft_economics", help="output stem (.png, .csv, .md)")
    args = parser.parse_args(argv)
    try:
        paths = write(analyse(Path(args.bench)), Path(args.out))
    except ConfigError as error:
        print(f"draft_economics: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
