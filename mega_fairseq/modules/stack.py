"""Embeddings + a stack of Mega layers: the body shared by every Mega model (encoder, LM, decoder).

The HF-compatible structure is: word embeddings (+ token-type embeddings) -> layers, with no
embedding scale, embedding norm or final norm.  The original fork's LM recipes add an
embedding scale (sqrt(D)) and a final norm; both are options here.
`checkpoint_activations` / `offload_activations` switch on per-layer activation checkpointing in
training (see `layer.MegaLayer`).
"""

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from .config import MegaLayerConfig
from .dropout import MegaDropout
from .layer import MegaLayer
from .masking import check_padding_mask
from .norms import build_norm
from .state import State


class MegaStack(nn.Module):
    def __init__(
        self,
        cfg: MegaLayerConfig,
        num_layers: int,
        embed_tokens: nn.Embedding,
        type_vocab_size: int = 0,
        scale_embedding: bool = False,
        normalize_embedding: bool = False,
        final_norm: bool = False,
        final_norm_affine: bool = True,
        embedding_dropout: float = 0.0,
        checkpoint_activations: bool = False,
        offload_activations: bool = False,
    ):
        super().__init__()
        if num_layers <= 0:
            raise ValueError(f"a Mega stack needs at least one layer, got {num_layers}")
        if embed_tokens.embedding_dim != cfg.embed_dim:
            raise ValueError(f"embedding width {embed_tokens.embedding_dim} does not match embed_dim {cfg.embed_dim}")
        self.cfg = cfg
        self.embed_tokens = embed_tokens
        self.padding_idx = embed_tokens.padding_idx
        self.embed_scale = math.sqrt(cfg.embed_dim) if scale_embedding else 1.0
        self.embed_token_types = nn.Embedding(type_vocab_size, cfg.embed_dim) if type_vocab_size > 0 else None
        if self.embed_token_types is not None:
            nn.init.normal_(self.embed_token_types.weight, 0.0, 0.02)
        self.embed_norm = (
            build_norm(cfg.normalization_type, cfg.embed_dim, cfg.norm_eps, cfg.norm_affine)
            if normalize_embedding
            else None
        )
        self.embedding_dropout = MegaDropout(embedding_dropout, cfg.feature_dropout)
        self.layers = nn.ModuleList(
            [MegaLayer(cfg, checkpoint_activations, offload_activations) for _ in range(num_layers)]
        )
        self.final_norm = (
            build_norm(cfg.normalization_type, cfg.embed_dim, cfg.norm_eps, final_norm_affine) if final_norm else None
        )

    def embed(
        self, tokens: Tensor, token_types: Optional[Tensor] = None, padding_mask: Optional[Tensor] = None
    ) -> Tensor:
        x = self.embed_tokens(tokens)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        if self.embed_token_types is not None:
            if token_types is None:
                token_types = torch.zeros_like(tokens)
            elif token_types.shape != tokens.shape:
                raise ValueError(
                    f"token_types must have the shape of tokens {tuple(tokens.shape)}, got {tuple(token_types.shape)}"
                )
            x = x + self.embed_token_types(token_types)
        elif token_types is not None:
            raise ValueError("token_types given but this model has no token-type embeddings (type_vocab_size=0)")
        if self.embed_norm is not None:
            x = self.embed_norm(x, padding_mask)
        return self.embedding_dropout(x)

    def forward(
        self,
        tokens: Tensor,
        padding_mask: Optional[Tensor] = None,
        token_types: Optional[Tensor] = None,
        encoder_out: Optional[Tensor] = None,
        encoder_padding_mask: Optional[Tensor] = None,
        states: Optional[List[State]] = None,
        return_state: bool = False,
        position: int = 0,
        return_all_hiddens: bool = False,
    ) -> Tuple[Tensor, Optional[List[State]], List[Tensor]]:
        """tokens: (batch, length) ids; padding_mask: (batch, length) bool, True at padding.

        Returns (hidden (batch, length, D), next layer states or None, per-layer hiddens if asked).
        `states`/`return_state` continue a causal stream whose first token here has index `position`."""
        padding_mask = check_padding_mask(padding_mask, *tokens.shape)
        if padding_mask is not None and not bool(padding_mask.any()):
            padding_mask = None
        if states is not None and len(states) != len(self.layers):
            raise ValueError(f"got {len(states)} layer states for {len(self.layers)} layers")
        x = self.embed(tokens, token_types, padding_mask)
        hiddens = [x] if return_all_hiddens else []
        next_states = [] if (states is not None or return_state) else None
        for i, layer in enumerate(self.layers):
            x, layer_state = layer(
                x,
                padding_mask,
                encoder_out=encoder_out,
                encoder_padding_mask=encoder_padding_mask,
                state=None if states is None else states[i],
                return_state=next_states is not None,
                position=position,
            )
            if next_states is not None:
                next_states.append(layer_state)
            if return_all_hiddens:
                hiddens.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x, padding_mask)
        return x, next_states, hiddens
