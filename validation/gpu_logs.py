"""The PipeSpec authors' asynchronous A100 runs predicted from their synchronous and autoregressive logs
alone (`pipespec/data/pipespec-humaneval-logs/`, copied from shared/calibration; source: the public result
files of BradMcDanel/pipespec at commit 9a64774).

Inputs, all from `pipespec import-logs reference` over those logs (no figure of an asynchronous run):
- acceptance: each pair's agreement trace per prompt, recovered from the synchronous chains of the same
  model set and final model ({1B, 8B}: the 19 runs at lookahead 2-20; 8B -> 70B: {8B, 70B} and
  {1B, 8B, 70B}; 1B -> 70B: {1B, 70B}; 1B -> 8B on the 70B's output: {1B, 8B, 70B});
- latency: each model's step time against tokens per forward, from the same runs and the greedy runs;
- output length per prompt: the synchronous run's (greedy output is the same whatever the scheme);
- prefill: the synchronous run's time outside its logged steps, per prompt (both prefills, which the
  asynchronous decoder runs in parallel: an upper bound by the smaller model's prefill).

The runs predicted, as the repository's history says they ran: {1B, 8B} at lookahead 0-20 (a stage verifies
once its upstream holds at least L-1 drafts, at most 99 drafts a verification); {1B, 70B}, {8B, 70B},
{1B, 8B, 70B} (`_0` in the file names) at the decoder's default lookahead 5 with no cap. Each under both
coordination models; work in flight always finishes (GPU kernels are not cancelled).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..logs.build import import_runs, pair_key, write_import
from ..logs.records import RunLog, read_logs
from ..profiles import load_profiles
from ..sim.config import SimConfig
from ..sim.run import prompt_replay, simulate
from ..traces import load_traces

if TYPE_CHECKING:
    from ..acceptance import Trace
    from ..latency import LatencyModel

LOGS = "pipespec-humaneval-logs"
COORDINATIONS = ("lockfree", "reference")
SHORT = {"Llama-3.2-1B-Instruct": "1B", "Llama-3.1-8B-Instruct": "8B", "Meta-Llama-3.1-70B-Instruct": "70B"}
CSV_COLUMNS = ("run", "models", "lookahead", "coordination", "predicted_ms_per_token",
               "predicted_tokens_per_verification")


def logs_folder() -> Path:
    return Path(str(resources.files("pipespec") / "data" / LOGS))


@dataclass(frozen=True)
class Target:
    """An asynchronous run to predict: its name as the authors' file names it, the synchronous run it is
    predicted from, the lookahead it ran with, and its cap on drafts per verification."""

    run: str
    sync: RunLog
    lookahead: int
    max_drafts: int | None

    @property
    def models(self) -> str:
        return ", ".join(SHORT.get(m, m) for m in self.sync.model_names)


def targets(runs: Sequence[RunLog]) -> list[Target]:
    chains = {tuple(r.model_names): r for r in runs if r.strategy == "chain" and r.lookahead == 8}
    pair = ("Llama-3.2-1B-Instruct", "Llama-3.1-8B-Instruct")
    out = [Target(f"async-chain_{'-'.join(pair)}_{lookahead}", chains[pair], lookahead, 99)
           for lookahead in range(0, 21)]
    for models, sync in chains.items():
        if models != pair:
            out.append(Target(f"async-chain_{'-'.join(models)}_0", sync, 5, None))
    return out


def _predict(config: SimConfig, run: RunLog) -> tuple[float, float]:
    """(ms/token over the run's prompts, prefill included; tokens the final model adds per step). The reference
    implementation logs every step of its final model as a verification (a single-token step adds 1), so the
    second figure counts them all, as the logs do."""
    total_s, tokens, added, verifications = 0.0, 0, 0, 0
    for k, req in enumerate(run.requests):
        decode = req.tokens_generated - 1
        result = simulate(config.with_values(num_tokens=max(decode, 1), seed=k, **prompt_replay(config, k)),
                          with_ar_baseline=False)
        # the last verification may pass the prompt's count: its time counts, its extra tokens do not
        total_s += (req.prefill_s or 0.0) + result.elapsed_s
        tokens += req.tokens_generated
        final = result.stages[-1]
        added += final.tokens_added
        verifications += final.verify_steps + final.generate_steps
    return 1e3 * total_s / tokens, added / verifications if verifications else float("nan")


@dataclass(frozen=True)
class Imported:
    """An import's profile and traces as models (`read`: each file read once), keyed as the import keys them."""

    latency: dict[str, LatencyModel]
    acceptance: dict[str, Trace]

    @classmethod
    def read(cls, files: dict[str, Path]) -> Imported:
        return cls(load_profiles(files["profile"]), load_traces(files["traces"]))


def base_config(imported: Imported, run: RunLog, scheme: str, **values: Any) -> SimConfig:
    """The simulator's configuration for `run`'s models, from the imported profile and traces."""
    latency = tuple(imported.latency[m.key] for m in run.models)
    acceptance = tuple(imported.acceptance[pair_key(run.models, p)] for p in range(len(run.models) - 1))
    return SimConfig.from_flat({"scheme": scheme, "latency": latency, "acceptance": acceptance,
                                "names": tuple(SHORT.get(m, m) for m in run.model_names), **values})


def predict_all(out: str | Path, progress: Callable[[Any], Any] = lambda it: it,
                logs: Path | None = None) -> dict[str, Any]:
    """Import the logs into `out` (traces.json, profile.json, import.json), then predict every asynchronous run
    under each coordination model, and every synchronous run as a check of the imported inputs."""
    runs = read_logs("reference", [logs or logs_folder()])
    files = write_import(import_runs(runs), out)
    imported = Imported.read(files)
    rows = []
    for target in progress(targets(runs)):
        for coordination in COORDINATIONS:
            config = base_config(imported, target.sync, "pipespec", coordination=coordination, rollback="finish",
                                  min_drafts=max(target.lookahead - 1, 1), max_drafts=target.max_drafts)
            ms, per_verification = _predict(config, target.sync)
            rows.append({"run": target.run, "models": target.models, "lookahead": target.lookahead,
                         "coordination": coordination, "predicted_ms_per_token": ms,
                         "predicted_tokens_per_verification": per_verification,
                         "predicted_from": target.sync.name})
    checks = []
    for run in runs:
        if run.strategy != "chain" or run.lookahead < 2:
            continue
        ms, per_verification = _predict(base_config(imported, run, "sd", gamma=run.lookahead - 1,
                                                    coordination="reference"), run)
        measured = run.ms_per_token or float("nan")
        logged = [a for req in run.requests for a in req.added[-1]]
        checks.append({"run": run.name, "models": ", ".join(SHORT.get(m, m) for m in run.model_names),
                       "lookahead": run.lookahead, "measured_ms_per_token": measured, "predicted_ms_per_token": ms,
                       "error": ms / measured - 1, "measured_tokens_per_verification": statistics.mean(logged),
                       "predicted_tokens_per_verification": per_verification})
    ar = {SHORT.get(r.model_names[0], r.model_names[0]): r.ms_per_token for r in runs if r.strategy == "greedy"}
    return {"async": rows, "sync_checks": checks, "ar_ms_per_token": ar, "files": {k: str(v) for k, v in files.items()}}


def ablation_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1's ablation (and Table 2's model sets), redone from the logs: AR and the synchronous chains
    measured, the synchronous chains predicted (a check), the asynchronous runs predicted under each
    coordination model; speedups over the 70B's measured autoregressive ms/token."""
    ar = result["ar_ms_per_token"]["70B"]
    rows = [{"scheme": "autoregressive", "models": "70B", "lookahead": "", "ms_per_token": ar, "speedup": 1.0,
             "source": "measured (greedy log)"}]
    for check in result["sync_checks"]:
        if "70B" not in check["models"]:
            continue
        for what, key in (("measured (log)", "measured_ms_per_token"), ("predicted", "predicted_ms_per_token")):
            rows.append({"scheme": "synchronous chain", "models": check["models"], "lookahead": check["lookahead"],
                         "ms_per_token": check[key], "speedup": ar / check[key], "source": what})
    for row in result["async"]:
        if "70B" in row["models"]:
            rows.append({"scheme": "PipeSpec (asynchronous)", "models": row["models"], "lookahead": row["lookahead"],
                         "ms_per_token": row["predicted_ms_per_token"], "speedup": ar / row["predicted_ms_per_token"],
                         "source": f"predicted, {row['coordination']}"})
    return rows
