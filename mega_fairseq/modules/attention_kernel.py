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

LAPLACE_MU = 0.707107
LAPLACE_STD = 0.282095


def laplace(x: Tensor) -> Tensor:
    """Mega's bounded attention activation: the Gaussian CDF centred at sqrt(1/2) with std sqrt(1/(4 pi))."""
    return 0.5 * (1.0 + torch.erf((x - LAPLACE_MU) / (LAPLACE_STD * math.sqrt(2.0))))


def relu2(x: Tensor) -> Tensor:
    return torch.square(F.relu(x))


ELEMENT_ACTIVATIONS = {"laplace": laplace, "relu2": relu2}
# the vocabulary of `MegaLayerConfig.attention_activation` (`--attention-activation-fn`): softmax or an element-wise one
ATTENTION_ACTIVATIONS = ("softmax", *ELEMENT_ACTIVATIONS)


def visibility(
    q_len: int, k_len: int, q_start: int, causal: bool, key_padding_mask: Optional[Tensor], device
) -> Optional[Tensor]:
    """Bool mask, True where query i may read key j: (q_len, k_len), or (batch, blocks, q_len|1, k_len)."""
    visible = None
    if causal and q_start < k_len - 1:  # otherwise even the first query sees every key
        visible = torch.arange(k_len, device=device).unsqueeze(0) <= torch.arange(
            q_start, q_start + q_len, device=device
        ).unsqueeze(1)
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

    softmax: softmax(q k^T / sqrt(z) + bias);  laplace / relu2: act(q k^T / n_visible + bias), where
    n_visible counts the keys a row may read.  Masked weights are exactly zero, and a row that may
    read no key gives zeros.  The softmax runs in fp32 whatever the input dtype.  The score scale
    and the (Lq, Lk) bias are fused into one batched GEMM (baddbmm), so no separate
    (B, n, Lq, Lk) pass is spent on them.
    """
    act = None
    if activation != "softmax":
        act = ELEMENT_ACTIVATIONS.get(activation)
        if act is None:
            from .config import check_choice  # config imports this module for ATTENTION_ACTIVATIONS

            check_choice("attention_activation", activation, ATTENTION_ACTIVATIONS)
    lead, q_len, k_len, z_dim = query.shape[:-2], query.size(-2), key.size(-2), query.size(-1)
    if key_padding_mask is not None and not bool(key_padding_mask.any()):
        key_padding_mask = None
    mask = visibility(q_len, k_len, q_start, causal, key_padding_mask, query.device)
    if act is None:
        alpha = z_dim**-0.5
    elif mask is None:
        alpha = 1.0 / k_len
    else:  # per-row 1 / n_visible, applied to the queries: (q_i / n_i) . k_j
        query = query / mask.sum(-1, keepdim=True).clamp(min=1).to(query.dtype)
        alpha = 1.0
    bias = rel_pos_bias(k_len, q_start, q_len).to(query.dtype)
    batch = query.reshape(-1, q_len, z_dim).size(0)
    scores = torch.baddbmm(
        bias.expand(batch, q_len, k_len),
        query.reshape(-1, q_len, z_dim),
        key.reshape(-1, k_len, z_dim).transpose(1, 2),
        alpha=alpha,
    ).view(*lead, q_len, k_len)
    if act is None:
        if mask is not None:
            scores = scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)  # fp32 softmax under fp16/bf16
        if mask is not None:
            empty_rows = ~mask.any(-1, keepdim=True)
            if bool(empty_rows.any()):  # such a row attended uniformly to masked keys
                weights = weights.masked_fill(empty_rows, 0.0)
    else:
        weights = act(scores)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, training=True)
    return torch.matmul(weights, value)
