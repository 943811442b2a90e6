"""The asynchronous PipeSpec engine: one OS process per stage, each on its own device or CPU threads.

What improves on the authors' design (PAPERS.md §1): buffers are lock-free seqlocked shared memory
(shared.py) read without a lock round trip, and a reader re-reads only when the version moved; a
stage waits on an event (never spinning) only when it has run `max_lead` tokens ahead of its verifier;
rollback crops the KV cache to the first position that differs.

Stage i's loop: resynchronise to its verifier's published sequence (crop at the first difference);
if its upstream has published drafts beyond its own sequence that agree with it, verify them in one
forward (capped by max_drafts); otherwise generate one token; publish. The final stage alone decides
the output, so greedy decoding stays lossless whatever the timing.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.multiprocessing as mp

from ..errors import ConfigError, require
from ..metrics import PairStats, StageStats
from .channel import launched_rank
from .devices import TRANSPORTS
from .engines import DecodeOptions, Output, PromptResult
from .links import Link, RingShape, make_link
from .models import ModelRef, hidden_size, is_feature_draft, vocab_size
from .shared import ProbRing, TokenBuffer
from .workers import Harness, Placement, StageFailed, StageReport, StageWorker, _stage_main, stage_name


class _StageWorker(StageWorker):
    def __init__(self, refs: Sequence[ModelRef], index: int, placement: Placement, options: DecodeOptions,
                 harness: Harness) -> None:
        from .stages import build_stage, feeds_features

        super().__init__(index, placement, options, harness)
        self.final = index == len(refs) - 1
        temperature, seed = harness.sampling
        self.sampling = temperature > 0
        verifies_features = feeds_features(refs, index)
        self.stage = build_stage(refs[index], f"M{index}:{refs[index].spec}", placement.device, temperature,
                                 seed + index, placement.dtype, placement.quantize, verifies_features)
        # a verifier's hidden states travel to the feature draft below it on its second ring (`Harness.rings`)
        verifier = index if verifies_features else index + 1 if feeds_features(refs, index + 1) else None
        self.feature_ring = self.rings[len(refs) + verifier] if verifier is not None else None
        self.models = self.stage.models
        self.pair_name = f"M{index - 1}:{refs[index - 1].spec}->M{index}:{refs[index].spec}" if index else None

    def _drafts(self, up: TokenBuffer, ring: ProbRing | None,
                own_tokens: list[int]) -> tuple[list[int], list[torch.Tensor | None]]:
        """Upstream tokens beyond this stage's sequence, if upstream agrees with it, with the distributions
        they were drawn from (None: greedy, or a deterministic drafter), read in one consistent snapshot."""
        start, cap = len(own_tokens), self.options.max_drafts or self.options.max_lead

        def rows(tokens: list[int]) -> torch.Tensor | None:
            positions = range(start, min(len(tokens), start + cap))
            return ring.rows(positions) if ring is not None and self.sampling and positions else None

        _, tokens, probs = up.read(rows)
        if len(tokens) <= start or tokens[:start] != own_tokens:
            return [], []
        drafts = tokens[start:start + cap]
        return drafts, list(probs) if probs is not None else [None] * len(drafts)

    def _row_writer(self, start: int, features_from: int) -> Callable[[], None] | None:
        """Write the rows of the tokens appended or replaced since the last publish (sampling), and the hidden
        states from position `features_from` on (a feature draft's verifier); None when there are none."""
        ring = self.rings[self.index]
        features = self.stage.features if self.index > 0 and self.feature_ring is not None else None
        if ring is None and features is None:
            return None

        def write() -> None:
            if ring is not None:
                probs = self.stage.probs
                for position in range(max(start, len(probs) - len(ring.tensor)), len(probs)):
                    if probs[position] is not None:
                        ring.write(position, probs[position])
            if features is not None:
                for position in range(features_from, len(features)):
                    self.feature_ring.write(position, features[position])
        return write

    def _observe(self, down: TokenBuffer) -> tuple[int, list[int], int]:
        """A feature draft's read of its verifier: (version, tokens, first position that differs), with the
        verifier's hidden states of the positions it has not yet got, read in the same snapshot."""
        stage, ring = self.stage, self.feature_ring
        start = stage.drafter.true_len

        def rows(tokens: list[int]) -> torch.Tensor:
            return ring.rows(range(start, max(len(tokens) - 1, start)))

        version, tokens, features = down.read(rows)
        return version, tokens, stage.observe(tokens, [None] * len(tokens), features, start)

    def decode(self, epoch: int) -> None:
        from .stages import FeatureStage, ModelStage

        prompt = self.harness.prompt()
        stage = self.stage
        stage.reset(prompt)
        stage.stats = StageStats(stage.stats.name)
        pair = PairStats(self.pair_name) if self.pair_name else None
        own = self.buffers[self.index]
        own.publish(prompt)
        down = self.buffers[self.index + 1] if not self.final else None
        up = self.buffers[self.index - 1] if self.index > 0 else None
        down_version, down_len = -1, len(prompt)
        output = Output(len(prompt), self.options, time.perf_counter()) if self.final else None
        resyncs = 0  # caught up with the verifier's sequence without a conflict
        up_ring = self.rings[self.index - 1] if self.index > 0 else None
        changed_from = len(prompt)  # first position whose distribution row is not yet published
        features_sent = 0  # a feature draft's verifier: hidden states published so far
        featured = isinstance(stage, FeatureStage)
        while self.active(epoch):
            if down is not None and down.version() != down_version:
                before = list(stage.tokens)
                if featured:
                    down_version, down_tokens, common = self._observe(down)
                else:
                    down_version, down_tokens, _ = down.read()
                    common = stage.adopt(down_tokens, [None] * len(down_tokens))
                down_len = len(down_tokens)
                conflict = down_tokens[: len(before)] != before[: len(down_tokens)]
                resyncs += not conflict and len(down_tokens) > len(before)
                changed_from = min(changed_from, common)
            if featured and not stage.ready:  # its verifier has not yet published the prompt's hidden states
                self.wait(0.05)
                continue
            if down is not None and len(stage.tokens) - down_len >= self.options.max_lead:
                self.wait(0.05)  # far enough ahead: wait for the verifier to move
                continue
            mine = len(stage.tokens)
            drafts, draft_probs = self._drafts(up, up_ring, stage.tokens) if up is not None else ([], [])
            if drafts:
                verdict = stage.verify(drafts, draft_probs)
                pair.judge(len(drafts), verdict.accepted)
            elif isinstance(stage, ModelStage | FeatureStage):
                stage.generate()
            else:  # the n-gram drafter: propose, or wait for the sequence to change
                proposal = stage.propose(self.options.max_lead)
                if not proposal:
                    self.wait(0.05)
                    continue
                stage.drafter.tokens.extend(proposal)
            changed_from = min(changed_from, mine)
            own.publish(stage.tokens, self._row_writer(changed_from, features_sent))
            changed_from = len(stage.tokens)
            features_sent = len(stage.features) if self.index > 0 and self.feature_ring is not None else 0
            self.notify()
            if output is not None and output.done(stage.tokens):
                self.finish_prompt(epoch)
        self.report(epoch, StageReport(stage.stats, pair, resyncs) if output is None else
                    self.final_report(stage.stats, pair, output, stage.tokens, resyncs))


class PipelineEngine:
    """Start the stage processes once, decode prompts one by one, stop everything on every exit path. The stages
    talk over `transport`: shm (shared memory, one host) or dist (a torch.distributed process group: ranks this
    engine starts on this host, or, under torchrun, the ranks torchrun started, this process being rank 0)."""

    def __init__(self, refs: Sequence[ModelRef], placements: Sequence[Placement], options: DecodeOptions,
                 capacity: int = 8192, start_timeout_s: float = 300.0, temperature: float = 0.0,
                 seed: int = 0, transport: str = "shm") -> None:
        if len(refs) < 2:
            raise ConfigError("--chain: pipespec needs at least 2 models")
        slots = options.max_lead + (options.max_drafts or options.max_lead) + 8
        rings: list[RingShape | None] = [(slots, vocab_size(ref)) if temperature > 0 and ref.kind != "ngram" else None
                                         for ref in refs]
        if is_feature_draft(refs[0].path):  # the verifier's hidden states, every position of a prompt's sequence
            rings += [None, (capacity, hidden_size(refs[1]))] + [None] * (len(refs) - 2)
        self._start(functools.partial(_StageWorker, list(refs)), [ref.spec for ref in refs], placements, options,
                    rings, capacity, start_timeout_s, (temperature, seed), transport)

    def _start(self, factory: Callable[..., StageWorker], names: Sequence[str], placements: Sequence[Placement],
               options: DecodeOptions, rings: Sequence[RingShape | None], capacity: int, start_timeout_s: float,
               sampling: tuple[float, int] = (0.0, 0), transport: str = "shm", inboxes: bool = False) -> None:
        """The link to the stages and one (not yet started) process per stage, each serving `factory(index, ...)`;
        rings: each stage's (slots, row width), or None; sampling (temperature, seed): greedy unless given."""
        if options.max_lead < 1:
            raise ConfigError("max_lead must be >= 1")
        require(transport in TRANSPORTS, f"--transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        self.names, self.placements, self.options = list(names), list(placements), options
        self.start_timeout_s, self.capacity = start_timeout_s, capacity
        self.loaded: dict[int, list[dict[str, Any]]] = {}  # per stage: what its process loaded (loaded_facts)
        self.link: Link = make_link(transport, names, rings, capacity, sampling, inboxes, start_timeout_s)
        self.factory = factory
        context = mp.get_context("spawn")
        launched = transport == "dist" and launched_rank() is not None  # torchrun started the stages
        self.processes = [] if launched else [
            context.Process(target=_stage_main, name=f"pipespec-stage-{i}", daemon=True,
                            args=(i, factory, placements[i], options, self.link.harness))
            for i in range(len(names))]
        self.epoch = 0

    def serve_rank(self, rank: int) -> None:
        """Under torchrun, in rank `rank` > 0: serve as stage rank - 1 until the coordinator (rank 0) stops us."""
        index = rank - 1
        error = _stage_main(index, self.factory, self.placements[index], self.options, self.link.harness)
        if error is not None:  # reported to rank 0 as well; this rank's own exit status says it failed
            raise StageFailed(f"{stage_name(self.names, index)}: {error}")

    def __enter__(self) -> PipelineEngine:
        try:
            # a stage is born ignoring Ctrl-C (the disposition survives its exec), so a Ctrl-C while it is still
            # importing torch cannot print a traceback: the coordinator alone handles it and stops the stages
            main = threading.current_thread() is threading.main_thread()  # only it may set handlers
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                for process in self.processes:
                    process.start()
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            deadline = time.monotonic() + self.start_timeout_s
            self.link.open(self._check_alive, deadline)
            ready: set[int] = set()
            while len(ready) < len(self.names):
                message = self._next_message(deadline)
                if message[0] == "ready":
                    ready.add(message[1])
                    self.loaded[message[1]] = message[2]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_alive(self) -> None:
        for i, process in enumerate(self.processes):
            if not process.is_alive():
                raise StageFailed(f"{stage_name(self.names, i)} died (exit code {process.exitcode})") from None

    def _next_message(self, deadline: float) -> tuple:
        while True:
            message = self.link.get(0.2)
            if message is None:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise StageFailed("timed out waiting for the pipeline's stages") from None
                continue
            if message[0] == "error":
                raise StageFailed(f"{stage_name(self.names, message[1])} failed: {message[2]}")
            return message

    def decode(self, prompt: Sequence[int], timeout_s: float = 3600.0) -> PromptResult:
        needed = len(prompt) + self.options.max_new_tokens + self.options.max_lead + (self.options.max_drafts or 0) + 1
        if needed > self.capacity:
            raise ConfigError(f"prompt of {len(prompt)} tokens + {self.options.max_new_tokens} new tokens does not "
                              f"fit the pipeline's buffers ({self.capacity} tokens)")
        self.epoch += 1
        started = time.perf_counter()
        self.link.start_prompt(self.epoch, list(prompt), self._initial(prompt))
        reports: dict[int, StageReport] = {}
        deadline = time.monotonic() + timeout_s
        while len(reports) < len(self.names):
            message = self._next_message(deadline)
            if message[0] == "done" and message[2] == self.epoch:
                reports[message[1]] = message[3]
        return self._result(reports, started)

    def _result(self, reports: dict[int, StageReport], started: float) -> PromptResult:
        """The prompt's result from every stage's report: the final stage's output; stage i's pair, with
        the resynchronisations its drafter (stage i - 1) counted."""
        final = reports[len(self.names) - 1]
        pairs = [reports[i].pair for i in range(1, len(self.names))]
        for i, pair in enumerate(pairs):
            assert pair is not None
            pair.resyncs = reports[i].resyncs
        return self._prompt_result(final, started, reports, pairs)  # type: ignore[arg-type]

    def _prompt_result(self, final: StageReport, started: float, reports: dict[int, StageReport],
                       pairs: list[PairStats]) -> PromptResult:
        """From the report of the stage that decided the output."""
        assert final.output is not None and final.finished_at is not None
        first = final.first_token_at
        return PromptResult(final.output, final.finished_at - started, (first - started) if first is not None else 0.0,
                            [reports[i].stats for i in range(len(self.names))], pairs)

    def _initial(self, prompt: Sequence[int]) -> list[list[int]]:
        """What each stage's buffer holds when a prompt starts: the prompt."""
        return [list(prompt) for _ in self.names]

    def close(self) -> None:
        """Stop every stage: ask, then terminate, then kill; never leave a process behind."""
        with contextlib.suppress(Exception):
            self.link.stop()
        for process in self.processes:
            if process.pid is not None:
                process.join(timeout=2.0)
        for process in self.processes:
            if process.pid is not None and process.is_alive():
                process.terminate()
                process.join(timeout=2.0)
            if process.pid is not None and process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        self.link.close()
