"""Single-head attention shared by Mega's gated self-attention and gated cross-attention.

Tensors are (batch, blocks, length, width): `blocks` is the number of Mega-chunks (1 when
unchunked).  Query i sits at block-local position q_start + i; keys sit at 0..k_len-1.
Masks use fairseq's convention: key_padding_mask is True at padding.

Three exact routes compute the same function (`attend` picks one, `route`):

- the explicit one materialises the (Lq, Lk) scores and weights of every (batch, block): baddbmm + softmax;
- the blockwise one (softmax with the rotary bias, no attention dropout) folds the bias into q and k as below and
  runs `blockwise_attention`: blocks of query rows, recomputed in backward, so no (Lq, Lk) tensor is kept and the
  arithmetic is the explicit route's (the CPU default for long blocks);
- the fused one (softmax attention with the rotary bias, no attention dropout, causality aligned at q_start=0)
  calls `torch.nn.functional.scaled_dot_product_attention`, whose flash kernels (CPU and GPU) never hold an
  (Lq, Lk) matrix.  The rotary bias is rank z in positions, bias[i, j] = a_i . b_j, so it folds into the
  queries and keys by concatenation (`fold_rotary_bias`):  q' = [q / sqrt(z), a_i (, 1)],
  k' = [k, b_j (, -BIG at padding)]:  q' k'^T = q k^T / sqrt(z) + a_i . b_j  (- BIG at padding, whose
  weight underflows to exactly 0).  Flash kernels need the value width to equal the query/key width W,
  so the value width H is cut into ceil(H / W) groups of width W (zero-padded) sharing q' and k'.
  Causality goes through the kernel's `is_causal`; rows that may read no key are set to zero afterwards.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .blockwise_attention import blockwise_softmax_attention

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

# How `attend` computes softmax attention with the rotary bias (exact on every route; others take the explicit one):
#   "auto"      on CUDA the fused kernel ("sdpa"); on the CPU "blockwise" once a block attends to at least
#               FUSED_MIN_KEYS_CPU keys (there the (L, L) scores bound memory and the blockwise route is also the
#               fastest: it does the explicit route's arithmetic where the CPU flash kernel recomputes q k^T for
#               each value group), below that "explicit" (small scores: materialising them is cheapest)
#   "sdpa" / True    torch's scaled_dot_product_attention wherever it is exact (`fused_route_applies`)
#   "blockwise"      `blockwise_attention` wherever it is exact (`blockwise_route_applies`)
#   False            the explicit route (tests, benchmarks)
FUSED_ATTENTION = "auto"
FUSED_MIN_KEYS_CPU = 4096
ROUTES = ("explicit", "sdpa", "blockwise")


def route(
    query: Tensor, k_len: int, activation: str, rel_pos_bias, q_start: int, causal: bool, dropout_p: float
) -> str:
    """Which of `ROUTES` `attend` takes for these arguments under the `FUSED_ATTENTION` setting."""
    setting = FUSED_ATTENTION
    if setting == "auto":
        if query.device.type == "cuda":
            setting = "sdpa"
        elif k_len >= FUSED_MIN_KEYS_CPU:
            setting = "blockwise"
        else:
            return "explicit"
    if setting is True or setting == "sdpa":
        return (
            "sdpa" if fused_route_applies(activation, rel_pos_bias, q_start, causal, k_len, dropout_p) else "explicit"
        )
    if setting == "blockwise":
        return "blockwise" if blockwise_route_applies(activation, rel_pos_bias, dropout_p) else "explicit"
    return "explicit"


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
    chosen = route(query, key.size(-2), activation, rel_pos_bias, q_start, causal, dropout_p)
    if chosen == "sdpa":
        return fused_softmax_attention(query, key, value, rel_pos_bias, q_start, causal, key_padding_mask)
    if chosen == "blockwise":
        return blockwise_rotary_attention(query, key, value, rel_pos_bias, q_start, causal, key_padding_mask)
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


def fused_route_applies(
    activation: str, rel_pos_bias, q_start: int, causal: bool, k_len: int, dropout_p: float
) -> bool:
    """Whether `fused_softmax_attention` computes exactly what the explicit route does for these arguments:
    softmax, a bias of rank z (`query_key_factors`, the rotary one), no attention dropout (the fused kernels
    draw their own masks) and, when causality masks anything, queries starting at key 0 (`is_causal` aligns
    query i with key i)."""
    if activation != "softmax" or dropout_p > 0.0 or not hasattr(rel_pos_bias, "query_key_factors"):
        return False
    return not (causal and q_start < k_len - 1 and q_start != 0)


def blockwise_route_applies(activation: str, rel_pos_bias, dropout_p: float) -> bool:
    """Whether `blockwise_rotary_attention` computes exactly what the explicit route does: softmax, a bias of rank
    z (`query_key_factors`, the rotary one) and no attention dropout; any causal alignment."""
    return activation == "softmax" and dropout_p == 0.0 and hasattr(rel_pos_bias, "query_key_factors")


def fold_rotary_bias(query: Tensor, key: Tensor, rel_pos_bias, q_start: int = 0):
    """(q', k') = ([q / sqrt(z), a_i], [k, b_j]): q' k'^T = q k^T / sqrt(z) + a_i . b_j for a bias of rank z
    (`query_key_factors`, the rotary one).  query (..., Lq, z), key (..., Lk, z) -> (..., Lq, 2z), (..., Lk, 2z)."""
    lead, q_len, k_len, z_dim = query.shape[:-2], query.size(-2), key.size(-2), query.size(-1)
    query_factor, key_factor = rel_pos_bias.query_key_factors(k_len, q_start, q_len)
    folded_q = torch.cat([query * z_dim**-0.5, query_factor.to(query.dtype).expand(*lead, q_len, z_dim)], dim=-1)
    folded_k = torch.cat([key, key_factor.to(key.dtype).expand(*lead, k_len, z_dim)], dim=-1)
    return folded_q, folded_k


def blockwise_rotary_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    rel_pos_bias,
    q_start: int = 0,
    causal: bool = False,
    key_padding_mask: Optional[Tensor] = None,
) -> Tensor:
    """softmax(q k^T / sqrt(z) + a_i . b_j) v with masks by blocks of queries (`blockwise_attention`): query
    (B, n, Lq, z), key (B, n, Lk, z), value (B, n, Lk, H), key_padding_mask (B, n, Lk) -> (B, n, Lq, H), with
    q' = [q / sqrt(z), a_i] and k' = [k, b_j] (gradients reach the bias through the concatenation)."""
    lead, q_len, k_len = query.shape[:-2], query.size(-2), key.size(-2)
    if key_padding_mask is not None and not bool(key_padding_mask.any()):
        key_padding_mask = None
    folded_q, folded_k = fold_rotary_bias(query, key, rel_pos_bias, q_start)
    mask = None if key_padding_mask is None else key_padding_mask.reshape(-1, k_len)
    out = blockwise_softmax_attention(
        folded_q.reshape(-1, q_len, folded_q.size(-1)),
        folded_k.reshape(-1, k_len, folded_k.size(-1)),
        value.reshape(-1, k_len, value.size(-1)),
        q_start=q_start,
        causal=causal,
        key_padding_mask=mask,
    )
    return out.view(*lead, q_len, value.size(-1))


def fused_softmax_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    rel_pos_bias,
    q_start: int = 0,
    causal: bool = False,
    key_padding_mask: Optional[Tensor] = None,
) -> Tensor:
    """softmax(q k^T / sqrt(z) + a_i . b_j) v with masks, through `scaled_dot_product_attention`, no (Lq, Lk)
    tensor: query (B, n, Lq, z), key (B, n, Lk, z), value (B, n, Lk, H), key_padding_mask (B, n, Lk) -> (B, n, Lq, H).
    See the module docstring for the folding; `fused_route_applies` says when it is exact."""
    lead, q_len, k_len = query.shape[:-2], query.size(-2), key.size(-2)
    if key_padding_mask is not None and not bool(key_padding_mask.any()):
        key_padding_mask = None
    is_causal = causal and q_start < k_len - 1  # fused_route_applies: then q_start == 0
    folded_q, folded_k = fold_rotary_bias(query, key, rel_pos_bias, q_start)
    q_parts, k_parts = [folded_q], [folded_k]
    if key_padding_mask is not None:  # one more column: 1 . (-BIG) at padded keys, 1 . 0 elsewhere
        big = min(1e6, torch.finfo(key.dtype).max / 4)
        q_parts.append(query.new_ones(*lead, q_len, 1))
        k_parts.append(key_padding_mask.unsqueeze(-1).to(key.dtype) * -big)
    fused_q, fused_k = torch.cat(q_parts, dim=-1), torch.cat(k_parts, dim=-1)
    width, h_dim = fused_q.size(-1), value.size(-1)
    groups = -(-h_dim // width)
    if groups * width != h_dim:
        value = F.pad(value, (0, groups * width - h_dim))
    # (*lead, L, groups*W) -> (*lead, groups, L, W) -> (prod(lead)*groups, 1, L, W)
    value = value.reshape(-1, k_len, groups, width).transpose(1, 2).reshape(-1, 1, k_len, width)
    fused_q = fused_q.reshape(-1, 1, q_len, width).expand(-1, groups, q_len, width).reshape(-1, 1, q_len, width)
    fused_k = fused_k.reshape(-1, 1, k_len, width).expand(-1, groups, k_len, width).reshape(-1, 1, k_len, width)
    out = F.scaled_dot_product_attention(fused_q, fused_k, value, is_causal=is_causal, scale=1.0)
    out = out.reshape(-1, groups, q_len, width).transpose(1, 2).reshape(*lead, q_len, groups * width)[..., :h_dim]
    if key_padding_mask is not None:  # rows that may read no key give zeros, as in the explicit route
        visible = ~key_padding_mask
        if is_causal:  # row i reads keys 0..i
            readable = visible.cumsum(-1)[..., :q_len].gt(0).unsqueeze(-1)
        else:
            readable = visible.any(-1, keepdim=True).unsqueeze(-1)
        out = out.masked_fill(~readable, 0.0)
    return out
