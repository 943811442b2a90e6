"""`pipespec profile`: what the simulator needs from real models on the machine at hand.

- Latency profiles: each model's forward time on its device and threads as a function of tokens in
  the pass (1 … 64) and of the context already cached, with warm-up passes left out and quantiles
  over repeats, written in the format of pipespec/profiles.py.
- Acceptance traces: for each adjacent pair, whether the draft's greedy token matches the verifier's
  at every position of the verifier's own greedy output (pipespec/traces.py), for trace-driven
  simulation.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import RunFailed
from ..latency import ProfilePoint
from .decoding import Decoder, synchronize
from .devices import primary
from .ngram import NgramDrafter

QUANTILES = (0.1, 0.5, 0.9)


class ModelForward:
    """A whole model's forward of n tokens over a cache of `context` tokens (a DynamicCache per context)."""

    @torch.inference_mode()
    def __init__(self, model: torch.nn.Module, device: str, contexts: Sequence[int], rng: np.random.Generator) -> None:
        from transformers import DynamicCache

        self.model, self.device, self.rng = model, device, rng
        self.caches = {}
        for ctx in contexts:
            self.caches[ctx] = DynamicCache(config=model.config)
            if ctx:
                prefix = torch.tensor([rng.integers(0, model.config.vocab_size, ctx).tolist()], device=primary(device))
                model(input_ids=prefix, past_key_values=self.caches[ctx], use_cache=True)

    def inputs(self, n: int) -> torch.Tensor:
        return torch.tensor([self.rng.integers(0, self.model.config.vocab_size, n).tolist()],
                            device=primary(self.device))

    def __call__(self, context: int, x: torch.Tensor) -> None:
        self.model(input_ids=x, past_key_values=self.caches[context], use_cache=True)

    def undo(self, context: int, n: int) -> None:
        self.caches[context].crop(-n)  # back to the same context for the next forward


