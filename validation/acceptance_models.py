"""Which acceptance model predicts an asynchronous pipeline from a synchronous run? i.i.d., positional,
correlated (Markov) and trace replay, each fitted on the synchronous run only.

- `local`: this machine's committed validate run (figures/out/validate-2026-12-01b): for each draft -> target
  pair measured both as SD (window 4) and as a PipeSpec pipeline, the three histogram-fitted models are
  fitted on the SD run's measured histogram of tokens added; the trace is the run's own recorded trace.
  Each predicts the measured PipeSpec run with the run's latency profiles (validate's own prediction path).
- `a100`: the authors' {1B, 8B} logs: fitted on the synchronous chain at lookahead 8 (its histogram, window
  7; the trace from every synchronous run, as `import-logs` recovers it), each predicts the synchronous runs
  at the other lookaheads (no asynchronous run is given).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..acceptance import Acceptance, Positional, hazard_from_histogram
from ..acceptance_fit import fit_bernoulli_histogram, fit_markov_histogram
from ..profiles import load_profile
from ..specs import spec_text
from ..traces import load_trace

RUN = Path("figures/out/validate-2026-12-01b")
PAIRS = (("sd-int8", "pipespec-k2-int8"), ("sd-smollm2-small4", "pipespec-k2-smollm2-small4"))
MODELS = ("iid", "positional", "markov", "trace")


def models_from_histogram(histogram: Mapping[Any, float], window: int) -> dict[str, Acceptance]:
    """The histogram-fitted acceptance models."""
    counts = {int(k): float(v) for k, v in histogram.items()}
    fractions = [counts.get(j, 0.0) for j in range(window + 2)]
    return {"iid": fit_bernoulli_histogram(counts, window), "positional": Positional(hazard_from_histogram(fractions)),
            "markov": fit_markov_histogram(counts, window)}


def local(run: Path = RUN, seeds: int = 3) -> list[dict[str, Any]]:
    from .predict import planning_inputs, predict
    from .setups import Workload, builtin_setups, prepare, trace_name

    document = json.loads((run / "validate.json").read_text(encoding="utf-8"))
    config, results = document["config"], document["results"]
    rows = {r["config"]: r for r in results["rows"]}
    drafts = ["draft:smollm2-small4"]
    setups = {s.name: s for s in builtin_setups(config["gamma"], drafts[0], (), config["ppsd_exits"],
                                                 config["specpipe_widths"], [])}
    workload = prepare(Workload(config["prompts"], config["limit"], config["max_new_tokens"], config["repeats"]))
    lengths = rows["ar"]["output_lengths"]
    out = []
    for sync_name, async_name in PAIRS:
        sync, target = rows[sync_name], setups[async_name]
        models = models_from_histogram(sync["measured_histograms"][0], config["gamma"])
        draft, verifier, width = target.trace_pair()
        models["trace"] = load_trace(run / "traces.json", trace_name(draft, verifier, width))
        measured = rows[async_name]["measured_ms_per_token"]
        for model in MODELS:
            inputs = planning_inputs(target, run / "profile.json", run / "traces.json", results["ngram_cost_s"],
                                     workload.context, acceptance=[models[model]])
            predicted = predict(target, inputs, workload, workload.prompt_shapes(lengths), seeds)["sim_ms_per_token"]
            out.append({"pipeline": rows[async_name]["chain"], "fitted_on": sync_name, "model": model,
                        "acceptance": spec_text(models[model], digits=6) if model != "trace" else "trace (recorded)",
                        "measured_ms_per_token": measured, "predicted_ms_per_token": predicted,
                        "error": predicted / measured - 1})
    return out


def a100(out_dir: Path, fit_lookahead: int = 8) -> list[dict[str, Any]]:
    from ..logs.build import import_runs, pair_key, write_import
    from ..logs.records import read_logs
    from ..schemes.sd import SDOptions
    from ..sim.config import SimConfig
    from .gpu_logs import _predict, logs_folder

    runs = [r for r in read_logs("reference", [logs_folder()])
            if r.strategy == "chain" and r.model_names == ("Llama-3.2-1B-Instruct", "Llama-3.1-8B-Instruct")]
    files = write_import(import_runs(runs), out_dir)
    fit_run = next(r for r in runs if r.lookahead == fit_lookahead)
    histogram: dict[int, float] = {}
    for req in fit_run.requests:
        for added in req.added[0]:
            histogram[added] = histogram.get(added, 0) + 1
    models = models_from_histogram(histogram, fit_lookahead - 1)
    models["trace"] = load_trace(files["traces"], pair_key(fit_run.models, 0))
    latency = tuple(load_profile(files["profile"], m.key) for m in fit_run.models)
    rows = []
    for run in sorted(runs, key=lambda r: r.lookahead):
        if run.lookahead < 2 or run.lookahead == fit_lookahead:
            continue
        for model in MODELS:
            config = SimConfig(scheme="sd", latency=latency, acceptance=(models[model],),
                               options=SDOptions(gamma=run.lookahead - 1, coordination="reference"))
            ms, _ = _predict(config, run)
            rows.append({"run": run.name, "lookahead": run.lookahead, "model": model,
                         "measured_ms_per_token": run.ms_per_token, "predicted_ms_per_token": ms,
                         "error": ms / (run.ms_per_token or float("nan")) - 1})
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and largest |error| per model."""
    out = []
    for model in MODELS:
        errors = [abs(r["error"]) for r in rows if r["model"] == model]
        out.append({"model": model, "mean_abs_error": statistics.mean(errors), "max_abs_error": max(errors)})
    return out
