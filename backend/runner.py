"""`pipespec run`: decode a prompt set with one scheme on one chain and measure it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..config import option
from ..errors import check_int, require
from ..metrics import PairStats, RunResult, StageStats
from .engines import DecodeOptions, PromptResult, decode_ar, decode_sd
from .models import ModelRef, check_shared_tokenizer, context_limit, load_tokenizer, resolve
from .prompts import Prompt, encode, load_prompts

SCHEMES = ("ar", "sd", "pipespec")


@dataclass(frozen=True)
class RunConfig:
    scheme: str = option("sd", "ar | sd | pipespec", choices=SCHEMES)
    chain: tuple[str, ...] = option(("ngram", "smollm2"), "models, draft first, target last: smollm2 (built-in), "
                                    "draft:NAME (built by `pipespec models build`), ngram[:N] (prompt lookup), "
                                    "tiny:SEED[:LAYERS[:HIDDEN]] (random, for tests) or a local HF folder")
    prompts: str | None = option(None, "JSONL of {\"id\", \"prompt\"} or {\"id\", \"input_ids\"} (default: built-in)")
    limit: int | None = option(None, "use the first N prompts")
    max_new_tokens: int = option(128, "tokens to generate per prompt")
    temperature: float = option(0.0, "0: greedy (lossless); > 0: sampling, verified by speculative sampling")
    seed: int = option(0, "sampling seed")
    gamma: int = option(5, "sd: drafts per verification (initial window for --schedule dynamic)")
    schedule: str = option("fixed", "sd: fixed, or dynamic (+2 after a full acceptance, -1 otherwise)",
                           choices=("fixed", "dynamic"))
    max_drafts: int | None = option(None, "pipespec: cap on drafts a verification scores (default: all)")
    max_lead: int = option(32, "pipespec: tokens a stage may run ahead of its verifier before it waits")
    device: str = option("cpu", "device of every stage: cpu or cuda:N")
    devices: tuple[str, ...] = option((), "pipespec: one device per stage (overrides --device)")
    threads: tuple[int, ...] = option((), "torch threads: one value, or one per stage for pipespec "
                                      "(default: all cores for ar/sd; split over stages for pipespec)")
    cpus: tuple[str, ...] = option((), "pipespec on CPUs: cores per stage, e.g. 0 1 or 0 0,1 (default: unpinned)")
    warmup: int = option(1, "prompts decoded first and left out of the measurements")
    dtype: str = option("float32", "weights' dtype", choices=("float32", "bfloat16", "float16"))
    chat_template: bool = option(True, "wrap text prompts in the target's chat template")

    def __post_init__(self) -> None:
        require(self.scheme in SCHEMES, f"--scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        require(len(self.chain) >= (1 if self.scheme == "ar" else 2),
                f"--chain: scheme {self.scheme} needs {'a target' if self.scheme == 'ar' else 'at least 2 models'}")
        check_int("--max-new-tokens", self.max_new_tokens, 1)
        check_int("--gamma", self.gamma, 1)
        check_int("--max-lead", self.max_lead, 1)
        check_int("--warmup", self.warmup, 0)
        if self.limit is not None:
            check_int("--limit", self.limit, 1)
        if self.max_drafts is not None:
            check_int("--max-drafts", self.max_drafts, 1)
        require(self.temperature >= 0, f"--temperature must be >= 0, got {self.temperature}")
        for device in (self.device, *self.devices):
            check_device(device)
        require(not self.devices or len(self.devices) == len(self.chain),
                f"--devices: give one per model ({len(self.chain)}), got {len(self.devices)}")
        require(len(self.threads) in (0, 1) or len(self.threads) == len(self.chain),
                f"--threads: give one value or one per model ({len(self.chain)})")
        for t in self.threads:
            check_int("--threads", t, 1)
        require(not self.cpus or len(self.cpus) == len(self.chain), "--cpus: give one core set per model")
        for spec in self.cpus:
            require(all(part.isdigit() for part in spec.split(",")),
                    f"--cpus: expected core numbers like 0,1, got {spec!r}")
        require(self.chain[-1].split(":")[0] != "ngram", "--chain: the target (last) must be a model")
        require(all(not s.startswith("ngram") for s in self.chain[1:]), "--chain: ngram can only be the first stage")


def check_device(device: str) -> None:
    import torch

    if device == "cpu":
        return
    kind, _, index = device.partition(":")
    require(kind == "cuda" and (index == "" or index.isdigit()),
            f"--device: unknown device {device!r}; use cpu or cuda:N")
    require(torch.cuda.is_available(), f"--device {device}: CUDA is not available on this machine")
    require(index == "" or int(index) < torch.cuda.device_count(),
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")


def _aggregate(scheme: str, results: list[PromptResult]) -> RunResult:
    stages = [StageStats(s.name) for s in results[0].stages]
    pairs = [PairStats(p.name) for p in results[0].pairs]
    for result in results:
        for total, stats in zip(stages, result.stages, strict=True):
            total.add(stats)
        for total, pair in zip(pairs, result.pairs, strict=True):
            total.add(pair)
    return RunResult(scheme, sum(len(r.output) for r in results), sum(r.elapsed_s for r in results), stages, pairs)


def _threads(config: RunConfig, stage_count: int) -> list[int]:
    if config.threads:
        return list(config.threads) * (stage_count if len(config.threads) == 1 else 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return [max(1, cores // stage_count)] * stage_count


def run(config: RunConfig, progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it) -> dict[str, Any]:
    """Decode the prompt set; returns per-prompt rows and the aggregate summary (data only)."""
    import torch

    refs = [resolve(spec) for spec in config.chain]
    if config.scheme == "ar":
        refs = refs[-1:]
    check_shared_tokenizer(refs)
    prompts: list[Prompt] = load_prompts(config.prompts, config.limit)
    tokenizer = load_tokenizer(refs[-1]) if any(p.input_ids is None for p in prompts) else None
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    options = DecodeOptions(config.max_new_tokens, config.gamma, config.schedule == "dynamic", config.max_drafts,
                            config.max_lead, eos)
    encoded = [(p, encode(p, tokenizer, config.chat_template)) for p in prompts]
    limit = context_limit(refs[-1])
    for prompt, ids in encoded:
        require(len(ids) + config.max_new_tokens <= limit,
                f"prompt {prompt.id!r}: {len(ids)} tokens + --max-new-tokens {config.max_new_tokens} exceed the "
                f"target's context of {limit} tokens")
    warmup = [ids for _, ids in encoded[: config.warmup]]
    rows, measured = [], []
    decode, close = _decoder(config, refs, options)
    try:
        for ids in warmup:
            decode(ids)
        for prompt, ids in progress(encoded):
            result = decode(ids)
            measured.append(result)
            rows.append({"id": prompt.id, "task": prompt.task, "prompt_tokens": len(ids),
                         "new_tokens": len(result.output), "elapsed_s": result.elapsed_s, "ttft_s": result.ttft_s,
                         "ms_per_token": result.elapsed_s / max(1, len(result.output)) * 1e3,
                         "output_ids": result.output,
                         "output_text": tokenizer.decode(result.output) if tokenizer is not None else None})
    finally:
        close()
    summary = _aggregate(config.scheme, measured).summary()
    ttfts = sorted(r["ttft_s"] for r in rows)
    summary["median_ttft_s"] = ttfts[len(ttfts) // 2]
    summary["threads"] = _threads(config, len(refs)) if config.scheme == "pipespec" else \
        [config.threads[0] if config.threads else torch.get_num_threads()]
    return {"summary": summary, "prompts": rows}


def _decoder(config: RunConfig, refs: list[ModelRef], options: DecodeOptions) -> tuple[Callable, Callable]:
    """(decode(prompt_ids) -> PromptResult, close()) for the configured scheme."""
    import torch

    if config.scheme == "pipespec":
        from .pipeline import PipelineEngine, Placement

        devices = list(config.devices) or [config.device] * len(refs)
        threads = _threads(config, len(refs))
        cpus = [tuple(int(c) for c in spec.split(",")) for spec in config.cpus] or [()] * len(refs)
        placements = [Placement(d, t, c) for d, t, c in zip(devices, threads, cpus, strict=True)]
        engine = PipelineEngine(refs, placements, options, temperature=config.temperature,
                                seed=config.seed).__enter__()
        return engine.decode, engine.close
    from .stages import build_stage

    if config.threads:
        torch.set_num_threads(config.threads[0])
    stages = [build_stage(ref, f"M{i}:{ref.spec}", config.device, config.temperature, config.seed + i)
              for i, ref in enumerate(refs)]
    engine = decode_ar if config.scheme == "ar" else decode_sd

    def decode(ids: list[int]) -> PromptResult:
        for stage in stages:
            stage.stats = StageStats(stage.stats.name)
        started = time.perf_counter()
        result = engine(stages, ids, options)
        if result.elapsed_s <= 0:
            result.elapsed_s = time.perf_counter() - started
        return result

    return decode, lambda: None


def config_dict(config: RunConfig) -> dict[str, Any]:
    return asdict(config)

