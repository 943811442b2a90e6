"""Benchmark real decoding on this machine; writes JSON (medians over repeats, measured in one run).

On the built-in target (SmolLM2-135M-Instruct, fp32), the same prompts, greedy, 2-core CPU:
  ar                     our KV-cached autoregressive loop, 2 threads
  hf-generate            Hugging Face generate(), 2 threads
  hf-prompt-lookup       Hugging Face generate(prompt_lookup_num_tokens=γ), 2 threads
  hf-assisted-int8       Hugging Face generate(assistant_model=smollm2-int8), 2 threads
  hf-assisted-DRAFT      the same with the trained separate draft (when built; a feature draft reads the
                         target's hidden states, which generate(assistant_model=...) does not hand over)
  sd-*                   our synchronous SD, 2 threads
  pipespec-k2-*, -k3*    our asynchronous pipeline, one process per stage pinned to a core (1 thread
                         each; a model-free n-gram stage shares core 0)
The configurations are `pipespec validate`'s (validation/setups.py); repeats are interleaved across
schemes so that drifts in the machine's load hit all alike. Every output is checked to be the target's
own greedy output. For our schemes the closed forms predict decode ms/token from the run's measured
per-token α and a latency profile taken in the same run, a round of it before each round of runs
(`validation.predict.closed_form_ms`, `validation.profiling.Profiling`).
ms/token here is overall (prefill included); decode ms/token leaves out the time to first token.

    .venv/bin/python benchmarks/bench_backend.py [--limit 6] [--max-new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from goals import draft_goals, report
from tqdm import tqdm

from pipespec.acceptance import Bernoulli
from pipespec.backend.loading import load_model
from pipespec.backend.models import names_feature_draft, quiet_transformers, resolve
from pipespec.commands.validate import built_draft, built_drafts
from pipespec.interference import Watch, disturbed, warning
from pipespec.io import result_document, write_json, write_text_atomic
from pipespec.validation.backend import measure_once
from pipespec.validation.predict import closed_form_ms, planning_inputs
from pipespec.validation.profiling import Profiling
from pipespec.validation.setups import Setup, Workload, builtin_setups, prepare


def table(rows: dict[str, dict], setups: list, assisted: list[str]) -> str:
    """The rows as CSV, each named by scheme (ar, sd, pipespec, hf, hf-assisted, hf-lookup) and its chain as
    `run --chain` takes it, so that rows compare with each other."""
    chains = {s.name: (s.scheme, " ".join(s.chain)) for s in setups}
    chains |= {"hf-generate": ("hf", "smollm2"), "hf-prompt-lookup": ("hf-lookup", "ngram smollm2"),
               "hf-assisted-int8": ("hf-assisted", "smollm2-int8 smollm2")}
    for draft in assisted:
        chains[f"hf-assisted-{draft.removeprefix('draft:')}"] = ("hf-assisted", f"{draft} smollm2")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["scheme", "chain", "alpha", "ms_per_token", "speedup_over_ar", "lossless", "name",
                     "decode_ms_per_token", "predicted_decode_ms_per_token", "disturbed"])
    for name, row in rows.items():
        scheme, chain = chains[name]
        alpha = " ".join("" if a is None else f"{a:.3f}" for a in row.get("alpha", []))
        writer.writerow([scheme, chain, alpha, f"{row['ms_per_token']:.2f}", f"{row['speedup_over_ar']:.3f}",
                         row["output_equals_target_greedy"], name,
                         f"{row['decode_ms_per_token']:.2f}" if "decode_ms_per_token" in row else "",
                         f"{row['predicted_decode_ms_per_token']:.2f}" if "predicted_decode_ms_per_token" in row
                         else "", row["disturbed"]])
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--draft", default="auto", help="draft:NAME, auto (the built ones: the separate draft with "
                        "the highest α and every feature draft) or none")
    parser.add_argument("--draft-caps", type=int, nargs="*", default=[],
                        help="also run PipeSpec with the draft capped at these drafts per verification")
    parser.add_argument("--output", default="results/bench_backend.json")
    parser.add_argument("--table", default="figures/out/bench_backend.csv",
                        help="the comparison table (scheme,chain,alpha,ms_per_token,speedup_over_ar,lossless,...)")
    args = parser.parse_args()
    quiet_transformers()
    draft = built_draft() if args.draft == "auto" else (None if args.draft == "none" else args.draft)
    feature_drafts = built_drafts("eagle") if args.draft == "auto" else []
    if draft and names_feature_draft(draft):
        draft, feature_drafts = None, [draft]
    drafts = [draft] * bool(draft) + feature_drafts
    setups = builtin_setups(args.gamma, draft, feature_drafts=feature_drafts)
    for name in drafts:
        label = name.removeprefix("draft:")
        setups += [Setup(f"pipespec-k2-{label}-max{cap}", "pipespec", (name, "smollm2"), (1, 1), ("0", "1"),
                         max_drafts=cap) for cap in args.draft_caps]
    workload = prepare(Workload(None, args.limit, args.max_new_tokens, repeats=1))
    torch.set_num_threads(2)
    target = load_model(resolve("smollm2"), "cpu")
    assistants = {"int8": load_model(resolve("smollm2-int8"), "cpu")}
    if draft:  # (HF's assisted generation cannot take a feature draft: it hands over no hidden states)
        assistants[draft.removeprefix("draft:")] = load_model(resolve(draft), "cpu")

    def hf(**kwargs):
        def decode(ids):
            start = time.perf_counter()
            out = target.generate(torch.tensor([ids]), max_new_tokens=args.max_new_tokens, do_sample=False,
                                  eos_token_id=workload.eos, pad_token_id=workload.eos, **kwargs)
            return out[0, len(ids):].tolist(), time.perf_counter() - start
        return decode

    baselines = {"hf-generate": hf(), "hf-prompt-lookup": hf(prompt_lookup_num_tokens=args.gamma)}
    baselines |= {f"hf-assisted-{name}": hf(assistant_model=model) for name, model in assistants.items()}
    ms: dict[str, list[float]] = {name: [] for name in [s.name for s in setups] + list(baselines)}
    decode_ms: dict[str, list[float]] = {s.name: [] for s in setups}
    outputs: dict[str, list[list[int]]] = {}
    alphas: dict[str, list[float | None]] = {}
    for decode in baselines.values():
        decode(workload.encoded[0])  # warm-up
    profiling = Profiling(setups, workload, rounds=args.repeats)
    interference: dict[str, list[float | None]] = {name: [] for name in ms}
    for _ in tqdm(range(args.repeats), desc="repeats", file=sys.stderr):
        profiling.round(lambda it, **_: it)  # the profile sees the machine as the round's runs do
        for setup in setups:
            measured = measure_once(setup, workload)
            interference[setup.name].append(measured["interference"])
            ms[setup.name].append(measured["ms_per_token"])
            decode_ms[setup.name].append(measured["decode_ms_per_token"])
            outputs[setup.name] = measured["outputs"]
            alphas[setup.name] = [p["alpha_estimate"] for p in measured["pairs"]]
        for name, decode in baselines.items():
            with Watch() as watch:
                runs = [decode(ids) for ids in workload.encoded]
            interference[name].append(watch.share)
            ms[name].append(sum(t for _, t in runs) / sum(len(o) for o, _ in runs) * 1e3)
            outputs[name] = [o for o, _ in runs]
    reference = outputs["ar"]
    profile_path = Path(args.output).with_suffix(".profile.json")
    profiling.write(profile_path)
    ngram_s = profiling.ngram_s
    ar = statistics.median(ms["ar"])
    rows = {}
    for name, values in ms.items():
        row = {"ms_per_token": statistics.median(values), "tokens_per_s": 1e3 / statistics.median(values),
               "speedup_over_ar": ar / statistics.median(values), "repeats_ms_per_token": values,
               "output_equals_target_greedy": outputs[name] == reference,
               "repeats_interference": interference[name], "disturbed": disturbed(interference[name])}
        setup = next((s for s in setups if s.name == name), None)
        if setup is not None:
            row["decode_ms_per_token"] = statistics.median(decode_ms[name])
            row["alpha"] = alphas[name]
            if setup.scheme != "ar" and all(a is not None for a in alphas[name]):
                inputs = planning_inputs(setup, profile_path, None, ngram_s, workload.context,
                                         acceptance=[Bernoulli(a) for a in alphas[name]])
                row["predicted_decode_ms_per_token"] = closed_form_ms(setup, inputs, workload.max_lead)
                row["prediction_error"] = row["predicted_decode_ms_per_token"] / row["decode_ms_per_token"] - 1
        rows[name] = row
    config = {**vars(args), "draft": draft, "feature_drafts": feature_drafts, "cores": len(os.sched_getaffinity(0)),
              "hf_assisted_skipped": {name: "a feature draft reads the target's hidden states, which Hugging Face's "
                                      "generate(assistant_model=...) does not hand over" for name in feature_drafts},
              "setups": [vars(s) for s in setups], "baseline_threads": 2,
              "max_lead": workload.max_lead, "ngram_cost_s": ngram_s}
    document = result_document("bench_backend", config, rows, device="cpu")
    goals = list({goal.what: goal for name in drafts for goal in draft_goals(rows, name)}.values())  # one lossless
    write_json(Path(args.output), {**document, "goals": report("bench_backend", goals)})
    write_text_atomic(args.table, table(rows, setups, [draft] * bool(draft)))
    for name, row in rows.items():
        predicted = (f"  closed form {row['predicted_decode_ms_per_token']:.1f} vs decode "
                     f"{row['decode_ms_per_token']:.1f} ({row['prediction_error']:+.0%}), α "
                     + ", ".join(f"{a:.3f}" for a in row["alpha"])) if "prediction_error" in row else ""
        print(f"{name:24s} {row['ms_per_token']:7.2f} ms/token  {row['speedup_over_ar']:.2f}x  "
              f"lossless={row['output_equals_target_greedy']}{predicted}")
    message = warning("bench_backend", "the benchmark", [s for v in interference.values() for s in v]
                      + profiling.interference)
    if message:
        print(message, file=sys.stderr)
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
