"""What a draft learns from, for `pipespec models build` (backend/distill.py trains on it).

- `stdlib`: the Python standard library's sources and, when Debian's python3.11-doc is installed, its reST
  prose, as one token stream (cached); fixed windows of it with the teacher's top-k (cached), and for an
  exit draft the target's hidden state entering the trained layer.
- `responses`: the target's own greedy answers to instructions (backend/responses.py), one example per
  answer with the positions that predict a response token marked, and the teacher's top-k there (cached);
  α on the built-in prompts is scored on the target's greedy continuations of them, never trained on.
"""

from __future__ import annotations

import json
import os
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import require
from .models import cache_dir
from .responses import BLOCK

if TYPE_CHECKING:
    from .distill import DraftRecipe, Student

DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")


def corpus_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts
                   and "idlelib" not in p.parts)
    if DOC_SOURCES.is_dir():
        files += sorted(DOC_SOURCES.rglob("*.txt"))
    return files


def corpus_tokens(tokenizer: Any, progress: Callable = lambda it, **_: it) -> np.ndarray:
    """The whole corpus as one int32 token stream (cached by the file list's fingerprint)."""
    files = corpus_files()
    key = f"{len(files)}-{sum(f.stat().st_size for f in files)}"
    path = cache_dir() / "corpus" / f"stdlib-docs-{key}.npy"
    if path.is_file():
        return np.load(path)
    chunks = []
    for file in progress(files, desc="tokenising corpus"):
        text = file.read_text(encoding="utf-8", errors="replace")
        chunks.append(np.asarray(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id], dtype=np.int32))
    stream = np.concatenate(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, stream)
    os.replace(tmp, path)
    return stream


def _batch(stream: np.ndarray, recipe: DraftRecipe, step: int, eval_split: int) -> torch.Tensor:
    """Deterministic windows for a step: a generator seeded by (seed, step), training part of the stream."""
    rng = np.random.default_rng([recipe.seed, step])
    starts = rng.integers(eval_split, len(stream) - recipe.seq_len - 1, recipe.batch)
    return torch.from_numpy(np.stack([stream[s:s + recipe.seq_len] for s in starts]).astype(np.int64))


def _eval_batches(stream: np.ndarray, recipe: DraftRecipe) -> list[torch.Tensor]:
    """Held-out windows from the start of the stream (never sampled for training)."""
    rows = [stream[i * recipe.seq_len:(i + 1) * recipe.seq_len] for i in range(recipe.eval_windows)]
    return [torch.from_numpy(np.stack(rows[i:i + recipe.batch]).astype(np.int64))
            for i in range(0, len(rows), recipe.batch)]


