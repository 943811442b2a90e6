"""`pipespec profile`: latency profiles and acceptance traces of real models, for the simulator."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import add_arguments, from_args, option
from ..errors import check_int, require
from .common import subparser


@dataclass(frozen=True)
class ProfileConfig:
    chain: tuple[str, ...] = option(("ngram", "smollm2"), "models to profile, draft first (as for run)")
    num_tokens: tuple[int, ...] = option((1, 2, 4, 8, 16, 32, 64), "tokens per forward pass to time")
    contexts: tuple[int, ...] = option((64, 512), "cached context lengths to time at")
    repeats: int = option(7, "timed repeats per point (median and p10/p50/p90 reported)")
    warmup: int = option(2, "untimed passes before each point")
    device: str = option("cpu", "device: cpu, cuda:N, or a device group cuda:N,cuda:M,... (each model split over "
                                "it and timed as one stage; the profile records the group, and `plan` counts "
                                "its devices)")
    threads: int | None = option(None, "torch threads (default: torch's choice)")
    output: str = option("results/profile.json", "latency profile file (.json or .csv)")
    traces: str | None = option("results/traces.json", "acceptance-trace file for adjacent pairs ('' to skip)")
    prompts: str | None = option(None, "prompts for the traces (default: built-in)")
    limit: int | None = option(None, "first N prompts")
    max_new_tokens: int = option(96, "trace length per prompt (the verifier's greedy output)")

    def __post_init__(self) -> None:
        from ..backend.devices import check_device

        for n in self.num_tokens:
            check_int("--num-tokens", n, 1)
        for c in self.contexts:
            check_int("--contexts", c, 0)
        check_int("--repeats", self.repeats, 1)
        check_int("--warmup", self.warmup, 0)
        check_int("--max-new-tokens", self.max_new_tokens, 1)
        if self.threads is not None:
            check_int("--threads", self.threads, 1)
        if self.limit is not None:
            check_int("--limit", self.limit, 1)
        if self.prompts is not None:
            require(Path(self.prompts).is_file(), f"--prompts: {self.prompts!r} does not exist")
        check_device(self.device)
        require(self.output.endswith((".json", ".csv")), f"--output must end in .json or .csv, got {self.output!r}")
        require(not self.traces or self.traces.endswith(".json"), f"--traces must end in .json, got {self.traces!r}")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..backend.loading import load_model
    from ..backend.models import check_shared_tokenizer, context_limit, load_tokenizer, resolve
    from ..backend.profiler import greedy_continuation, match_bits, profile_latency
    from ..backend.prompts import encode, load_prompts
    from ..interference import Watch, warning
    from ..io import environment
    from ..profiles import write_profiles
    from ..traces import entry_trace, pair_entry, write_traces

    config = from_args(ProfileConfig, args)
    if config.threads:
        torch.set_num_threads(config.threads)
    refs = [resolve(spec) for spec in config.chain]
    check_shared_tokenizer(refs)
    prompts = load_prompts(config.prompts, config.limit) if config.traces else []  # checked before any work
    limit = context_limit(refs[-1])
    require(max(config.contexts) + max(config.num_tokens) <= limit,
            f"--contexts: {max(config.contexts)} + {max(config.num_tokens)} tokens exceed the context of {limit}")
    models = [load_model(ref, config.device) for ref in refs]
    env = environment(config.device)
    env["threads"] = torch.get_num_threads()
    profiles: dict[str, Any] = {}
    for ref, model in zip(refs, models, strict=True):
        if ref.kind == "ngram":
            continue
        bar = lambda it, name=ref.spec: tqdm(it, desc=f"latency {name}", file=sys.stderr, disable=None)  # noqa: E731
        with Watch() as watch:
            points = profile_latency(model, config.device, config.num_tokens, config.contexts, config.repeats,
                                     config.warmup, progress=bar)
        profiles[ref.spec] = {"device": config.device, "threads": env["threads"], "dtype": "float32",
                              "source": "pipespec profile", "points": points, "environment": env,
                              "config": asdict(config), "interference": watch.share, "disturbed": watch.disturbed}
    write_profiles(config.output, profiles)
    message = warning("profile", "the latency profile", [p["interference"] for p in profiles.values()])
    if message:
        print(message, file=sys.stderr)
    print(f"latency profile of {', '.join(profiles)} -> {config.output}")
    if config.traces:
        tokenizer = load_tokenizer(refs[-1]) if any(p.input_ids is None for p in prompts) else None
        eos = getattr(tokenizer, "eos_token_id", None)
        pairs: dict[str, dict[str, Any]] = {}
        for i in range(1, len(refs)):
            name = f"{refs[i - 1].spec}->{refs[i].spec}"
            matches = []
            for prompt in tqdm(prompts, desc=f"trace {name}", file=sys.stderr, disable=None):
                ids = encode(prompt, tokenizer)
                reference = greedy_continuation(models[i], config.device, ids, config.max_new_tokens, eos)
                matches.append(match_bits(models[i - 1], config.device, ids, reference, verifier=models[i]))
            pairs[name] = pair_entry(refs[i - 1].spec, refs[i].spec, matches, prompts=[p.id for p in prompts])
            trace = entry_trace(name, pairs[name])
            silent = f", silent at {sum(trace.silent) / len(trace.bits):.0%} of them" if trace.silent else ""
            print(f"trace {name}: {len(trace.bits)} positions, greedy match rate {trace.mean_alpha():.3f}"
                  f" where it proposes{silent}")
        write_traces(config.traces, pairs)
        print(f"acceptance traces -> {config.traces}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands, "profile", help="measure latency profiles and acceptance traces for the simulator",
        description="Time each model's forward pass on this device against tokens per pass and cached "
                    "context (warm-up left out, median and quantiles over repeats) and record token-level "
                    "greedy agreement between adjacent models; both in the files `pipespec simulate` reads "
                    "(--latency profile:FILE#MODEL, --acceptance trace:FILE#PAIR).",
        examples="  pipespec profile --chain ngram smollm2\n"
                 "  pipespec profile --chain tiny:1:1:64 tiny:1:3:64 --contexts 0 128 --output p.csv --traces ''\n")
    add_arguments(parser, ProfileConfig, "profile")
    parser.set_defaults(handler=run)
