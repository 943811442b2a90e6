"""What a simulation returns: data only (the CLI and figures decide what to write)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..metrics import RunResult

Kind = Literal["generate", "verify", "forward", "aborted", "discarded"]  # forward: a layer-pipeline stage


@dataclass
class Event:
    """One forward of a stage on the timeline (`timeline=True`), in simulated seconds."""

    stage: int
    start_s: float
    end_s: float
    kind: Kind
    num_tokens: int


@dataclass
class SimResult(RunResult):
    timeline: list[Event] | None = None

    def to_chrome_trace(self, run_id: int = 0, run_name: str | None = None) -> dict[str, Any]:
        """Chrome/Perfetto trace: pid = run, tid = stage, one complete event per forward (µs)."""
        if self.timeline is None:
            raise ValueError("no timeline recorded: simulate with timeline=True")
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": run_id, "args": {"name": run_name or self.scheme}}]
        events += [{"name": "thread_name", "ph": "M", "pid": run_id, "tid": i, "args": {"name": s.name}}
                   for i, s in enumerate(self.stages)]
        events += [{"name": e.kind, "cat": e.kind, "ph": "X", "pid": run_id, "tid": e.stage,
                    "ts": e.start_s * 1e6, "dur": (e.end_s - e.start_s) * 1e6, "args": {"num_tokens": e.num_tokens}}
                   for e in sorted(self.timeline, key=lambda e: (e.start_s, e.stage))]
        return {"traceEvents": events, "displayTimeUnit": "ms"}
