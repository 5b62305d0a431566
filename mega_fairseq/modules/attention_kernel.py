"""Single-head attention shared by Mega's gated self-attention and gated cross-attention.

Tensors are (batch, blocks, length, width): `blocks` is the number of Mega-chunks (1 when
unchunked).  Query i sits at block-local position q_start + i; keys sit at 0..k_len-1.
Masks use fairseq's convention: key_padding_mask is True at padding.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .relative_position import RotaryRelativePositionalBias

LAPLACE_MU = 0.707107
LAPLACE_STD = 0.282095


def laplace(x: Tensor) -> Tensor:
    """Mega's bounded attention activation: the Gaussian CDF centred at sqrt(1/2) with std sqrt(1/(4 pi))."""
    return 0.5 * (1.0 + torch.erf((x - LAPLACE_MU) / (LAPLACE_STD * math.sqrt(2.0))))


def relu2(x: Tensor) -> Tensor:
    return torch.square(F.relu(x))


ELEMENT_ACTIVATIONS = {"laplace": laplace, "relu2": relu2}


def visibility(
    q_len: int, k_len: int, q_start: int, causal: bool, key_padding_mask: Optional[Tensor], device
) -> Optional[Tensor]:
    """Bool mask, True where query i may read key j: (q_len, k_len), or (batch, blocks, q_len|1, k_len)."""
    visible = None
    if causal:
        visible = torch.arange(k_len, device=device).unsqueeze(0) <= torch.arange(q_start, q_start + q_len, device=device).unsqueeze(1)
    if key_padding_mask is not None:
        keys = ~key_padding_mask.unsqueeze(-2)
        visible = keys if visible is None else visible & keys
    return visible


def attend(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    activation: str,
    rel_pos_bias,
    q_start: int = 0,
    causal: bool = False,
    key_padding_mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """query (B, n, Lq, z), key (B, n, Lk, z), value (B, n, Lk, H) -> (B, n, Lq, H).

    softmax: softmax(q k^T / sqrt(z) + bias) through torch's fused scaled_dot_product_attention
    (a rotary bias is folded in as two extra query/key features, so no (Lq, Lk) bias is built).
    laplace / relu2: act(q k^T / n_visible + bias), zero where masked, n_visible = keys the row may read.
    Rows that may read no key give zeros.
    """
    q_len, k_len, z_dim = query.size(-2), key.size(-2), query.size(-1)
    if key_padding_mask is not None and not bool(key_padding_mask.any()):
        key_padding_mask = None
    if activation == "softmax":
        scaling = z_dim**-0.5
        if isinstance(rel_pos_bias, RotaryRelativePositionalBias):
            q_factor, k_factor = rel_pos_bias.query_key_factors(k_len, q_start, q_len)
            query = torch.cat([query * scaling, q_factor.to(query.dtype).expand(query.shape[:-2] + q_factor.shape)], dim=-1)
            key = torch.cat([key, k_factor.to(key.dtype).expand(key.shape[:-2] + k_factor.shape)], dim=-1)
            if key_padding_mask is None and causal and q_start == 0 and q_len == k_len:
                return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, is_causal=True, scale=1.0)
            mask = visibility(q_len, k_len, q_start, causal, key_padding_mask, query.device)
            return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=1.0)
        bias = rel_pos_bias(k_len, q_start, q_len).to(query.dtype)
        mask = visibility(q_len, k_len, q_start, causal, key_padding_mask, query.device)
        if mask is not None:
            bias = bias.masked_fill(~mask, torch.finfo(bias.dtype).min)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p, scale=scaling)
        if mask is not None:  # a row with no readable key attended uniformly to masked keys: zero it
            out = out.masked_fill(~mask.any(-1, keepdim=True), 0.0)
        return out

    act = ELEMENT_ACTIVATIONS.get(activation)
    if act is None:
        raise ValueError(f"unknown attention_activation {activation!r}; choose softmax, laplace or relu2")
    mask = visibility(q_len, k_len, q_start, causal, key_padding_mask, query.device)
    if mask is None:
        lengths = float(k_len)
    else:
        lengths = mask.sum(-1, keepdim=True).clamp(min=1).to(query.dtype)
    scores = torch.matmul(query, key.transpose(-1, -2)) / lengths + rel_pos_bias(k_len, q_start, q_len).to(query.dtype)
    weights = act(scores)
    if mask is not None:
        weights = weights * mask.to(weights.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, training=True)
    return torch.matmul(weights, value)
