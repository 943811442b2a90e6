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


def build_records(folder: Path) -> dict[str, dict[str, Any]]:
    """The build records (build.json) of the drafts in `folder`, committed weights or not, by draft name."""
    records = {path.parent.name: json.loads(path.read_text()) for path in sorted(folder.glob("*/build.json"))}
    return {name: record for name, record in records.items() if "curve" in record}  # (not the response set's)


def analyse(bench_path: Path, built: Path | None = None) -> dict[str, Any]:
    """The grid of closed-form speedups and the measured drafts, from a `bench_backend.py` result, with what
    more responses would buy the drafts built in `built` (default: the committed ones) toward α 0.6 and the α
    the trained drafts need for the goal's speedup."""
    from ..backend.models import drafts_dir
    from ..backend.responses import responses_dir

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
    need = [d["alpha_for_goal"] for d in drafts if d["draft"].startswith("draft:") and d["alpha_for_goal"]]
    goals = {"the goal": 0.6} | ({f"{GOAL:g}x at its c": max(need)} if need else {})
    returns = data_returns(build_records(drafts_dir() if built is None else built),
                           json.loads((responses_dir() / "build.json").read_text()), goals)
    # the α the goal needs at each cost (None: no α reaches it): flat wherever the draft hides behind verification
    goal_alpha = {float(c): min((float(a) for a, cc, p, *_ in grid if cc == c and p >= GOAL), default=None)
                  for c in COSTS}
    return {"grid": grid, "drafts": drafts, "data_returns": returns, "goal_alpha_by_cost": goal_alpha,
            "ar_decode_ms": ar_ms, "target_1t_ms": t1 * 1e3, "target_key": target_1t, "limit_speedup": limit,
            "limit_window": best - 1,
            "t_n_ms": {n: _t(targets, target_1t, n) * 1e3 for n in (1, 2, 3, 4, 5, 8, 16, 33)}}


def _extrapolate(goal: float, per_doubling: float, rows: int, alpha: float, per_row: float,
                 rate: float) -> dict[str, float] | None:
    """The responses (their tokens, and hours at `rate` tokens/s) that take α from `alpha` at `rows` to `goal`
    at `per_doubling` a doubling; None when the line does not rise."""
    if per_doubling <= 0:
        return None
    needed = rows * 2 ** max(0.0, (goal - alpha) / per_doubling)
    return {"responses": needed, "tokens": needed * per_row, "hours": needed * per_row / rate / 3600}


def data_returns(records: Mapping[str, Mapping[str, Any]], responses: Mapping[str, Any],
                 goals: Mapping[str, float]) -> list[dict[str, Any]]:
    """What more of the target's own responses buys each kind of draft, read off the build records of drafts
    of one kind that learnt from different numbers of responses: α on the built-in prompts against log2 of
    the rows learnt, a line by weighted least squares (each α's binomial standard error over the tokens it is
    scored on), and, extrapolated along it, the responses and this machine's hours of generating them
    (`responses`: the set's build record) that each goal α needs, at the fitted slope and at one standard
    error above it (the errors taken as independent, which overstates it for drafts scored on the same
    tokens). A goal the line never reaches (slope <= 0) needs None; with no record counting its scored
    tokens, the line is unweighted and has no standard errors."""
    from ..backend.distill import learnt_rows

    rate = responses["tokens_generated"] / responses["wall_seconds"]
    per_row = responses["tokens_generated"] / responses["prompts_done"]
    kinds: dict[str, list[tuple[str, int, float, int]]] = {}
    for name, record in sorted(records.items()):
        last = record["curve"][-1]
        if record["recipe"].get("corpus") != "responses" or "alpha_builtin" not in last:
            continue
        kinds.setdefault(record["recipe"]["kind"], []).append(
            (name, learnt_rows(record), float(last["alpha_builtin"]), int(last.get("alpha_tokens", 0))))
    scored = [n for points in kinds.values() for *_, n in points if n]
    out = []
    for kind, points in kinds.items():
        if len({rows for _, rows, _, _ in points}) < 2:
            continue
        tokens = max(set(scored), key=scored.count) if scored else 0  # (a record from before they were counted)
        x = np.log2([rows for _, rows, _, _ in points])
        y = np.array([alpha for _, _, alpha, _ in points])
        n = np.array([count or tokens for *_, count in points], dtype=float)
        known = bool(n.all())  # else equal weights, and no standard errors
        w = n / np.clip(y * (1 - y), 1e-6, None) if known else np.ones_like(y)  # 1 / var(α)
        xm = float((w * x).sum() / w.sum())
        slope = float((w * (x - xm) * (y - (w * y).sum() / w.sum())).sum() / (w * (x - xm) ** 2).sum())
        slope_se = float(np.sqrt(1 / (w * (x - xm) ** 2).sum())) if known else None
        best = int(np.argmax(x))
        last = (points[best][1], float(y[best]), per_row, rate)
        out.append({"kind": kind, "drafts": [{"draft": name, "responses": rows, "alpha": alpha,
                                              "alpha_se": float(np.sqrt(alpha * (1 - alpha) / m)) if m else None}
                                             for (name, rows, alpha, _), m in zip(points, n * known, strict=True)],
                    "alpha_per_doubling": slope, "alpha_per_doubling_se": slope_se,
                    "goals": {label: {"alpha": goal, "fitted": _extrapolate(goal, slope, *last),
                                      "optimistic": None if slope_se is None
                                      else _extrapolate(goal, slope + slope_se, *last)}
                              for label, goal in goals.items()}})
    return out


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
    need = result["goal_alpha_by_cost"]
    cheapest = need[min(need)]
    if cheapest is not None:
        flat = max(c for c, a in need.items() if a == cheapest)
        lines_md += ["", f"{GOAL:g}x needs α ≥ {cheapest:.3f} from any draft up to c = {flat:.3f}: a cheaper draft "
                     "does not lower it (in PipeSpec the draft runs beside the verification, which sets the pace)."]
    if result["data_returns"]:
        lines_md += ["", "What more of the target's responses buys (α on the built-in prompts against the responses "
                     "learnt from, a line in log2 of them; hours: this machine's generation rate):", "",
                     "| kind | drafts: responses → α ± se | α per doubling ± se | "
                     + " | ".join(f"α {g['alpha']:.2f} ({label}): responses, hours (fitted; +1 se)"
                                  for label, g in result["data_returns"][0]["goals"].items()) + " |",
                     "| --- | --- | ---: | " + " | ".join("---:" for _ in result["data_returns"][0]["goals"]) + " |"]
        for kind in result["data_returns"]:
            points = ", ".join(f"{d['draft']} {d['responses']:,} → {d['alpha']:.3f} ± {_se(d['alpha_se'])}"
                               for d in kind["drafts"])
            cells = [f"{_need(g['fitted'])}; {_need(g['optimistic'])}" for g in kind["goals"].values()]
            lines_md.append(f"| {kind['kind']} | {points} | {kind['alpha_per_doubling']:+.3f} ± "
                            f"{_se(kind['alpha_per_doubling_se'])} | " + " | ".join(cells) + " |")
    md = write_text_atomic(out.with_suffix(".md"), "\n".join(lines_md) + "\n")
    return [png, csv_path, md]


def _need(need: Mapping[str, float] | None) -> str:
    return "never" if need is None else f"{need['responses']:.3g}, {need['hours']:.3g} h"


def _se(se: float | None) -> str:
    return "?" if se is None else f"{se:.3f}"


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
