"""Write the README's benchmark table from the latest benchmark results, with their dates; print a warning
line for every goal they miss.

    .venv/bin/python benchmarks/readme_table.py [--results figures/out/bench] [--readme README.md]

The table sits between the README's `<!-- bench-table -->` and `<!-- /bench-table -->` lines. A result that
predates the goals in its file (bench_backend's rows) has them computed from its rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from goals import draft_goals

from pipespec.io import write_text_atomic

START, END = "<!-- bench-table -->", "<!-- /bench-table -->"
SCRIPTS = ("bench_theory", "bench_sim", "bench_logs", "bench_backend")


def goals_of(document: dict) -> list[dict]:
    if "goals" in document:
        return document["goals"]
    if document.get("kind") == "bench_backend":
        return [g.to_dict() for g in draft_goals(document["results"], document["config"].get("draft"))]
    return []


def rows(results: Path) -> tuple[list[str], list[str]]:
    lines, missed = [], []
    for script in SCRIPTS:
        path = results / f"{script}.json"
        if not path.exists():
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        date = document.get("environment", {}).get("created_at", "")[:10]
        disturbed = any(v.get("disturbed") for v in _entries(document.get("results")))
        for goal in goals_of(document):
            met = ("yes" if goal["met"] else "**no**") + (", within noise" if goal.get("straddled") else "")
            note = " (disturbed)" if disturbed else ""
            lines.append(f"| `benchmarks/{script}.py` | {goal['what']} | {goal['value_text']}{note} | "
                         f"{goal['goal_text']} | {met} | {date} |")
            if not goal["met"]:
                missed.append(f"WARNING: {script} ({date}): goal missed: {goal['line']}")
    return lines, missed


def _entries(results: object) -> list[dict]:
    """Every measurement entry of a result (those that carry a `disturbed` flag)."""
    if isinstance(results, dict):
        found = [results] if "disturbed" in results else []
        return found + [e for v in results.values() for e in _entries(v)]
    if isinstance(results, list):
        return [e for v in results for e in _entries(v)]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="figures/out/bench")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args()
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"readme_table: {readme} has no {START} ... {END} section", file=sys.stderr)
        return 2
    lines, missed = rows(Path(args.results))
    table = "\n".join(["| script | measurement | latest result | goal | met | date |",
                       "| --- | --- | ---: | --- | --- | --- |", *lines])
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(readme, f"{head}{START}\n{table}\n{END}{tail}")
    for line in missed:
        print(line, file=sys.stderr)
    print(f"-> {readme}: {len(lines)} goals, {len(missed)} missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
