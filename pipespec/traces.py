"""The acceptance-trace file format, recorded by `pipespec profile` and replayed by the simulator.

    {"format": "pipespec.acceptance-trace", "version": 1,
     "pairs": {"DRAFT->TARGET": {"draft": "...", "target": "...",
                                  "sequences": [[1, 1, 0, 1, ...], ...],
                                  "silent": [[0, 0, 0, 0, ...], ...]}}}

sequences[k][p] = 1 when the draft's greedy token for output position p of prompt k, given the
target's own greedy prefix, equals the target's token. The optional `silent` (same shape) marks the
positions where a model-free drafter proposes nothing at all (their bit is 0); a model never is.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .acceptance import Trace
from .errors import ConfigError, require
from .io import read_user_text, write_json

FORMAT = "pipespec.acceptance-trace"
VERSION = 1


def read_traces(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    require(path.is_file(), f"acceptance trace {str(path)!r} does not exist")
    try:
        document = json.loads(read_user_text(path, "acceptance trace"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"acceptance trace {str(path)!r} is not valid JSON: {exc}") from None
    require(isinstance(document, dict) and document.get("format") == FORMAT,
            f"acceptance trace {str(path)!r}: expected \"format\": \"{FORMAT}\"")
    pairs = document.get("pairs")
    require(isinstance(pairs, dict) and pairs, f"acceptance trace {str(path)!r} lists no pairs")
    for name, entry in pairs.items():
        ok = isinstance(entry, dict) and isinstance(entry.get("sequences"), list) and all(
            isinstance(s, list) for s in entry["sequences"])
        require(ok, f"acceptance trace {str(path)!r}, pair {name!r}: malformed sequences")
        silent = entry.get("silent")
        ok = silent is None or (isinstance(silent, list) and len(silent) == len(entry["sequences"]) and all(
            isinstance(s, list) and len(s) == len(b) for s, b in zip(silent, entry["sequences"], strict=True)))
        require(ok, f"acceptance trace {str(path)!r}, pair {name!r}: silent must have the shape of sequences")
    return pairs


def load_trace(path: str | Path, pair: str | None = None, spec: str = "") -> Trace:
    """One pair's Trace; `pair` may be omitted when the file holds exactly one. `spec`: the text it was named by
    (default: trace:PATH#PAIR)."""
    pairs = read_traces(path)
    if pair is None:
        require(len(pairs) == 1, f"acceptance trace {str(path)!r} holds {', '.join(pairs)}: name one with #PAIR")
        pair = next(iter(pairs))
    require(pair in pairs, f"acceptance trace {str(path)!r} has no pair {pair!r} (has {', '.join(pairs)})")
    return entry_trace(pair, pairs[pair], spec or f"trace:{path}#{pair}")


def load_traces(path: str | Path) -> dict[str, Trace]:
    """Every pair of a trace file as its Trace (the file read once)."""
    return {name: entry_trace(name, entry, f"trace:{path}#{name}") for name, entry in read_traces(path).items()}


def entry_trace(name: str, entry: Mapping[str, Any], spec: str = "") -> Trace:
    """A pair's entry as one replayable trace (its prompts' sequences concatenated)."""
    sequences = entry["sequences"]
    bits = tuple(int(b) for seq in sequences for b in seq)
    silent = tuple(int(b) for seq in entry.get("silent") or () for b in seq)
    starts = tuple(itertools.accumulate((len(seq) for seq in sequences[:-1]), initial=0))
    return Trace(bits, name=name, silent=silent, starts=starts, spec=spec)


def pair_entry(draft: str, target: str, matches: Sequence[tuple[Sequence[int], Sequence[int]]],
                **extra: Any) -> dict[str, Any]:
    """One pair's entry from per-prompt (bits, silent) as `backend.profiler.match_bits` returns them
    (`silent` is kept only when the drafter ever proposed nothing)."""
    entry: dict[str, Any] = {"draft": draft, "target": target, "sequences": [list(b) for b, _ in matches]}
    if any(any(s) for _, s in matches):
        entry["silent"] = [list(s) for _, s in matches]
    return {**entry, **extra}


def write_traces(path: str | Path, pairs: Mapping[str, Mapping[str, Any]]) -> Path:
    """pairs: {"A->B": {"draft": "A", "target": "B", "sequences": [[0/1, ...], ...], "silent": optional}}."""
    def clean(entry: Mapping[str, Any]) -> dict[str, Any]:
        bits = {k: [[int(b) for b in s] for s in entry[k]] for k in ("sequences", "silent") if entry.get(k) is not None}
        return {**entry, **bits}

    return write_json(path, {"format": FORMAT, "version": VERSION, "pairs": {k: clean(v) for k, v in pairs.items()}})
