"""The GPU check (run it through gpu_check.sh, which makes this tree importable as it is on the lent machine).

`pipespec validate` on a family built on the device: a random tiny Llama target with 24 layers, a 2-layer draft
of another seed, PPSD exiting after the target's own first 6 layers. Prompts are the built-in prompts' token ids
(benchmarks/gpu_check_prompts.jsonl, encoded with the built-in target's chat template), so no tokenizer is read.
Every configuration's output must be the target's greedy tokens; the table sets the simulator's and the closed
forms' decode ms/token beside the measured. --quick: small models and one repeat (the CPU test of this path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
PROMPTS = REPO / "benchmarks" / "gpu_check_prompts.jsonl"
class Size(NamedTuple):
    target: str
    draft: str
    exit_layer: int  # PPSD's exit, after this many of the target's layers
    limit: int  # prompts
    tokens: int  # per prompt
    repeats: int
    seeds: int  # simulator seeds


SIZES = {"full": Size("tiny:1:24:1024", "tiny:2:2:1024", 6, 6, 64, 3, 3),
         "quick": Size("tiny:1:4:64", "tiny:2:1:64", 2, 2, 12, 1, 1)}
KEPT = ("profile.json", "traces.json", "validate.png")  # beside the JSON and table (a lent machine returns 8 files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0", help="cuda:N, or cpu (default: cuda:0)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "results/gpu_check",
                        help="output folder (default: $OUT where set, else results/gpu_check)")
    parser.add_argument("--quick", action="store_true", help="small models, one repeat")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:  # validate's own files; the kept ones are copied
        return check(args.device, size, Path(args.out).resolve(), Path(tmp))


def check(device: str, size: Size, out: Path, work: Path) -> int:
    """validate on the size's family on `device`, its files in `work`; the verdict and kept files to `out`."""
    e = size.exit_layer
    command = [sys.executable, "-m", "pipespec", "validate", "--target", size.target, "--draft", size.draft,
               "--ppsd-exits", str(e), "--configs", "sd", "pipespec-k2", f"ppsd-exit{e}",
               "--prompts", str(PROMPTS), "--limit", str(size.limit), "--max-new-tokens", str(size.tokens),
               "--repeats", str(size.repeats), "--seeds", str(size.seeds), "--device", device, "--out", str(work)]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    started = time.perf_counter()
    # from a folder without this tree's pipespec/ in it: `-m` puts the working folder first on the path, and the
    # tree's pipespec/ alone (without sim/, backend/, ...) would shadow the layout gpu_check.sh links together
    code = subprocess.run(command, check=False, cwd=work).returncode
    if code != 0:
        print(f"gpu_check: validate failed (exit {code})", file=sys.stderr)
        return code
    from pipespec.io import write_json, write_text_atomic

    document = json.loads((work / "validate.json").read_text(encoding="utf-8"))
    rows = document["results"]["rows"]
    lossy = [r["config"] for r in rows if r.get("lossless") is not True]
    worst = max(rows, key=lambda r: abs(r["sim_error"]))
    document["check"] = {"command": command, "wall_time_s": time.perf_counter() - started, "lossless": not lossy,
                         "not_lossless": lossy, "worst_sim_error": {worst["config"]: worst["sim_error"]}}
    gpu = document.get("environment", {}).get("device_name") or device
    verdict = "all" if not lossy else "NOT " + ", ".join(lossy)
    header = (f"# GPU check on {gpu}\n\n{size.target} (target) with {size.draft} (draft), PPSD exit after layer {e}; "
              f"{size.limit} prompts x {size.tokens} tokens, {size.repeats} repeat(s). Lossless: {verdict}.\n\n")
    out.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        shutil.copyfile(work / name, out / name)
    document["results"]["profile"], document["results"]["traces"] = str(out / KEPT[0]), str(out / KEPT[1])
    write_json(out / "gpu_check.json", document)
    write_text_atomic(out / "gpu_check.md", header + (work / "validate.md").read_text(encoding="utf-8"))
    print(f"gpu_check: wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}; lossless: {verdict}", file=sys.stderr)
    return 0 if not lossy else 1


if __name__ == "__main__":
    sys.exit(main())
