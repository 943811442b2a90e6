"""The benchmarks' goals, one shape for all of them: each script records its goals in its JSON result
(`results.goals`), prints a one-line warning for every goal it misses, and `readme_table.py` builds the
README's benchmark table from the latest results.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Goal:
    what: str  # the measurement, as the README's table names it
    value: float
    target: float
    unit: str  # how value and target print: "s", "ms", "x" (a ratio), "" (a plain number)
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value < self.target

    def text(self, number: float) -> str:
        if self.unit == "ms":
            return f"{number * 1e3:.0f} ms"
        if self.unit == "s":
            return f"{number:.1f} s"
        return f"{number:,.3f}" if abs(number) < 10 else f"{number:,.0f}"

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<"
        return f"{self.what}: {self.text(self.value)} (goal {sign} {self.text(self.target)})"

    def to_dict(self) -> dict:
        return {**asdict(self), "met": self.met, "goal_text": f"{'>=' if self.higher_is_better else '<'} "
                                                             f"{self.text(self.target)}",
                "value_text": self.text(self.value)}


def report(script: str, goals: list[Goal]) -> list[dict]:
    """Print every goal, a warning line for each one missed (stderr); the goals as the JSON records them."""
    for goal in goals:
        if goal.met:
            print(f"{script}: {goal.line()}")
        else:
            print(f"WARNING: {script}: goal missed: {goal.line()}", file=sys.stderr)
    return [goal.to_dict() for goal in goals]
