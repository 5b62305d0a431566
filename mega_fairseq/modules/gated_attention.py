"""Moving-average gated attention: Mega's self-attention block (EMA + single-head gated attention).

    x' = norm(x) (pre-norm) ;  v = act(W_v x')
    e  = EMA(x')                                   shared representation, (B, L, D)
    u, zr, hx = split(W_mx e) ; u = sigmoid(u) ; z, r = split(silu(zr))
    q, k = z * qk_weight + qk_bias                 two affine maps of the same z
    h  = act(hx + W_h(attention(q, k, v) * r))
    y  = x + u * (h - x)                           (then norm(y) if post-norm)

Any input length works with Mega-chunk: queries/keys/values are padded internally to a whole
number of chunks and cropped back; padded positions are masked.  Incremental state (decoders):
{"ema": (B, D, N) fp32, "key": (B, c, z), "value": (B, c, H), "key_padding": (B, c) bool or absent}
where c counts the tokens of the current chunk (all past tokens when unchunked).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import ACTIVATION_FNS
from .attention_kernel import attend
from .config import MegaLayerConfig
from .dropout import MegaDropout
from .ema import MultiHeadDampedEMA
from .masking import check_padding_mask
from .norms import build_norm
from .relative_position import build_relative_bias
from .state import State


def pad_to_blocks(tensors, block: int, padding_mask: Optional[Tensor]):
    """Right-pads (B, T, *) tensors so T is a multiple of `block`; returns them reshaped (B, T/block, block, *)
    and the padded key mask (B, T/block, block) (None when nothing is padding)."""
    bsz, total = tensors[0].shape[:2]
    extra = (-total) % block
    if extra:
        tensors = [F.pad(t, (0, 0, 0, extra)) for t in tensors]
        if padding_mask is None:
            padding_mask = torch.zeros(bsz, total, dtype=torch.bool, device=tensors[0].device)
        padding_mask = F.pad(padding_mask, (0, extra), value=True)
    blocks = (total + extra) // block
    tensors = [t.reshape(bsz, blocks, block, t.size(-1)) for t in tensors]
    if padding_mask is not None:
        padding_mask = padding_mask.reshape(bsz, blocks, block)
    return tensors, padding_mask


class MovingAverageGatedAttention(nn.Module):
    def __init__(self, cfg: MegaLayerConfig):
        super().__init__()
        self.cfg = cfg
        D, Z, H = cfg.embed_dim, cfg.z_dim, cfg.hidden_dim
        self.activation = ACTIVATION_FNS[cfg.activation]
        self.norm = build_norm(cfg.normalization_type, D, cfg.norm_eps, cfg.norm_affine)
        self.ema = MultiHeadDampedEMA(D, cfg.n_dim, bidirectional=cfg.bidirectional, truncation=cfg.truncation)
        self.v_proj = nn.Linear(D, H)
        self.mx_proj = nn.Linear(D, Z + H + 2 * D)
        self.h_proj = nn.Linear(H, D)
        self.qk_weight = nn.Parameter(torch.empty(2, Z))
        self.qk_bias = nn.Parameter(torch.empty(2, Z))
        span = cfg.chunk_size if cfg.chunked else cfg.max_positions
        self.rel_pos_bias = build_relative_bias(cfg.rel_pos_bias, Z, span)
        self.dropout = MegaDropout(cfg.dropout, cfg.feature_dropout)
        self.hidden_dropout = MegaDropout(cfg.hidden_dropout, cfg.feature_dropout)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02):
        for linear in (self.v_proj, self.mx_proj, self.h_proj):
            nn.init.normal_(linear.weight, 0.0, std)
            nn.init.zeros_(linear.bias)
        nn.init.normal_(self.qk_weight, 0.0, std)
        nn.init.zeros_(self.qk_bias)

    def forward(
        self,
        x: Tensor,
        padding_mask: Optional[Tensor] = None,
        state: Optional[State] = None,
        return_state: bool = False,
    ) -> Tuple[Tensor, Optional[State]]:
        """x: (batch, length, D); padding_mask: (batch, length) bool, True at padding.

        With `state` (or `return_state`) the block continues a causal stream: x follows the tokens
        summarised by `state`, and the next state is returned.  Otherwise returns (y, None).
        """
        cfg = self.cfg
        bsz, length, dim = x.shape
        if dim != cfg.embed_dim:
            raise ValueError(f"expected inputs of width {cfg.embed_dim}, got {dim}")
        padding_mask = check_padding_mask(padding_mask, bsz, length)
        streaming = state is not None or return_state
        if streaming and not cfg.causal:
            raise ValueError("incremental state needs a causal layer (causal=True, bidirectional=False)")

        residual = x
        if cfg.normalize_before:
            x = self.norm(x, padding_mask)
        value = self.activation(self.v_proj(x))
        ema_out, ema_state = self.ema(
            x, padding_mask, state=None if state is None else state["ema"], return_state=streaming
        )
        base = self.mx_proj(self.dropout(ema_out))
        u, zr, hx = base.split([cfg.embed_dim, cfg.z_dim + cfg.hidden_dim, cfg.embed_dim], dim=-1)
        z, r = F.silu(zr).split([cfg.z_dim, cfg.hidden_dim], dim=-1)
        query, key = (z.unsqueeze(2) * self.qk_weight + self.qk_bias).unbind(dim=2)
        value = self.hidden_dropout(value)

        offset = 0
        key_padding = padding_mask
        if state is not None and "key" in state:
            offset = state["key"].size(1)
            key = torch.cat([state["key"], key], dim=1)
            value = torch.cat([state["value"], value], dim=1)
            key_padding = self._concat_padding(state.get("key_padding"), padding_mask, bsz, offset, length, x.device)
        attn = self._attention(query, key, value, key_padding, offset)
        out = self.activation(hx + self.h_proj(attn * r))
        out = torch.addcmul(residual, torch.sigmoid(u), self.dropout(out) - residual)
        if not cfg.normalize_before:
            out = self.norm(out, padding_mask)

        next_state = None
        if streaming:
            next_state = {"ema": ema_state}
            total = key.size(1)
            keep = total % cfg.chunk_size if cfg.chunked else total  # a full chunk is forgotten
            if keep:
                next_state["key"], next_state["value"] = key[:, total - keep :], value[:, total - keep :]
                if key_padding is not None:
                    next_state["key_padding"] = key_padding[:, total - keep :]
        return out, next_state

    @staticmethod
    def _concat_padding(prev: Optional[Tensor], new: Optional[Tensor], bsz: int, prev_len: int, new_len: int, device):
        if prev is None and new is None:
            return None
        if prev is None:
            prev = torch.zeros(bsz, prev_len, dtype=torch.bool, device=device)
        if new is None:
            new = torch.zeros(bsz, new_len, dtype=torch.bool, device=device)
        return torch.cat([prev, new], dim=1)

    def _attention(
        self, query: Tensor, key: Tensor, value: Tensor, key_padding: Optional[Tensor], offset: int
    ) -> Tensor:
        """query (B, L, z) at positions offset..offset+L-1 of the keys (B, offset+L, z) -> (B, L, H)."""
        cfg = self.cfg
        length, total = query.size(1), key.size(1)
        dropout_p = cfg.attention_dropout if self.training else 0.0
        common = dict(
            activation=cfg.attention_activation, rel_pos_bias=self.rel_pos_bias, causal=cfg.causal, dropout_p=dropout_p
        )
        if not cfg.chunked or total <= cfg.chunk_size:
            mask = None if key_padding is None else key_padding.unsqueeze(1)
            out = attend(
                query.unsqueeze(1),
                key.unsqueeze(1),
                value.unsqueeze(1),
                q_start=offset,
                key_padding_mask=mask,
                **common,
            )
            return out.squeeze(1)
        if offset:  # align queries with their keys; the rows before them are dropped below
            query = F.pad(query, (0, 0, offset, 0))
        (query, key, value), mask = pad_to_blocks([query, key, value], cfg.chunk_size, key_padding)
        out = attend(query, key, value, key_padding_mask=mask, **common)
        return out.reshape(out.size(0), -1, out.size(-1))[:, offset : offset + length]
