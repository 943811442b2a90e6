"""A feature draft in the style of EAGLE (Li et al. 2024): one decoder layer over the target's own hidden states.

At position i it reads the target's post-norm last hidden state f_i and the embedding of the token after it,
x_{i+1}, maps concat(f_i, emb(x_{i+1})) through `fc` (2d -> d), one decoder layer and a final norm (both
initialised from the target's last), and predicts f_{i+1}; the target's own head turns that into the next token,
x_{i+2}. Over the
verified prefix it reads the target's true features; beyond it, its own predictions (so a draft k tokens past
the prefix rests on k - 1 predicted features). The embeddings, rotary table and head are the target's, shared
and frozen; the trained tensors (about 4M parameters) are saved alone and the draft is assembled from the target
when loaded.

Training (`distill.Student`, kind "eagle") unrolls the draft `depth` steps at once: step s feeds, at every
position, the feature step s - 1 predicted there, and attends to step-0 (true) keys up to s positions back and
to its own earlier steps' keys in between: what the draft sees s tokens past the verified prefix (`unroll_mask`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, require
from .decoding import common_prefix
from .models import FEATURE_WEIGHTS


class FeatureHead(torch.nn.Module):
    """The trained part: fc, the decoder layer and the norm. `layer_index` is the target layer it was cloned from
    (its KV lives under that index in a cache)."""

    def __init__(self, target: Any, layer_index: int | None = None) -> None:
        super().__init__()
        d = target.config.hidden_size
        self.layer_index = target.config.num_hidden_layers - 1 if layer_index is None else layer_index
        self.fc = torch.nn.Linear(2 * d, d, bias=True)
        self.layer = copy.deepcopy(target.model.layers[self.layer_index])
        self.norm = copy.deepcopy(target.model.norm)  # its output is a post-norm feature, as the target's are
        self.requires_grad_(True)  # (the target's own are frozen while a draft trains over it)
        with torch.no_grad():  # start as "the feature passes through": fc = [I 0] (plus a little of the token)
            self.fc.weight.zero_()
            self.fc.weight[:, :d].copy_(torch.eye(d))
            self.fc.weight[:, d:].normal_(0.0, 0.02)
            self.fc.bias.zero_()

    def inputs(self, features: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """fc(concat(f_i, emb(x_{i+1}))): (..., d) rows entering the layer."""
        return self.fc(torch.cat([features.to(self.fc.weight.dtype), embeddings.to(self.fc.weight.dtype)], -1))

    def outputs(self, hidden: torch.Tensor) -> torch.Tensor:
        """The predicted features from the layer's output rows."""
        return self.norm(hidden)

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.parameters())


def unroll_mask(steps: int, length: int) -> torch.Tensor:
    """(length, (steps + 1) * length) bool: what step `steps`'s token at position i attends to, over the keys of
    steps 0..steps laid out step-major: step-0 keys at j <= i - steps (true features), step (steps - (i - j))'s key
    at i - steps < j <= i (its own chain of predictions)."""
    i = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    blocks = []
    for s in range(steps + 1):
        if s == 0:
            allowed = j <= i - steps if steps else j <= i
        else:
            allowed = (j > i - steps) & (j <= i) & (steps - (i - j) == s)
        blocks.append(allowed)
    return torch.cat(blocks, 1)


def unrolled(head: FeatureHead, target: Any, features: torch.Tensor, ids: torch.Tensor, depth: int,
             noise: float = 0.0) -> list[torch.Tensor]:
    """Training forward on (B, T) sequences with the target's features (B, T, d): `depth` steps, each a (B, T - 1, d)
    prediction whose row i is the draft's f_{i+1} given s of its own features before it (step s)."""
    from transformers import DynamicCache

    inner = target.model
    length = ids.shape[1] - 1
    embeddings = inner.embed_tokens(ids[:, 1:])  # emb(x_{i+1}) for positions 0..T-2
    given = features[:, :-1].float()
    if noise:
        given = given + noise * torch.randn_like(given) * given.std()
    positions = torch.arange(length).unsqueeze(0)
    cache = DynamicCache()
    out: list[torch.Tensor] = []
    for s in range(depth):
        h = head.inputs(given, embeddings)
        rotary = inner.rotary_emb(h, positions)
        mask = unroll_mask(s, length)[None, None]
        pred = head.layer(h, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                          cache_position=positions[0], position_embeddings=rotary)
        pred = head.outputs(pred[0] if isinstance(pred, tuple) else pred)
        out.append(pred)
        given = torch.cat([features[:, :1].float(), pred[:, :-1]], 1)  # step s + 1 reads step s's predictions
    return out


def save_head(head: FeatureHead, folder: Path, base: str = "smollm2") -> None:
    """fp16 weights of fc, the layer and the norm, and the config that says how to assemble the draft: over `base` (the
    --chain entry of the model whose hidden states it reads)."""
    from safetensors.torch import save_file

    tensors = {k: v.half().contiguous() for k, v in head.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / FEATURE_WEIGHTS))
    config = {"pipespec_draft": "eagle", "base": base, "layer_index": head.layer_index}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


