"""Normalized feed-forward network: y = x + fc2(act(fc1(norm(x)))) (pre-norm) or norm(x + ...) (post-norm)."""

from typing import Optional

from torch import Tensor, nn

from .activations import ACTIVATION_FNS
from .config import MegaLayerConfig
from .dropout import MegaDropout
from .norms import build_norm


class NormalizedFeedForwardNetwork(nn.Module):
    def __init__(self, cfg: MegaLayerConfig):
        super().__init__()
        self.prenorm = cfg.ffn_prenorm
        self.activation = ACTIVATION_FNS[cfg.activation]
        self.norm = build_norm(cfg.normalization_type, cfg.embed_dim, cfg.norm_eps, cfg.norm_affine)
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.embed_dim)
        self.hidden_dropout = MegaDropout(cfg.ffn_hidden_dropout, cfg.feature_dropout)
        self.dropout = MegaDropout(cfg.dropout, cfg.feature_dropout)
        for linear in (self.fc1, self.fc2):
            nn.init.normal_(linear.weight, 0.0, 0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: (batch, length, D); padding_mask (batch, length) bool keeps padding out of batch statistics."""
        residual = x
        if self.prenorm:
            x = self.norm(x, padding_mask)
        out = self.fc2(self.hidden_dropout(self.activation(self.fc1(x))))
        out = self.dropout(out) + residual
        if not self.prenorm:
            out = self.norm(out, padding_mask)
        return out
