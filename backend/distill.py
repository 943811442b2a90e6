"""Drafts for the built-in target, built offline and deterministically (`pipespec models build`).

Two kinds, both distilled from the target (KL to its next-token distribution at every position):
- `exit`: an early-exit self-draft: the target's first L layers with the last of them and the final
  norm fine-tuned (the embeddings and head stay the target's). Only the trained tensors are saved;
  the draft is assembled from the target when loaded.
- `small`: a separate small Llama (a few layers, narrow), embeddings initialised from a PCA of the
  target's, everything trained; saved whole in fp16.

Corpus: the Python standard library's sources and, when Debian's python3.11-doc is installed, its reST
prose; tokenised once and cached. Or (`corpus="responses"`) the target's own greedy answers to
instructions made from the standard library (`backend/responses.py`): the teacher's top-k at the response
positions, with α on the built-in prompts (the target's greedy continuations of them, never trained on)
recorded along the curve. Training is resumable: a checkpoint is written every few minutes
to the cache folder, and a run continues from it until its step budget is spent.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import require
from .draft_data import TrainingData
from .eagle import FeatureHead, unrolled
from .models import cache_dir, quiet_transformers, target_path


@dataclass(frozen=True)
class DraftRecipe:
    name: str
    kind: str  # exit | small | eagle (backend/eagle.py)
    layers: int  # exit: the exit layer L; small: the draft's depth
    hidden: int = 256  # small only
    steps: int = 3000  # total optimiser steps
    pretrain_steps: int = 0  # the first ones learn the corpus's next tokens (no teacher: 5-10x cheaper)
    batch: int = 8
    seq_len: int = 256
    lr: float = 1e-3
    seed: int = 0
    eval_windows: int = 32
    # the distillation phase learns the teacher's top-k next-token distribution on this many fixed
    # training windows, computed once and cached (the teacher's forward is the cost of distillation;
    # recomputing it every step makes a step 5x dearer); 0 computes the full KL every step instead.
    # An exit draft also caches its trained layer's input (the target's hidden state there) and scores
    # its logits on a sampled vocabulary: the batch's teacher top-k plus `negatives` random tokens
    # (sampled softmax: the 49k-row head is most of an exit step's cost).
    teacher_windows: int = 0
    top_k: int = 16
    negatives: int = 2048
    # what it learns from: "stdlib" (the corpus above) or "responses" (the target's own answers to
    # instructions, `pipespec models responses`: the teacher's top-k on the response positions only)
    corpus: str = "stdlib"
    init: str | None = None  # a committed draft (or a checkpoint folder) whose weights it starts from (small only)
    builtin_tokens: int = 128  # responses corpus: the target's greedy tokens per built-in prompt that α is scored on
    responses: int = 2048  # responses corpus: the set's first N (it grows by blocks; a recipe keeps what it learnt on)
    # eagle: the steps training unrolls (step s feeds the draft's own features s tokens past the verified prefix),
    # each weighted by decay**s, and the noise added to the true features it reads (a fraction of their spread)
    depth: int = 3
    decay: float = 0.8
    noise: float = 0.1


RECIPES = {
    "smollm2-exit8": DraftRecipe("smollm2-exit8", "exit", layers=8, steps=1000, lr=5e-4, teacher_windows=768),
    # the exit halfway up: PPSD's two stages balanced (15 shared layers + the trained one vs 15)
    "smollm2-exit16": DraftRecipe("smollm2-exit16", "exit", layers=16, steps=1000, lr=5e-4, teacher_windows=768),
    "smollm2-small4": DraftRecipe("smollm2-small4", "small", layers=4, hidden=256, steps=2000, pretrain_steps=1400,
                                  teacher_windows=768),
    # small4 fine-tuned on the target's own chat responses: the draft for the prompts the product serves
    # (top_k 0: the responses are the target's greedy tokens, learnt as labels: its argmax, with no teacher
    # forward, which on this CPU would cost an hour over the set)
    "smollm2-chat4": DraftRecipe("smollm2-chat4", "small", layers=4, hidden=256, steps=720, seq_len=384,
                                 lr=5e-4, corpus="responses", init="smollm2-small4", eval_windows=0, top_k=0),
    # chat4 trained on twice the responses (the set's first two blocks): what more of the target's own answers
    # buys a small draft (chat4's α was still creeping up, 0.37, as its learning rate decayed to zero)
    "smollm2-chat5": DraftRecipe("smollm2-chat5", "small", layers=4, hidden=256, steps=1000, seq_len=384,
                                 lr=3e-4, corpus="responses", init="smollm2-chat4", eval_windows=0, top_k=0,
                                 responses=4096),
    # a feature draft (EAGLE-style, backend/eagle.py) on the same responses: one layer over the target's own last
    # hidden states, learning its next feature and (on a sampled vocabulary) its top-8 next-token distribution
    "smollm2-eagle1": DraftRecipe("smollm2-eagle1", "eagle", layers=1, steps=800, seq_len=544, lr=2e-3,
                                  corpus="responses", eval_windows=0, top_k=8, depth=2),
    # eagle1 on twice the responses (the set's first two blocks), for twice the steps: what more of the target's
    # own answers buys a feature draft (the committed one: α 0.376 on the built-in prompts, eagle1's 0.318)
    "smollm2-eagle2": DraftRecipe("smollm2-eagle2", "eagle", layers=1, steps=1600, seq_len=544, lr=2e-3,
                                  corpus="responses", eval_windows=0, top_k=8, depth=2, responses=4096),
}


def pca_embeddings(weight: torch.Tensor, hidden: int) -> torch.Tensor:
    """(V, hidden): the target's embeddings projected on their top principal directions."""
    centred = weight - weight.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)  # v: (d, d)
    projected = centred @ v[:hidden].T
    return projected / projected.std() * weight.std()


