"""Parameter sweeps: a grid over SimConfig fields, run in parallel (local processes or a Dask
cluster), checkpointed point by point so an interrupted sweep resumes where it stopped.

Every point's seed is the base seed plus its replicate index: points differ only in the swept
parameters (common random numbers), and a point's result does not depend on the engine, the number
of workers or the order points finish in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import option_fields, parse_value, parsed_value
from ..errors import ConfigError, require
from .config import SimConfig

Point = dict[str, Any]
MAX_POINTS = 1_000_000  # a grid larger than this is a typo, not a sweep (its rows would not fit in memory)
MAX_AXIS_VALUES = 100_000
_FIELDS = {name: flat.field for name, flat in option_fields(SimConfig).items()}


@dataclass(frozen=True)
class Axis:
    """One swept parameter: a SimConfig field, an element of a tuple field (`latency[2]`), or `alpha`
    (every pair's acceptance)."""

    name: str
    values: tuple[Any, ...]


def parse_axis(text: str) -> Axis:
    """From `NAME=V1,V2,...`. Values are typed as the CLI types them; spec values (latency, acceptance, alpha,
    a tuple's element) stay text, as rows record them, and are parsed per point (`apply`)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    require(bool(sep) and bool(raw.strip()), f"--grid expects NAME=V1,V2,..., got {text!r}")
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    require(len(values) > 0, f"--grid {name}: no values")
    require(len(values) <= MAX_AXIS_VALUES, f"--grid {name}: at most {MAX_AXIS_VALUES} values, got {len(values)}")
    base = name.split("[", 1)[0]
    known = set(_FIELDS) | {"alpha"}
    allowed = ", ".join(sorted(known - {"alpha"}))
    require(base in known, f"--grid: unknown parameter {base!r}; allowed: alpha, {allowed}")
    if base == "alpha" or "[" in name:
        return Axis(name, values)
    if _FIELDS[base].metadata.get("parse"):
        return Axis(name, tuple((v,) for v in values))
    return Axis(name, tuple(parse_value(SimConfig, base, v, f"--grid {name}") for v in values))


def check_axes(base: SimConfig, axes: Sequence[Axis]) -> None:
    """Every axis that names a scheme's own option applies to a scheme the sweep runs (its --scheme, or the
    values of a scheme axis)."""
    swept = next((a.values for a in axes if a.name == "scheme"), (base.scheme,))
    known = option_fields(SimConfig)
    for axis in axes:
        flat = known.get(axis.name.split("[", 1)[0])  # (None: alpha, every pair's acceptance)
        owners = flat.owners if flat is not None else ()
        require(not owners or bool(set(owners) & set(swept)),
                f"--grid {axis.name}: applies to {' and '.join(owners)}, not {' or '.join(map(str, swept))}")


def apply(base: SimConfig, point: Point) -> SimConfig:
    """The point's configuration (validated: a bad grid value is a ConfigError naming it). Where the sweep varies
    the scheme, a point leaves out the axes of the other schemes' options (an sd point runs without the
    pipespec axis --max-drafts)."""
    values: dict[str, Any] = {}
    for name, value in point.items():
        if name == "replicate":  # after any seed axis: a replicate offsets the point's own seed
            seed = point.get("seed", base.seed)
            values["seed"] = (seed or 0) + value
        elif name == "alpha":
            values["acceptance"] = parsed_value(_FIELDS["acceptance"], (str(value),), "--grid alpha")
        elif "[" in name:
            field_name, index = name[:-1].split("[")
            require(field_name in _FIELDS, f"--grid {name}: alpha is one value for every pair; index acceptance")
            items = list(base.flat()[field_name])
            require(index.isdigit() and int(index) < len(items),
                    f"--grid {name}: {field_name} has {len(items)} entries")
            items[int(index)] = parsed_value(_FIELDS[field_name], str(value), f"--grid {name}")
            values[field_name] = tuple(items)
        else:
            values[name] = parsed_value(_FIELDS[name], value, f"--grid {name}")
    if "scheme" in point:
        known = option_fields(SimConfig)
        values = {k: v for k, v in values.items() if not known[k].owners or point["scheme"] in known[k].owners}
    return base.with_values(**values)


def points(axes: Sequence[Axis], replicates: int) -> list[Point]:
    require(len(axes) > 0, "--grid: the sweep grid is empty (give at least one --grid NAME=V1,V2,...)")
    require(isinstance(replicates, int) and 1 <= replicates <= MAX_POINTS,
            f"--replicates must be an integer in 1..{MAX_POINTS}, got {replicates}")
    names = [a.name for a in axes] + ["replicate"]
    repeated = sorted({n for n in names if names.count(n) > 1})
    require(not repeated, f"--grid: {', '.join(repeated)} given twice (give one --grid per parameter)")
    size = replicates
    for axis in axes:
        size *= len(axis.values)
    require(size <= MAX_POINTS, f"--grid: {size:,} points is more than {MAX_POINTS:,}; split the sweep")
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes), range(replicates))]


def point_key(point: Point) -> str:
    return json.dumps(point, sort_keys=True)


def flatten(point: Point, summary: dict[str, Any]) -> dict[str, Any]:
    """One table row: the point's parameters, then the headline metrics, then per-stage and per-pair ones."""
    row: dict[str, Any] = dict(point)
    for key in ("ms_per_token", "tokens_per_s", "ar_ms_per_token", "speedup_over_ar", "num_tokens", "elapsed_s"):
        row[key] = summary[key]
    for i, stage in enumerate(summary["stages"]):
        for key in ("busy_fraction", "rho", "tokens_per_step", "aborted_steps"):
            row[f"stage{i}_{key}"] = stage[key]
    for i, pair in enumerate(summary["pairs"]):
        for key in ("acceptance_rate", "alpha_estimate", "mean_accepted_length", "rollbacks"):
            row[f"pair{i}_{key}"] = pair[key]
    return row


