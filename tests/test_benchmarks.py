"""The benchmarks' goals and the README table built from their results (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from goals import Goal, draft_goals  # noqa: E402


def test_a_goal_is_met_on_the_right_side_of_its_target():
    assert Goal("t", 0.5, 1.0, "s").met and not Goal("t", 1.0, 1.0, "s").met
    assert Goal("r", 0.1, 0.1, "", higher_is_better=True).met
    assert not Goal("r", 0.09, 0.1, "", higher_is_better=True).met
    assert Goal("t", 0.079, 1.0, "ms").line() == "t: 79 ms (goal < 1000 ms)"


def _row(ms: float, ar: float, alpha: float | None = None, lossless: bool = True) -> dict:
    row = {"ms_per_token": ms, "speedup_over_ar": ar / ms, "output_equals_target_greedy": lossless}
    return row | ({"alpha": [alpha]} if alpha is not None else {})


def test_draft_goals_compare_the_fastest_pipespec_with_the_draft_against_each_baseline():
    rows = {"ar": _row(80, 80), "hf-prompt-lookup": _row(70, 80), "sd-d": _row(100, 80, 0.4),
            "hf-assisted-d": _row(120, 80), "pipespec-k2-d": _row(60, 80, 0.45),
            "pipespec-k2-d-max4": _row(50, 80, 0.5),
            "pipespec-k3-d": _row(90, 80, 0.3, lossless=False)}
    goals = {g.what: g for g in draft_goals(rows, "draft:d")}
    assert goals["draft:d: α on the built-in prompts"].value == 0.4  # SD's: a fixed window
    assert goals["pipespec-k2-d-max4: speedup over AR"].value == 80 / 50
    assert goals["pipespec-k2-d-max4: speedup over HF assisted generation with the draft"].met  # 2.4x
    assert goals["pipespec-k2-d-max4: speedup over HF prompt lookup"].value == 70 / 50
    assert not goals["every output lossless (1 = yes)"].met
    assert draft_goals(rows, None) == []


def test_readme_table_is_written_between_its_markers_and_warns_of_each_missed_goal(tmp_path):
    results = tmp_path / "bench"
    results.mkdir()
    goals = [Goal("fast", 2.0, 1.0, "s").to_dict(), Goal("ratio", 0.2, 0.1, "", higher_is_better=True).to_dict(),
             Goal("noisy", 0.11, 0.1, "", higher_is_better=True, spread=(0.09, 0.12)).to_dict()]
    (results / "bench_sim.json").write_text(json.dumps({
        "kind": "bench_sim", "environment": {"created_at": "2026-12-02T10:00:00+00:00"},
        "results": {"runs": {"a": {"disturbed": False}}}, "goals": goals}), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-table -->\nold\n<!-- /bench-table -->\nafter\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_table.py"), "--results", str(results),
                           "--readme", str(readme)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith("<!-- /bench-table -->\nafter\n") and "old" not in text
    assert "| `benchmarks/bench_sim.py` | fast | 2.0 s | < 1.0 s | **no** | 2026-12-02 |" in text
    assert "| ratio | 0.200 | >= 0.100 | yes |" in text
    assert "| noisy | 0.110 (0.090–0.120) | >= 0.100 | yes, within noise |" in text
    assert done.stderr.count("goal missed") == 1 and "fast" in done.stderr


def test_a_goal_whose_repeats_straddle_it_says_so_and_keeps_the_median_verdict():
    noisy = Goal("ratio", 0.106, 0.1, "", higher_is_better=True, spread=(0.071, 0.139))
    assert noisy.met and noisy.straddled
    assert noisy.line() == "ratio: 0.106 (0.071–0.139) (goal >= 0.100; its repeats straddle the goal)"
    clear = Goal("ratio", 0.2, 0.1, "", higher_is_better=True, spread=(0.15, 0.25))
    assert clear.met and not clear.straddled and clear.to_dict()["value_text"] == "0.200 (0.150–0.250)"
    missed = Goal("sweep", 46.0, 30.0, "s", spread=(29.0, 50.0))
    assert not missed.met and missed.straddled
