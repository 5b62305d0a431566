"""Softmax attention by blocks of queries, with no (Lq, Lk) matrix kept for backward.

    out = softmax(q k^T + mask) v        q (N, Lq, W), k (N, Lk, W), v (N, Lk, H) -> (N, Lq, H)

(any score scale and a rank-W bias are folded into q and k by the caller: `attention_kernel` passes
q' = [q / sqrt(z), a_i], k' = [k, b_j] for the rotary bias a_i . b_j).  Masks: `causal` (query i reads
keys j <= q_start + i) and `key_padding_mask` (N, Lk), True at padding; a row that may read no key
gives zeros, as the explicit route does.

Forward, per block of R query rows: s = q_R k^T (R, Lk) in the input dtype, masked, then in fp32
m = rowmax(s), lse = m + log sum exp(s - m), p = exp(s - lse), out_R = p v.  Only q, k, v, out and
lse (N, Lq) are saved.  Backward recomputes p per block (flash attention's recipe):

    dv += p^T dout_R,   dp = dout_R v^T,   ds = p * (dp - rowsum(dout_R * out_R)),
    dq_R = ds k,        dk += ds^T q_R.

Arithmetic per (query, key) pair: W + H forward and 3W + 2H backward (the explicit route: the same,
with (Lq, Lk) scores, weights and their gradients in memory; torch's CPU flash kernel needs the value
width to equal W and so recomputes q k^T for each of ceil(H / W) value groups).  Causal blocks read
only keys 0 .. q_start + last row.  Memory: O((Lq + Lk) (W + H)) plus one block's (R, Lk) scores,
R = max(1, BLOCK_ELEMENTS // (N Lk)).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

BLOCK_ELEMENTS = 1 << 22  # scores of one block: N * R * Lk elements (16 MiB in fp32)


def _blocks(batch: int, q_len: int, k_len: int, block_rows: Optional[int]):
    rows = block_rows or max(1, BLOCK_ELEMENTS // max(1, batch * k_len))
    return [(start, min(start + rows, q_len)) for start in range(0, q_len, rows)]


def _masked_scores(
    q_block: Tensor,
    key: Tensor,
    start: int,
    q_start: int,
    causal: bool,
    key_padding_mask: Optional[Tensor],
) -> Tuple[Tensor, int]:
    """fp32 scores (N, R, K) of query rows start.. against the keys they may read (K = every key, or under
    causality the keys up to the block's last row), -inf where masked; returns (scores, K)."""
    rows = q_block.size(1)
    k_len = key.size(1)
    if causal:
        k_len = min(k_len, q_start + start + rows)
    scores = torch.matmul(q_block, key[:, :k_len].transpose(1, 2)).float()
    if causal and q_start + start < k_len - 1:
        rows_at = torch.arange(q_start + start, q_start + start + rows, device=key.device).unsqueeze(1)
        hidden = torch.arange(k_len, device=key.device).unsqueeze(0) > rows_at
        scores = scores.masked_fill(hidden, float("-inf"))
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, :k_len], float("-inf"))
    return scores, k_len


class BlockwiseSoftmaxAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, q_start, causal, key_padding_mask, block_rows):
        batch, q_len, _ = query.shape
        out = value.new_zeros(batch, q_len, value.size(-1))
        lse = torch.full((batch, q_len), float("-inf"), dtype=torch.float32, device=query.device)
        for start, end in _blocks(batch, q_len, key.size(1), block_rows):
            scores, k_len = _masked_scores(query[:, start:end], key, start, q_start, causal, key_padding_mask)
            block_lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            readable = torch.isfinite(block_lse)  # rows that read no key stay zero (lse -inf)
            weights = torch.exp(scores - torch.where(readable, block_lse, 0.0)).to(value.dtype)
            out[:, start:end] = torch.matmul(weights, value[:, :k_len])
            lse[:, start:end] = block_lse.squeeze(-1)
        ctx.save_for_backward(query, key, value, out, lse, key_padding_mask)
        ctx.q_start, ctx.causal, ctx.block_rows = q_start, causal, block_rows
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, lse, key_padding_mask = ctx.saved_tensors
        batch, q_len, _ = query.shape
        grad_q, grad_k, grad_v = torch.zeros_like(query), torch.zeros_like(key), torch.zeros_like(value)
        grad_out = grad_out.contiguous()
        delta = (grad_out.float() * out.float()).sum(-1)  # (N, Lq): rowsum(dout * out)
        for start, end in _blocks(batch, q_len, key.size(1), ctx.block_rows):
            q_block, g_block = query[:, start:end], grad_out[:, start:end]
            scores, k_len = _masked_scores(q_block, key, start, ctx.q_start, ctx.causal, key_padding_mask)
            block_lse = lse[:, start:end, None]
            weights = torch.exp(scores - torch.where(torch.isfinite(block_lse), block_lse, 0.0))
            grad_v[:, :k_len] += torch.matmul(weights.to(value.dtype).transpose(1, 2), g_block)
            grad_weights = torch.matmul(g_block, value[:, :k_len].transpose(1, 2)).float()
            grad_scores = (weights * (grad_weights - delta[:, start:end, None])).to(query.dtype)
            grad_q[:, start:end] = torch.matmul(grad_scores, key[:, :k_len])
            grad_k[:, :k_len] += torch.matmul(grad_scores.transpose(1, 2), q_block)
        return grad_q, grad_k, grad_v, None, None, None, None


def blockwise_softmax_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    q_start: int = 0,
    causal: bool = False,
    key_padding_mask: Optional[Tensor] = None,
    block_rows: Optional[int] = None,
) -> Tensor:
    """softmax(q k^T + masks) v: query (N, Lq, W), key (N, Lk, W), value (N, Lk, H), key_padding_mask (N, Lk)
    bool -> (N, Lq, H); query row i sits at key position q_start + i.  block_rows: query rows per block
    (default from `BLOCK_ELEMENTS`).  See the module docstring."""
    return BlockwiseSoftmaxAttention.apply(query, key, value, int(q_start), bool(causal), key_padding_mask, block_rows)
