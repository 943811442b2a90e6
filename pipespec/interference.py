"""How much of the machine other processes took while something was measured.

A measurement on a shared machine is only as good as the quiet it ran in. `Watch` reads, before and after,
the machine's busy CPU time (/proc/stat) and the CPU time of this process and every process it started
(/proc/PID/stat: their own time plus that of the children they have reaped), and reports the share of the
machine's CPU capacity that neither accounts for: other processes. Above `THRESHOLD` a measurement is flagged
as disturbed, in the result files and in one warning line (as pyperf does: "the results are unstable").
Where /proc is absent the share is None (unknown), never 0.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

THRESHOLD = 0.10  # of all the CPUs' capacity, used by other processes during the measurement


@dataclass(frozen=True)
class Reading:
    wall_s: float
    machine_busy_s: float | None
    ours_s: float | None


def _clock() -> int:
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float | None:
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _clock()


def _tree_s() -> float | None:
    """CPU seconds of this process and its live descendants, each with its reaped children's."""
    me, hz = os.getpid(), _clock()
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for name in entries:
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # exited meanwhile
        rest = text[text.rfind(")") + 2:].split()  # after "pid (comm) "
        parents[int(name)] = int(rest[1])
        times[int(name)] = sum(int(x) for x in rest[11:15]) / hz  # utime stime cutime cstime
    ours, frontier = {me}, [me]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in ours:
                ours.add(child)
                frontier.append(child)
    return sum(times.get(pid, 0.0) for pid in ours)


def read() -> Reading:
    return Reading(time.perf_counter(), _machine_busy_s(), _tree_s())


def other_share(start: Reading, end: Reading) -> float | None:
    """The share of the machine's CPU capacity that other processes used between two readings."""
    wall = end.wall_s - start.wall_s
    if None in (start.machine_busy_s, end.machine_busy_s, start.ours_s, end.ours_s) or wall <= 0:
        return None
    cpus = os.cpu_count() or 1
    others = (end.machine_busy_s - start.machine_busy_s) - (end.ours_s - start.ours_s)  # type: ignore[operator]
    return min(max(others / (wall * cpus), 0.0), 1.0)


class Watch:
    """`with Watch() as watch: ...` then `watch.share` (None where unknown) and `watch.disturbed`."""

    def __enter__(self) -> Watch:
        self.share: float | None = None
        self._start = read()
        return self

    def __exit__(self, *exc: object) -> None:
        self.share = other_share(self._start, read())

    @property
    def disturbed(self) -> bool:
        return self.share is not None and self.share > THRESHOLD


def disturbed(shares: list[float | None]) -> bool:
    return any(s is not None and s > THRESHOLD for s in shares)


def warning(command: str, what: str, shares: list[float | None]) -> str | None:
    """One line for stderr when any share passed the threshold, else None."""
    worst = max((s for s in shares if s is not None), default=None)
    if worst is None or worst <= THRESHOLD:
        return None
    return (f"pipespec {command}: warning: other processes used up to {worst:.0%} of the CPUs while {what} ran: "
            f"the results are unstable; rerun on a quiet machine (flagged 'disturbed' in the results)")
