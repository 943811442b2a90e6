"""The target's own responses, for distilling drafts that serve the prompts the product runs.

EAGLE, Medusa and Hugging Face's assistant training learn from the target's responses to prompts like
the ones it will serve; a draft distilled on Python sources instead reaches α ≈ 0.3 on the built-in
chat prompts. This module makes such a set offline:

- **Prompts** are built from the Python standard library (parsed with `ast`, never imported): "write a
  function that <its docstring's first sentence>", "explain this code", "rewrite/complete this
  function", "summarise in two sentences: <a module's or function's docstring>", and short prose
  instructions on everyday topics. They are kept disjoint from the built-in prompt set: any candidate
  sharing an 8-word run (or its function name) with a built-in prompt is dropped.
- **Responses** are the target's greedy continuations under the built-in prompts' chat template,
  generated in batches (left-padded, prompts of similar length together) and written shard by shard
  into `models/responses/`, so that an interrupted build resumes where it stopped and the set outlives
  the machine it was made on. `build.json` there records the prompts, the tokens generated, the CPU and
  wall seconds, and the command.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import random
import re
import sys
import sysconfig
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require
from .prompts import Prompt, load_prompts

SHARD_PROMPTS = 64  # prompts per shard file: the unit of resumption
BLOCK = 2048  # a set grows by blocks of prompts: the first N of a larger set are the set of N (N a multiple)
SEED = 0
_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Everyday topics for the prose instructions (the built-in set's own two topics are excluded below).
TOPICS = (
    "how a bicycle's gears work", "why the sky is blue", "how bread rises", "how a refrigerator keeps food cold",
    "why leaves change colour in autumn", "how a compass works", "how vaccines train the immune system",
    "why we have tides", "how a rainbow forms", "how bees make honey", "how a lightbulb produces light",
    "why ice floats on water", "how an aeroplane stays in the air", "how a battery stores energy",
    "how plants make food from sunlight", "why cats purr", "how a telescope works", "how glass is made",
    "why the moon has phases", "how a thermostat works", "how clouds form", "how coffee is roasted",
    "how a library organises its books", "why exercise is good for the heart", "how a river shapes a valley",
    "how a microwave oven heats food", "how to plant a tree", "how to prepare for a job interview",
    "how to write a good email", "how to learn a new language", "how to keep a houseplant alive",
    "how to bake a simple loaf of bread", "how to change a flat tyre", "how to plan a weekend hike",
    "how to save money on groceries", "how to take care of a dog", "how earthquakes happen",
    "how volcanoes erupt", "how a camera captures a photograph", "how sound travels", "how a piano makes sound",
    "why the ocean is salty", "how snowflakes form", "how a solar panel makes electricity",
    "how the internet delivers a web page", "how a bank account earns interest", "how recycling works",
    "how a train runs on rails", "why sleep matters", "how to brew a pot of coffee", "how to make pancakes",
    "how to tie a tie", "how to organise a small party", "how to study for an exam", "how to start running",
)
PROSE_FORMS = ("Explain in a short paragraph {t}.", "Write a short paragraph explaining {t}.",
               "Describe in three sentences {t}.", "Explain {t} to a ten-year-old in a few sentences.")


@dataclass(frozen=True)
class Spec:
    """What a response set is made of: how many prompts and how long each response may be."""
    prompts: int = 2048
    max_new_tokens: int = 160
    batch: int = 16
    seed: int = SEED


def responses_dir() -> Path:
    from .models import drafts_dir

    return drafts_dir() / "responses"


def _stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip"}
    return sorted(p for p in stdlib.rglob("*.py") if not skip & set(p.relative_to(stdlib).parts))


def _first_sentence(doc: str) -> str:
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return (text[:end] if end > 0 else text).rstrip(".")


def _signature(node: ast.FunctionDef) -> str:
    names = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
    return f"{node.name}({', '.join(names)})"


def candidates() -> Iterator[tuple[str, str, str]]:
    """(id, task, prompt text) for every instruction the standard library and the topic list give."""
    for path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = path.stem if path.stem != "__init__" else path.parent.name
        doc = ast.get_docstring(tree)
        if doc and 200 <= len(doc) <= 1500:
            yield f"sum-{module}", "summarise", f"Summarise in two sentences:\n\n{' '.join(doc.split())}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            fdoc = ast.get_docstring(node)
            body = textwrap.dedent(ast.get_source_segment(source, node, padded=True) or "")
            lines = body.count("\n") + 1
            key = f"{module}.{node.name}"
            if fdoc and 20 <= len(_first_sentence(fdoc)) <= 200:
                sentence = _first_sentence(fdoc)
                yield (f"code-{key}", "code", f"Write a Python function `{_signature(node)}` that "
                                              f"{sentence[0].lower() + sentence[1:]}.")
            if 4 <= lines <= 25 and "\t" not in body:
                yield f"explain-{key}", "code-edit", f"Explain what this Python function does:\n\n{body}"
                yield (f"rewrite-{key}", "code-edit",
                       f"Rewrite this function with type hints and a docstring, and return the full code:\n\n{body}")
            if fdoc and 3 <= lines <= 30 and len(fdoc) <= 400:
                header = body.split("\n", 1)[0]
                yield (f"complete-{key}", "code",
                       f"Complete this function:\n\n{header}\n    \"\"\"{' '.join(fdoc.split())}\"\"\"\n")
            if fdoc and 200 <= len(fdoc) <= 1200:
                yield f"sum-{key}", "summarise", f"Summarise in two sentences:\n\n{' '.join(fdoc.split())}"
    for i, topic in enumerate(TOPICS):
        for j, form in enumerate(PROSE_FORMS):
            yield f"prose-{i}-{j}", "prose", form.format(t=topic)


def _ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _names(text: str) -> set[str]:
    return {name for pair in re.findall(r"`(\w+)|def (\w+)", text) for name in pair if name}


class HeldOut:
    """The built-in prompt set, as what a training prompt may not share with it: an 8-word run, or an
    identifier named in backticks or a def."""

    def __init__(self, prompts: list[Prompt]) -> None:
        self.texts = {p.text for p in prompts}
        self.grams = set().union(*(_ngrams(p.text or "") for p in prompts))
        self.names = set().union(*(_names(p.text or "") for p in prompts))

    def overlaps(self, text: str) -> bool:
        return text in self.texts or bool(_ngrams(text) & self.grams) or bool(_names(text) & self.names)


def training_prompts(count: int, seed: int = SEED) -> list[Prompt]:
    """`count` instructions, disjoint from the built-in prompts, block by block (`BLOCK` at a time): each block
    draws the built-in set's mix of tasks from what earlier blocks left, so a set grown by whole blocks keeps
    its answered prompts as its first ones."""
    held_out = HeldOut(load_prompts(None))
    seen: set[str] = set()
    pool = []
    for id_, task, text in candidates():
        if id_ in seen or len(text) > 2000 or held_out.overlaps(text):
            continue
        seen.add(id_)
        pool.append(Prompt(id_, text, task=task))
    random.Random(seed).shuffle(pool)
    chosen: list[Prompt] = []
    for block in range(-(-count // BLOCK)):
        taken = {p.id for p in chosen}
        chosen += _block([p for p in pool if p.id not in taken], min(BLOCK, count - len(chosen)), seed + 1 + block)
    return chosen


def _block(pool: list[Prompt], count: int, seed: int) -> list[Prompt]:
    # the built-in set's mix: half code, a third summaries and edits, the rest prose
    by_task: dict[str, list[Prompt]] = {}
    for prompt in pool:
        by_task.setdefault(prompt.task, []).append(prompt)
    mix = {"code": 0.4, "code-edit": 0.25, "summarise": 0.2, "prose": 0.15}
    chosen: list[Prompt] = []
    for task, share in mix.items():
        chosen += by_task.get(task, [])[:round(count * share)]
    rest = [p for p in pool if p not in set(chosen)]
    chosen += rest[:count - len(chosen)]
    random.Random(seed).shuffle(chosen)
    return chosen[:count]


def grows(old: dict[str, Any], new: Spec) -> bool:
    """Whether a set built with spec `old` is the start of one built with `new`: the same options, whole blocks
    of prompts answered, more asked for."""
    return ({**old, "prompts": new.prompts} == asdict(new) and old.get("prompts", 0) % BLOCK == 0
            and new.prompts > old.get("prompts", 0))


def read_shard(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_responses(folder: Path | None = None) -> list[dict[str, Any]]:
    """Every generated example: {id, task, prompt, prompt_ids, response_ids}, in shard order."""
    folder = folder or responses_dir()
    shards = sorted(folder.glob("shard-*.jsonl.gz"))
    require(bool(shards), f"no response set in {folder}: build it with `pipespec models responses`")
    return [row for shard in shards for row in read_shard(shard)]


def _write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def _answer(model: Any, tokenizer: Any, shard: list[Prompt], spec: Spec, pad: int) -> list[dict[str, Any]]:
    """The target's greedy responses to a shard's prompts, in the shard's order (batched by length)."""
    import torch

    from .prompts import encode

    encoded = sorted(((p, encode(p, tokenizer)) for p in shard), key=lambda e: len(e[1]))  # less padding
    rows = []
    for i in range(0, len(encoded), spec.batch):
        chunk = encoded[i:i + spec.batch]
        width = max(len(ids) for _, ids in chunk)
        ids = torch.tensor([[pad] * (width - len(x)) + x for _, x in chunk])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for _, x in chunk])
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=spec.max_new_tokens,
                                       do_sample=False, pad_token_id=pad)
        for (prompt, prompt_ids), row in zip(chunk, generated[:, width:].tolist(), strict=True):
            if tokenizer.eos_token_id in row:
                row = row[:row.index(tokenizer.eos_token_id) + 1]
            rows.append({"id": prompt.id, "task": prompt.task, "prompt": prompt.text, "prompt_ids": prompt_ids,
                         "response_ids": row})
    order = {p.id: i for i, p in enumerate(shard)}
    return sorted(rows, key=lambda r: order[r["id"]])


