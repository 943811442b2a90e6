"""PPSD on real models: the target's layers split into an early and a late stage (one OS process each),
the early stage drafting through an exit head after layer E ("verify while draft").

- early (stage 0): embeddings + layers [0, E). It feeds its newest token(s), writes the hidden rows
  after layer E for those positions into a shared ring, drafts the next token from the exit head
  (norm + the target's head, after a trained exit layer when one is given) and publishes its
  sequence — only positions whose hidden rows are written. It runs up to `max_lead` tokens ahead.
- late (stage 1): layers [E, N) + norm + head. Once the early stage's sequence agrees with its own
  verified one, it feeds the hidden rows from its last verified token on (its own "generate" step
  when no drafts wait, a verification of every waiting draft otherwise), accepts the drafts its
  argmax agrees with, adds its own next token, crops its cache to what is verified and publishes.
- a rejection: the early stage sees the late stage's sequence differ from its own, crops its caches
  to the common prefix and recomputes from the corrected token; only in-flight speculative work is
  lost. The late stage alone decides the output, so greedy decoding is lossless.

The exit head is either the target's own norm + head on the hidden state after layer E (untrained),
or a trained exit draft (`pipespec models build smollm2-exit8`): its trained copy of layer L and norm
applied to the hidden state after layer L − 1, so E = L − 1 shared layers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import require
from ..metrics import PairStats, StageStats
from .decoding import common_prefix, verify_greedy
from .engines import DecodeOptions, Output
from .layers import LayerSlice, split_layers
from .loading import load_model
from .models import ModelRef, hidden_size, num_layers
from .pipeline import PipelineEngine
from .workers import Harness, Placement, StageReport, StageWorker


def exit_draft_layer(ref: ModelRef | None) -> int | None:
    """The exit layer L of a trained exit draft (None: no draft)."""
    import json

    if ref is None:
        return None
    config = Path(str(ref.path)) / "config.json"
    require(ref.path is not None and (Path(str(ref.path)) / "exit.safetensors").is_file(),
            f"--exit-draft: {ref.spec!r} is not an exit draft (pipespec models build smollm2-exit8)")
    return int(json.loads(config.read_text())["exit_layer"])


class _PPSDWorker(StageWorker):
    def __init__(self, target: ModelRef, exit_layer: int, exit_draft: ModelRef | None, index: int,
                 placement: Placement, options: DecodeOptions, harness: Harness) -> None:
        super().__init__(index, placement, options, harness)
        self.ring = harness.rings[0]
        assert self.ring is not None
        model = load_model(target, placement.device, placement.dtype)
        self.models = [model]
        early, late = split_layers(model.config.num_hidden_layers, exit_layer)
        if index == 0:
            self.slice = LayerSlice(model, early, placement.device, embed=True)
            self.exit: LayerSlice | None = None
            self.exit_norm = model.model.norm
            if exit_draft is not None:
                # the target truncated, with its trained last layer
                draft = load_model(exit_draft, placement.device, placement.dtype)
                self.models = [model, draft]
                self.exit = LayerSlice(draft, range(exit_layer, exit_layer + 1), placement.device,
                                       modules=[draft.model.layers[exit_layer]])
                self.exit_norm = draft.model.norm
            self.head = model.lm_head
        else:
            self.slice = LayerSlice(model, late, placement.device, head=True)
        self.stats = StageStats("early" if index == 0 else "late")

    @torch.inference_mode()
    def _draft(self, hidden: torch.Tensor) -> int:
        if self.exit is not None:
            hidden = self.exit.forward(hidden)
        return int(self.head(self.exit_norm(hidden[-1:])).argmax(-1).item())

    def decode(self, epoch: int) -> None:
        prompt = self.harness.prompt()
        self.slice.reset()
        if self.index == 0 and self.exit is not None:
            self.exit.reset()
        self.stats = StageStats(self.stats.name)
        self.report(epoch, self._early(epoch, prompt) if self.index == 0 else self._late(epoch, prompt))

    def _early(self, epoch: int, prompt: list[int]) -> StageReport:
        own, down = self.buffers[0], self.buffers[1]
        tokens = list(prompt)  # rows written for tokens[:self.slice.length]; the last one may be a draft
        down_version, down_len, resyncs = -1, len(prompt), 0
        while self.active(epoch):
            if down.version() != down_version:
                down_version, verified, _ = down.read()
                down_len = len(verified)
                common = common_prefix(tokens, verified)
                if common < len(verified):  # rejected (or the late stage ran past us): take its sequence
                    resyncs += common == len(tokens)
                    tokens = list(verified)
                    self.slice.crop(min(self.slice.length, common))
                    if self.exit is not None:
                        self.exit.crop(min(self.exit.length, common))
            if len(tokens) - down_len >= self.options.max_lead:
                self.wait(0.05)
                continue
            start = self.slice.length
            feed = torch.tensor(tokens[start:], dtype=torch.long)
            hidden = self.timed(self.slice.forward, feed)
            draft = self.timed(self._draft, hidden)
            self.stats.count("generate", len(feed), 1)
            rows = hidden.float().cpu()  # one copy out per forward (the ring is CPU shared memory)

            def write(rows: torch.Tensor = rows, start: int = start) -> None:
                for j in range(len(rows)):
                    self.ring.write(start + j, rows[j])  # type: ignore[union-attr]

            own.publish(tokens, write)  # tokens[:start + len(rows)] == all of them: rows exist for each
            tokens.append(draft)
            self.notify()
        return StageReport(self.stats, resyncs=resyncs)

    def _late(self, epoch: int, prompt: list[int]) -> StageReport:
        own, up = self.buffers[1], self.buffers[0]
        verified = list(prompt)
        own.publish(verified)
        output = Output(len(prompt), self.options, time.perf_counter())
        pair = PairStats("exit->target")
        cap = self.options.max_drafts or self.options.max_lead
        judged = len(prompt) - 1  # positions up to here are the prompt's or already judged
        while self.active(epoch):
            start = self.slice.length  # == len(verified) - 1 after the first step

            def snapshot(tokens: list[int], start: int = start, verified: list[int] = verified) -> torch.Tensor | None:
                end = min(len(tokens), len(verified) + cap)
                if end < len(verified) or tokens[:len(verified)] != verified:
                    return None
                return self.ring.rows(range(start, end))  # type: ignore[union-attr]

            _, tokens, rows = up.read(snapshot)
            last = len(verified) - 1
            if last > judged and len(tokens) > last and tokens[:last] == verified[:last]:
                # the early stage's token at our newest position was its draft of it: a window of one,
                # judged here (it is consumed as that position's input, never fed to us as a draft)
                judged = last
                pair.judge(1, int(tokens[last] == verified[last]))
            if rows is None:  # the early stage has not yet fed our last verified token
                self.wait(0.05)
                continue
            drafts = tokens[len(verified):len(verified) + cap]
            logits = self.timed(lambda r: self.slice.logits(self.slice.forward(r)), rows)
            verdict = verify_greedy(logits[len(verified) - 1 - start:], drafts)
            self.stats.count("verify" if drafts else "generate", len(rows), verdict.accepted + 1)
            if drafts:
                pair.judge(len(drafts), verdict.accepted)
            verified += [*drafts[:verdict.accepted], verdict.next_token]
            judged = max(judged, len(verified) - 2)  # the explicit drafts were judged by this verification
            self.slice.crop(len(verified) - 1)
            own.publish(verified)
            self.notify()
            if output.done(verified):
                self.finish_prompt(epoch)
        return self.final_report(self.stats, pair, output, verified)


class PPSDEngine(PipelineEngine):
    """Two stage processes over one target: early layers + exit head drafting, late layers verifying."""

    def __init__(self, target: ModelRef, exit_layer: int, placements: Sequence[Placement], options: DecodeOptions,
                 exit_draft: ModelRef | None = None, capacity: int = 4096, start_timeout_s: float = 300.0,
                 transport: str = "shm") -> None:
        trained = exit_draft_layer(exit_draft)
        if trained is not None:
            require(exit_layer == trained - 1,
                    f"--exit-layer: the exit draft's trained layer takes the output of layer {trained - 1}, "
                    f"so E must be {trained - 1}, got {exit_layer}")
        split_layers(num_layers(target), exit_layer)
        require(len(placements) == 2, f"ppsd runs 2 stages (early, late), got {len(placements)} placements")
        ring = (capacity, hidden_size(target))  # the early stage's hidden rows, one per position: no wrap
        self._start(functools.partial(_PPSDWorker, target, exit_layer, exit_draft), ["early", "late"], placements,
                    options, [ring, None], capacity, start_timeout_s, transport=transport)  # greedy only

    def _initial(self, prompt: Sequence[int]) -> list[list[int]]:
        """The early stage publishes only positions whose hidden rows are written: none yet."""
        return [[], list(prompt)]
