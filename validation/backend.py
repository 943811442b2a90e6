"""Predicted against measured on the machine at hand (`pipespec validate`).

1. Record acceptance traces for every draft → verifier pair on the prompts (greedy agreement along the
   verifier's own output).
2. Measure each configuration with the backend (`backend.runner.run`, medians over repeats run in
   rounds across configurations), and before each round of measurements run a round of the latency
   profile of every model at the thread count each configuration runs it with (forward latency against
   tokens per pass and context: the simulator's profile format), and of each SpecPipe process as it runs
   (the draft's tree forward, each target stage's layers), so that profile and measurements see the
   machine in the same states.
3. Predict the same runs from the profile and traces alone — nothing from step 2 — with the simulator
   (trace replay; stages pinned to one core sharing a simulated device the OS time-slices; a forward in
   flight at a rollback running to its end as the backend's do; SpecPipe's stages priced by their own
   profiles, PPSD's by their layers' share of the target's forward plus the output head's where they hold
   a head) and with the closed forms (α = the trace's match rate,
   `sim.plan`'s SD-chain and pipeline formulas, the derived PPSD and SpecPipe speedups).

Compared: decode ms/token, (wall time − time to first token) / (tokens − 1) over all prompts, since
neither prediction models the prefill; speedups are over the measured and predicted AR respectively.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ..errors import require
from ..interference import disturbed
from ..schemes import get
from .predict import planning_inputs, predict
from .profiling import Profiling, record_traces, time_ngram
from .rows import Measured, MeasuredRow, Row
from .setups import Progress, Setup, Workload, placement, prepare


def measure_interleaved(setups: Sequence[Setup], workload: Workload, progress: Progress,
                        profiling: Profiling | None = None) -> dict[str, Measured]:
    """Every configuration `repeats` times in rounds (each round runs every configuration once), so that
    drift and bursts of interference on a shared machine spread over configurations, where the medians
    reject them, instead of biasing the one measured while they lasted; with `profiling`, a round of the
    latency profile before each round of measurements."""
    runs: dict[str, list[Measured]] = {s.name: [] for s in setups}
    for r in range(workload.repeats):
        if profiling is not None:
            profiling.round(progress)
        for setup in progress(list(setups), desc=f"measuring, round {r + 1}/{workload.repeats}"):
            runs[setup.name].append(measure_once(setup, workload))
    return {name: combine(records) for name, records in runs.items()}


def measure_once(setup: Setup, workload: Workload) -> Measured:
    """One run of a configuration over the prompts: decode and overall ms/token, outputs, pair and stage stats."""
    from ..backend.runner import RunConfig, run

    config = RunConfig.from_flat(dict(
        scheme=setup.scheme, prompts=workload.prompts, limit=workload.limit, max_new_tokens=workload.max_new_tokens,
        device=workload.device, threads=setup.threads, cpus=setup.cpus, warmup=1,
        transport=workload.transport if get(setup.scheme).pipelined else "shm",
        **get(setup.scheme).run_values(setup, workload)))
    from ..interference import Watch

    with Watch() as watch:
        result = run(config)
    assert result is not None  # (only a torchrun stage rank returns None)
    rows, summary = result["prompts"], result["summary"]
    return {"decode_ms_per_token": decode_ms_per_token(rows),
            "ms_per_token": summary["ms_per_token"], "num_tokens": summary["num_tokens"],
            "outputs": [r["output_ids"] for r in rows], "pairs": summary["pairs"], "stages": summary["stages"],
            "interference": watch.share}


def decode_ms_per_token(rows: Sequence[dict[str, Any]]) -> float:
    """Decode ms/token of a run's prompt rows: the time to first token and the first token left out."""
    tokens = sum(r["new_tokens"] for r in rows)
    return sum(r["elapsed_s"] - r["ttft_s"] for r in rows) / (tokens - len(rows)) * 1e3


