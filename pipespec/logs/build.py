"""Imported logs as the simulator's files: per-pair acceptance traces merged over runs, latency profiles.

Traces. Every run decoding the same prompts with the same final model produces the same output, so a
pair's agreement at an output position is one fact that several runs observe. Per prompt and position,
the bits recovered by `replay` from every run of a pair are merged by majority (rule-4 readings count half
a vote); positions no run observes are imputed from the pair's own observed first-order statistics:
P(agree | previous position agrees) and P(agree | previous differs), drawn with a fixed seed so imports
are reproducible. A trace file records how many positions were imputed and how many disagreed across runs.

Profiles. A model's key is name@dtype x devices. Step times are grouped by tokens per forward (the
replay says how many each logged step fed; the prefill of each prompt is not a decode step and is kept
apart, per prompt, in the profile's `prefill_s`). A width with >= 3 steps is a measured point (median and
p10/p90); the widths >= 2 are also fitted by an affine curve a + b·n (weighted by steps), whose points fill
the table out to `FIT_TO_TOKENS` where the logs saw few widths, and whose error at the measured widths is
reported. A middle model logs its verification and its drafting steps as one time: its verification cost is
the least-squares fit of time = a + b·(tokens fed) + c·(drafting steps) over its rounds.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import acceptance_metrics
from ..profiles import write_profiles
from ..traces import write_traces
from .records import ModelInfo, RunLog
from .replay import Forward, replay_chain, replay_rounds

FIT_TO_TOKENS = 256  # the fitted curve's last table point: async windows are far wider than the logged ones
MIN_STEPS = 3  # steps a width needs to be a measured point
IMPUTE_SEED = 0


def pair_key(models: Sequence[ModelInfo], pair: int) -> str:
    """"DRAFT->VERIFIER" by profile key, plus " on FINAL" where the verifier is not the last model (its
    agreement is then measured on the final model's output)."""
    draft, verifier, final = models[pair], models[pair + 1], models[-1]
    base = f"{draft.key}->{verifier.key}"
    return base if pair + 2 == len(models) else f"{base} on {final.key}"


@dataclass
class _Votes:
    ones: list[list[float]] = field(default_factory=list)  # [prompt][position]
    zeros: list[list[float]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


@dataclass
class Imported:
    """The import of a set of runs."""

    traces: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    replays: list[dict[str, Any]]


@dataclass
class _Collected:
    """What the runs' replays gather, before merging: votes per pair, forwards per model key (a middle model's
    apart: its logged time covers a verification and drafting steps), prefills per model key."""

    votes: dict[str, _Votes] = field(default_factory=lambda: defaultdict(_Votes))
    forwards: dict[str, list[Forward]] = field(default_factory=lambda: defaultdict(list))
    middle: dict[str, list[Forward]] = field(default_factory=lambda: defaultdict(list))
    prefill: dict[str, list[float | None]] = field(default_factory=dict)


def import_runs(runs: Sequence[RunLog]) -> Imported:
    collected = _Collected()
    replays = []
    for run in runs:
        summary = {"run": run.name, "strategy": run.strategy, "lookahead": run.lookahead,
                   "requests": len(run.requests), "ms_per_token": run.ms_per_token}
        if run.strategy == "greedy":
            key = run.models[0].key
            for req in run.requests:
                collected.forwards[key].extend(Forward(0, 1, t) for t in req.model_times_s[0])
            collected.prefill[key] = [req.prefill_s for req in run.requests]
            replays.append(summary)
        else:
            replays.append({**summary, **_replay_run(run, collected)})
    traces = {name: _trace_entry(name, v) for name, v in sorted(collected.votes.items())}
    for name in list(traces):  # `plan` looks pairs up as DRAFT->VERIFIER: a middle pair seen only on one final
        plain = name.split(" on ")[0]  # model's output stands for the pair (its entry says on which)
        if plain != name and plain not in traces:
            traces[plain] = {**traces[name], "measured_on": name.split(" on ")[1]}
    models = {m.key: m for run in runs for m in run.models}
    profiles = {key: _profile_entry(models[key], collected.forwards.get(key, []), collected.middle.get(key, []),
                                    collected.prefill.get(key)) for key in sorted(models)}
    return Imported(traces, {k: v for k, v in profiles.items() if v is not None}, replays)


def _replay_run(run: RunLog, collected: _Collected) -> dict[str, Any]:
    """Replay every request of a speculative run into `collected`; returns the run's replay checks and its final
    pair's acceptance in the field's names."""
    num_models = len(run.models)
    observes = run.strategy == "rounds" or run.lookahead >= 2  # lookahead 1 offers no drafts
    totals = {"drafting_steps_replayed": 0, "drafting_steps_logged": 0, "conflicts": 0, "ambiguous": 0}
    final = {"verifications": 0, "drafted": 0, "accepted": 0, "histogram": Counter()}
    for k, req in enumerate(run.requests):
        rep = replay_rounds(req) if run.strategy == "rounds" else replay_chain(req, run.lookahead, num_models)
        exact = run.strategy == "rounds" or rep.drafting_steps == len(req.model_times_s[0])
        if run.strategy != "rounds":
            totals["drafting_steps_replayed"] += rep.drafting_steps
            totals["drafting_steps_logged"] += len(req.model_times_s[0])
        totals["conflicts"] += rep.conflicts
        totals["ambiguous"] += rep.ambiguous
        final["verifications"] += len(req.added[-1])
        final["accepted"] += sum(a - 1 for a in req.added[-1])
        final["drafted"] += sum(f.num_tokens - 1 for f in rep.forwards if f.model == num_models - 1)
        final["histogram"].update(req.added[-1])
        # a replay that reproduces the logged drafting steps outvotes one that does not (a middle model's
        # quirks are not all replayed); rule-4 readings count half
        weight = (1.0 if exact and not rep.conflicts else 0.25) * (0.5 if rep.ambiguous else 1.0)
        if observes:
            for pair, bits in enumerate(rep.bits):
                _vote(collected.votes[pair_key(run.models, pair)], run.name, k, bits, weight)
            for f in rep.forwards:
                middle = 0 < f.model < num_models - 1
                (collected.middle if middle else collected.forwards)[run.models[f.model].key].append(f)
    metrics = acceptance_metrics(final["verifications"], final["drafted"], final["accepted"], final["histogram"])
    return {**totals, "final_pair": pair_key(run.models, num_models - 2), **metrics}


def _vote(v: _Votes, run: str, prompt: int, bits: Sequence[int | None], weight: float) -> None:
    if run not in v.runs:
        v.runs.append(run)
    while len(v.ones) <= prompt:
        v.ones.append([])
        v.zeros.append([])
    ones, zeros = v.ones[prompt], v.zeros[prompt]
    if len(ones) < len(bits):
        ones.extend([0.0] * (len(bits) - len(ones)))
        zeros.extend([0.0] * (len(bits) - len(zeros)))
    for p, b in enumerate(bits):
        if b == 1:
            ones[p] += weight
        elif b == 0:
            zeros[p] += weight


def _trace_entry(name: str, v: _Votes) -> dict[str, Any]:
    merged = [[None if o == z == 0 else int(o > z) for o, z in zip(ones, zeros, strict=True)]
              for ones, zeros in zip(v.ones, v.zeros, strict=True)]
    disagreed = sum(1 for ones, zeros in zip(v.ones, v.zeros, strict=True)
                    for o, z in zip(ones, zeros, strict=True) if o and z)
    # first-order statistics of the observed bits: P(1 | previous 1), P(1 | previous 0)
    counts = np.zeros((2, 2))
    for seq in merged:
        for a, b in itertools.pairwise(seq):
            if a is not None and b is not None:
                counts[a, b] += 1
    p_after = [(counts[a, 1] + 1) / (counts[a].sum() + 2) for a in (0, 1)]  # Laplace-smoothed
    observed = [b for seq in merged for b in seq if b is not None]
    p_first = float(np.mean(observed)) if observed else 0.5
    rng = np.random.default_rng(IMPUTE_SEED)
    sequences, imputed = [], []
    for seq in merged:
        out, flags, previous = [], [], None
        for b in seq:
            if b is None:
                p = p_first if previous is None else p_after[previous]
                b = int(rng.random() < p)
                flags.append(1)
            else:
                flags.append(0)
            out.append(b)
            previous = b
        sequences.append(out)
        imputed.append(flags)
    draft, _, verifier = name.partition("->")
    total = sum(len(s) for s in sequences)
    return {"draft": draft, "target": verifier.split(" on ")[0], "sequences": sequences, "imputed": imputed,
            "runs": v.runs, "positions": total, "imputed_positions": sum(map(sum, imputed)),
            "disagreeing_positions": disagreed, "observed_alpha": p_first,
            "p_agree_after_agree": float(p_after[1]), "p_agree_after_differ": float(p_after[0])}


def _affine(ns: Sequence[float], ys: Sequence[float], weights: Sequence[float]) -> tuple[float, float]:
    if len(set(ns)) < 2:
        return float(np.average(ys, weights=weights)), 0.0
    slope, intercept = np.polyfit(ns, ys, 1, w=np.sqrt(weights))
    return float(intercept), max(float(slope), 0.0)


def _profile_entry(model: ModelInfo, forwards: Sequence[Forward], middle: Sequence[Forward],
                   prefill: Sequence[float | None] | None) -> dict[str, Any] | None:
    by_n: dict[int, list[float]] = defaultdict(list)
    for f in forwards:
        by_n[f.num_tokens].append(f.time_s)
    fitted_middle = None
    if middle:  # time = a + b·n + c·steps over its rounds
        design = np.array([[1.0, f.num_tokens, f.extra_steps] for f in middle])
        coef, *_ = np.linalg.lstsq(design, np.array([f.time_s for f in middle]), rcond=None)
        fitted_middle = {"base_s": float(coef[0]), "per_token_s": float(coef[1]), "per_step_s": float(coef[2]),
                         "rounds": len(middle)}
    points, measured = [], {}
    for n in sorted(by_n):
        times = by_n[n]
        if len(times) < MIN_STEPS:
            continue
        q10, q50, q90 = np.quantile(times, [0.1, 0.5, 0.9])
        measured[n] = (float(q50), len(times))
        points.append({"num_tokens": n, "context_len": 0, "median_s": float(q50),
                       "quantiles_s": {"0.1": float(q10), "0.5": float(q50), "0.9": float(q90)},
                       "repeats": len(times), "source": "measured"})
    wide = {n: v for n, v in measured.items() if n >= 2}
    fit: dict[str, Any] | None = None
    if len(wide) >= 2:
        base, slope = _affine(list(wide), [m for m, _ in wide.values()], [c for _, c in wide.values()])
        errors = [abs(base + slope * n - m) / m for n, (m, _) in wide.items()]
        fit = {"base_s": base, "per_token_s": slope, "widths": sorted(wide), "max_rel_error": max(errors),
               "mean_rel_error": float(np.mean(errors))}
    elif fitted_middle is not None:
        base, slope = fitted_middle["base_s"], fitted_middle["per_token_s"]
        fit = {"base_s": base, "per_token_s": slope, "widths": [], "max_rel_error": None,
               "mean_rel_error": None, "from_middle_rounds": fitted_middle}
    if fit is not None and fit["per_token_s"] >= 0 and fit["base_s"] > 0:
        top = max(measured) if measured else 1
        for n in ([2] if 2 not in measured else []) + ([FIT_TO_TOKENS] if top < FIT_TO_TOKENS else []):
            points.append({"num_tokens": n, "context_len": 0, "median_s": fit["base_s"] + fit["per_token_s"] * n,
                           "source": "fitted"})
    points.sort(key=lambda p: p["num_tokens"])
    if not points:
        return None
    entry: dict[str, Any] = {"model": model.name, "dtype": model.dtype, "devices": list(model.devices),
                             "source": "pipespec import-logs", "points": points, "fit": fit}
    if fitted_middle is not None:
        entry["middle_fit"] = fitted_middle
    known = [p for p in prefill or () if p is not None]
    if known:
        entry["prefill_s"] = list(prefill)
        entry["prefill_median_s"] = statistics.median(known)
    return entry


def write_import(imported: Imported, out: str | Path) -> dict[str, Path]:
    """traces.json, profile.json and import.json (what each run gave) into `out`."""
    from ..io import result_document, write_json

    out = Path(out)
    files = {"traces": write_traces(out / "traces.json", imported.traces),
             "profile": write_profiles(out / "profile.json", imported.profiles)}
    summary = {"runs": imported.replays,
               "pairs": {k: {f: v[f] for f in ("runs", "positions", "imputed_positions", "disagreeing_positions",
                                               "observed_alpha", "p_agree_after_agree", "p_agree_after_differ")}
                         for k, v in imported.traces.items()},
               "profiles": {k: {"fit": v.get("fit"), "widths": [p["num_tokens"] for p in v["points"]
                                                                if p.get("source") == "measured"]}
                            for k, v in imported.profiles.items()}}
    files["summary"] = write_json(out / "import.json", result_document("import-logs", {"out": str(out)}, summary))
    return files
