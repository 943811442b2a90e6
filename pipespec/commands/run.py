"""`pipespec run`: decode prompts with real models (AR, synchronous SD or the asynchronous pipeline)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import add_arguments, from_args
from ..table import format_table
from .common import OutputConfig, emit, subparser


def render(result: dict[str, Any]) -> str:
    s = result["summary"]
    head = (f"{s['scheme']}: {s['num_tokens']} tokens in {s['elapsed_s']:.2f} s -> {s['ms_per_token']:.2f} ms/token, "
            f"{s['tokens_per_s']:.2f} tokens/s, median time to first token {s['median_ttft_s'] * 1e3:.0f} ms")
    stages = format_table(s["stages"], [("name", "stage", "s"), ("steps", "steps", "d"),
                                        ("verify_steps", "verifies", "d"), ("busy_fraction", "busy", ".1%"),
                                        ("tokens_per_step", "tokens/step", ".3f")], "stages")
    blocks = [head, stages]
    if s["pairs"]:
        blocks.append(format_table(s["pairs"], [
            ("name", "pair", "s"), ("verifications", "verifications", "d"),
            ("acceptance_rate", "acceptance (accepted/drafted)", ".3f"), ("alpha_estimate", "α per token", ".3f"),
            ("mean_accepted_length", "τ mean accepted length", ".3f"), ("rollbacks", "rollbacks", "d")],
            "pairs (τ counts the verifier's own token)"))
    blocks.append(format_table(result["prompts"], [("id", "prompt", "s"), ("prompt_tokens", "in", "d"),
                                                   ("new_tokens", "out", "d"), ("ms_per_token", "ms/token", ".2f"),
                                                   ("ttft_s", "ttft s", ".3f")], "prompts"))
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..backend.runner import RunConfig, config_dict
    from ..backend.runner import run as run_chain

    config = from_args(RunConfig, args)
    out = from_args(OutputConfig, args)

    def progress(items: Any) -> Any:
        return tqdm(items, desc=f"{config.scheme}", unit="prompt", file=sys.stderr, disable=None)

    result = run_chain(config, progress)
    if result is None:  # a stage rank under torchrun: rank 0 writes the result
        return 0
    device = config.devices[-1] if config.devices else config.device
    emit(out, "run", {**config_dict(config), "dtype": config.dtype}, result, render(result), device=device)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from ..backend.runner import RunConfig

    parser = subparser(
        commands, "run", help="decode prompts with real models and measure",
        description="Decode a prompt set (built-in: coding, summarisation and prose prompts) with AR, "
                    "synchronous SD or the asynchronous PipeSpec pipeline on a chain of models sharing a "
                    "tokenizer. Greedy decoding is lossless: every scheme outputs the target's own greedy "
                    "tokens. Reports ms/token, tokens/s, time to first token, per-stage steps and busy share, "
                    "per-pair acceptance and mean accepted length, with the hardware, threads and versions.",
        examples="  pipespec run --scheme ar --chain smollm2\n"
                 "  pipespec run --scheme sd --chain ngram,smollm2 --gamma 8\n"
                 "  pipespec run --scheme pipespec --chain ngram draft:smollm2-l4 smollm2 --cpus 0 0 1\n"
                 "  pipespec run --scheme sd --chain ./my-draft ./my-target --device cuda:0 --prompts my.jsonl\n")
    add_arguments(parser, RunConfig, "run")
    add_arguments(parser, OutputConfig, "output")
    parser.set_defaults(handler=run)
