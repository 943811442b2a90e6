"""The latency-profile file format, written by `pipespec profile` (backend) and read by the simulator.

JSON (`.json`):
    {"format": "pipespec.latency-profile", "version": 1,
     "models": {NAME: {"device": "cpu", "threads": 2, "dtype": "float32", "source": "...",
                       "points": [{"num_tokens": 1, "context_len": 128, "median_s": 0.064,
                                   "quantiles_s": {"0.1": 0.061, "0.5": 0.064, "0.9": 0.070},
                                   "repeats": 10}, ...]}}}
CSV (`.csv`): one row per point, columns model,num_tokens,context_len,median_s[,p10_s,p50_s,p90_s…]
(a column pNN_s is the quantile at NN %).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, require
from .io import read_user_text, write_json, write_text_atomic
from .latency import ProfileLatency, ProfilePoint

FORMAT = "pipespec.latency-profile"
VERSION = 1

_KEY = re.compile(r"^(?P<model>[^@\[]+)(?:@(?:(?P<threads>\d+)t(?:-(?P<alone>alone)|~(?P<beside>[^\[]+))?"
                  r"|(?P<dtype>[^x\[]+)x(?P<devices>\d+)))?(?:\[(?P<part>[^\]]*)\])?$")


@dataclass(frozen=True)
class ProfileKey:
    """What a profile entry's name says about how the model was timed; one grammar, parsed and written here.

    - `NAME`: a model-free drafter (no forward), or a model profiled as it is;
    - `NAME@Nt`: N torch threads (one thread: a pipeline stage beside the built-in target on the other core);
    - `NAME@1t-alone`, `NAME@1t~OTHER`: one thread with the other core idle, or beside OTHER forwarding there;
    - `NAME@DTYPExN`: imported from another engine's logs, at DTYPE over N devices (`pipespec import-logs`);
    - any of them with `[PART]`: one part of the model (a SpecPipe process's layers, its tree forward).
    """

    model: str
    threads: int | None = None
    neighbour: str | None = None  # "alone", a model's name, or None (beside the target / not pinned)
    dtype: str | None = None
    devices: int | None = None
    part: str | None = None

    @classmethod
    def parse(cls, text: str) -> ProfileKey:
        match = _KEY.match(text)
        if match is None:  # a name outside the grammar is a model's name as it stands
            return cls(text)
        g = match.groupdict()
        return cls(g["model"], int(g["threads"]) if g["threads"] else None, g["alone"] or g["beside"], g["dtype"],
                   int(g["devices"]) if g["devices"] else None, g["part"])

    def __str__(self) -> str:
        text = self.model
        if self.threads is not None:
            text += f"@{self.threads}t" + ("" if self.neighbour is None else
                                           "-alone" if self.neighbour == "alone" else f"~{self.neighbour}")
        elif self.dtype is not None:
            text += f"@{self.dtype}x{self.devices}"
        return text + (f"[{self.part}]" if self.part is not None else "")


def _point(raw: Mapping[str, Any], where: str) -> ProfilePoint:
    require(isinstance(raw, Mapping), f"{where}: a profile point must be an object with num_tokens and median_s, "
                                      f"got {raw!r}")
    try:
        quantiles = tuple(sorted((float(q), float(s)) for q, s in (raw.get("quantiles_s") or {}).items()))
        return ProfilePoint(int(raw["num_tokens"]), int(raw.get("context_len", 0)), float(raw["median_s"]), quantiles)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: malformed profile point {dict(raw)!r} ({exc.__class__.__name__}: {exc})") from None


def read_profiles(path: str | Path) -> dict[str, dict[str, Any]]:
    """{model: {"points": [ProfilePoint, ...], **metadata}} from a JSON or CSV profile file."""
    path = Path(path)
    require(path.is_file(), f"latency profile {str(path)!r} does not exist")
    text = read_user_text(path, "latency profile")
    if path.suffix.lower() == ".csv":
        return _read_csv(text, str(path))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"latency profile {str(path)!r} is not valid JSON: {exc}") from None
    require(isinstance(document, dict) and document.get("format") == FORMAT,
            f"latency profile {str(path)!r}: expected \"format\": \"{FORMAT}\"")
    require(document.get("version") == VERSION, f"latency profile {str(path)!r}: unsupported version")
    models = document.get("models")
    require(isinstance(models, dict) and models, f"latency profile {str(path)!r} lists no models")
    out = {}
    for name, entry in models.items():
        where = f"latency profile {str(path)!r}, model {name!r}"
        require(isinstance(entry, dict) and isinstance(entry.get("points"), list) and entry["points"],
                f"{where}: no points")
        out[name] = {**{k: v for k, v in entry.items() if k != "points"},
                     "points": [_point(p, where) for p in entry["points"]]}
    return out


def _read_csv(text: str, where: str) -> dict[str, dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    required = {"model", "num_tokens", "median_s"}
    require(reader.fieldnames is not None and required <= set(reader.fieldnames),
            f"latency profile {where!r}: CSV needs columns {', '.join(sorted(required))}")
    quantile_cols = [c for c in reader.fieldnames if c.startswith("p") and c.endswith("_s") and c[1:-2].isdigit()]
    out: dict[str, dict[str, Any]] = {}
    for row in reader:
        raw = {"num_tokens": row["num_tokens"], "context_len": row.get("context_len") or 0, "median_s": row["median_s"],
               "quantiles_s": {int(c[1:-2]) / 100: row[c] for c in quantile_cols if row.get(c)}}
        out.setdefault(row["model"], {"points": []})["points"].append(_point(raw, where))
    require(out, f"latency profile {where!r} has no rows")
    return out


def load_profile(path: str | Path, model: str | None = None, jitter: str = "none", spec: str = "") -> ProfileLatency:
    """One model's ProfileLatency; `model` may be omitted when the file holds exactly one. `spec`: the text it
    was named by (default: profile:PATH#MODEL, @quantiles with jitter)."""
    return pick_profile(read_profiles(path), path, model, jitter, spec)


def load_profiles(path: str | Path) -> dict[str, ProfileLatency]:
    """Every model of a profile file as its ProfileLatency (the file read once)."""
    return {name: entry_latency(path, name, entry) for name, entry in read_profiles(path).items()}


def pick_profile(models: Mapping[str, Mapping[str, Any]], path: str | Path, model: str | None = None,
                 jitter: str = "none", spec: str = "") -> ProfileLatency:
    """`load_profile` from the file's entries as `read_profiles` returned them (for a caller taking several)."""
    if model is None:
        require(len(models) == 1, f"latency profile {str(path)!r} holds {', '.join(models)}: name one with #MODEL")
        model = next(iter(models))
    require(model in models, f"latency profile {str(path)!r} has no model {model!r} (has {', '.join(models)})")
    return entry_latency(path, model, models[model], jitter, spec)


def entry_latency(path: str | Path, model: str, entry: Mapping[str, Any], jitter: str = "none",
                  spec: str = "") -> ProfileLatency:
    """A model's entry of a profile file (as `read_profiles` returns it) as its ProfileLatency."""
    spec = spec or f"profile:{path}#{model}" + ("@quantiles" if jitter == "quantiles" else "")
    return ProfileLatency(tuple(entry["points"]), name=model, jitter=jitter, spec=spec)  # type: ignore[arg-type]


_DEVICE = re.compile(r"(cpu|cuda(:\d+)?)(,cuda(:\d+)?)*")


def devices_needed(entry: Mapping[str, Any]) -> int | None:
    """How many devices one copy of the profiled model ran on: the imported logs' `devices`, or the device group
    `pipespec profile --device cuda:0,cuda:1` timed it on as one stage; None when the entry does not say."""
    devices = entry.get("devices")
    if isinstance(devices, list) and devices:
        return len(devices)
    device = entry.get("device")
    if isinstance(device, str) and _DEVICE.fullmatch(device.replace(" ", "")):
        return device.count(",") + 1
    return None


def profile_document(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A profile JSON document from {model: {"points": [ProfilePoint | dict, ...], **metadata}}."""
    def as_dict(p: ProfilePoint | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(p, ProfilePoint):
            return {"num_tokens": p.num_tokens, "context_len": p.context_len, "median_s": p.median_s,
                    "quantiles_s": {str(q): s for q, s in p.quantiles_s}}
        return dict(p)

    return {"format": FORMAT, "version": VERSION,
            "models": {name: {**{k: v for k, v in entry.items() if k != "points"},
                              "points": [as_dict(p) for p in entry["points"]]} for name, entry in models.items()}}


def write_profiles(path: str | Path, models: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write atomically as JSON, or CSV when the path ends in .csv."""
    document = profile_document(models)
    if str(path).lower().endswith(".csv"):
        qs = sorted({float(q) for e in document["models"].values() for p in e["points"] for q in p["quantiles_s"]})
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["model", "num_tokens", "context_len", "median_s", *[f"p{round(q * 100):02d}_s" for q in qs]])
        for name, entry in document["models"].items():
            for p in entry["points"]:
                qmap = {float(q): s for q, s in p["quantiles_s"].items()}
                quantiles = [qmap.get(q, "") for q in qs]
                writer.writerow([name, p["num_tokens"], p["context_len"], p["median_s"], *quantiles])
        return write_text_atomic(path, buffer.getvalue())
    return write_json(path, document)