class FeatureForward:
    """A feature draft's drafting step (eagle.py) over n positions and a cache of `context`: fc, its one layer, and
    the head on the last row, as `FeatureDrafter.step` runs it (n > 1 after a verification hands it the target's
    features of the accepted positions). The features are random rows: the cost does not depend on them."""

    @torch.inference_mode()
    def __init__(self, draft: Any, device: str, contexts: Sequence[int], rng: np.random.Generator) -> None:
        from .layers import LayerSlice

        self.draft, self.device, self.rng = draft, device, rng
        index = draft.head.layer_index
        self.slices = {}
        for ctx in contexts:
            self.slices[ctx] = LayerSlice(draft, range(index, index + 1), device, modules=[draft.head.layer])
            if ctx:
                self.slices[ctx].forward(self._rows(self.inputs(ctx)))

    def inputs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor(self.rng.integers(0, self.draft.config.vocab_size, n).tolist(), device=self.device)
        features = torch.from_numpy(self.rng.standard_normal((n, self.draft.hidden_size), dtype=np.float32))
        return ids, features.to(self.device)

    def _rows(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, features = x
        return self.draft.head.inputs(features, self.draft.model.embed_tokens(ids))

    def __call__(self, context: int, x: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.draft.lm_head(self.draft.head.outputs(self.slices[context].forward(self._rows(x)))[-1:])

    def undo(self, context: int, n: int) -> None:
        self.slices[context].crop(context)


class TreeStageForward:
    """One process of a SpecPipe pipeline as it runs (backend/specpipe.py): a level of n sibling nodes
    through a tree-attention slice over a cached chain of `context` nodes. The draft is its model's whole
    slice, its head and the top-n of the softmax; a target stage is its layers, the first one embedding
    token ids, the others taking hidden rows, the last one ending in the head's argmax."""

    @torch.inference_mode()
    def __init__(self, model: torch.nn.Module, layers: range, head: str | None, device: str,
                 contexts: Sequence[int], rng: np.random.Generator) -> None:
        from .layers import TreeSlice

        config = model.config
        self.embed, self.head, self.device, self.rng = layers.start == 0, head, device, rng
        self.vocab, self.hidden = config.vocab_size, config.hidden_size
        self.slices = {}
        for ctx in contexts:
            self.slices[ctx] = tree = TreeSlice(model, layers, device, embed=self.embed, head=head is not None)
            tree.reset()
            if ctx:
                chain = list(range(ctx))
                tree.forward_nodes(self.inputs(ctx), chain, [i - 1 for i in chain], chain)
        self.next_id = max(contexts)

    def inputs(self, n: int) -> torch.Tensor:
        if self.embed:
            return torch.tensor(self.rng.integers(0, self.vocab, n).tolist(), device=self.device)
        return torch.from_numpy(self.rng.standard_normal((n, self.hidden), dtype=np.float32)).to(self.device)

    def __call__(self, context: int, x: torch.Tensor) -> None:
        n = x.shape[0]
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        tree = self.slices[context]
        hidden = tree.forward_nodes(x, ids, [context - 1] * n, [context] * n)
        if self.head == "topk":
            torch.softmax(tree.logits(hidden), -1).topk(n, -1)
        elif self.head == "argmax":
            tree.logits(hidden).argmax(-1)

    def undo(self, context: int, n: int) -> None:
        tree = self.slices[context]
        tree.drop(set(tree.nodes[context:]))


class LatencyProfiler:
    """Forward times of one model (or one pipeline process: `forward`) at every (context, tokens) point of
    a grid, gathered in passes.

    Each pass times every point once, in a shuffled order, so a burst of interference on a shared machine
    spreads over many points as one outlier each, which their medians reject, instead of shifting the few
    points measured while it lasted. Passes can be spread over a long run (between measurements) so the
    profile sees the machine in the same states as the runs it predicts."""

    def __init__(self, model: torch.nn.Module | None, device: str, num_tokens: Sequence[int],
                 contexts: Sequence[int], seed: int = 0,
                 forward: Callable[..., ModelForward | FeatureForward | TreeStageForward] | None = None) -> None:
        """`forward(device, contexts, rng)` builds what is timed; by default `model`'s whole forward."""
        self.device = device
        self.rng = np.random.default_rng(seed)
        from .eagle import FeatureDraft

        timed = FeatureForward if isinstance(model, FeatureDraft) else ModelForward
        build = forward or (lambda d, c, r: timed(model, d, c, r))
        self.forward = build(device, contexts, self.rng)
        self.grid = [(c, n) for c in contexts for n in num_tokens]
        self.inputs = {point: self.forward.inputs(point[1]) for point in self.grid}
        self.times_s: dict[tuple[int, int], list[float]] = {point: [] for point in self.grid}

    @torch.inference_mode()
    def run_pass(self, record: bool = True) -> None:
        """Time every point once, in a shuffled order (kept unless `record` is False: a warm-up pass)."""
        for i in self.rng.permutation(len(self.grid)):
            ctx, n = self.grid[i]
            synchronize(self.device)
            start = time.perf_counter()
            self.forward(ctx, self.inputs[(ctx, n)])
            synchronize(self.device)
            elapsed = time.perf_counter() - start
            self.forward.undo(ctx, n)
            if record:
                self.times_s[(ctx, n)].append(elapsed)

    def points(self) -> list[ProfilePoint]:
        """Median and quantiles of every point over the passes recorded so far."""
        if not all(self.times_s.values()):
            raise RunFailed("a latency profile needs at least one recorded pass")
        return [ProfilePoint(n, ctx, float(statistics.median(t)),
                             tuple((q, float(np.quantile(t, q))) for q in QUANTILES))
                for (ctx, n), t in self.times_s.items()]


def profile_latency(model: torch.nn.Module, device: str, num_tokens: Sequence[int], contexts: Sequence[int],
                    repeats: int, warmup: int, seed: int = 0,
                    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it) -> list[ProfilePoint]:
    """Median and quantiles of one forward of n tokens over a cache of `context` tokens, from `repeats`
    passes back to back after `warmup` passes that are left out."""
    profiler = LatencyProfiler(model, device, num_tokens, contexts, seed)
    for r in progress(range(warmup + repeats)):
        profiler.run_pass(record=r >= warmup)
    return profiler.points()


@torch.inference_mode()
def greedy_continuation(model: torch.nn.Module, device: str, prompt: Sequence[int], max_new_tokens: int,
                        eos: int | None) -> list[int]:
    decoder = Decoder(model, device)
    decoder.reset(prompt)
    out: list[int] = []
    while len(out) < max_new_tokens:
        token = int(decoder.forward(()).argmax(-1)[0].item())
        decoder.keep((), 0, token)
        out.append(token)
        if eos is not None and token == eos:
            break
    return out


@torch.inference_mode()
def match_bits(draft: torch.nn.Module | NgramDrafter, device: str, prompt: Sequence[int],
               reference: Sequence[int], top_k: int = 1,
               verifier: torch.nn.Module | None = None) -> tuple[list[int], list[int]]:
    """(bits, silent): bits[p] = 1 iff the draft's greedy token for output position p, given prompt +
    reference[:p], equals reference[p]; with top_k > 1, iff reference[p] is among the draft's top_k
    tokens there (a token tree's hit at width top_k). silent[p] = 1 where the draft proposes nothing
    there (the n-gram drafter finding no earlier occurrence; a model always proposes). A model is fed
    the reference one token at a time over its KV cache, as a draft decodes: one teacher-forced forward
    over the whole sequence gives other logits wherever numerics depend on the rows in the pass (int8
    dynamic quantisation scales activations per pass). A feature draft (eagle.py) drafts from `verifier`'s hidden
    states of prompt + reference[:p], as it does right after a verification."""
    from .eagle import FeatureDraft

    if isinstance(draft, FeatureDraft):
        return _feature_match_bits(draft, verifier, device, prompt, reference, top_k)
    if isinstance(draft, NgramDrafter):
        bits, silent = [], []
        for p in range(len(reference)):
            draft.reset([*prompt, *reference[:p]])
            proposal = draft.propose(1)
            bits.append(int(bool(proposal) and proposal[0] == reference[p]))
            silent.append(int(not proposal))
        return bits, silent
    decoder = Decoder(draft, device)
    decoder.reset(prompt)
    bits = []
    for token in reference:
        candidates = decoder.forward(()).topk(top_k, -1).indices[0].tolist()
        bits.append(int(token in candidates))
        decoder.keep((), 0, token)
    return bits, [0] * len(bits)


def _feature_match_bits(draft: Any, verifier: torch.nn.Module | None, device: str, prompt: Sequence[int],
                        reference: Sequence[int], top_k: int) -> tuple[list[int], list[int]]:
    from .eagle import FeatureDrafter

    if verifier is None:
        raise RunFailed("a feature draft's acceptance trace needs its verifier's hidden states")
    target = Decoder(verifier, device, features=True)
    target.reset([*prompt, *reference])
    target.forward(())
    features = target.features  # every position's
    drafter = FeatureDrafter(draft, device)
    drafter.reset(prompt)
    bits = []
    for p, token in enumerate(reference):
        seq = [*prompt, *reference[:p]]
        drafter.observe(seq, features[:len(seq) - 1])  # type: ignore[index]
        bits.append(int(token in drafter.step().topk(top_k, -1).indices.tolist()))
    return bits, [0] * len(bits)


def _co_run(spec: str, core: int, stop: Any, ready: Any) -> None:
    """A co-runner's loop: one thread on `core`, the model's forward over a few tokens, until stopped."""
    import os

    from .loading import load_model
    from .models import resolve

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    from .eagle import FeatureDraft

    torch.set_num_threads(1)
    model = load_model(resolve(spec), "cpu")
    forward = (FeatureForward if isinstance(model, FeatureDraft) else ModelForward)(model, "cpu", [0],
                                                                                     np.random.default_rng(0))
    x = forward.inputs(8)
    ready.set()
    with torch.inference_mode():
        while not stop.is_set():
            forward(0, x)
            forward.undo(0, 8)


@contextlib.contextmanager
def co_runner(spec: str, core: int, timeout_s: float = 300.0) -> Iterator[None]:
    """Keep `core` busy with `spec`'s forward passes in another process (the load a pipeline's other
    stage puts on a shared memory system) for as long as the block runs; stopped on every exit path."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    stop, ready = context.Event(), context.Event()
    process = context.Process(target=_co_run, args=(spec, core, stop, ready), name="pipespec-co-runner", daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.2):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RunFailed(f"the co-runner ({spec} on core {core}) did not start "
                                f"(exit code {process.exitcode})")
        yield
    finally:
        stop.set()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
