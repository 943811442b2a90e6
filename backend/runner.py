"""`pipespec run`: decode a prompt set with one scheme on one chain and measure it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import option
from ..errors import check_int, check_nonnegative, require
from ..metrics import PairStats, RunResult, StageStats
from ..schemes import SCHEMES, find, get
from ..schemes.flat import SchemeConfig
from .devices import QUANTIZE, TRANSPORTS, check_device, check_quantize, loaded_facts, members
from .engines import DecodeOptions, PromptResult
from .models import ModelRef, check_feature_drafts, check_shared_tokenizer, context_limit, load_tokenizer, resolve
from .prompts import Prompt, encode, load_prompts


@dataclass(frozen=True)
class RunConfig(SchemeConfig):
    scheme_options = "run_options"  # (a class attribute: the `Scheme` attribute naming the scheme's options)
    scheme: str = option("sd", " | ".join(SCHEMES), choices=SCHEMES)
    chain: tuple[str, ...] = option(("ngram", "smollm2"), "models, draft first, target last: smollm2 (built-in), "
                                    "draft:NAME (built by `pipespec models build`), ngram[:N] (prompt lookup), "
                                    "tiny:SEED[:LAYERS[:HIDDEN]] (random, for tests) or a local HF folder")
    prompts: str | None = option(None, "JSONL of {\"id\", \"prompt\"} or {\"id\", \"input_ids\"} (default: built-in)")
    limit: int | None = option(None, "use the first N prompts")
    max_new_tokens: int = option(128, "tokens to generate per prompt")
    temperature: float = option(0.0, "0: greedy (lossless); > 0: sampling, verified by speculative sampling")
    seed: int = option(0, "sampling seed")
    device: str = option("cpu", "device of every stage: cpu, cuda:N, or a device group cuda:N,cuda:M,... over "
                         "which each model's layers are split (accelerate's balanced device map)")
    devices: tuple[str, ...] = option((), "pipelines: one device or device group per stage, e.g. cuda:0 "
                                      "cuda:1,cuda:2 (overrides --device)")
    threads: tuple[int, ...] = option((), "torch threads: one value, or one per stage for pipespec "
                                      "(default: all cores for ar/sd; split over stages for pipespec)")
    cpus: tuple[str, ...] = option((), "pipespec on CPUs: cores per stage, e.g. 0 1 or 0 0,1 (default: unpinned)")
    warmup: int = option(1, "prompts decoded first and left out of the measurements")
    dtype: str = option("float32", "weights' dtype (of every stage; the result records what each loaded)",
                        choices=("float32", "bfloat16", "float16"))
    quantize: str = option("none", "load checkpoints' weights quantised through bitsandbytes: nf4 (4-bit "
                           "NormalFloat, compute in --dtype) or int8; needs CUDA and the bitsandbytes package",
                           choices=QUANTIZE)
    transport: str = option("shm", "pipelines: how the stage processes talk: shm (shared memory, one host) or dist "
                            "(ranks of a torch.distributed gloo group: started here, or joined under torchrun, "
                            "where rank 0 coordinates and rank j + 1 runs stage j)", choices=TRANSPORTS)
    chat_template: bool = option(True, "wrap text prompts in the target's chat template")
    # the scheme's own options: an instance of its `Scheme.run_options` dataclass (default: its defaults)
    options: Any = field(default=None)

    def __post_init__(self) -> None:
        require(find(self.scheme) is not None, f"--scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        self._check_options()
        scheme = self.scheme_info
        one = scheme.target_only
        require(len(self.chain) >= (1 if one else 2),
                f"--chain: scheme {self.scheme} needs {'a target' if one else 'at least 2 models'}")
        check_int("--seed", self.seed, 0)
        require(self.transport in TRANSPORTS, f"--transport must be one of {', '.join(TRANSPORTS)}, got "
                                              f"{self.transport!r}")
        pipelined = [s for s in SCHEMES if get(s).pipelined]
        require(self.transport == "shm" or scheme.pipelined, f"--transport dist applies to the schemes that run one "
                f"process per stage ({', '.join(pipelined)}), not {self.scheme}")
        scheme.check_run(self)
        check_int("--max-new-tokens", self.max_new_tokens, 1)
        check_int("--warmup", self.warmup, 0)
        if self.limit is not None:
            check_int("--limit", self.limit, 1)
        check_nonnegative("--temperature", self.temperature)
        require(not one or len(self.chain) == 1,
                f"--chain: scheme {self.scheme} runs the target alone (ppsd drafts from its own layers; a trained "
                f"exit is --exit-draft); give only the target, got {' '.join(self.chain)}")
        for where, device in (("--device", self.device), *(("--devices", d) for d in self.devices)):
            check_device(device, where)
        stages = self.stage_count
        check_quantize(self.quantize, list(self.devices) or [self.device])
        if scheme.layer_stages:  # its stages are layer slices of the target: one device each, unquantised
            grouped = [d for d in (self.device, *self.devices) if len(members(d)) > 1]
            require(not grouped, f"--devices: scheme {self.scheme} splits the target's layers into stages itself; "
                                 f"give one device per stage, not the group {' '.join(grouped)}")
            require(self.quantize == "none", f"--quantize: scheme {self.scheme} runs layer slices of the target; "
                                             "quantised loading applies to whole models (ar, sd, pipespec)")
        require(not self.devices or len(self.devices) == stages,
                f"--devices: give one per stage ({stages}), got {len(self.devices)}")
        require(len(self.threads) in (0, 1) or len(self.threads) == stages,
                f"--threads: give one value or one per stage ({stages})")
        for t in self.threads:
            check_int("--threads", t, 1)
        require(not self.cpus or len(self.cpus) == stages, f"--cpus: give one core set per stage ({stages})")
        usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        for spec in self.cpus:
            require(all(part.isdigit() for part in spec.split(",")),
                    f"--cpus: expected core numbers like 0,1, got {spec!r}")
            require(usable is None or all(int(part) in usable for part in spec.split(",")),
                    f"--cpus: core {spec} is not one this process may use ({', '.join(map(str, usable or []))})")
        require(self.chain[-1].split(":")[0] != "ngram", "--chain: the target (last) must be a model")
        scheme.check_run_models(self)
        check_feature_drafts(self.chain, self.scheme, scheme.feature_drafts)
        require(all(not s.startswith("ngram") for s in self.chain[1:]), "--chain: ngram can only be the first stage")

    @property
    def stage_count(self) -> int:
        """Processes (pipelines) or models (in-process schemes) one placement option value is given for."""
        return self.scheme_info.run_stages(self)


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


def run(config: RunConfig, progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it) -> dict[str, Any] | None:
    """Decode the prompt set; returns per-prompt rows and the aggregate summary (data only). Under torchrun with
    --transport dist, a rank other than 0 serves its stage until rank 0 stops it, and returns None."""
    import torch

    from .channel import launched_rank

    refs = [resolve(spec) for spec in config.chain]
    if config.scheme_info.target_only:
        refs = refs[-1:]
    check_shared_tokenizer(refs)
    prompts: list[Prompt] = load_prompts(config.prompts, config.limit)
    tokenizer = load_tokenizer(refs[-1]) if any(p.input_ids is None for p in prompts) else None
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    options = DecodeOptions(config.max_new_tokens, eos_token_id=eos, **config.options.decode_values())
    rank = launched_rank() if config.transport == "dist" else None
    if rank:  # the same options as rank 0's: the stage that decides the output stops at the same EOS
        config.scheme_info.engine(config, refs, _placements(config), options).serve_rank(rank)
        return None
    encoded = [(p, encode(p, tokenizer, config.chat_template)) for p in prompts]
    limit = context_limit(refs[-1])
    for prompt, ids in encoded:
        require(len(ids) + config.max_new_tokens <= limit,
                f"prompt {prompt.id!r}: {len(ids)} tokens + --max-new-tokens {config.max_new_tokens} exceed the "
                f"target's context of {limit} tokens")
    warmup = [ids for _, ids in encoded[: config.warmup]]
    rows, measured = [], []
    loaded: list[list[dict[str, Any]]] = []  # per stage: what it loaded, read back from the models
    decode, close = _decoder(config, refs, options, loaded)
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
    summary["loaded"] = loaded
    summary["threads"] = _threads(config, config.stage_count) if config.scheme_info.pipelined else \
        [config.threads[0] if config.threads else torch.get_num_threads()]
    return {"summary": summary, "prompts": rows}


def _decoder(config: RunConfig, refs: list[ModelRef], options: DecodeOptions,
             loaded: list[list[dict[str, Any]]]) -> tuple[Callable, Callable]:
    """(decode(prompt_ids) -> PromptResult, close()) for the configured scheme; appends to `loaded` what each
    stage loaded."""
    import torch

    scheme = config.scheme_info
    if scheme.pipelined:
        engine = scheme.engine(config, refs, _placements(config), options)
        engine.__enter__()
        loaded.extend(engine.loaded[i] for i in sorted(engine.loaded))
        return engine.decode, engine.close
    from .stages import build_stage, feeds_features

    if config.threads:
        torch.set_num_threads(config.threads[0])
    stages = [build_stage(ref, f"M{i}:{ref.spec}", config.device, config.temperature, config.seed + i, config.dtype,
                          config.quantize, feeds_features(refs, i)) for i, ref in enumerate(refs)]
    loaded.extend([loaded_facts(m) for m in s.models] for s in stages)
    in_process = scheme.decode_in_process()

    def decode(ids: list[int]) -> PromptResult:
        for stage in stages:
            stage.stats = StageStats(stage.stats.name)
        started = time.perf_counter()
        result = in_process(stages, ids, options)
        if result.elapsed_s <= 0:
            result.elapsed_s = time.perf_counter() - started
        return result

    return decode, lambda: None


def _placements(config: RunConfig) -> list[Any]:
    """Where each stage process of a pipelined scheme runs."""
    from .workers import Placement

    stages = config.stage_count
    devices = list(config.devices) or [config.device] * stages
    threads = _threads(config, stages)
    cpus = [tuple(int(c) for c in spec.split(",")) for spec in config.cpus] or [()] * stages
    return [Placement(d, t, c, config.dtype, config.quantize) for d, t, c in zip(devices, threads, cpus, strict=True)]


def config_dict(config: RunConfig) -> dict[str, Any]:
    return config.to_dict()

