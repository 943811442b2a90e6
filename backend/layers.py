"""A contiguous range of a causal LM's decoder layers with its own KV cache: the unit of layer pipelines
(PPSD's early and late stages). Tokens enter the stage holding the embeddings; hidden states leave
it; the stage holding the final norm and head turns hidden states into logits.

Layers keep their index in the full model (their KV lives under it in the cache); positions and the
causal mask over cache + new rows are built here, so any number of rows can be fed at once.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import require


def split_layers(num_layers: int, exit_layer: int) -> tuple[range, range]:
    """(early, late) layer ranges of a two-stage early-exit pipeline; one-line errors for bad splits."""
    require(1 <= exit_layer < num_layers,
            f"--exit-layer must satisfy 1 <= E < {num_layers} (the target's layers), got {exit_layer}")
    return range(0, exit_layer), range(exit_layer, num_layers)


class LayerSlice:
    def __init__(self, model: Any, layers: range, device: str, embed: bool = False, head: bool = False,
                 modules: list[torch.nn.Module] | None = None) -> None:
        """`modules` replaces the model's layers in `layers` (e.g. a trained exit layer)."""
        from transformers import DynamicCache

        inner = model.model
        self.device = device
        self.dtype = next(iter(model.parameters())).dtype  # the weights' (--dtype): hidden rows are cast to it
        self.layers = modules if modules is not None else [inner.layers[i] for i in layers]
        self.rotary = inner.rotary_emb
        self.embed = inner.embed_tokens if embed else None
        self.norm, self.head = (inner.norm, model.lm_head) if head else (None, None)
        self._cache_cls = DynamicCache
        self.cache = DynamicCache()
        self.length = 0  # positions held in the cache

    def reset(self) -> None:
        self.cache = self._cache_cls()
        self.length = 0

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (q,) token ids (embedding stage) or (q, d) hidden rows, for the positions after the cache;
        returns (q, d) hidden rows after the last layer (before any norm)."""
        h = (self.embed(x.to(self.device)) if self.embed is not None
             else x.to(device=self.device, dtype=self.dtype)).unsqueeze(0)  # rows arrive as float32
        q, past = h.shape[1], self.length
        positions = torch.arange(past, past + q, device=self.device).unsqueeze(0)
        rotary = self.rotary(h, positions)
        mask = None
        if q > 1:  # row i sees the cache and rows <= i (SDPA's own is_causal ignores the cache offset)
            mask = torch.ones(q, past + q, dtype=torch.bool, device=self.device).tril(past)[None, None]
        for layer in self.layers:
            out = layer(h, attention_mask=mask, position_ids=positions, past_key_values=self.cache, use_cache=True,
                        cache_position=positions[0], position_embeddings=rotary)
            h = out[0] if isinstance(out, tuple) else out
        self.length += q
        return h[0]

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        require(self.head is not None, "this layer slice has no head")
        return self.head(self.norm(hidden)).float()  # type: ignore[misc]

    def crop(self, length: int) -> None:
        """Roll the cache back to its first `length` positions."""
        if self.length > length:
            self.cache.crop(length - self.length)  # negative: drop that many (transformers 4.x and 5.x)
            self.length = length


class TreeSlice(LayerSlice):
    """A layer slice whose cache holds tree nodes: each cached position is a node id with a parent, and a
    new node attends to its ancestors only (tree attention), at its own depth's position id. Pruning
    removes the cache entries of dropped nodes wherever they sit."""

    def reset(self) -> None:
        super().reset()
        self.nodes: list[int] = []  # node id held by each cache slot
        self.parent: dict[int, int] = {}

    def _ancestry(self, node: int) -> set[int]:
        out = set()
        while node >= 0 and node not in out:
            out.add(node)
            node = self.parent.get(node, -1)
        return out

    @torch.inference_mode()
    def forward_nodes(self, x: torch.Tensor, ids: list[int], parents: list[int], positions: list[int]) -> torch.Tensor:
        """x: (q,) tokens or (q, d) rows of new nodes (parents before children); returns (q, d)."""
        for node, parent in zip(ids, parents, strict=True):
            self.parent[node] = parent
        slots = self.nodes + list(ids)
        index = {node: i for i, node in enumerate(slots)}
        mask = torch.zeros(len(ids), len(slots), dtype=torch.bool)
        for row, node in enumerate(ids):
            mask[row, [index[a] for a in self._ancestry(node) if a in index]] = True
        h = (self.embed(x.to(self.device)) if self.embed is not None
             else x.to(device=self.device, dtype=self.dtype)).unsqueeze(0)  # rows arrive as float32
        pos = torch.tensor([positions], device=self.device)
        rotary = self.rotary(h, pos)
        full_mask = mask.to(self.device)[None, None]
        for layer in self.layers:
            out = layer(h, attention_mask=full_mask, position_ids=pos, past_key_values=self.cache, use_cache=True,
                        cache_position=pos[0], position_embeddings=rotary)
            h = out[0] if isinstance(out, tuple) else out
        self.nodes = slots
        self.length = len(slots)
        return h[0]

    def drop(self, dead: set[int]) -> None:
        """Remove the cached entries of the `dead` nodes."""
        keep = [i for i, node in enumerate(self.nodes) if node not in dead]
        if len(keep) == len(self.nodes):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        for layer in getattr(self.cache, "layers", []):
            if getattr(layer, "is_initialized", False):
                layer.keys = layer.keys.index_select(-2, index)
                layer.values = layer.values.index_select(-2, index)
        self.nodes = [self.nodes[i] for i in keep]
        self.length = len(self.nodes)