def teacher_targets(stream: np.ndarray, recipe: DraftRecipe, target: torch.nn.Module, eval_split: int,
                    progress: Callable = lambda it, **_: it) -> dict[str, torch.Tensor]:
    """The teacher's top-k next-token distribution on `teacher_windows` fixed training windows (cached)."""
    key = f"{recipe.seed}-{recipe.teacher_windows}x{recipe.seq_len}-top{recipe.top_k}-{len(stream)}"
    path = cache_dir() / "corpus" / f"teacher-{key}.pt"
    if path.is_file():
        return torch.load(path)
    rng = np.random.default_rng([recipe.seed, 1 << 20])  # a stream of its own, apart from the step batches
    starts = rng.integers(eval_split, len(stream) - recipe.seq_len - 1, recipe.teacher_windows)
    ids = torch.from_numpy(np.stack([stream[s:s + recipe.seq_len] for s in starts]).astype(np.int64))
    probs, index = [], []
    with torch.no_grad():
        for chunk in progress(ids.split(recipe.batch), desc="teacher top-k"):
            top = F.log_softmax(target(input_ids=chunk).logits.float(), -1).topk(recipe.top_k, -1)
            probs.append(top.values.exp().half())
            index.append(top.indices.int())
    targets = {"ids": ids, "probs": torch.cat(probs), "index": torch.cat(index)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(targets, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return targets


def teacher_hidden(recipe: DraftRecipe, target: torch.nn.Module, ids: torch.Tensor,
                   progress: Callable = lambda it, **_: it) -> torch.Tensor:
    """The target's hidden state entering layer L − 1 (the exit's trained layer) on the cached windows, fp16."""
    key = f"{recipe.seed}-{len(ids)}x{ids.shape[1]}-L{recipe.layers}-{int(ids[:, :4].sum())}"
    path = cache_dir() / "corpus" / f"teacher-hidden-{key}.pt"
    if path.is_file():
        return torch.load(path)
    from .layers import LayerSlice

    early = LayerSlice(target, range(recipe.layers - 1), "cpu", embed=True)  # only the layers below the exit
    rows = []
    for window in progress(ids, desc="exit inputs"):
        early.reset()
        rows.append(early.forward(window).half())
    hidden = torch.stack(rows)
    torch.save(hidden, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return hidden


def response_examples(rows: list[dict[str, Any]], seq_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (N, seq_len): prompt + response, right-padded (a too-long prompt loses its start);
    mask marks the positions whose next token is a response token."""
    ids = torch.full((len(rows), seq_len), pad, dtype=torch.int64)
    mask = torch.zeros((len(rows), seq_len), dtype=torch.bool)
    for i, row in enumerate(rows):
        full = row["prompt_ids"] + row["response_ids"]
        cut = max(0, len(full) - seq_len)
        first = max(len(row["prompt_ids"]) - 1 - cut, 0)
        kept = full[cut:]
        ids[i, :len(kept)] = torch.tensor(kept)
        mask[i, first:len(kept) - 1] = True
    return ids, mask


def response_teacher(ids: torch.Tensor, mask: torch.Tensor, recipe: DraftRecipe, target: torch.nn.Module,
                     progress: Callable = lambda it, **_: it, features: bool = False,
                     block: int = BLOCK) -> dict[str, torch.Tensor]:
    """The teacher's top-k next-token distribution at the masked positions of the response examples, flat in
    row-major order of the mask (`offsets[r]` is where row r's begin); with `features`, also the target's
    post-norm last hidden state at every used position of each row (fp16, flat: `feature_offsets[r]` is where
    row r's begin, `used_width` of its mask long), what a feature draft learns from.
    Computed and cached `block` rows at a time (the response set grows by whole blocks, so a grown set reuses
    the blocks it had) and joined here."""
    parts = [_response_teacher_block(ids[at:at + block], mask[at:at + block], recipe, target, progress, features)
             for at in range(0, len(ids), block)]
    if len(parts) == 1:
        return parts[0]
    joined = {key: torch.cat([part[key] for part in parts]) for key in parts[0] if not key.endswith("offsets")}
    for key in [k for k in parts[0] if k.endswith("offsets")]:  # each part's start at 0: shift by the ones before
        shift, pieces = 0, [torch.zeros(1, dtype=torch.int64)]
        for part in parts:
            pieces.append(part[key][1:] + shift)
            shift += int(part[key][-1])
        joined[key] = torch.cat(pieces)
    return joined


def _response_teacher_block(ids: torch.Tensor, mask: torch.Tensor, recipe: DraftRecipe, target: torch.nn.Module,
                            progress: Callable, features: bool) -> dict[str, torch.Tensor]:
    """`response_teacher` on one block of rows, cached by its rows' fingerprint. Rows go through in order of
    length, so that a batch pads little, and the head runs on the masked rows only: the 49k-way head over every
    padded position would be most of the cost."""
    key = f"{len(ids)}x{ids.shape[1]}-top{recipe.top_k}-{int(ids.sum())}-{int(mask.sum())}" + ("-feat" * features)
    path = cache_dir() / "corpus" / f"teacher-responses-flat-{key}.pt"
    if path.is_file():
        return torch.load(path)
    widths = [used_width(mask[r:r + 1]) for r in range(len(ids))]
    order = sorted(range(len(ids)), key=widths.__getitem__)
    per_row: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
    with torch.no_grad():
        for start in progress(range(0, len(ids), recipe.batch), desc="teacher on responses"):
            rows = order[start:start + recipe.batch]
            width = max(widths[r] for r in rows)
            hidden = target.model(input_ids=ids[rows, :width]).last_hidden_state  # (b, width, d), post-norm
            picked = mask[rows, :width]
            top = F.log_softmax(target.lm_head(hidden[picked]).float(), -1).topk(recipe.top_k, -1)
            counts = picked.sum(1).tolist()
            for k, (r, values, index) in enumerate(zip(rows, top.values.exp().half().split(counts),
                                                       top.indices.int().split(counts), strict=True)):
                per_row[r] = (values, index, hidden[k, :widths[r]].half() if features else None)
    counts = mask.sum(1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    every = [per_row[r] for r in range(len(ids))]
    targets = {"probs": torch.cat([v for v, _, _ in every]), "index": torch.cat([i for _, i, _ in every]),
               "offsets": offsets}
    if features:
        targets["features"] = torch.cat([f for _, _, f in every])  # type: ignore[misc]
        targets["feature_offsets"] = torch.cat([torch.zeros(1, dtype=torch.int64),
                                                torch.tensor(widths, dtype=torch.int64).cumsum(0)])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(targets, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return targets


def used_width(mask: torch.Tensor) -> int:
    """Positions a batch needs: up to its last masked position and the token after it."""
    last = int(mask.any(0).nonzero().max()) if bool(mask.any()) else 0
    return min(mask.shape[1], last + 2)


def flat_rows(cached: dict[str, torch.Tensor], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached top-k (probs, index) of `rows`, in the row-major order of their masks."""
    offsets = cached["offsets"]
    spans = [torch.arange(int(offsets[r]), int(offsets[r + 1])) for r in rows.tolist()]
    where = torch.cat(spans) if spans else torch.zeros(0, dtype=torch.int64)
    return cached["probs"][where], cached["index"][where]


def builtin_greedy(target: torch.nn.Module, tokenizer: Any, new_tokens: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in prompts followed by the target's own greedy continuation (one at a time, unpadded: the
    lossless output), as (ids, mask) for `Student.agreement` (cached). Evaluation only: never trained on."""
    from .prompts import encode, load_prompts

    prompts = load_prompts(None)
    path = cache_dir() / "corpus" / f"builtin-greedy-{len(prompts)}x{new_tokens}.pt"
    if path.is_file():
        return torch.load(path)
    rows = []
    with torch.no_grad():
        for prompt in prompts:
            ids = encode(prompt, tokenizer)
            out = target.generate(input_ids=torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                                  pad_token_id=tokenizer.eos_token_id)[0, len(ids):].tolist()
            rows.append({"prompt_ids": ids, "response_ids": out})
    longest = max(len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows)
    examples = response_examples(rows, longest, tokenizer.eos_token_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(examples, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return examples


def greedy_agreement(student: Student, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                     batch: int) -> tuple[int, int]:
    """(greedy hits, positions) of a separate draft over `rows` of (ids, mask), `batch` rows a forward."""
    hits = total = 0
    for part in rows.split(batch):
        width = used_width(mask[part])
        h, n = student.agreement(ids[part, :width], mask[part, :width])
        hits, total = hits + h, total + n
    return hits, total


def held_out_split(rows: int, seen: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, training) row indices of a response set: the held-out agreement's 5% of the rows, drawn
    only from those past the first `seen` (which the draft it starts from learnt from: scored there, the
    agreement would be contaminated); every other row is trained on. With `seen` 0, a seeded permutation."""
    order = seen + np.random.default_rng([seed, 7]).permutation(rows - seen)
    held = min(max(1, rows // 20), max(1, len(order) // 2))
    return order[:held], np.concatenate([np.arange(seen), order[held:]])


class TrainingData:
    """What one recipe trains and evaluates on: `loss(step)` and `evaluate()` (the curve's point)."""

    def __init__(self, recipe: DraftRecipe, student: Student, target: torch.nn.Module, tokenizer: Any,
                 progress: Callable, record: dict[str, Any]) -> None:
        self.recipe, self.student, self.target = recipe, student, target
        if recipe.corpus == "responses":
            from .responses import load_responses, responses_dir

            rows = load_responses()
            require(len(rows) >= recipe.responses,
                    f"{recipe.name} learns from the first {recipe.responses} responses; the set has {len(rows)}: "
                    f"`pipespec models responses --prompts {-(-recipe.responses // BLOCK) * BLOCK}` (resumable)")
            rows = rows[:recipe.responses]
            ids, mask = response_examples(rows, recipe.seq_len, tokenizer.eos_token_id)
            seen = int(record.get("responses_before", 0))
            require(seen < len(rows), f"{recipe.name} learns from no response its start did not (the first "
                    f"{seen}): its held-out agreement would be scored on trained rows; raise its responses")
            held, self.train_rows = held_out_split(len(rows), seen, recipe.seed)
            self.held = (ids[held], mask[held])
            self.held_rows = torch.from_numpy(held)
            record.setdefault("held_out", {"rows": len(held), "after_row": seen})
            self.ids, self.mask = ids, mask
            self.builtin = builtin_greedy(target, tokenizer, recipe.builtin_tokens)
            record.setdefault("corpus_tokens", int(mask[self.train_rows].sum()))
            record["responses"] = json.loads((responses_dir() / "build.json").read_text())
        else:
            self.stream = corpus_tokens(tokenizer, progress)
            self.eval_split = recipe.eval_windows * recipe.seq_len
            record.setdefault("corpus_tokens", len(self.stream))
        self.cached: dict[str, torch.Tensor] | None = None
        self.builtin_features: torch.Tensor | None = None
        self.progress = progress

    def prepare(self) -> None:
        """The teacher's cached targets (computed once, before the first step that needs them)."""
        recipe = self.recipe
        if recipe.corpus == "responses" and recipe.top_k:
            eagle = recipe.kind == "eagle"
            self.cached = response_teacher(self.ids, self.mask, recipe, self.target, self.progress, features=eagle)
            if eagle:  # the regression's unit: the features' spread
                self.student.feature_scale = float(self.cached["features"][:1 << 16].float().std())
        elif recipe.teacher_windows:
            self.cached = teacher_targets(self.stream, recipe, self.target, self.eval_split, self.progress)
            if recipe.kind == "exit":
                self.cached["hidden"] = teacher_hidden(recipe, self.target, self.cached["ids"], self.progress)

    def loss(self, step: int) -> tuple[torch.Tensor, int]:
        """(loss, tokens learnt from) of one step."""
        recipe, student, cached = self.recipe, self.student, self.cached
        if recipe.corpus == "responses":
            rng = np.random.default_rng([recipe.seed, step])
            rows = torch.from_numpy(self.train_rows[rng.integers(0, len(self.train_rows), recipe.batch)])
            width = used_width(self.mask[rows])
            ids, mask = self.ids[rows, :width], self.mask[rows, :width]
            if cached is None:  # top_k 0: the response tokens are the target's greedy choices, learnt as labels
                labels = ids[:, 1:][mask[:, :-1]]
                probs, index = torch.ones(len(labels), 1), labels.unsqueeze(1)  # (the cut's last column is unmasked)
            else:
                probs, index = flat_rows(cached, rows)
            if recipe.kind == "eagle":
                negatives = torch.from_numpy(rng.integers(0, self.target.config.vocab_size, recipe.negatives))
                features = padded_features(cached, rows, width)  # type: ignore[arg-type]
                return student.eagle_loss(features, ids, mask, probs, index, negatives), int(mask.sum())
            return student.response_loss(ids, mask, probs, index), int(mask.sum())
        tokens = recipe.batch * recipe.seq_len
        batch = _batch(self.stream, recipe, step, self.eval_split)
        if step < recipe.pretrain_steps:
            return student.pretrain_loss(batch), tokens
        if cached is not None:
            rng = np.random.default_rng([recipe.seed, step])
            rows = torch.from_numpy(rng.integers(0, len(cached["ids"]), recipe.batch))
            if recipe.kind == "exit":
                negatives = torch.from_numpy(rng.integers(0, self.target.config.vocab_size, recipe.negatives))
                return student.cached_exit_loss(cached["hidden"][rows], cached["probs"][rows],
                                                cached["index"][rows], negatives), tokens
            return student.cached_loss(cached["ids"][rows], cached["probs"][rows], cached["index"][rows]), tokens
        return student.losses(batch)[0], tokens

    def evaluate(self) -> dict[str, float]:
        """Held-out greedy agreement with the teacher (and, on responses, α on the built-in prompts, with the
        number of tokens it is scored on: its standard error)."""
        student = self.student
        with torch.no_grad():
            if self.recipe.corpus != "responses":
                batches = _eval_batches(self.stream, self.recipe)
                return {"agreement": float(np.mean([student.losses(b)[1].item() for b in batches]))}
            if self.recipe.kind == "eagle":
                return self._evaluate_feature_draft()
            point = {}
            for name, (ids, mask) in (("agreement", self.held), ("alpha_builtin", self.builtin)):
                hits, total = greedy_agreement(student, ids, mask, torch.arange(len(ids)), self.recipe.batch)
                point[name] = hits / max(total, 1)
            point["alpha_tokens"] = total  # (the last set's: the built-in prompts' tokens α is scored on)
            return point

    def _evaluate_feature_draft(self) -> dict[str, float]:
        """A feature draft's greedy agreement at each unrolled step: on the held-out responses (their cached
        features; computed by `prepare`, so the step-0 point before it has none) and on the built-in prompts
        (`alpha_builtin`: the first draft past a verified prefix; `_d2`, `_d3`: the draft 2 and 3 tokens past it,
        given the ones before it were right)."""
        if self.builtin_features is None:
            ids, mask = self.builtin
            self.builtin_features = self.target.model(input_ids=ids).last_hidden_state
        sets = [("alpha_builtin", self.builtin_features, *self.builtin)]
        if self.cached is not None:
            rows = self.held_rows[:32]
            width = used_width(self.mask[rows])
            sets.append(("agreement", padded_features(self.cached, rows, width), self.ids[rows, :width],
                         self.mask[rows, :width]))
        point = {}
        for name, features, ids, mask in sets:
            hits = [0] * self.recipe.depth
            total = [0] * self.recipe.depth
            for rows in torch.arange(len(ids)).split(self.recipe.batch):
                width = used_width(mask[rows])
                per_step = self.student.eagle_agreement(features[rows, :width], ids[rows, :width], mask[rows, :width])
                for s, (h, n) in enumerate(per_step):
                    hits[s], total[s] = hits[s] + h, total[s] + n
            for s in range(self.recipe.depth):
                point[name + (f"_d{s + 1}" if s else "")] = hits[s] / max(total[s], 1)
            if name == "alpha_builtin":
                point["alpha_tokens"] = total[0]
        return point


def padded_features(cached: dict[str, torch.Tensor], rows: torch.Tensor, width: int) -> torch.Tensor:
    """The cached target features of `rows`, (B, width, d) float32, zero past each row's used width."""
    offsets, flat = cached["feature_offsets"], cached["features"]
    out = torch.zeros(len(rows), width, flat.shape[1])
    for k, r in enumerate(rows.tolist()):
        row = flat[int(offsets[r]):int(offsets[r + 1])][:width]
        out[k, :len(row)] = row.float()
    return out