class Student(torch.nn.Module):
    """What is trained, with the teacher it learns from."""

    def __init__(self, recipe: DraftRecipe, target: torch.nn.Module) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        self.recipe, self.target = recipe, target
        for p in target.parameters():
            p.requires_grad_(False)
        if recipe.kind == "eagle":
            require(recipe.corpus == "responses", "a feature draft learns from the responses corpus")
            torch.manual_seed(recipe.seed)
            self.head = FeatureHead(target)
            self.feature_scale = 1.0  # the features' spread (TrainingData sets it): the regression's unit
        elif recipe.kind == "exit":
            require(1 <= recipe.layers < target.config.num_hidden_layers, "exit layer out of range")
            self.layer = _clone(target.model.layers[recipe.layers - 1])
            self.norm = _clone(target.model.norm)
        else:
            config = LlamaConfig(vocab_size=target.config.vocab_size, hidden_size=recipe.hidden,
                                 intermediate_size=recipe.hidden * 4, num_hidden_layers=recipe.layers,
                                 num_attention_heads=recipe.hidden // 64,
                                 num_key_value_heads=max(1, recipe.hidden // 128),
                                 max_position_embeddings=target.config.max_position_embeddings,
                                 rope_theta=getattr(target.config, "rope_theta", 10000.0), tie_word_embeddings=True,
                                 bos_token_id=target.config.bos_token_id, eos_token_id=target.config.eos_token_id)
            torch.manual_seed(recipe.seed)
            if recipe.init is not None:
                start = init_folder(recipe.init)
                require((start / "config.json").is_file(), f"{recipe.name} starts from {recipe.init}: build it first "
                                                           f"(pipespec models build {recipe.init})")
                self.model = LlamaForCausalLM.from_pretrained(start, dtype=torch.float32)
                require(self.model.config.hidden_size == recipe.hidden
                        and self.model.config.num_hidden_layers == recipe.layers,
                        f"{recipe.init} is not a {recipe.layers}-layer, {recipe.hidden}-wide draft")
                self.model.train()
            else:
                self.model = LlamaForCausalLM(config)
                with torch.no_grad():
                    pca = pca_embeddings(target.model.embed_tokens.weight, recipe.hidden)
                    self.model.model.embed_tokens.weight.copy_(pca)

    def pretrain_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the corpus's own next tokens (small drafts only)."""
        logits = self.model(input_ids=ids[:, :-1]).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    def losses(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL to the teacher, agreement of greedy tokens) on a (B, T) batch."""
        with torch.no_grad():
            teacher = self.target(input_ids=ids, output_hidden_states=self.recipe.kind == "exit")
            teacher_logp = F.log_softmax(teacher.logits.float(), -1)
        if self.recipe.kind == "exit":
            hidden = teacher.hidden_states[self.recipe.layers - 1]  # input to layer L, (B, T, d)
            logits = self._exit_logits(hidden)
        else:
            logits = self.model(input_ids=ids).logits
        logp = F.log_softmax(logits.float(), -1)
        kl = F.kl_div(logp, teacher_logp, log_target=True, reduction="batchmean") / ids.shape[1]
        agreement = (logits.argmax(-1) == teacher.logits.argmax(-1)).float().mean()
        return kl, agreement

    def cached_loss(self, ids: torch.Tensor, probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Cross-entropy to the teacher's (renormalised) top-k distribution: KL to it up to a constant."""
        logp = F.log_softmax(self.model(input_ids=ids).logits.float(), -1)
        probs = probs.float() / probs.float().sum(-1, keepdim=True)
        return -(probs * logp.gather(-1, index.long())).sum(-1).mean()

    def response_loss(self, ids: torch.Tensor, mask: torch.Tensor, probs: torch.Tensor,
                      index: torch.Tensor) -> torch.Tensor:
        """Cross-entropy to the teacher's top-k (probs, index: one row per masked position, row-major) at the
        positions that predict a response token (the head, most of a small draft's cost, runs on those only)."""
        hidden = self.model.model(input_ids=ids).last_hidden_state[mask]
        logp = F.log_softmax(self.model.lm_head(hidden).float(), -1)
        target = probs.float()
        target = target / target.sum(-1, keepdim=True)
        return -(target * logp.gather(-1, index.long())).sum(-1).mean()

    def agreement(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[int, int]:
        """(greedy next-token hits, positions) at the masked positions of (B, T) sequences whose masked
        positions are followed by the target's own greedy tokens: the per-token acceptance α of greedy
        speculative decoding with this draft."""
        with torch.no_grad():
            hidden = self.model.model(input_ids=ids).last_hidden_state[:, :-1][mask[:, :-1]]
            guess = self.model.lm_head(hidden).argmax(-1)
        return int((guess == ids[:, 1:][mask[:, :-1]]).sum()), int(mask[:, :-1].sum())

    def cached_exit_loss(self, hidden: torch.Tensor, probs: torch.Tensor, index: torch.Tensor,
                         negatives: torch.Tensor) -> torch.Tensor:
        """The exit's cross-entropy to the teacher's top-k on a sampled vocabulary (top-k ∪ negatives)."""
        return sampled_cross_entropy(self._exit_hidden(hidden.float()), self.target.lm_head.weight, probs, index,
                                     negatives)

    def eagle_loss(self, features: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, probs: torch.Tensor,
                   index: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """A feature draft's loss on (B, W) sequences with the target's features (B, W, d) and its top-k at the
        masked positions (row-major): at every unrolled step, cross-entropy to the teacher's top-k two tokens on
        (sampled vocabulary) plus smooth-L1 to its next feature, in units of the features' spread."""
        recipe = self.recipe
        preds = unrolled(self.head, self.target, features, ids, recipe.depth, recipe.noise if self.training else 0.0)
        picked = mask[:, 1:]  # prediction row i is f_{i+1}, whose head predicts x_{i+2}: the top-k at position i+1
        flat = torch.full(mask.shape, -1, dtype=torch.int64)
        flat[mask] = torch.arange(int(mask.sum()))
        where = flat[:, 1:][picked]
        probs, index = probs[where], index[where]
        wanted = features[:, 1:][picked].float() / self.feature_scale
        total, weights = torch.zeros(()), 0.0
        for s, pred in enumerate(preds):
            rows = pred[picked]
            ce = sampled_cross_entropy(rows, self.target.lm_head.weight, probs, index, negatives)
            regression = F.smooth_l1_loss(rows / self.feature_scale, wanted)
            total = total + recipe.decay ** s * (ce + regression)
            weights += recipe.decay ** s
        return total / weights

    def eagle_agreement(self, features: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, int]]:
        """(greedy hits, positions) per unrolled step at the masked positions: step 0 is α with the target's
        features (the first draft past the verified prefix), step s the conditional α s tokens further on."""
        with torch.no_grad():
            preds = unrolled(self.head, self.target, features, ids, self.recipe.depth)
            picked = mask[:, 1:-1]  # row i predicts x_{i+2}
            truth = ids[:, 2:][picked]
            out = []
            for pred in preds:
                guess = self.target.lm_head(pred[:, :-1][picked]).argmax(-1)
                out.append((int((guess == truth).sum()), int(picked.sum())))
        return out

    def _exit_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        model = self.target.model
        positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        rotary = model.rotary_emb(hidden, positions)
        out = self.layer(hidden, position_embeddings=rotary, attention_mask=None, position_ids=positions)
        out = out[0] if isinstance(out, tuple) else out
        return self.norm(out)

    def _exit_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.target.lm_head(self._exit_hidden(hidden))

    def trainable(self) -> list[torch.nn.Parameter]:
        kind = self.recipe.kind
        modules = [self.layer, self.norm] if kind == "exit" else [self.head] if kind == "eagle" else [self.model]
        return [p for m in modules for p in m.parameters()]


def sampled_cross_entropy(hidden: torch.Tensor, head: torch.Tensor, probs: torch.Tensor, index: torch.Tensor,
                          negatives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of hidden rows (..., d) through the head's rows (V, d) to the teacher's (renormalised) top-k
    (probs, index: (..., k)), on a sampled vocabulary: the batch's top-k and `negatives` (sampled softmax; the 49k-row
    head over every position is most of the cost)."""
    vocab = torch.unique(torch.cat([index.reshape(-1).long(), negatives]))  # sorted
    logp = F.log_softmax((hidden @ head[vocab].T).float(), -1)
    where = torch.searchsorted(vocab, index.long())
    probs = probs.float() / probs.float().sum(-1, keepdim=True)
    return -(probs * logp.gather(-1, where)).sum(-1).mean()


def _clone(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    clone = copy.deepcopy(module)
    for p in clone.parameters():
        p.requires_grad_(True)
    return clone


def checkpoint_path(recipe: DraftRecipe) -> Path:
    """Where a recipe's training checkpoint lives: the cache folder, or PIPESPEC_CHECKPOINTS."""
    return Path(os.environ.get("PIPESPEC_CHECKPOINTS", cache_dir() / "checkpoints")) / recipe.name / "state.pt"


class _Checkpoint:
    """Where a recipe's training resumes from: the trained tensors, the optimiser and the record, written
    atomically to the cache folder (PIPESPEC_CHECKPOINTS overrides it)."""

    def __init__(self, recipe: DraftRecipe) -> None:
        self.path = checkpoint_path(recipe)

    def load(self, student: Student, optimiser: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The record saved last (the student and optimiser restored to it), or None before the first save."""
        if not self.path.is_file():
            return None
        state = torch.load(self.path, weights_only=False)
        student.load_state_dict(state["student"], strict=False)
        optimiser.load_state_dict(state["optimiser"])
        return state["record"]

    def save(self, student: Student, optimiser: torch.optim.Optimizer, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainable = {k: v for k, v in student.state_dict().items() if not k.startswith("target.")}
        state = {"student": trainable, "optimiser": optimiser.state_dict(), "record": record}
        torch.save(state, self.path.with_suffix(".tmp"))
        os.replace(self.path.with_suffix(".tmp"), self.path)


def _optimise(recipe: DraftRecipe, step: int, data: TrainingData, optimiser: torch.optim.Optimizer,
              params: list[torch.nn.Parameter]) -> tuple[torch.Tensor, int]:
    """One step at the cosine schedule's rate; returns its loss and the tokens it trained on."""
    lr = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
    for group in optimiser.param_groups:
        group["lr"] = lr
    loss, tokens = data.loss(step)
    optimiser.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimiser.step()
    return loss, tokens


def init_folder(init: str) -> Path:
    """The folder of a recipe's `init`: a checkpoint folder, or a committed draft's name."""
    from .models import drafts_dir

    return Path(init) if Path(init).is_dir() else drafts_dir() / init


def _start_record(recipe: DraftRecipe) -> dict[str, Any] | None:
    """The build record of the draft a recipe starts from, when that one learnt from the recipe's own corpus."""
    if recipe.init is None:
        return None
    path = init_folder(recipe.init) / "build.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("recipe", {}).get("corpus") == recipe.corpus else None


def tokens_before(recipe: DraftRecipe) -> int:
    """Tokens of the recipe's own corpus that the draft it starts from learnt from (with those its own start
    learnt from), as their build records say: where its curve starts on the tokens axis. 0 for a fresh draft,
    a start trained on another corpus, or a checkpoint folder without a record."""
    record = _start_record(recipe)
    return 0 if record is None else int(record.get("tokens", 0)) + int(record.get("tokens_before", 0))


def responses_before(recipe: DraftRecipe) -> int:
    """How many of the response set's leading rows the draft it starts from (or that one's start) learnt from:
    the rows its held-out agreement is not drawn from. 0 as for `tokens_before`."""
    record = _start_record(recipe)
    return 0 if record is None else learnt_rows(record)


def learnt_rows(record: Mapping[str, Any]) -> int:
    """How many of the response set's leading rows a responses draft (its build record) and whatever it started
    from learnt from (a record from before recipes named it: the default, the set's first block)."""
    return max(int(record["recipe"].get("responses", DraftRecipe.responses)), int(record.get("responses_before", 0)))


def train(recipe: DraftRecipe, out_dir: Path, minutes: float | None, threads: int | None,
          progress: Callable = lambda it, **_: it, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (resuming from the last checkpoint) until the recipe's steps are done or `minutes` pass;
    export when done. Returns the training record."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .draft_export import export

    if threads:
        torch.set_num_threads(threads)
    quiet_transformers()  # (its per-load progress bar would precede a one-line error about the recipe)
    folder = target_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    target = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    student = Student(recipe, target)
    params = student.trainable()
    optimiser = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    checkpoint = _Checkpoint(recipe)
    record: dict[str, Any] = {"recipe": asdict(recipe), "curve": [], "step": 0, "tokens": 0, "cpu_seconds": 0.0,
                              "tokens_before": tokens_before(recipe), "responses_before": responses_before(recipe)}
    if (saved := checkpoint.load(student, optimiser)) is not None:
        record = saved
        record.setdefault("responses_before", responses_before(recipe))  # (a checkpoint written before it was kept)
        log(f"resuming {recipe.name} at step {record['step']}/{recipe.steps}")
    data = TrainingData(recipe, student, target, tokenizer, progress, record)
    started = last_save = time.monotonic()
    every = 50 if recipe.corpus == "responses" else 250
    if record["step"] < recipe.steps:
        data.prepare()
    if not record["curve"]:
        record["curve"].append({"step": 0, "tokens": 0} | data.evaluate())
    steps = range(record["step"], recipe.steps)
    for step in progress(steps, desc=f"training {recipe.name}", initial=record["step"], total=recipe.steps):
        t0 = time.process_time()
        loss, tokens = _optimise(recipe, step, data, optimiser, params)
        record["cpu_seconds"] += time.process_time() - t0
        record["step"] = step + 1
        record["tokens"] = record.get("tokens", step * recipe.batch * recipe.seq_len) + tokens
        if (step + 1) % every == 0 or step + 1 == recipe.steps:
            point = data.evaluate()
            record["curve"].append({"step": step + 1, "tokens": record["tokens"]} | point
                                   | {"loss": float(loss.item()), "phase": "corpus" if step < recipe.pretrain_steps
                                      else "distil"})
            log(f"step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in point.items()))
        if time.monotonic() - last_save > 300:
            checkpoint.save(student, optimiser, record)
            last_save = time.monotonic()
        if minutes is not None and time.monotonic() - started > minutes * 60:
            break
    checkpoint.save(student, optimiser, record)
    if record["step"] >= recipe.steps:
        export(student, recipe, out_dir, record, tokenizer)
    return record
