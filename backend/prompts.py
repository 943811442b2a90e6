"""Prompt sets: the built-in one shipped with the project, or the user's JSONL.

Each line is {"id": ..., "prompt": "text"} (run through the target's chat template) or
{"id": ..., "input_ids": [...]} (token ids, used as they are).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require
from ..io import read_user_text


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str | None = None
    input_ids: tuple[int, ...] | None = None
    task: str = ""


def load_prompts(path: str | None, limit: int | None = None) -> list[Prompt]:
    if path is None:
        text = (resources.files("pipespec") / "data" / "prompts.jsonl").read_text(encoding="utf-8")
        where = "built-in prompts"
    else:
        file = Path(path)
        require(file.is_file(), f"--prompts: {path!r} does not exist")
        text, where = read_user_text(file, "--prompts"), f"--prompts {path}"
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: line {number} is not JSON") from None
        require(isinstance(entry, dict) and ("prompt" in entry or "input_ids" in entry),
                f"{where}: line {number} needs \"prompt\" or \"input_ids\"")
        ids = entry.get("input_ids")
        require(ids is None or (isinstance(ids, list) and ids and all(isinstance(i, int) and i >= 0 for i in ids)),
                f"{where}: line {number}: input_ids must be a non-empty list of token ids")
        prompts.append(Prompt(str(entry.get("id", number)), entry.get("prompt"),
                              tuple(ids) if ids is not None else None, str(entry.get("task", ""))))
    require(len(prompts) > 0, f"{where}: no prompts")
    return prompts[:limit] if limit is not None else prompts


def encode(prompt: Prompt, tokenizer: Any, chat: bool = True) -> list[int]:
    """Token ids of a prompt: as given, or through the tokenizer (its chat template when it has one)."""
    if prompt.input_ids is not None:
        return list(prompt.input_ids)
    require(tokenizer is not None, f"prompt {prompt.id!r} is text, but the chain has no tokenizer")
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt.text}], add_generation_prompt=True,
                                            tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(prompt.text)["input_ids"]]
