"""Speculative-decoding logs as typed values, and the two formats `pipespec import-logs` reads.

`reference`: the PipeSpec authors' result JSON (as in shared/calibration/pipespec-humaneval-logs):

    {"strategy": "chain" | "greedy", "lookahead": L, "models": [{"name", "dtype", "devices"}, ...],
     "samples": [{"tokens_generated", "total_time_s", "model_times_s": [[s, ...] per model],
                  "accepted_tokens": [[added, ...] per pair], "token_times_s": [s, ...] (greedy)}]}

`jsonl`: one JSON object per line and request, for any engine's per-request metrics (vLLM's per-request
speculative-decoding metrics, SGLang's, or your own logger):

    {"run": "my-run", "models": ["draft", "target"], "request": "id",
     "steps": [{"drafted": 4, "accepted": 3, "verify_s": 0.031}, ...],
     "tokens_generated": 412, "total_time_s": 9.1, "prefill_s": 0.2}

`drafted`: drafts offered to the verifier in that step (0 for a step without drafts); `accepted`: how many
of them it accepted (it then adds one token of its own). `verify_s`, `tokens_generated`, `total_time_s` and
`prefill_s` are optional; the lines of one `run` form one RunLog, in file order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require

FORMATS = ("reference", "jsonl")


@dataclass(frozen=True)
class Request:
    """One prompt's decode. `added[p]`: tokens the verifier of pair p added per verification (its own
    token included); `drafted[p]`: drafts offered in each (None where the log does not say);
    `model_times_s[m]`: the log's step times of model m."""

    tokens_generated: int
    total_time_s: float | None = None
    added: tuple[tuple[int, ...], ...] = ()
    drafted: tuple[tuple[int, ...] | None, ...] = ()
    model_times_s: tuple[tuple[float, ...], ...] = ()
    prefill_s: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dtype: str = "unknown"
    devices: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The profile key: a model's latency depends on its precision and devices too."""
        return f"{self.name}@{self.dtype}x{max(len(self.devices), 1)}"


@dataclass(frozen=True)
class RunLog:
    """One run: a strategy (chain: the synchronous reference chain; greedy: autoregressive; rounds: a
    JSONL log of windows as drafted), its lookahead, models (draft first) and requests."""

    name: str
    source: str
    strategy: str
    lookahead: int
    models: tuple[ModelInfo, ...]
    requests: tuple[Request, ...] = field(repr=False)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def ms_per_token(self) -> float | None:
        """The run's ms/token as its authors report it: total time over total tokens, prefill included."""
        times = [r.total_time_s for r in self.requests]
        if any(t is None for t in times):
            return None
        return 1e3 * sum(times) / sum(r.tokens_generated for r in self.requests)  # type: ignore[arg-type]