def generate(spec: Spec, folder: Path | None = None, minutes: float | None = None, threads: int | None = None,
             progress: Callable = lambda it, **_: it, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate (or resume) the response set; returns its build record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import target_path

    folder = folder or responses_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "build.json"
    record: dict[str, Any] = {"spec": asdict(spec), "tokens_generated": 0, "prompts_done": 0,
                              "wall_seconds": 0.0, "cpu_seconds": 0.0}
    if record_path.is_file():
        old = json.loads(record_path.read_text())
        grown = old.get("spec") != asdict(spec)
        if grown and not grows(old.get("spec") or {}, spec):
            raise ConfigError(f"{folder} holds a response set built with {old.get('spec')}; remove it, build with "
                              f"the same options, or grow it by whole blocks of {BLOCK} prompts (--prompts)")
        record = old | {"spec": asdict(spec)}
        if grown:  # what it was before
            record["grown_from"] = [*old.get("grown_from", []), {"prompts": old["spec"]["prompts"],
                                                                  "tokens_generated": old["tokens_generated"]}]
    if threads:
        torch.set_num_threads(threads)
    path = target_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = training_prompts(spec.prompts, spec.seed)
    shards = [prompts[i:i + SHARD_PROMPTS] for i in range(0, len(prompts), SHARD_PROMPTS)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    started = time.monotonic()
    for number, shard in enumerate(progress(shards, desc="target responses")):
        out = folder / f"shard-{number:04d}.jsonl.gz"
        if out.is_file():
            continue
        if minutes is not None and time.monotonic() - started > minutes * 60:
            break
        wall, cpu = time.monotonic(), time.process_time()
        rows = _answer(model, tokenizer, shard, spec, pad)
        _write_shard(out, rows)
        record["tokens_generated"] += sum(len(r["response_ids"]) for r in rows)
        record["prompts_done"] += len(rows)
        record["wall_seconds"] += time.monotonic() - wall
        record["cpu_seconds"] += time.process_time() - cpu
        record |= {"shards": len(list(folder.glob("shard-*.jsonl.gz"))), "threads": torch.get_num_threads(),
                   "torch": torch.__version__,
                   "command": f"pipespec models responses --prompts {spec.prompts} --max-new-tokens "
                              f"{spec.max_new_tokens} --batch {spec.batch}  (resumable)"}
        tmp = record_path.with_name("build.json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, record_path)
        log(f"shard {number}: {record['prompts_done']}/{len(prompts)} prompts, "
            f"{record['tokens_generated']} tokens, {record['wall_seconds']:.0f} s")
    print(f"response set: {record['prompts_done']}/{len(prompts)} prompts, {record['tokens_generated']} tokens "
          f"in {folder}", file=sys.stderr)
    return record
