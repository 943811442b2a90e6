"""`pipespec reproduce`: regenerate the project's figures from inputs committed in it."""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import environment, to_json, write_text_atomic
from ..table import csv_text, markdown_table
from .common import subparser


def _theory(out: Path) -> list[Path]:
    from ..figures import theory

    return [theory.plot_rho_and_tokens(out / "theory_rho_tokens.png"),
            theory.plot_async_vs_sync(out / "theory_async_vs_sync.png"),
            theory.plot_specpipe(out / "theory_specpipe.png"),
            theory.plot_ppsd(out / "theory_ppsd.png")]


def _sim_vs_closed_form(out: Path, quick: bool) -> list[Path]:
    from ..figures.sim_vs_theory import plot_sim_vs_closed_form
    from ..validation.sim_vs_theory import grid

    rows = grid(seeds=2 if quick else 4, num_tokens=600 if quick else 2000)
    return [write_text_atomic(out / "sim_vs_closed_form.csv", csv_text(rows)),
            plot_sim_vs_closed_form(out / "sim_vs_closed_form.png", rows)]


def _toy(out: Path) -> list[Path]:
    """The paper's toy setting (M0/M1/M2 at 10/5/1 tokens per unit time): AR, SD and PipeSpec side by side."""
    from ..figures.timeline import plot_timelines
    from ..sim.presets import preset
    from ..sim.run import simulate

    toy = preset("toy").with_values(num_tokens=40, timeline=True)
    runs = [("AR (M2 alone)", toy.with_values(scheme="ar")), ("synchronous SD chain, γ = 4",
                                                              toy.with_values(scheme="sd", gamma=4)),
            ("PipeSpec (asynchronous)", toy)]
    results = [(label, simulate(config, with_ar_baseline=False)) for label, config in runs]
    return [plot_timelines(out / "sim_toy_timelines.png", results, until_s=12.0, unit="unit")]


def _calibrated(out: Path, quick: bool) -> list[Path]:
    """The A100 calibration: timeline, accepted-token histograms, utilisation, lookahead, ablation table."""
    from ..figures.pipeline import plot_accepted_histograms, plot_lookahead, plot_utilisation
    from ..figures.timeline import plot_timeline
    from ..sim import calibration
    from ..sim.presets import preset
    from ..sim.run import simulate
    from ..validation import calibrated

    files = []
    result = simulate(preset("pipespec-a100").with_values(num_tokens=120 if quick else 300, timeline=True))
    files.append(plot_timeline(out / "sim_pipespec_a100_timeline.png", result, until_s=3.0,
                               title=f"PipeSpec {{1B, 8B, 70B-NF4}} simulated from the A100 calibration: "
                                     f"{result.ms_per_token:.1f} ms/token, {result.speedup:.2f}x over AR (first 3 s)"))
    files.append(plot_utilisation(out / "sim_pipespec_a100_utilisation.png", result.timeline or [],
                                  [s.name for s in result.stages], until_s=result.elapsed_s,
                                  title="Stage utilisation, simulated PipeSpec {1B, 8B, 70B-NF4} on A100s"))
    long = simulate(preset("pipespec-a100").with_values(num_tokens=600 if quick else 3000), with_ar_baseline=False)
    reported = calibration.measured()["pipespec_histograms"]
    files.append(plot_accepted_histograms(
        out / "sim_pipespec_a100_accepted.png", long.pairs, [reported["M0->M1"], reported["M1->M2"]],
        reference_label="authors' measurement", title="Tokens added per verification: simulated PipeSpec vs the "
                                                      "authors' A100 runs (HumanEval)", max_bin=36))
    rows = calibrated.lookahead(range(1, 21), num_tokens=300 if quick else 1500, seeds=1 if quick else 3)
    ar_ms = calibrated.inputs().t("M2", 1) * 1e3
    uncapped = simulate(preset("pipespec-a100").with_values(num_tokens=300 if quick else 1500),
                        with_ar_baseline=False).ms_per_token
    files.append(write_text_atomic(out / "sim_a100_lookahead.csv", csv_text(rows)))
    files.append(plot_lookahead(out / "sim_a100_lookahead.png", rows, ar_ms, unlimited_ms=uncapped,
                                title="{1B, 8B, 70B-NF4} on A100s: ms/token against lookahead"))
    ablation = calibrated.ablation(num_tokens=400 if quick else 2000, seeds=1 if quick else 3)
    columns = [("scheme", "scheme", "s"), ("models", "models", "s"), ("sim_ms_per_token", "sim ms/token", ".1f"),
               ("sim_speedup", "sim speedup", ".2f"), ("closed_ms_per_token", "closed-form ms/token", ".1f"),
               ("closed_speedup", "closed-form speedup", ".2f"), ("reported_speedup", "reported speedup", ".2f")]
    files.append(write_text_atomic(out / "sim_a100_ablation.csv", csv_text(ablation)))
    files.append(write_text_atomic(out / "sim_a100_ablation.md", markdown_table(ablation, columns)))
    return files