def run_point(base: SimConfig, point: Point) -> dict[str, Any]:
    """Worker entry: simulate one point, return its row (module-level so it pickles)."""
    from .run import simulate

    return flatten(point, simulate(apply(base, point)).summary())


@dataclass
class Checkpoint:
    """Finished rows appended as JSON lines beside the output; read back to resume."""

    path: Path
    fingerprint: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, output: Path, fingerprint: str, fresh: bool) -> Checkpoint:
        path = output.with_name(output.name + ".partial.jsonl")
        checkpoint = cls(path, fingerprint)
        if path.exists() and not fresh:
            corrupt = f"--output: {path} is not a sweep checkpoint (use --fresh to discard it)"
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
                header = json.loads(lines[0]) if lines else {}
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise ConfigError(corrupt) from None
            require(isinstance(header, dict), corrupt)
            require(header.get("fingerprint") == fingerprint,
                    f"--output: {path} holds a partial sweep of another configuration (use --fresh to discard it)")
            for number, line in enumerate(lines[1:], 2):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the interruption
                require(isinstance(entry, dict) and isinstance(entry.get("key"), str)
                        and isinstance(entry.get("row"), dict),
                        f"--output: {path} line {number} is not a checkpointed row (use --fresh to discard it)")
                checkpoint.rows[entry["key"]] = entry["row"]
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
        return checkpoint

    def add(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "row": row}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def fingerprint(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler: stopping an idle worker is silent


def run_local(base: SimConfig, todo: Sequence[Point], workers: int,
              on_row: Callable[[Point, dict[str, Any]], None]) -> None:
    """Run points on a process pool; every worker is stopped on every exit path."""
    if workers == 1:
        for point in todo:
            on_row(point, run_point(base, point))
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        pending = {pool.submit(run_point, base, point): point for point in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                point = pending.pop(future)
                on_row(point, future.result())
    except BrokenProcessPool:
        raise RuntimeError("a sweep worker died (killed or out of memory); finished points are kept") from None
    finally:
        processes = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


def connect(scheduler: str) -> Any:
    """A client of a running Dask cluster (`--scheduler tcp://HOST:PORT`): a one-line error if unreachable."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--engine dask needs the dask[distributed] package (pip install 'pipespec[sweep]')") from None
    try:
        return Client(scheduler, timeout="5s")
    except (OSError, ValueError, TypeError, TimeoutError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"--scheduler: cannot reach the Dask scheduler at {scheduler!r} ({first})") from None


def run_dask(base: SimConfig, todo: Sequence[Point], scheduler: str | Any,
             on_row: Callable[[Point, dict[str, Any]], None]) -> None:
    """Run points on a running Dask cluster: `scheduler` is its address, or a client from `connect`."""
    from distributed import as_completed

    client = connect(scheduler) if isinstance(scheduler, str) else scheduler
    try:
        futures = client.map(run_point, [base] * len(todo), list(todo), pure=False)
        by_key = {f.key: p for f, p in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            on_row(by_key[future.key], future.result())
    finally:
        client.close()


def iter_rows(all_points: Iterable[Point], checkpoint: Checkpoint) -> Iterator[dict[str, Any]]:
    """Rows in grid order (not finishing order), so output files are identical whatever the engine."""
    for point in all_points:
        yield checkpoint.rows[point_key(point)]
