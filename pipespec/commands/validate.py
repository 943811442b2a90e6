"""`pipespec validate`: the simulator's and the closed forms' predictions against measured runs, here."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..backend.devices import TRANSPORTS
from ..config import add_arguments, from_args, given_values, mapping_values, option
from ..errors import MAX_WINDOW, ConfigError, check_int, require
from ..schemes import get
from ..table import csv_text, format_table, markdown_table
from .common import OutputConfig, emit, subparser

COLUMNS = [("config", "config", "s"), ("chain", "chain", "s"), ("placement", "threads@cores", "s"),
           ("window", "window", "s"), ("measured_ms_per_token", "measured ms/tok", ".1f"),
           ("measured_spread", "spread", ".1%"), ("measured_speedup", "measured speedup", ".2f"),
           ("sim_ms_per_token", "sim ms/tok", ".1f"),
           ("sim_error", "sim error", "+.1%"), ("closed_ms_per_token", "closed ms/tok", ".1f"),
           ("closed_error", "closed error", "+.1%"), ("lossless", "lossless", ""), ("disturbed", "disturbed", "")]


@dataclass(frozen=True)
class ValidateConfig:
    target: str = option("smollm2", "the target: smollm2 (the built-in family) or any model --chain takes (tiny:..., "
                         "a folder); then the family is AR, SD and PipeSpec on --draft (a model), PPSD at "
                         "--ppsd-exits (the target's own first E layers as its exit) and SpecPipe at "
                         "--specpipe-widths, every stage on --device")
    prompts: str | None = option(None, "JSONL prompts (default: built-in)")
    limit: int | None = option(6, "first N prompts")
    max_new_tokens: int = option(64, "tokens per prompt")
    repeats: int = option(3, "measured repeats per configuration (median reported)")
    gamma: int = option(4, "sd: window γ")
    draft: str | None = option("auto", "a trained draft to include (draft:NAME), 'auto' (the built ones, if "
                               "any: the small draft, feature drafts in SD and PipeSpec, and exit drafts in PPSD "
                               "and early-exit SD) or 'none'")
    lookahead: tuple[int, ...] = option((), "also measure SD γ and PipeSpec max-drafts at these values "
                                        "(the measured lookahead plot)")
    ppsd_exits: tuple[int, ...] = option((16, 24), "PPSD (2 stages) and its non-pipelined early-exit SD baseline "
                                         "at these exit layers E")
    specpipe_widths: tuple[int, ...] = option((1, 2), "SpecPipe over 2 target stages at these tree widths, and "
                                              "plain pipeline parallelism on the same stages")
    configs: tuple[str, ...] = option((), "run only these configurations (names as in the table; ar is always "
                                      "run first, as the baseline)")
    seeds: int = option(3, "simulator seeds per configuration")
    contended: bool = option(True, "profile one-thread models (pipeline stages) pinned to core 0 while the "
                             "target's forwards keep core 1 busy, as in the pipelines")
    device: str = option("cpu", "device: cpu or cuda:N (the built-in family's placements assume 2 CPU cores; on a GPU "
                         "every stage shares it)")
    transport: str = option("shm", "how the pipelines' stage processes talk: shm (shared memory) or dist "
                            "(torch.distributed ranks on this host)", choices=TRANSPORTS)
    out: str = option("results/validate", "output folder: table (CSV, markdown), plots, profile, traces, JSON")
    repredict: bool = option(False, "predict again from the profile, traces and measurements a finished run left "
                             "in --out, without profiling or measuring (after a change to the simulator or the "
                             "closed forms); what it measured (prompts, --limit, --max-new-tokens, --repeats, "
                             "configurations, --device) defaults to what the run recorded")

    @property
    def builtin(self) -> bool:
        """The built-in family (the target smollm2), rather than `--target`'s."""
        from ..validation.setups import TARGET

        return self.target == TARGET

    def __post_init__(self) -> None:
        from ..backend.devices import check_device, members

        if self.limit is not None:
            check_int("--limit", self.limit, 1)
        check_int("--max-new-tokens", self.max_new_tokens, 2)
        check_int("--repeats", self.repeats, 1)
        check_int("--gamma", self.gamma, 1, MAX_WINDOW)
        check_int("--seeds", self.seeds, 1)
        for g in self.lookahead:
            check_int("--lookahead", g, 1)
        from ..backend.models import num_layers, resolve

        target = resolve(self.target, "--target")
        require(target.kind in ("hf", "tiny") and target.spec != "smollm2-int8",
                f"--target must be smollm2, a tiny model or a model folder, got {self.target!r}")
        if not self.builtin:
            require(self.draft not in (None, "auto", "none"), f"--target {self.target}: give --draft, the model "
                                                              "its SD and PipeSpec runs draft with")
            resolve(self.draft, "--draft")
        layers = num_layers(target)  # from its config: nothing is loaded
        for e in self.ppsd_exits:
            check_int("--ppsd-exits", e, 1, layers - 1)
        for w in self.specpipe_widths:
            check_int("--specpipe-widths", w, 1)
        check_device(self.device)
        require(len(members(self.device)) == 1, f"--device {self.device}: validate's built-in family runs its PPSD and "
                                       "SpecPipe layer stages on one device each; device groups are for run")
        require(not self.builtin or self.draft in (None, "auto", "none") or self.draft.startswith("draft:"),
                f"--draft must be auto, none or draft:NAME, got {self.draft!r}")
        finished = all((Path(self.out) / f).is_file() for f in ("validate.json", "profile.json", "traces.json"))
        require(not self.repredict or finished,
                f"--repredict: {self.out} holds no finished run (validate.json, profile.json, traces.json)")


