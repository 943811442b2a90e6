"""Benchmark the pipelines' two transports on this machine in one run; writes JSON (medians over repeats).

The same PipeSpec pipelines as `pipespec validate` (built-in target SmolLM2-135M-Instruct, fp32, greedy, one
process per stage pinned to a core, 1 thread each), decoded with `--transport shm` (seqlocked shared memory) and
`--transport dist` (ranks of a gloo process group on 127.0.0.1, the engine starting them):
  2 stages   smollm2-int8 -> smollm2                    (cores 0, 1)
  3 stages   ngram -> smollm2-int8 -> smollm2           (cores 0, 0, 1)
Repeats are interleaved across configurations, so that drifts in the machine's load hit all alike. Every output is
checked against the target's own greedy output (AR, measured in the same run). Reported: decode ms/token (time to
first token left out), its ratio dist / shm per depth, and the difference in ms per token.

    .venv/bin/python benchmarks/bench_transport.py [--limit 6] [--max-new-tokens 64] [--repeats 3]
                                                   [--output figures/out/bench/bench_transport.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from tqdm import tqdm

from pipespec.backend.runner import RunConfig, run
from pipespec.interference import Watch, disturbed, warning
from pipespec.io import result_document, write_json
from pipespec.validation.backend import decode_ms_per_token

CHAINS = {2: (("smollm2-int8", "smollm2"), ("0", "1")), 3: (("ngram", "smollm2-int8", "smollm2"), ("0", "0", "1"))}
TRANSPORTS = ("shm", "dist")


def configs(args: argparse.Namespace) -> dict[str, RunConfig]:
    shared = {"limit": args.limit, "max_new_tokens": args.max_new_tokens, "warmup": 1}
    out = {"ar": RunConfig(scheme="ar", chain=("smollm2",), threads=(1,), **shared)}
    for depth, (chain, cpus) in CHAINS.items():
        for transport in TRANSPORTS:
            out[f"k{depth}-{transport}"] = RunConfig(scheme="pipespec", chain=chain, cpus=cpus, threads=(1,),
                                                     transport=transport, **shared)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="results/bench_transport.json")
    args = parser.parse_args()
    runs = configs(args)
    measured: dict[str, list[float]] = {name: [] for name in runs}
    shares: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, list] = {}
    for r in range(args.repeats):
        for name, config in tqdm(list(runs.items()), desc=f"round {r + 1}/{args.repeats}", file=sys.stderr):
            with Watch() as watch:
                result = run(config)
            assert result is not None
            measured[name].append(decode_ms_per_token(result["prompts"]))
            shares[name].append(watch.share)
            outputs.setdefault(name, [p["output_ids"] for p in result["prompts"]])
    rows = {}
    for name in runs:
        rows[name] = {"decode_ms_per_token": statistics.median(measured[name]), "repeats_ms": measured[name],
                      "lossless": outputs[name] == outputs["ar"], "repeats_interference": shares[name],
                      "disturbed": disturbed(shares[name])}
    depths = {}
    for depth in CHAINS:
        shm, dist = rows[f"k{depth}-shm"], rows[f"k{depth}-dist"]
        depths[str(depth)] = {"chain": list(CHAINS[depth][0]), "shm_ms": shm["decode_ms_per_token"],
                              "dist_ms": dist["decode_ms_per_token"],
                              "dist_over_shm": dist["decode_ms_per_token"] / shm["decode_ms_per_token"],
                              "difference_ms": dist["decode_ms_per_token"] - shm["decode_ms_per_token"],
                              "speedup_over_ar_shm": rows["ar"]["decode_ms_per_token"] / shm["decode_ms_per_token"],
                              "speedup_over_ar_dist": rows["ar"]["decode_ms_per_token"] / dist["decode_ms_per_token"]}
    config = dict(vars(args))
    document = result_document("bench_transport", config, {"runs": rows, "depths": depths})
    write_json(Path(args.output), document)
    print(f"{'stages':>6}  {'shm ms/token':>12}  {'dist ms/token':>13}  {'dist/shm':>8}  {'+ms/token':>9}")
    for depth, d in depths.items():
        print(f"{depth:>6}  {d['shm_ms']:12.2f}  {d['dist_ms']:13.2f}  {d['dist_over_shm']:8.3f}  "
              f"{d['difference_ms']:9.2f}")
    print(f"ar {rows['ar']['decode_ms_per_token']:.2f} ms/token; lossless: "
          f"{all(r['lossless'] for r in rows.values())}")
    for name, row in rows.items():
        line = warning("bench_transport", name, row["repeats_interference"])
        if line is not None:
            print(line, file=sys.stderr)
        if not row["lossless"]:
            print(f"warning: {name} did not reproduce the target's greedy output", file=sys.stderr)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
