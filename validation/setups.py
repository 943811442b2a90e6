"""The configurations `pipespec validate` measures and predicts, and the workload they all run.

A `Setup` is a scheme, a chain and where each stage runs (threads, cores); its profile keys name how each
model's latency is profiled (`profile_key`, parsed back by `ProfileKey.parse`); `builtin_setups` is the
built-in family on a 2-core CPU. A `Workload` is the prompts and decoding limits.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..schemes import get

Progress = Callable[..., Any]


# the backend's stages look for a rollback between forwards: a forward in flight runs to its end
ROLLBACK = "finish"


TARGET = "smollm2"  # the built-in target: the family's last model


@dataclass(frozen=True)
class Setup:
    """One measured configuration: scheme, chain, and where each stage runs."""

    name: str
    scheme: str  # ar | sd | pipespec | ppsd (chain: the exit "smollm2-exit:E", then the target)
    chain: tuple[str, ...]
    threads: tuple[int, ...]  # one per stage (ar/sd: one value for the process)
    cpus: tuple[str, ...] = ()  # pipespec: cores per stage ("0", "1", "0,1")
    gamma: int = 4
    max_drafts: int | None = None
    pp_stages: int = 2  # specpipe: target stages (one process each, after the draft's); ppsd: stages (predictions only)
    tree_width: int = 1
    tree_depth: int | None = None  # specpipe: levels in flight (default P); 1 is plain pipeline parallelism

    def stage_threads(self) -> tuple[int, ...]:
        """Threads of each model of the chain (a pipeline's target stages all run at the last value)."""
        if len(self.threads) == 1:
            return self.threads * len(self.chain)
        return (*self.threads[:len(self.chain) - 1], self.threads[-1])

    def trace_pair(self) -> tuple[str, str, int]:
        """(draft, verifier, width) of the acceptance trace a prediction replays, for the final pair."""
        return self.chain[-2], self.chain[-1], get(self.scheme).trace_width(self)

    @property
    def exit_layer(self) -> int:
        """ppsd: E, the target layers of the early stage (a trained exit draft's layer takes their output)."""
        from ..backend.models import resolve

        if self.chain[0].startswith("draft:"):
            from ..backend.ppsd import exit_draft_layer

            return int(exit_draft_layer(resolve(self.chain[0]))) - 1
        return resolve(self.chain[0]).params[0]  # MODEL-exit:E

    def stage_neighbours(self) -> tuple[str | None, ...]:
        """Per model of the chain, when it runs as a one-thread stage pinned to a core: the model forwarding on
        the other core at the same time (the memory system they share slows both), or None when only
        model-free stages run there (`Scheme.stage_neighbours`); unpinned: None each."""
        if not self.cpus:
            return (None,) * len(self.chain)
        return get(self.scheme).stage_neighbours(self)

    def profile_keys(self) -> tuple[str, ...]:
        return tuple(profile_key(m, t, n)
                     for m, t, n in zip(self.chain, self.stage_threads(), self.stage_neighbours(), strict=True))

    def process_parts(self) -> tuple[tuple[str, int, str | None, Process], ...]:
        """(model, threads, neighbour, process) of each process that runs part of a model (SpecPipe's), profiled
        as such to price the simulator's stages (`Scheme.process_parts`)."""
        return get(self.scheme).process_parts(self)

    def process_keys(self) -> tuple[str, ...]:
        """The profile keys of `process_parts`."""
        return tuple(profile_key(m, t, n, process.label) for m, t, n, process in self.process_parts())


@dataclass(frozen=True)
class Process:
    """What one SpecPipe process forwards (backend/specpipe.py), as `TreeStageForward` times it."""

    label: str  # in its profile key: "tree" (the draft) or "tree A-B" (target layers A..B)
    layers: range | None  # None: the whole model (the draft)
    head: str | None  # "topk" (the draft's children), "argmax" (the target's token), None (hidden rows out)


def profile_key(model: str, threads: int, neighbour: str | None = TARGET, part: str | None = None) -> str:
    """How a model's latency was profiled (`pipespec.profiles.ProfileKey`): "NAME@Nt" (a one-thread stage
    beside the built-in target forwarding on the other core, or an in-process run), "NAME@1t~OTHER" (beside
    OTHER), "NAME@1t-alone" (the other core idle), with "[PART]" when a part of it was timed as one pipeline
    process runs it (see Setup.process_parts); the n-gram drafter has no forward and keeps its name."""
    from ..profiles import ProfileKey

    if model.startswith("ngram"):
        return model
    beside = None if threads != 1 or neighbour == TARGET else (neighbour or "alone")
    return str(ProfileKey(model, threads, beside, part=part))


def builtin_setups(gamma: int = 4, draft: str | None = None, lookahead: Sequence[int] = (),
                   ppsd_exits: Sequence[int] = (), specpipe_widths: Sequence[int] = (),
                   exit_drafts: Sequence[str] = (), feature_drafts: Sequence[str] = ()) -> list[Setup]:
    """The built-in family on a 2-core CPU: in-process runs on both cores, pipelines one core per stage
    (a model-free n-gram stage shares core 0); PPSD (early and late stage on a core each; untrained exits
    after E layers, and trained exit drafts) beside SD with the same exit as its draft (the non-pipelined
    early-exit baseline); SpecPipe over 2 target stages (a core each, the draft sharing core 0) beside plain
    pipeline parallelism on them. A trained separate draft and each feature draft run in SD and a 2-stage
    PipeSpec; the separate draft also as the top of a 3-stage one (a feature draft drafts for the target only)."""
    from ..backend.models import names_feature_draft

    setups = [
        Setup("ar", "ar", ("smollm2",), (2,)),
        Setup("sd-ngram", "sd", ("ngram", "smollm2"), (2,), gamma=gamma),
        Setup("sd-int8", "sd", ("smollm2-int8", "smollm2"), (2,), gamma=gamma),
        Setup("pipespec-k2-ngram", "pipespec", ("ngram", "smollm2"), (1, 1), ("0", "1")),
        Setup("pipespec-k2-int8", "pipespec", ("smollm2-int8", "smollm2"), (1, 1), ("0", "1")),
        Setup("pipespec-k3", "pipespec", ("ngram", "smollm2-int8", "smollm2"), (1, 1, 1), ("0", "0", "1")),
    ]
    for name in [draft] * bool(draft) + list(feature_drafts):
        label = name.removeprefix("draft:")
        setups += [Setup(f"sd-{label}", "sd", (name, "smollm2"), (2,), gamma=gamma),
                   Setup(f"pipespec-k2-{label}", "pipespec", (name, "smollm2"), (1, 1), ("0", "1"))]
        if not names_feature_draft(name):  # a feature draft drafts for the target only
            setups.append(Setup(f"pipespec-k3-{label}", "pipespec", (name, "smollm2-int8", "smollm2"), (1, 1, 1),
                                ("0", "0", "1")))
    exits = [(f"exit{e}", f"smollm2-exit:{e}") for e in ppsd_exits]
    exits += [(name.removeprefix("draft:"), name) for name in exit_drafts]
    for label, exit_model in exits:
        setups += [Setup(f"sd-{label}", "sd", (exit_model, "smollm2"), (2,), gamma=gamma),
                   Setup(f"ppsd-{label}", "ppsd", (exit_model, "smollm2"), (1, 1), ("0", "1"))]
    for w in specpipe_widths:
        setups.append(Setup(f"specpipe-p2-w{w}", "specpipe", ("smollm2-int8", "smollm2"), (1, 1, 1),
                            ("0", "0", "1"), tree_width=w))
    if specpipe_widths:
        setups.append(Setup("pp-p2", "specpipe", ("smollm2-int8", "smollm2"), (1, 1, 1), ("0", "0", "1"),
                            tree_width=1, tree_depth=1))
    for g in lookahead:
        setups += [Setup(f"sd-int8-g{g}", "sd", ("smollm2-int8", "smollm2"), (2,), gamma=g),
                   Setup(f"pipespec-k2-int8-max{g}", "pipespec", ("smollm2-int8", "smollm2"), (1, 1), ("0", "1"),
                         max_drafts=g)]
    return [s for i, s in enumerate(setups) if s.name not in {t.name for t in setups[:i]}]


def model_setups(target: str, draft: str, gamma: int = 4, lookahead: Sequence[int] = (),
                 ppsd_exits: Sequence[int] = (), specpipe_widths: Sequence[int] = ()) -> list[Setup]:
    """The family of any target with one draft, every stage on the run's device with a thread each (a GPU's
    check; on a CPU the processes are not pinned): AR, SD and PipeSpec on the draft, PPSD with the target's own
    first E layers as its exit, SpecPipe over 2 target stages beside plain pipeline parallelism."""
    setups = [Setup("ar", "ar", (target,), (1,)),
              Setup("sd", "sd", (draft, target), (1,), gamma=gamma),
              Setup("pipespec-k2", "pipespec", (draft, target), (1, 1))]
    setups += [Setup(f"ppsd-exit{e}", "ppsd", (f"{target}-exit:{e}", target), (1, 1)) for e in ppsd_exits]
    setups += [Setup(f"specpipe-p2-w{w}", "specpipe", (draft, target), (1, 1, 1), tree_width=w)
               for w in specpipe_widths]
    if specpipe_widths:
        setups.append(Setup("pp-p2", "specpipe", (draft, target), (1, 1, 1), tree_width=1, tree_depth=1))
    for g in lookahead:
        setups += [Setup(f"sd-g{g}", "sd", (draft, target), (1,), gamma=g),
                   Setup(f"pipespec-k2-max{g}", "pipespec", (draft, target), (1, 1), max_drafts=g)]
    return [s for i, s in enumerate(setups) if s.name not in {t.name for t in setups[:i]}]


def placement(setup: Setup) -> str:
    """Threads and cores of each process ("1t@cpu0, 1t@cpu1": a markdown cell), or of the one in-process run ("2t")."""
    if not setup.cpus:  # unpinned: each process's threads
        return ", ".join(f"{t}t" for t in setup.threads)
    threads = setup.threads * len(setup.cpus) if len(setup.threads) == 1 else setup.threads
    return ", ".join(f"{t}t@cpu{c}" for t, c in zip(threads, setup.cpus, strict=True))


def trace_name(draft: str, verifier: str, width: int = 1) -> str:
    return f"{draft}->{verifier}" + (f"@top{width}" if width > 1 else "")


@dataclass
class Workload:
    """The prompts and decoding limits every configuration runs with."""

    prompts: str | None = None
    limit: int | None = 6
    max_new_tokens: int = 64
    repeats: int = 3
    max_lead: int = 32
    device: str = "cpu"
    transport: str = "shm"  # the pipelines' (`pipespec run --transport`)
    contended: bool = True  # profile one-thread (pipeline-stage) models with the other core busy
    encoded: list[list[int]] = field(default_factory=list)
    eos: int | None = None

    @property
    def context(self) -> int:
        """The mean context of a decode forward (the prompts' mean length plus half the output): where the
        closed forms price forwards."""
        return int(statistics.mean(map(len, self.encoded)) + self.max_new_tokens / 2)

    def prompt_shapes(self, new_tokens: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """(prompt length, output tokens) of each prompt, as `sim.run.simulate_prompts` takes them: the
        output lengths of a measured run, or max_new_tokens each."""
        counts = [self.max_new_tokens] * len(self.encoded) if new_tokens is None else new_tokens
        return [(len(ids), n) for ids, n in zip(self.encoded, counts, strict=True)]


def prepare(workload: Workload, target: str = TARGET) -> Workload:
    """The prompts encoded by the target's tokenizer, and its end-of-sequence token; prompts given as token ids
    need no tokenizer (nor have an end: every run decodes max_new_tokens)."""
    from ..backend.models import load_tokenizer, resolve
    from ..backend.prompts import encode, load_prompts

    prompts = load_prompts(workload.prompts, workload.limit)
    tokenizer = load_tokenizer(resolve(target)) if any(p.input_ids is None for p in prompts) else None
    return replace(workload, encoded=[encode(p, tokenizer) for p in prompts],
                   eos=None if tokenizer is None else tokenizer.eos_token_id)