def _fail(path: Path, where: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {what}")


def _int(value: Any, path: Path, where: str, minimum: int = 0) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise _fail(path, where, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _seconds(value: Any, path: Path, where: str) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise _fail(path, where, f"must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _list(value: Any, path: Path, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, where, f"must be a list, got {type(value).__name__}")
    return value


def _read_json(path: Path) -> Any:
    require(path.is_file(), f"{path}: no such log file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_reference(path: str | Path) -> RunLog:
    """A result file of the PipeSpec reference implementation (chain or greedy)."""
    path = Path(path)
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise _fail(path, "document", "must be a JSON object")
    strategy = doc.get("strategy")
    if strategy not in ("chain", "greedy"):
        raise _fail(path, "strategy", f"must be chain or greedy (asynchronous runs are predicted, not imported), "
                                      f"got {strategy!r}")
    lookahead = _int(doc.get("lookahead"), path, "lookahead")
    models = []
    for i, raw in enumerate(_list(doc.get("models"), path, "models")):
        if not (isinstance(raw, dict) and isinstance(raw.get("name"), str)):
            raise _fail(path, f"models[{i}]", "must be an object with a name")
        devices = raw.get("devices") or ()
        models.append(ModelInfo(raw["name"], str(raw.get("dtype", "unknown")), tuple(str(d) for d in devices)))
    require(len(models) >= (1 if strategy == "greedy" else 2),
            f"{path}: models: a {strategy} run needs {'one model' if strategy == 'greedy' else 'two or more'}")
    samples = _list(doc.get("samples"), path, "samples")
    require(len(samples) > 0, f"{path}: samples: empty")
    requests = tuple(_reference_request(raw, path, f"samples[{i}]", strategy, len(models))
                     for i, raw in enumerate(samples))
    if strategy == "chain" and lookahead >= 1:  # the first pair's window is L-1 drafts: it adds at most L
        for i, req in enumerate(requests):
            over = [(j, a) for j, a in enumerate(req.added[0]) if a > lookahead][:1]
            for j, a in over:
                raise ConfigError(f"{path}: samples[{i}].accepted_tokens[0][{j}]: {a} tokens added exceeds the "
                                  f"lookahead {lookahead}")
    return RunLog(path.stem, str(doc.get("source", path)), strategy, lookahead, tuple(models), requests)


def _reference_request(raw: Any, path: Path, where: str, strategy: str, num_models: int) -> Request:
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be an object")
    tokens = _int(raw.get("tokens_generated"), path, f"{where}.tokens_generated", 1)
    total = _seconds(raw.get("total_time_s"), path, f"{where}.total_time_s")
    if strategy == "greedy":
        times = tuple(_seconds(t, path, f"{where}.token_times_s[{j}]")
                      for j, t in enumerate(_list(raw.get("token_times_s"), path, f"{where}.token_times_s")))
        require(len(times) <= tokens, f"{path}: {where}.token_times_s: {len(times)} steps for {tokens} tokens")
        return Request(tokens, total, model_times_s=(times,), prefill_s=max(total - sum(times), 0.0))
    model_times = _list(raw.get("model_times_s"), path, f"{where}.model_times_s")
    accepted = _list(raw.get("accepted_tokens"), path, f"{where}.accepted_tokens")
    require(len(model_times) == num_models, f"{path}: {where}.model_times_s: {len(model_times)} lists for "
                                            f"{num_models} models")
    require(len(accepted) == num_models - 1, f"{path}: {where}.accepted_tokens: {len(accepted)} lists for "
                                             f"{num_models - 1} pairs")
    times = tuple(tuple(_seconds(t, path, f"{where}.model_times_s[{m}][{j}]")
                        for j, t in enumerate(_list(ts, path, f"{where}.model_times_s[{m}]")))
                  for m, ts in enumerate(model_times))
    added = tuple(tuple(_int(a, path, f"{where}.accepted_tokens[{p}][{j}]", 1)
                        for j, a in enumerate(_list(values, path, f"{where}.accepted_tokens[{p}]")))
                  for p, values in enumerate(accepted))
    rounds = len(added[-1])
    for p, values in enumerate(added):  # one entry per round of the chain, in every pair and model after the first
        require(len(values) == rounds, f"{path}: {where}.accepted_tokens[{p}]: {len(values)} rounds, the last pair "
                                       f"logged {rounds}")
    for m in range(1, num_models):
        require(len(times[m]) == rounds, f"{path}: {where}.model_times_s[{m}]: {len(times[m])} entries for "
                                         f"{rounds} rounds")
    prefill = max(total - sum(sum(t) for t in times), 0.0)
    return Request(tokens, total, added, (None,) * len(added), times, prefill)


def read_jsonl(path: str | Path) -> list[RunLog]:
    """Per-round JSONL (see the module docstring): one RunLog per `run` named in the file."""
    path = Path(path)
    require(path.is_file(), f"{path}: no such log file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    runs: dict[str, tuple[tuple[str, ...], list[Request]]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, where, f"not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise _fail(path, where, "must be a JSON object")
        name = raw.get("run", path.stem)
        models = raw.get("models")
        if not (isinstance(models, list) and len(models) == 2 and all(isinstance(m, str) for m in models)):
            raise _fail(path, f"{where}.models", "must name the draft and the target, e.g. [\"draft\", \"target\"]")
        entry = runs.setdefault(str(name), (tuple(models), []))
        if entry[0] != tuple(models):
            raise _fail(path, f"{where}.models", f"run {name!r} changed models from {list(entry[0])} to {models}")
        entry[1].append(_jsonl_request(raw, path, where))
    require(runs, f"{path}: no requests")
    return [RunLog(name, str(path), "rounds", 0, tuple(ModelInfo(m) for m in models), tuple(requests))
            for name, (models, requests) in runs.items()]


def _jsonl_request(raw: Mapping[str, Any], path: Path, where: str) -> Request:
    steps = _list(raw.get("steps"), path, f"{where}.steps")
    drafted, added, verify = [], [], []
    for j, step in enumerate(steps):
        at = f"{where}.steps[{j}]"
        if not isinstance(step, dict):
            raise _fail(path, at, "must be an object")
        d = _int(step.get("drafted"), path, f"{at}.drafted")
        a = _int(step.get("accepted"), path, f"{at}.accepted")
        if a > d:
            raise _fail(path, f"{at}.accepted", f"{a} accepted of {d} drafted")
        drafted.append(d)
        added.append(a + 1)
        if "verify_s" in step:
            verify.append(_seconds(step["verify_s"], path, f"{at}.verify_s"))
    if verify and len(verify) != len(steps):
        raise _fail(path, f"{where}.steps", "verify_s must be given for every step or for none")
    produced = sum(added)
    tokens = raw.get("tokens_generated", produced)
    tokens = _int(tokens, path, f"{where}.tokens_generated", 1)
    total = raw.get("total_time_s")
    total = None if total is None else _seconds(total, path, f"{where}.total_time_s")
    prefill = raw.get("prefill_s")
    prefill = None if prefill is None else _seconds(prefill, path, f"{where}.prefill_s")
    times = ((), tuple(verify)) if verify else ()
    return Request(tokens, total, (tuple(added),), (tuple(drafted),), times, prefill)


def read_logs(fmt: str, paths: Iterable[str | Path]) -> list[RunLog]:
    """Every run in the given files (a folder stands for its *.json / *.jsonl files, sorted)."""
    require(fmt in FORMATS, f"FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.json" if fmt == "reference" else "*.jsonl"))
            require(found, f"{p}: no {'*.json' if fmt == 'reference' else '*.jsonl'} log files in this folder")
            files.extend(found)
        else:
            files.append(p)
    require(files, "PATH: give at least one log file or folder")
    if fmt == "reference":
        return [read_reference(f) for f in files]
    return [run for f in files for run in read_jsonl(f)]