def _a100_logs(out: Path) -> list[Path]:
    """The authors' asynchronous A100 runs predicted from their synchronous and autoregressive logs alone."""
    from ..figures.a100_logs import plot_lookahead
    from ..validation import gpu_logs

    result = gpu_logs.predict_all(out / "a100_imported")
    files = [Path(f) for f in result["files"].values()]
    rows = [{k: r[k] for k in gpu_logs.CSV_COLUMNS} for r in result["async"]]
    files.append(write_text_atomic(out / "a100_async_predictions.csv", csv_text(rows)))
    files.append(write_text_atomic(out / "a100_sync_checks.csv", csv_text(result["sync_checks"])))
    checks = [("run", "run", "s"), ("lookahead", "L", "d"), ("measured_ms_per_token", "measured ms/token", ".2f"),
              ("predicted_ms_per_token", "predicted ms/token", ".2f"), ("error", "error", "+.1%"),
              ("measured_tokens_per_verification", "measured tokens/verification", ".2f"),
              ("predicted_tokens_per_verification", "predicted tokens/verification", ".2f")]
    files.append(write_text_atomic(out / "a100_sync_checks.md", markdown_table(result["sync_checks"], checks)))
    ablation = gpu_logs.ablation_rows(result)
    columns = [("scheme", "scheme", "s"), ("models", "models", "s"), ("lookahead", "L", "s"),
               ("ms_per_token", "ms/token", ".1f"), ("speedup", "speedup over AR", ".2f"), ("source", "source", "s")]
    files.append(write_text_atomic(out / "a100_ablation.md", markdown_table(ablation, columns)))
    files.append(plot_lookahead(out / "a100_lookahead.png", result["async"], result["sync_checks"],
                                result["ar_ms_per_token"].get("8B"),
                                title="{1B, 8B} on A100s (the paper's Fig 4), from the synchronous logs alone"))
    return files


def _acceptance_models(out: Path) -> list[Path]:
    """i.i.d., positional, Markov and trace replay, fitted on synchronous runs, predicting pipelines."""
    from ..validation import acceptance_models as am

    local, a100 = am.local(), am.a100(out / "a100_imported_1b8b")
    columns = [("model", "acceptance model", "s"), ("mean_abs_error", "mean abs. error", ".1%"),
               ("max_abs_error", "max abs. error", ".1%")]
    detail = [("pipeline", "pipeline", "s"), ("fitted_on", "fitted on", "s"), ("model", "model", "s"),
              ("acceptance", "fitted acceptance", "s"), ("measured_ms_per_token", "measured ms/token", ".2f"),
              ("predicted_ms_per_token", "predicted ms/token", ".2f"), ("error", "error", "+.1%")]
    text = ("## Pipelines on this machine (figures/out/validate-2026-12-01b), fitted on its SD runs\n\n"
            + markdown_table(local, detail) + "\n" + markdown_table(am.summary(local), columns)
            + "\n## The authors' {1B, 8B} synchronous runs at L = 2-20, fitted at L = 8\n\n"
            + markdown_table(am.summary(a100), columns))
    return [write_text_atomic(out / "acceptance_models.md", text),
            write_text_atomic(out / "acceptance_models.csv", csv_text([*local, *a100]))]


def _drafts(out: Path) -> list[Path]:
    """The committed drafts' training curves, and which drafts pay, from the committed benchmark run
    (figures/out/bench/: `benchmarks/bench_backend.py` and its latency profile)."""
    from ..backend.models import drafts_dir
    from ..figures.drafts import plot_alpha_curve
    from ..validation import draft_economics

    files = [plot_alpha_curve(out / "draft_alpha_curve.png", draft_economics.build_records(drafts_dir()))]
    bench = drafts_dir().parent / "figures" / "out" / "bench" / "bench_backend.json"
    if bench.is_file():
        files += draft_economics.write(draft_economics.analyse(bench), out / "draft_economics")
    return files