def combine(runs: Sequence[Measured]) -> Measured:
    """Repeated runs of one configuration: medians of decode and overall ms/token, the last run's outputs
    (None unless every run produced the same) and statistics."""
    last = runs[-1]
    decode_ms = [r["decode_ms_per_token"] for r in runs]
    same = all(r["outputs"] == last["outputs"] for r in runs)
    return {**last, "decode_ms_per_token": statistics.median(decode_ms),
            "repeats_interference": [r.get("interference") for r in runs],
            "ms_per_token": statistics.median(r["ms_per_token"] for r in runs),
            "repeats_decode_ms_per_token": decode_ms, "outputs": last["outputs"] if same else None}


def spread(repeats_ms: Sequence[float]) -> float:
    """The repeats' range over their median: how far this machine moved the measurement itself."""
    return (max(repeats_ms) - min(repeats_ms)) / statistics.median(repeats_ms)


def measured_row(setup: Setup, measured: Measured, reference: list[list[int]] | None) -> MeasuredRow:
    """A table row's measured half: what the backend did for one setup (medians over its repeats)."""
    return {
        "config": setup.name, "scheme": setup.scheme, "chain": " -> ".join(setup.chain),
        "placement": placement(setup),
        "window": get(setup.scheme).window_of(setup),
        "measured_ms_per_token": measured["decode_ms_per_token"],
        "measured_overall_ms_per_token": measured["ms_per_token"],
        "lossless": reference is not None and measured["outputs"] == reference,
        "output_lengths": None if measured["outputs"] is None else [len(o) for o in measured["outputs"]],
        "measured_alpha": [p["alpha_estimate"] for p in measured["pairs"]],
        "measured_mean_accepted_length": [p["mean_accepted_length"] for p in measured["pairs"]],
        "measured_histograms": [p["tokens_added_histogram"] for p in measured["pairs"]],
        "repeats_ms_per_token": measured["repeats_decode_ms_per_token"],
        "measured_stages": measured["stages"],
        # the share of the CPUs other processes took during each repeat (None: unknown), and the flag
        "repeats_interference": measured.get("repeats_interference", []),
        "disturbed": disturbed(measured.get("repeats_interference", [])),
    }


MEASURED_KEYS = ("config", "scheme", "chain", "placement", "window", "measured_ms_per_token",
                 "measured_overall_ms_per_token", "lossless", "measured_alpha", "measured_mean_accepted_length",
                 "measured_histograms", "repeats_ms_per_token")


def previous_measurements(out: Path, setups: Sequence[Setup],
                          workload: Workload) -> tuple[dict[str, MeasuredRow], dict[str, Any]]:
    """The measured halves of the rows a finished run left in `out` (on the same prompts and limits as
    `workload`), and what else of that run a prediction keeps: the n-gram drafter's cost, and the measuring
    run's wall time, peak memory and environment."""
    import json

    path = out / "validate.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    config = document.get("config", {})
    for key in ("prompts", "limit", "max_new_tokens"):
        require(config.get(key) == getattr(workload, key),
                f"--repredict: {path} measured --{key.replace('_', '-')} {config.get(key)}, "
                f"not {getattr(workload, key)}: give the same")
    results = document.get("results", {})
    rows = {r.get("config"): r for r in results.get("rows", [])}
    for setup in setups:
        require(setup.name in rows and all(k in rows[setup.name] for k in MEASURED_KEYS),
                f"--repredict: {path} has no measurement of {setup.name} (run it without --repredict)")
    measured: dict[str, MeasuredRow] = {}
    for setup in setups:
        row = rows[setup.name]
        measured[setup.name] = {**{k: row[k] for k in MEASURED_KEYS}, "output_lengths": row.get("output_lengths"),
                                "measured_stages": row.get("measured_stages"),
                                "repeats_interference": row.get("repeats_interference", []),
                                "disturbed": row.get("disturbed", False)}
    run = results.get("measurement_run") or {"wall_time_s": results.get("wall_time_s"),
                                              "peak_rss_mib": results.get("peak_rss_mib"),
                                              "environment": document.get("environment")}
    return measured, {"ngram_cost_s": results.get("ngram_cost_s", {}), "measurement_run": run}