# what a run measured, taken from its validate.json by --repredict unless given again
MEASURED_OPTIONS = ("prompts", "limit", "max_new_tokens", "repeats", "gamma", "lookahead", "ppsd_exits",
                    "specpipe_widths", "configs", "contended", "device")


def resolve_config(args: argparse.Namespace) -> ValidateConfig:
    """The options given; with --repredict, what the run in --out measured fills the measured ones not given."""
    given = given_values(ValidateConfig, args)
    out = Path(given.get("out", ValidateConfig.out))
    if given.get("repredict") and (out / "validate.json").is_file():
        try:
            recorded = json.loads((out / "validate.json").read_text(encoding="utf-8"))["config"]
            recorded = {k: recorded[k] for k in MEASURED_OPTIONS if k in recorded and k not in given}
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"--repredict: {out}/validate.json is not a validate result") from None
        given = mapping_values(ValidateConfig, recorded, f"--repredict: {out}/validate.json") | given
    return ValidateConfig(**given)


def built_drafts(kind: str) -> list[str]:
    """The drafts of a kind (small | exit | eagle) that `pipespec models build` has exported, as draft:NAME."""
    from ..backend.distill import RECIPES
    from ..backend.models import drafts_dir

    return [f"draft:{name}" for name, recipe in RECIPES.items()
            if recipe.kind == kind and (drafts_dir() / name / "config.json").is_file()]


def built_draft() -> str | None:
    """The trained separate draft that `pipespec models build` has exported, the one with the highest α on
    the built-in prompts (as its build recorded it) when there are several; None when none is built."""
    from ..backend.models import drafts_dir

    def alpha(name: str) -> float:
        record = json.loads((drafts_dir() / name.removeprefix("draft:") / "build.json").read_text())
        return float(record["curve"][-1].get("alpha_builtin", -1.0))

    drafts = built_drafts("small")
    return max(drafts, key=alpha) if drafts else None