def _local(out: Path, quick: bool) -> list[Path]:
    """Measured here on the built-in family (and predicted from this machine's profiles and traces):
    `pipespec validate` on a small budget, with the lookahead sweep."""
    from tqdm import tqdm

    from .validate import ValidateConfig, run_validation

    config = ValidateConfig(limit=2 if quick else 3, max_new_tokens=24 if quick else 32, repeats=1,
                            seeds=1 if quick else 3, lookahead=(1, 2, 4, 8), ppsd_exits=(16,), specpipe_widths=(2,),
                            out=str(out / "local"))
    results = run_validation(config, lambda items, **kw: tqdm(items, file=sys.stderr, disable=None, **kw))
    return [Path(f) for f in results["files"]]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import require

    out = Path(args.out)
    require(not out.exists() or out.is_dir(), f"--out must be a folder, got the file {str(out)!r}")
    steps: list[tuple[str, Callable[[], list[Path]]]] = [
        ("closed forms", lambda: _theory(out)),
        ("simulator vs closed forms", lambda: _sim_vs_closed_form(out, args.quick)),
        ("toy setting timelines", lambda: _toy(out)),
        ("calibrated A100 pipeline", lambda: _calibrated(out, args.quick)),
        ("A100 asynchronous runs predicted from the authors' synchronous logs", lambda: _a100_logs(out)),
        ("acceptance models compared", lambda: _acceptance_models(out)),
        ("drafts: training curves and which drafts pay", lambda: _drafts(out)),
    ]
    if args.backend:
        steps.append(("local backend, measured vs predicted", lambda: _local(out, args.quick)))
    from ..interference import Watch, warning

    started = time.perf_counter()
    written: dict[str, Any] = {}
    lines = not sys.stderr.isatty()  # a log, not a terminal: one line per phase instead of a live bar
    for number, (name, step) in enumerate(tqdm(steps, desc="reproduce", unit="figure set", file=sys.stderr,
                                               disable=None), 1):
        t0 = time.perf_counter()
        if lines:
            print(f"reproduce [{number}/{len(steps)}] {name} ...", file=sys.stderr, flush=True)
        with Watch() as watch:
            files = [str(p) for p in step()]
        written[name] = {"files": files, "wall_time_s": time.perf_counter() - t0, "interference": watch.share,
                         "disturbed": watch.disturbed}
        if lines:
            print(f"reproduce [{number}/{len(steps)}] {name}: done in {written[name]['wall_time_s']:.1f} s",
                  file=sys.stderr, flush=True)
    # the largest resident set of this process or of any stage process it started (Linux: KiB)
    peak_mib = max(resource.getrusage(who).ru_maxrss
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    summary = {"kind": "reproduce", "config": {"out": str(out), "quick": args.quick, "backend": args.backend},
               "environment": environment(), "results": written, "wall_time_s": time.perf_counter() - started,
               "peak_rss_mib": peak_mib}
    write_text_atomic(out / "reproduce.json", to_json(summary))
    message = warning("reproduce", "it", [entry["interference"] for entry in written.values()])
    if message:
        print(message, file=sys.stderr)
    if args.json:
        print(to_json(summary), end="")
        return 0
    for name, entry in written.items():
        print(f"{name}: " + ", ".join(entry["files"]))
    print(f"done in {summary['wall_time_s']:.1f} s, peak memory {peak_mib:.0f} MiB -> {out / 'reproduce.json'}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands, "reproduce", help="regenerate the figures from committed inputs",
        description="Regenerate the project's figures: closed forms (ρ and E[N] against α, where the "
                    "asynchronous pipeline beats SD, SpecPipe and PPSD speedups); the simulator against the "
                    "closed forms; the paper's toy setting (M0/M1/M2 at 10/5/1 tokens per unit time); the "
                    "A100 calibration (timeline, utilisation, accepted-token histograms against the authors', "
                    "ms/token against lookahead 1-20, the sync/async x single/multi-draft ablation table); "
                    "and the built-in family measured here against its predictions. Records its own wall "
                    "time and peak memory in reproduce.json.",
        examples="  pipespec reproduce\n  pipespec reproduce --out /tmp/figs --quick --no-backend\n")
    parser.add_argument("--out", default="figures/out", help="output folder (default: figures/out)")
    parser.add_argument("--quick", action="store_true", help="fewer seeds and tokens (a smoke run)")
    parser.add_argument("--backend", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the built-in family on this machine (AR, SD, PipeSpec, lookahead) and "
                             "compare with predictions, into OUT/local (default: on)")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    parser.set_defaults(handler=run)
