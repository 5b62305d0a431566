"""Gated cross-attention: a Mega decoder layer reading the encoder output.

    x' = norm(x) (pre-norm) ;  u, r, q = split(W_q x') ; u = sigmoid(u) ; r = silu(r)
    k = W_k enc ; v = act(W_v enc)
    h = act(W_h(attention(q, k, v) * r)) ;  y = x + u * (h - x)   (then norm(y) if post-norm)

The relative bias relates target position i to source position j (as in the original Mega).
Incremental state: {"cross_key": (B, S, z), "cross_value": (B, S, D), "cross_padding": (B, S) bool},
computed once from the encoder output and reused at every decoding step.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import ACTIVATION_FNS
from .attention_kernel import attend
from .config import MegaLayerConfig
from .dropout import MegaDropout
from .masking import check_padding_mask
from .norms import build_norm
from .relative_position import build_relative_bias
from .state import State


class GatedCrossAttention(nn.Module):
    def __init__(self, cfg: MegaLayerConfig):
        super().__init__()
        self.cfg = cfg
        D, Z = cfg.embed_dim, cfg.z_dim
        self.activation = ACTIVATION_FNS[cfg.activation]
        self.norm = build_norm(cfg.normalization_type, D, cfg.norm_eps, cfg.norm_affine)
        self.k_proj = nn.Linear(D, Z)
        self.v_proj = nn.Linear(D, D)
        self.q_proj = nn.Linear(D, 2 * D + Z)
        self.h_proj = nn.Linear(D, D)
        self.rel_pos_bias = build_relative_bias(cfg.rel_pos_bias, Z, cfg.max_positions)
        self.dropout = MegaDropout(cfg.dropout, cfg.feature_dropout)
        self.hidden_dropout = MegaDropout(cfg.hidden_dropout, cfg.feature_dropout)
        for linear in (self.k_proj, self.v_proj, self.q_proj, self.h_proj):
            nn.init.normal_(linear.weight, 0.0, 0.02)
            nn.init.zeros_(linear.bias)

    def project_encoder(self, encoder_out: Tensor, encoder_padding_mask: Optional[Tensor]) -> State:
        """encoder_out (B, S, D) -> cached keys/values for every later call."""
        state = {"cross_key": self.k_proj(encoder_out), "cross_value": self.activation(self.v_proj(encoder_out))}
        if encoder_padding_mask is not None:
            state["cross_padding"] = check_padding_mask(
                encoder_padding_mask, *encoder_out.shape[:2], what="encoder_padding_mask"
            )
        return state

    def forward(
        self,
        x: Tensor,
        encoder_out: Optional[Tensor] = None,
        encoder_padding_mask: Optional[Tensor] = None,
        padding_mask: Optional[Tensor] = None,
        state: Optional[State] = None,
        position: int = 0,
    ) -> Tuple[Tensor, State]:
        """x: (B, T, D) target positions position..position+T-1; encoder_out: (B, S, D) or cached in `state`.

        Returns (y (B, T, D), state holding the projected encoder keys/values)."""
        cfg = self.cfg
        if state is None or "cross_key" not in state:
            if encoder_out is None:
                raise ValueError(
                    "gated cross-attention needs encoder_out (or a state that already holds its projection)"
                )
            state = self.project_encoder(encoder_out, encoder_padding_mask)
        key, value, key_padding = state["cross_key"], state["cross_value"], state.get("cross_padding")
        residual = x
        if cfg.normalize_before:
            x = self.norm(x, padding_mask)
        u, r, query = self.q_proj(x).split([cfg.embed_dim, cfg.embed_dim, cfg.z_dim], dim=-1)
        attn = attend(
            query.unsqueeze(1),
            key.unsqueeze(1),
            self.hidden_dropout(value).unsqueeze(1),
            activation=cfg.attention_activation,
            rel_pos_bias=self.rel_pos_bias,
            q_start=position,
            key_padding_mask=None if key_padding is None else key_padding.unsqueeze(1),
            dropout_p=cfg.attention_dropout if self.training else 0.0,
        ).squeeze(1)
        out = self.dropout(self.activation(self.h_proj(attn * F.silu(r))))
        out = torch.addcmul(residual, torch.sigmoid(u), out - residual)
        if not cfg.normalize_before:
            out = self.norm(out, padding_mask)
        return out, state
