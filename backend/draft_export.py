"""A trained draft written to the repository's models/ (or a checkpoint folder): fp16 weights, and the
build.json that says how to rebuild it exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .draft_data import DOC_SOURCES, corpus_files

if TYPE_CHECKING:
    from .distill import DraftRecipe, Student


def provenance(recipe: DraftRecipe) -> dict[str, Any]:
    """How to rebuild a draft exactly: the command and the corpus it reads."""
    if recipe.corpus == "responses":
        return {"command": f"pipespec models responses && pipespec models build {recipe.name}  (both resumable)",
                "corpus": "the target's greedy responses in models/responses/ (its build.json: the instructions, "
                          "tokens and command)" + (f", starting from draft:{recipe.init}" if recipe.init else "")}
    return {"command": f"pipespec models build {recipe.name}  (resumable; make models installs python3.11-doc first)",
            "corpus": f"{len(corpus_files())} files: the Python standard library's .py sources"
                      + (f" and {DOC_SOURCES}/**/*.txt" if DOC_SOURCES.is_dir() else "")}


def export(student: Student, recipe: DraftRecipe, out_dir: Path, record: dict[str, Any], tokenizer: Any) -> Path:
    """Write the draft to out_dir/NAME: fp16 weights (only the trained tensors for an exit draft)."""
    from safetensors.torch import save_file

    path = out_dir / recipe.name
    path.mkdir(parents=True, exist_ok=True)
    if recipe.kind == "exit":
        tensors = {f"layer.{k}": v.half().contiguous() for k, v in student.layer.state_dict().items()}
        tensors |= {f"norm.{k}": v.half().contiguous() for k, v in student.norm.state_dict().items()}
        save_file(tensors, str(path / "exit.safetensors"))
        config = {"pipespec_draft": "exit", "exit_layer": recipe.layers, "base": "smollm2"}
        (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    elif recipe.kind == "eagle":
        from .eagle import save_head

        save_head(student.head, path)
    else:
        student.model.half().save_pretrained(path)
        student.model.float()
    from .models import drafts_dir

    if out_dir.resolve() != drafts_dir().resolve():  # elsewhere: a self-contained checkpoint folder
        tokenizer.save_pretrained(path)
    # in the repository's models/: the target's tokenizer, which `models.load_tokenizer` falls back to
    (path / "build.json").write_text(json.dumps(provenance(recipe) | record, indent=2) + "\n")
    return path
