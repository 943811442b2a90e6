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
    spread: tuple[float, float] | None = None  # (lowest, highest) of the repeats `value` is the median of

    @property
    def met(self) -> bool:
        return self._meets(self.value)

    @property
    def straddled(self) -> bool:
        """Some repeats meet the goal and some miss it: the verdict is the median's, within the machine's noise."""
        return self.spread is not None and self._meets(self.spread[0]) != self._meets(self.spread[1])

    def _meets(self, number: float) -> bool:
        return number >= self.target if self.higher_is_better else number < self.target

    def text(self, number: float) -> str:
        if self.unit == "ms":
            return f"{number * 1e3:.0f} ms"
        if self.unit == "s":
            return f"{number:.1f} s"
        if self.unit == "x":
            return f"{number:.2f}x"
        return f"{number:,.3f}" if abs(number) < 10 else f"{number:,.0f}"

    def value_text(self) -> str:
        """The value, with the range of its repeats where it is a median."""
        if self.spread is None:
            return self.text(self.value)
        return f"{self.text(self.value)} ({self.text(self.spread[0])}–{self.text(self.spread[1])})"

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<"
        noise = "; its repeats straddle the goal" if self.straddled else ""
        return f"{self.what}: {self.value_text()} (goal {sign} {self.text(self.target)}{noise})"

    def to_dict(self) -> dict:
        return {**asdict(self), "met": self.met, "straddled": self.straddled,
                "goal_text": f"{'>=' if self.higher_is_better else '<'} {self.text(self.target)}",
                "value_text": self.value_text(), "line": self.line()}


def report(script: str, goals: list[Goal]) -> list[dict]:
    """Print every goal, a warning line for each one missed (stderr); the goals as the JSON records them."""
    for goal in goals:
        if goal.met:
            print(f"{script}: {goal.line()}")
        else:
            print(f"WARNING: {script}: goal missed: {goal.line()}", file=sys.stderr)
    return [goal.to_dict() for goal in goals]


def draft_goals(rows: dict[str, dict], draft: str | None) -> list[Goal]:
    """bench_backend's goals for a trained draft (the drafts issue), from its rows: α >= 0.6 on the built-in
    prompts; the fastest PipeSpec with it >= 1.5x over AR, >= 1.25x faster than Hugging Face's assisted
    generation with the same draft, and faster than our SD with it and than Hugging Face's prompt lookup."""
    if not draft:
        return []
    label = draft.removeprefix("draft:")
    pipespec = [name for name in rows if name.startswith(f"pipespec-k2-{label}")
                or name.startswith(f"pipespec-k3-{label}")]
    if not pipespec or f"sd-{label}" not in rows:
        return []
    best = min(pipespec, key=lambda name: rows[name]["ms_per_token"])
    ms = rows[best]["ms_per_token"]
    alpha = rows[f"sd-{label}"]["alpha"][0]  # per-token acceptance at a fixed window γ (the papers' α)
    goals = [Goal(f"{draft}: α on the built-in prompts", alpha, 0.6, "", higher_is_better=True),
             Goal(f"{best}: speedup over AR", rows[best]["speedup_over_ar"], 1.5, "x", higher_is_better=True),
             Goal(f"{best}: speedup over our SD with the draft", rows[f"sd-{label}"]["ms_per_token"] / ms, 1.0, "x",
                  higher_is_better=True)]
    if f"hf-assisted-{label}" in rows:
        goals.append(Goal(f"{best}: speedup over HF assisted generation with the draft",
                          rows[f"hf-assisted-{label}"]["ms_per_token"] / ms, 1.25, "x", higher_is_better=True))
    if "hf-prompt-lookup" in rows:
        goals.append(Goal(f"{best}: speedup over HF prompt lookup", rows["hf-prompt-lookup"]["ms_per_token"] / ms,
                          1.0, "x", higher_is_better=True))
    lossless = all(row["output_equals_target_greedy"] for row in rows.values())
    goals.append(Goal("every output lossless (1 = yes)", float(lossless), 1.0, "", higher_is_better=True))
    return goals
