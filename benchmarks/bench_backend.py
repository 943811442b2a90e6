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
the target's own greedy output. For our SD and PipeSpec runs the closed forms predict ms/token from
what was measured: the per-token α (accepted / (accepted + rejections)), the mean window, and the
target's forward latency at 1 and γ+1 tokens from a profile taken in the same run.

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
from pipespec.backend.profiler import profile_latency
from pipespec.backend.prompts import encode, load_prompts
from pipespec.backend.stages import build_stage
from pipespec.io import result_document, write_json
from pipespec.latency import ProfileLatency
from pipespec.metrics import PairStats, RunResult
from pipespec.theory import pipespec as pipespec_theory
from pipespec.theory import timing


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

    last_pairs: dict[str, list[PairStats]] = {}
    draft_step_s = {"sd-int8": [], "sd-ngram": []}  # measured draft forward time per token (synchronous SD)

    def ours(engine, stages, name):
        def decode(ids):
            for stage in stages:
                stage.stats = type(stage.stats)(stage.stats.name)
            result = engine(stages, ids, options)
            last_pairs.setdefault(name, []).append(result.pairs)
            if name in draft_step_s and result.stages[0].steps:
                draft_step_s[name].append(result.stages[0].busy_s / max(1, result.stages[0].tokens_added))
            return result.output, result.elapsed_s
        return decode

    schemes = {
        "ar": ours(decode_ar, [target], "ar"),
        "hf-generate": hf(),
        "hf-prompt-lookup": hf(prompt_lookup_num_tokens=args.gamma),
        "hf-assisted-int8": hf(assistant_model=hf_int8),
        "sd-ngram": ours(decode_sd, [ngram, target], "sd-ngram"),
        "sd-int8": ours(decode_sd, [int8, target], "sd-int8"),
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
                last_pairs.setdefault(name, []).extend(r.pairs for r in results)
                lossless[name] = lossless.get(name, True) and [r.output for r in results] == reference
                ms_per_token[name].append(sum(r.elapsed_s for r in results) / sum(len(r.output) for r in results) * 1e3)
        print(f"{name}: {statistics.median(ms_per_token[name]):.2f} ms/token", flush=True)
    ar = statistics.median(ms_per_token["ar"])
    profile = ProfileLatency(tuple(profile_latency(hf_target, "cpu", range(1, 17), (128,), 5, 2)))
    draft_s = {k: statistics.median(v) if v else 0.0 for k, v in draft_step_s.items()}
    predictions = predict(last_pairs, profile, draft_s)
    rows = {name: {"ms_per_token": statistics.median(v), "tokens_per_s": 1e3 / statistics.median(v),
                   "speedup_over_ar": ar / statistics.median(v), "repeats_ms_per_token": v,
                   "output_equals_target_greedy": lossless[name], **predictions.get(name, {})}
            for name, v in ms_per_token.items()}
    for row in rows.values():
        if "predicted_ms_per_token" in row:
            row["prediction_error"] = row["predicted_ms_per_token"] / row["ms_per_token"] - 1
    config = {**vars(args), "threads_in_process": 2, "cores": len(os.sched_getaffinity(0)),
              "placements": {k: [vars(p) for p in v[1]] for k, v in pipelines.items()}}
    write_json(Path(args.output), result_document("bench_backend", config, rows, device="cpu"))
    for name, row in rows.items():
        predicted = (f"  predicted {row['predicted_ms_per_token']:.2f} ({row['prediction_error']:+.0%}), "
                     f"α {row['alpha']:.3f}, mean window {row['mean_window']:.2f}") if "prediction_error" in row else ""
        print(f"{name:18s} {row['ms_per_token']:7.2f} ms/token  {row['speedup_over_ar']:.2f}x  "
              f"lossless={row['output_equals_target_greedy']}{predicted}")
    print(f"-> {args.output}")


def predict(pairs_by_scheme: dict[str, list[list[PairStats]]], target: ProfileLatency,
            draft_s: dict[str, float]) -> dict[str, dict[str, float]]:
    """Closed-form ms/token from the measured per-token α and mean window of the final pair, the target's
    profiled forward latency at 1 and window+1 tokens, and (synchronous SD) the draft's measured time per
    drafted token; in PipeSpec the drafts' time overlaps the target's, as the closed form assumes."""
    out = {}
    for name, runs in pairs_by_scheme.items():
        if name == "ar" or not runs or not runs[0]:
            continue
        final = PairStats("final")
        for pairs in runs:
            final.add(pairs[-1])
        alpha = RunResult.alpha_estimate(final)
        if alpha is None or final.verifications == 0:
            continue
        window = final.drafted / final.verifications
        g = max(1, round(window))
        t_gen, t_verify = target.median_s(1, 128), target.median_s(g + 1, 128)
        if name.startswith("sd"):
            seconds = float(timing.sd_time(alpha, g, draft_s.get(name, 0.0), t_verify))
        else:
            seconds = float(timing.pipeline_time(alpha, g, t_gen, t_verify))
        out[name] = {"predicted_ms_per_token": seconds * 1e3, "alpha": alpha, "mean_window": window,
                     "predicted_rho": float(pipespec_theory.rho(alpha, g))}
    return out


if __name__ == "__main__":
    main()