def measured_drafts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The trained drafts a run measured, read off its rows' chains (`draft:NAME -> ...`), for a run from before
    validate recorded them: the exit drafts are those its rows of a scheme drafting from the target itself (ppsd) ran,
    the separate draft any other (None: none)."""
    def drafts(row: dict[str, Any]) -> list[str]:
        return [model for model in str(row["chain"]).split(" -> ") if model.startswith("draft:")]

    exits = list(dict.fromkeys(d for row in rows if get(row["scheme"]).target_only for d in drafts(row)))
    separate = [d for row in rows for d in drafts(row) if d not in exits]
    return {"draft": separate[0] if separate else None, "exit_drafts": exits}


def run_validation(config: ValidateConfig, progress: Any) -> dict[str, Any]:
    """Everything `validate` does, with its outputs written under config.out; returns the results."""
    from ..backend.models import resolve
    from ..validation.backend import validate
    from ..validation.setups import Workload, builtin_setups, model_setups

    draft = built_draft() if config.draft == "auto" else (None if config.draft in (None, "none") else config.draft)
    exit_drafts = built_drafts("exit") if config.draft == "auto" else []
    feature_drafts = built_drafts("eagle") if config.draft == "auto" else []
    if config.builtin and config.repredict and config.draft == "auto":  # the drafts the run measured, not today's best
        try:
            results = json.loads((Path(config.out) / "validate.json").read_text())["results"]
            recorded = results.get("drafts") or measured_drafts(results["rows"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"--repredict: {config.out}/validate.json is not a validate result") from None
        draft, exit_drafts = recorded["draft"], recorded["exit_drafts"]
        feature_drafts = recorded.get("feature_drafts", [])
    if draft:
        resolve(draft)  # a one-line error if it is not built
    setups = (builtin_setups(config.gamma, draft, config.lookahead, config.ppsd_exits, config.specpipe_widths,
                             exit_drafts, feature_drafts) if config.builtin else
              model_setups(config.target, str(draft), config.gamma, config.lookahead, config.ppsd_exits,
                           config.specpipe_widths))
    if config.configs:
        known = [s.name for s in setups]
        for name in config.configs:
            require(name in known, f"--configs: unknown configuration {name!r} (known: {', '.join(known)})")
        setups = [s for s in setups if s.name == "ar" or s.name in config.configs]
    out = Path(config.out)
    workload = Workload(config.prompts, config.limit, config.max_new_tokens, config.repeats, device=config.device,
                        contended=config.contended, transport=config.transport)
    results = validate(setups, workload, out, config.seeds, progress, config.repredict)
    results["drafts"] = {"draft": draft, "exit_drafts": exit_drafts,  # what "auto" resolved to
                         "feature_drafts": feature_drafts}
    results["files"] = [*_write_report(results, out, config, draft), results["profile"], results["traces"]]
    return results


def _write_report(results: dict[str, Any], out: Path, config: ValidateConfig, draft: str | None) -> list[str]:
    """validate's table (CSV, markdown) and plots: predicted against measured, the showcase pipeline's tokens
    per verification, the lookahead sweep where one was measured."""
    from ..figures.pipeline import plot_accepted_histograms, plot_lookahead
    from ..figures.sim_vs_theory import plot_predicted_vs_measured
    from ..io import write_text_atomic
    from ..metrics import PairStats
    rows = results["rows"]
    flat = [{k: v for k, v in r.items() if not k.endswith(("histograms", "stages"))} for r in rows]
    files = [write_text_atomic(out / "validate.csv", csv_text(flat)),
             write_text_atomic(out / "validate.md", markdown_table(rows, COLUMNS)),
             plot_predicted_vs_measured(out / "validate.png", rows, "Decode ms/token on this machine: measured vs "
                                                                    "predicted from profiles and traces")]
    showcase = next((r for r in rows if r["config"] == "pipespec-k2-int8"), rows[-1])
    if showcase["measured_histograms"]:
        pairs = []
        for histogram in showcase["measured_histograms"]:
            pair = PairStats(showcase["chain"])
            pair.tokens_added_histogram = Counter({int(k): v for k, v in histogram.items()})
            pairs.append(pair)
        reference = [[h.get(str(j), 0) for j in range(max(map(int, h), default=0) + 1)]
                     for h in showcase["sim_histograms"]]
        files.append(plot_accepted_histograms(out / "accepted_histogram.png", pairs, reference, "simulator",
                                              title=f"{showcase['config']}: tokens added per verification, "
                                                    "measured vs simulated", max_bin=33))
    prefixes, chain = (("sd-int8-g", "pipespec-k2-int8-max"), "smollm2-int8 -> smollm2") if config.builtin else \
        (("sd-g", "pipespec-k2-max"), f"{draft} -> {config.target}")
    sweep = [r for r in rows if r["config"].startswith(prefixes)]
    if sweep:
        points = [{"scheme": r["scheme"], "lookahead": int(r["window"]), "sim_ms_per_token": r["measured_ms_per_token"]}
                  for r in sweep]
        files.append(plot_lookahead(out / "lookahead.png", points, rows[0]["measured_ms_per_token"],
                                    title=f"{chain} on {config.device}: measured ms/token against lookahead"))
    return [str(f) for f in files]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    config = resolve_config(args)
    output = from_args(OutputConfig, args)
    started = time.perf_counter()

    def progress(items: Any, **kwargs: Any) -> Any:
        return tqdm(items, file=sys.stderr, disable=None, **kwargs)

    results = run_validation(config, progress)
    results["wall_time_s"] = time.perf_counter() - started
    from ..interference import warning

    shares = [s for row in results["rows"] for s in row.get("repeats_interference", [])]
    shares += results.get("profile_interference", [])
    message = warning("validate", "the measurements", shares)
    if message:
        print(message, file=sys.stderr)
    # the largest resident set of this process or of any stage process it started (Linux: KiB)
    results["peak_rss_mib"] = max(resource.getrusage(who).ru_maxrss for who in
                                  (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    from ..io import result_document, write_json

    write_json(Path(config.out) / "validate.json", result_document("validate", asdict(config), results, config.device))
    text = "\n".join([format_table(results["rows"], COLUMNS, "decode ms/token: measured vs predicted "
                                   "(simulator and closed form, from profiles and traces only)"),
                      f"\nwrote {', '.join(results['files'])}, {Path(config.out) / 'validate.json'} "
                      f"in {results['wall_time_s']:.0f} s (peak memory {results['peak_rss_mib']:.0f} MiB)"])
    emit(output, "validate", asdict(config), results, text, device=config.device)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands, "validate", help="predicted (simulator, closed forms) vs measured on this machine",
        description="Profile the built-in family here (latency against tokens per pass and context, at "
                    "each configuration's thread count), record acceptance traces on the prompts, measure "
                    "AR, SD and PipeSpec (k = 2 and 3) with the backend, and predict the same runs from "
                    "the profiles and traces alone with the simulator and the closed forms. Writes a table "
                    "(CSV, markdown), plots, and JSON with the wall time and peak memory.",
        examples="  pipespec validate\n  pipespec validate --limit 4 --max-new-tokens 48 --repeats 1 "
                 "--lookahead 1 2 4 8\n")
    add_arguments(parser, ValidateConfig, "validate", only_given=True)
    add_arguments(parser, OutputConfig, "output")
    parser.set_defaults(handler=run)
