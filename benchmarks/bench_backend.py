"""Benchmark real decoding on this machine; writes JSON (medians over repeats, measured in one run).

Schemes, on the built-in target (SmolLM2-135M-Instruct, fp32) and the same prompts, greedy:
  ar                 our KV-cached autoregressive loop, both cores
  hf-generate        Hugging Face generate(), both cores
  hf-prompt-lookup   Hugging Face generate(prompt_lookup_num_tokens=γ), both cores
  hf-assisted-int8   Hugging Face generate(assistant_model=smollm2-int8), both cores
  sd-ngram           our synchronous SD with the n-gram drafter, both cores
  sd-int8            our synchronous SD with the int8 self-draft, both cores
  pipespec-k2        ngram -> smollm2, one process each; the target on both cores
  pipespec-k2-int8   smollm2-int8 (core 0) -> smollm2 (core 1)
  pipespec-k3        ngram -> smollm2-int8 (core 0) -> smollm2 (core 1)
Speedups are over `ar` (median ms/token over repeats), and every scheme's output is checked to be
the target's own greedy output.

    .venv/bin/python benchmarks/bench_backend.py [--limit 8] [--max-new-tokens 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from pipespec.backend.engines import DecodeOptions, decode_ar, decode_sd
from pipespec.backend.models import quiet_transformers, resolve, target_path
from pipespec.backend.pipeline import PipelineEngine, Placement
from pipespec.backend.prompts import encode, load_prompts
from pipespec.backend.stages import build_stage
from pipespec.io import result_document, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--output", default="results/bench_backend.json")
    args = parser.parse_args()
    quiet_transformers()
    from transformers import AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(target_path())
    eos = tokenizer.eos_token_id
    prompts = [encode(p, tokenizer) for p in load_prompts(None, args.limit)]
    options = DecodeOptions(args.max_new_tokens, args.gamma, eos_token_id=eos)
    target = build_stage(resolve("smollm2"), "smollm2", "cpu", 0.0)
    int8 = build_stage(resolve("smollm2-int8"), "smollm2-int8", "cpu", 0.0)
    ngram = build_stage(resolve("ngram"), "ngram", "cpu", 0.0)
    hf_target, hf_int8 = target.decoder.model, int8.decoder.model

    def hf(**kwargs):
        def decode(ids):
            x = torch.tensor([ids])
            start = time.perf_counter()
            out = hf_target.generate(x, max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eos,
                                     pad_token_id=eos, **kwargs)
            return out[0, len(ids):].tolist(), time.perf_counter() - start
        return decode

    def ours(engine, stages):
        def decode(ids):
            result = engine(stages, ids, options)
            return result.output, result.elapsed_s
        return decode

    schemes = {
        "ar": ours(decode_ar, [target]),
        "hf-generate": hf(),
        "hf-prompt-lookup": hf(prompt_lookup_num_tokens=args.gamma),
        "hf-assisted-int8": hf(assistant_model=hf_int8),
        "sd-ngram": ours(decode_sd, [ngram, target]),
        "sd-int8": ours(decode_sd, [int8, target]),
    }
    pipelines = {
        "pipespec-k2": (["ngram", "smollm2"], [Placement(threads=1), Placement(threads=2)]),
        "pipespec-k2-int8": (["smollm2-int8", "smollm2"], [Placement(threads=1, cpus=(0,)),
                                                           Placement(threads=1, cpus=(1,))]),
        "pipespec-k3": (["ngram", "smollm2-int8", "smollm2"], [Placement(threads=1, cpus=(0,)),
                                                                Placement(threads=1, cpus=(0,)),
                                                                Placement(threads=1, cpus=(1,))]),
    }
    reference = [schemes["ar"](ids)[0] for ids in prompts]
    ms_per_token: dict[str, list[float]] = {name: [] for name in [*schemes, *pipelines]}
    lossless: dict[str, bool] = {}
    for name, decode in schemes.items():
        decode(prompts[0])  # warm-up
        for _ in range(args.repeats):
            outs = [decode(ids) for ids in prompts]
            lossless[name] = lossless.get(name, True) and [o for o, _ in outs] == reference
            ms_per_token[name].append(sum(t for _, t in outs) / sum(len(o) for o, _ in outs) * 1e3)
        print(f"{name}: {statistics.median(ms_per_token[name]):.2f} ms/token", flush=True)
    for name, (chain, placements) in pipelines.items():
        with PipelineEngine([resolve(s) for s in chain], placements, options) as engine:
            engine.decode(prompts[0])  # warm-up
            for _ in range(args.repeats):
                results = [engine.decode(ids) for ids in prompts]
                lossless[name] = lossless.get(name, True) and [r.output for r in results] == reference
                ms_per_token[name].append(sum(r.elapsed_s for r in results) / sum(len(r.output) for r in results) * 1e3)
        print(f"{name}: {statistics.median(ms_per_token[name]):.2f} ms/token", flush=True)
    ar = statistics.median(ms_per_token["ar"])
    rows = {name: {"ms_per_token": statistics.median(v), "tokens_per_s": 1e3 / statistics.median(v),
                   "speedup_over_ar": ar / statistics.median(v), "repeats_ms_per_token": v,
                   "output_equals_target_greedy": lossless[name]} for name, v in ms_per_token.items()}
    config = {**vars(args), "threads_in_process": 2, "cores": len(os.sched_getaffinity(0)),
              "placements": {k: [vars(p) for p in v[1]] for k, v in pipelines.items()}}
    write_json(Path(args.output), result_document("bench_backend", config, rows, device="cpu"))
    for name, row in rows.items():
        print(f"{name:18s} {row['ms_per_token']:7.2f} ms/token  {row['speedup_over_ar']:.2f}x  "
              f"lossless={row['output_equals_target_greedy']}")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
