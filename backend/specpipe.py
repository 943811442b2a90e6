"""SpecPipe on real models: the target's layers split over P pipeline stages (one OS process each), kept
full by a speculative token tree that a draft model grows one level per pipeline step.

- controller (process 0): holds the draft and the tree. It sends the prompt through the pipeline,
  then, while fewer than `depth` levels are in flight, expands the deepest level: the draft's top
  children of each frontier node, the `width` most probable paths whose probability is at least
  `threshold` (always at least the best one), sent down the pipeline as one level.
- stage j (processes 1..P): target layers [a_j, b_j), a tree-attention cache (a node attends to its
  ancestors only, at its depth's position), forwarding hidden rows to stage j + 1; the last stage
  returns the target's argmax for each node to the controller.
- when the root's prediction returns, the target's next token x is decided. If x is among the root's
  children, that child becomes the root and every other subtree is pruned — in the draft's and every
  stage's cache, and packets of pruned nodes still in the queues are skipped; otherwise the whole
  tree is flushed and x, as a new root, enters the pipeline at stage 1. The controller alone decides
  the output, so greedy decoding is lossless.

Plain pipeline parallelism over the same stages is `--tree-depth 1`: one level (the decided token) in
flight, one token per P steps, and the draft never consulted (it runs no forward). Messages are small
pickled NumPy arrays sent through the harness (one inbox per process).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import require
from ..metrics import PairStats, StageStats
from .engines import DecodeOptions, Output, PromptResult
from .layers import TreeSlice
from .loading import load_model
from .models import ModelRef, num_layers
from .pipeline import PipelineEngine
from .workers import Harness, Placement, StageReport, StageWorker


def stage_layers(layers: int, stages: int) -> list[range]:
    """Contiguous, as even as possible; one-line errors for impossible splits."""
    require(stages >= 1, f"--pp-stages must be >= 1, got {stages}")
    require(stages <= layers, f"--pp-stages ({stages}) must be <= the target's {layers} layers (no empty stage)")
    base, extra = divmod(layers, stages)
    bounds = np.cumsum([0] + [base + (1 if i < extra else 0) for i in range(stages)])
    return [range(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


class _SpecPipeWorker(StageWorker):
    def __init__(self, target: ModelRef, draft: ModelRef, stages: int, tree: tuple[int, int, float],
                 index: int, placement: Placement, options: DecodeOptions, harness: Harness) -> None:
        super().__init__(index, placement, options, harness)
        self.stages, self.last = stages, index == stages
        self.width, self.depth, self.threshold = tree
        if index == 0:
            model = load_model(draft, placement.device, placement.dtype)
            self.models = [model]
            self.slice = TreeSlice(model, range(model.config.num_hidden_layers), placement.device, embed=True,
                                   head=True)
            self.stats = StageStats(f"draft:{draft.spec}")
        else:
            model = load_model(target, placement.device, placement.dtype)
            self.models = [model]
            layers = stage_layers(model.config.num_hidden_layers, stages)[index - 1]
            self.slice = TreeSlice(model, layers, placement.device, embed=index == 1, head=self.last)
            self.stats = StageStats(f"{target.spec}[{layers.start}-{layers.stop - 1}]")

    def _receive(self, epoch: int) -> tuple | None:
        message = self.harness.receive(self.index, 0.05)
        return message if message is not None and message[1] == epoch else None  # an earlier prompt's: dropped

    def decode(self, epoch: int) -> None:
        prompt = self.harness.prompt()
        self.slice.reset()
        self.stats = StageStats(self.stats.name)
        self.report(epoch, self._control(epoch, prompt) if self.index == 0 else self._stage(epoch))

    def _stage(self, epoch: int) -> StageReport:
        dead: set[int] = set()
        while self.active(epoch):
            message = self._receive(epoch)
            if message is None:
                continue
            if message[0] == "drop":
                dead |= message[2]
                self.slice.drop(message[2])
                continue
            _, _, ids, parents, positions, payload = message
            live = [i for i, node in enumerate(ids) if node not in dead]
            ids, parents, positions = [ids[i] for i in live], [parents[i] for i in live], [positions[i] for i in live]
            out: np.ndarray = np.zeros((0,), dtype=np.int64)
            if ids:
                x = torch.from_numpy(payload[live])
                out = self.timed(self._forward, x, ids, parents, positions).numpy()  # the head's work included
                self.stats.count("forward", len(ids), 0)
            if self.last:
                self.harness.send(0, ("result", epoch, ids, out))
            else:
                self.harness.send(self.index + 1, ("level", epoch, ids, parents, positions, out))
        return StageReport(self.stats)

    def _forward(self, x: torch.Tensor, ids: list[int], parents: list[int], positions: list[int]) -> torch.Tensor:
        """A target stage's forward of new nodes: hidden rows, or at the last stage the target's argmax, on the CPU
        (they travel through a queue as arrays; a GPU's copy out waits for its kernels, inside the timing)."""
        hidden = self.slice.forward_nodes(x, ids, parents, positions)
        return (self.slice.logits(hidden).argmax(-1) if self.last else hidden.float()).cpu()

    def _control(self, epoch: int, prompt: list[int]) -> StageReport:
        output = Output(len(prompt), self.options, time.perf_counter())
        pair = PairStats("draft->target (tree)")
        verified = list(prompt)
        tree = TokenTree(prompt)
        in_flight = 0

        def send(ids: list[int]) -> None:
            """One level down the pipeline; the draft's top children of its nodes, for the next level."""
            nonlocal in_flight
            tokens, parents, positions = tree.level(ids)
            self.harness.send(1, ("level", epoch, ids, parents, positions, tokens))
            in_flight += 1
            if self.depth == 1:  # plain pipeline parallelism: the tree never grows, the draft is not consulted
                return
            logits = self.timed(lambda: self.slice.logits(self.slice.forward_nodes(
                torch.from_numpy(tokens), ids, parents, positions)))
            self.stats.count("forward", len(ids), 0)
            probs, index = torch.softmax(logits, -1).topk(max(1, self.width), -1)
            for n, p, i in zip(ids, probs.tolist(), index.tolist(), strict=True):
                tree.top[n] = (i, p)

        send(list(range(len(prompt))))
        predicted: dict[int, int] = {}
        while self.active(epoch):
            while in_flight < self.depth and tree.frontier:
                send(tree.grow(self.width, self.threshold))
            message = self._receive(epoch)
            if message is None:
                continue
            in_flight -= 1
            predicted.update(zip(message[2], message[3].tolist(), strict=True))
            while tree.root in predicted and not output.done(verified):
                x = predicted.pop(tree.root)
                verified.append(x)
                kids, hit, dead = tree.decide(x)
                if kids:
                    pair.record(1, int(hit is not None))
                if hit is None:  # flush: the decided token enters the pipeline as the new root
                    send([tree.root])
                if dead:
                    for j in range(1, self.stages + 1):
                        self.harness.send(j, ("drop", epoch, dead))
                    self.slice.drop(dead)
                    for n in dead:
                        predicted.pop(n, None)
            if output.done(verified):
                self.finish_prompt(epoch)
        return self.final_report(self.stats, pair, output, verified)


class TokenTree:
    """The controller's speculative token tree: each node's token, parent, position and path probability
    (conditional on the current root), its children, and (once the draft was fed the node) the draft's top
    children. Node ids are the prompt's positions, then a counter."""

    def __init__(self, prompt: Sequence[int]) -> None:
        self.token: dict[int, int] = {}
        self.parent: dict[int, int] = {}
        self.position: dict[int, int] = {}
        self.path: dict[int, float] = {}
        self.children: dict[int, list[int]] = {}
        self.top: dict[int, tuple[list[int], list[float]]] = {}  # the draft's top children of a fed node
        self._ids = itertools.count(len(prompt))
        for i, t in enumerate(prompt):
            self._set(i, t, i - 1, i, 1.0)
        self.root = len(prompt) - 1
        self.frontier = [self.root]  # the deepest level: what the next level grows from

    def _set(self, node: int, token: int, parent: int, position: int, path: float) -> None:
        self.token[node], self.parent[node], self.position[node], self.path[node] = token, parent, position, path

    def add(self, token: int, parent: int, path: float) -> int:
        node = next(self._ids)
        self._set(node, token, parent, self.position[parent] + 1, path)
        return node

    def level(self, ids: Sequence[int]) -> tuple[np.ndarray, list[int], list[int]]:
        """(tokens, parents, positions) of nodes, as a pipeline level carries them."""
        return (np.array([self.token[n] for n in ids], dtype=np.int64), [self.parent[n] for n in ids],
                [self.position[n] for n in ids])

    def grow(self, width: int, threshold: float) -> list[int]:
        """A new deepest level: the `width` most probable paths through the frontier's top children whose
        probability is at least `threshold` (always the best one)."""
        candidates = sorted(((self.path[f] * p, f, t) for f in self.frontier
                             for t, p in zip(*self.top[f], strict=True)), reverse=True)
        chosen = [c for c in candidates[:width] if c[0] >= threshold] or candidates[:1]
        ids = []
        for prob, f, t in chosen:
            node = self.add(t, f, prob)
            self.children.setdefault(f, []).append(node)
            ids.append(node)
        self.frontier = ids
        return ids

    def subtree(self, nodes: Sequence[int]) -> set[int]:
        out, stack = set(), list(nodes)
        while stack:
            n = stack.pop()
            out.add(n)
            stack.extend(self.children.get(n, []))
        return out

    def decide(self, token: int) -> tuple[list[int], int | None, set[int]]:
        """The target decided `token` after the root: (the root's children, the child that guessed it or None,
        the nodes pruned). The guessing child becomes the root, its siblings' subtrees go; on a miss the
        whole tree is flushed and the token, as a new root, must enter the pipeline."""
        kids = self.children.pop(self.root, [])
        hit = next((k for k in kids if self.token[k] == token), None)
        dead = self.subtree([k for k in kids if k != hit])
        if hit is None:
            node = self.add(token, self.root, 1.0)
            self.root, self.frontier = node, [node]
            return kids, None, dead
        self.root = hit
        self.frontier = [f for f in self.frontier if f not in dead]
        if not self.frontier:  # the deepest level grew from pruned branches: regrow from the hit's
            kept = self.subtree([hit])
            deepest = max(self.position[n] for n in kept)
            self.frontier = [n for n in kept if self.position[n] == deepest]
        path_root = self.path[hit]
        for f in self.frontier:
            self.path[f] /= path_root  # probabilities conditional on the new root
        self.path[hit] = 1.0
        return kids, hit, dead


class SpecPipeEngine(PipelineEngine):
    """A draft-driven token tree filling P target stages; processes as in the PipeSpec engine."""

    def __init__(self, target: ModelRef, draft: ModelRef, placements: Sequence[Placement], options: DecodeOptions,
                 width: int = 2, depth: int | None = None, threshold: float = 0.0, capacity: int = 4096,
                 start_timeout_s: float = 300.0, transport: str = "shm") -> None:
        require(len(placements) >= 2, "specpipe needs the draft's placement and at least one target stage")
        require(draft.kind != "ngram", "--chain: specpipe grows its tree from a draft model's probabilities, "
                                       "not the n-gram drafter")
        stages = len(placements) - 1
        stage_layers(num_layers(target), stages)
        require(width >= 1, f"--tree-width must be >= 1, got {width}")
        require(0.0 <= threshold <= 1.0, f"--tree-threshold must be in [0, 1], got {threshold}")
        depth = depth if depth is not None else stages
        require(depth >= 1, f"--tree-depth must be >= 1, got {depth}")
        factory = functools.partial(_SpecPipeWorker, target, draft, stages, (width, depth, threshold))
        names = [f"draft {draft.spec}"] + [f"{target.spec} stage {i}" for i in range(1, stages + 1)]
        self._start(factory, names, placements, options, [None] * len(placements), capacity, start_timeout_s,
                    transport=transport, inboxes=True)

    def _result(self, reports: dict[int, StageReport], started: float) -> PromptResult:
        pair = reports[0].pair
        assert pair is not None
        return self._prompt_result(reports[0], started, reports, [pair])