class FeatureDraft(torch.nn.Module):
    """A loaded feature draft: the trained head over its base's embeddings, rotary table and head (`model` is the
    base's inner model, whose decoder layers are dropped once loaded: what a `LayerSlice` reads)."""

    def __init__(self, head: FeatureHead, target: Any) -> None:
        super().__init__()
        self.head, self.model, self.lm_head = head, target.model, target.lm_head
        self.config = target.config

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)


def load_feature_draft(path: Path, base_loader: Any) -> FeatureDraft:
    """The draft in `path`, assembled over `base_loader(base)` (its base model, float32, on the CPU)."""
    from safetensors.torch import load_file

    config = json.loads((path / "config.json").read_text())
    require(config.get("pipespec_draft") == "eagle", f"--chain: {path} is not a feature draft")
    target = base_loader(config.get("base", "smollm2"))
    index, layers = config.get("layer_index"), target.config.num_hidden_layers
    require(isinstance(index, int) and 0 <= index < layers,
            f"--chain: {path / 'config.json'}: layer_index must be an integer in [0, {layers}), got {index!r}")
    head = FeatureHead(target, index)
    try:
        head.load_state_dict({k: v.float() for k, v in load_file(str(path / FEATURE_WEIGHTS)).items()})
    except RuntimeError:  # missing, unexpected or mis-shaped tensors
        raise ConfigError(f"--chain: {path / FEATURE_WEIGHTS} is not a feature head for "
                          f"{config.get('base', 'smollm2')} (rebuild it: pipespec models build)") from None
    target.model.layers = torch.nn.ModuleList()  # only the embeddings, rotary table and head are used
    return FeatureDraft(head, target).eval()


class FeatureDrafter:
    """A feature draft's decoding state: its tokens, the feature each position is fed with (the target's where
    verified, its own prediction beyond), and the KV cache of its one layer.

    Position i is fed concat(f_i, emb(x_{i+1})), so with n tokens positions 0..n-2 can be fed; feeding position
    n-2 predicts f_{n-1} and from it x_n. `observe` takes the verifier's sequence and its features; positions fed
    with predictions that are now verified are fed again with the true features at the next step."""

    def __init__(self, draft: FeatureDraft, device: str) -> None:
        from .layers import LayerSlice

        self.draft, self.device = draft, device
        index = draft.head.layer_index
        self.slice = LayerSlice(draft, range(index, index + 1), device, modules=[draft.head.layer])
        self.tokens: list[int] = []
        self.features = torch.zeros(0, draft.hidden_size)  # row i: what position i is fed with
        self.true_len = 0  # leading rows that are the verifier's

    @property
    def ready(self) -> bool:
        """Holds the verifier's features for every position but the last: it can draft."""
        return self.true_len > 0 and len(self.features) >= len(self.tokens) - 1

    def reset(self, prompt: Sequence[int]) -> None:
        self.tokens = list(prompt)
        self.features = torch.zeros(0, self.draft.hidden_size)
        self.true_len = 0
        self.slice.reset()

    def observe(self, verified: Sequence[int], rows: torch.Tensor, rows_from: int = 0) -> int:
        """Take the verifier's sequence (kept when this one extends it, adopted otherwise) and its true features for
        positions rows_from..len(verified) - 2 (rows, one per position). Returns the first position that differs."""
        common = common_prefix(self.tokens, verified)
        if common < len(verified):
            self.tokens = list(verified)
            keep = max(common - 1, 0)  # position i reads x_{i+1}: rows from common - 1 on are stale
            self.features = self.features[:keep]
            self.slice.crop(min(self.slice.length, keep))
        new_true = len(verified) - 1
        if new_true > self.true_len:
            start = min(self.true_len, len(self.features))
            true = rows[start - rows_from:new_true - rows_from].to(self.features.dtype)
            self.features = torch.cat([self.features[:start], true, self.features[new_true:]])
            self.slice.crop(min(self.slice.length, start))  # re-fed with the true features
            self.true_len = new_true
        return common

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        """Feed what is not yet fed (normally position n - 2, more after a correction) and return the logits (V,)
        that predict x_n; `append` takes the token chosen from them."""
        draft, n = self.draft, len(self.tokens)
        require(self.ready and n >= 2, "a feature draft needs the verifier's features of the prompt first")
        start = self.slice.length
        ids = torch.tensor(self.tokens[start + 1:n], device=self.slice.device)
        rows = draft.head.inputs(self.features[start:n - 1].to(self.slice.device), draft.model.embed_tokens(ids))
        out = draft.head.outputs(self.slice.forward(rows))  # (n - 1 - start, d): predicted f_{start+1} .. f_{n-1}
        predicted = out[-1:].float().cpu()
        # fresher predictions for the positions still fed with predictions (re-fed at the next observe)
        first_pred = max(self.true_len, start + 1)
        if first_pred < n - 1:
            self.features[first_pred:n - 1] = out[first_pred - start - 1:n - 2 - start].float().cpu()
        self.features = torch.cat([self.features[:n - 1], predicted])
        return draft.lm_head(out[-1:]).float()[0]

    def append(self, token: int) -> None:
        self.tokens.append(token)