def _target_output_lengths(traces_path: Path, target: str) -> list[int]:
    """The target's greedy output length on each prompt: its traces' sequences are along that output."""
    from ..traces import read_traces

    entry = next((e for e in read_traces(traces_path).values() if e.get("target") == target), None)
    require(entry is not None, f"{traces_path} has no trace along {target}'s output: measure the run again")
    return [len(seq) for seq in entry["sequences"]]


def validate(setups: Sequence[Setup], workload: Workload, out: Path, seeds: int = 3,
             progress: Progress = lambda it, **_: it, repredict: bool = False) -> dict[str, Any]:
    """Profile, measure, predict (or, with `repredict`, predict again from a finished run's profile, traces
    and measurements in `out`); returns rows (one per setup) and the files written."""
    require(get(setups[0].scheme).baseline, "validate: the first configuration must be the AR baseline")
    target = setups[0].chain[-1]
    workload = prepare(workload, target)
    out.mkdir(parents=True, exist_ok=True)
    profile_path, traces_path = out / "profile.json", out / "traces.json"
    profile_interference: list[float | None] = []
    if repredict:
        from ..backend.loading import load_model
        from ..backend.models import resolve

        measured, previous = previous_measurements(out, setups, workload)
        ngram_s = {m: previous["ngram_cost_s"].get(m) or time_ngram(load_model(resolve(m), "cpu"), workload.encoded)
                   for s in setups for m in s.chain if m.startswith("ngram")}
    else:
        record_traces(setups, workload, traces_path, progress)
        profiling = Profiling(setups, workload, rounds=workload.repeats)
        measurements = measure_interleaved(setups, workload, progress, profiling)
        profiling.write(profile_path)
        profile_interference = profiling.interference
        ngram_s = profiling.ngram_s
        reference = measurements[setups[0].name]["outputs"]
        measured = {s.name: measured_row(s, measurements[s.name], reference) for s in setups}
    lengths = measured[setups[0].name]["output_lengths"] or _target_output_lengths(traces_path, target)
    rows: list[Row] = []
    for setup in setups:
        row = cast(Row, dict(measured[setup.name]))  # its prediction is added below
        inputs = planning_inputs(setup, profile_path, traces_path, ngram_s, workload.context)
        predicted = predict(setup, inputs, workload, workload.prompt_shapes(lengths), seeds)
        print(f"{setup.name}: measured {row['measured_ms_per_token']:.1f} ms/token, simulated "
              f"{predicted['sim_ms_per_token']:.1f}, closed form {predicted['closed_ms_per_token']:.1f}",
              file=sys.stderr, flush=True)
        row.update({"sim_ms_per_token": predicted["sim_ms_per_token"],
                    "closed_ms_per_token": predicted["closed_ms_per_token"],
                    "trace_alpha": list(predicted["trace_alpha"].values()),
                    "sim_histograms": [{str(k): v for k, v in sorted(p.tokens_added_histogram.items())}
                                       for p in predicted["sim_pairs"]],
                    "sim_stages": predicted["sim_stages"]})
        rows.append(row)
    ar = rows[0]
    for row in rows:
        row["measured_speedup"] = ar["measured_ms_per_token"] / row["measured_ms_per_token"]
        row["sim_speedup"] = ar["sim_ms_per_token"] / row["sim_ms_per_token"]
        row["closed_speedup"] = ar["closed_ms_per_token"] / row["closed_ms_per_token"]
        row["measured_spread"] = spread(row["repeats_ms_per_token"])
        row["sim_error"] = row["sim_ms_per_token"] / row["measured_ms_per_token"] - 1
        row["closed_error"] = row["closed_ms_per_token"] / row["measured_ms_per_token"] - 1
    results = {"rows": rows, "profile": str(profile_path), "traces": str(traces_path), "ngram_cost_s": ngram_s,
               "profile_interference": profile_interference}
    if repredict:
        results["measurement_run"] = previous["measurement_run"]  # this run's own time is prediction only
    return results
