"""Relative position biases added to Mega's attention scores.

Both return bias[i, j] for query positions i in [q_start, q_start + q_len) and key positions
j in [0, k_len), as a (q_len, k_len) tensor.  Full attention uses q_start=0, q_len=k_len; a
decoding step uses q_start=k_len-1, q_len=1.
"""

import math

import torch
from torch import Tensor, nn

# the vocabulary of `MegaLayerConfig.rel_pos_bias` (`--rel-pos-bias`), built by `build_relative_bias`
REL_POS_BIASES = ("simple", "rotary")


class SimpleRelativePositionalBias(nn.Module):
    """A learned scalar per offset j - i in [-(P-1), P-1]; P = the longest span attended (chunk or max positions)."""

    def __init__(self, max_positions: int):
        super().__init__()
        self.max_positions = max_positions
        self.rel_pos_bias = nn.Parameter(torch.empty(2 * max_positions - 1))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02):
        nn.init.normal_(self.rel_pos_bias, 0.0, std)

    def forward(self, k_len: int, q_start: int = 0, q_len: int = None) -> Tensor:
        q_len = k_len if q_len is None else q_len
        span = max(k_len, q_start + q_len)
        if span > self.max_positions:
            raise ValueError(
                f"sequence of {span} positions is longer than the simple relative bias supports "
                f"({self.max_positions}); "
                "use chunking (chunk_size), a larger max_positions, or rel_pos_bias='rotary'"
            )
        offsets = torch.arange(k_len, device=self.rel_pos_bias.device).unsqueeze(0) - torch.arange(
            q_start, q_start + q_len, device=self.rel_pos_bias.device
        ).unsqueeze(1)
        return self.rel_pos_bias[offsets + self.max_positions - 1]


class RotaryRelativePositionalBias(nn.Module):
    """bias[i, j] = rot(alpha, i) . rot(beta, j): two learned vectors rotated by their positions (no length limit)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"rotary relative bias needs an even width, got {dim}")
        self.dim = dim
        self.alpha = nn.Parameter(torch.empty(1, dim))
        self.b_param = nn.Parameter(torch.empty(1, dim))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02):
        nn.init.normal_(self.alpha, 0.0, std)
        nn.init.normal_(self.b_param, 0.0, std)

    def sinusoids(self, start: int, length: int, device) -> tuple:
        """sin, cos of position * frequency for positions [start, start+length): (length, dim/2) each.

        The table is cached and grown on demand (decoding asks for one row per step)."""
        end = start + length
        cached = getattr(self, "_table", None)
        if cached is None or cached[0].size(0) < end or cached[0].device != torch.device(device):
            half = self.dim // 2
            inv_freq = torch.exp(torch.arange(half, device=device).float() * -(math.log(10000) / half))
            size = max(end, 2 * cached[0].size(0) if cached is not None else 0)
            angles = torch.arange(size, device=device, dtype=torch.float).unsqueeze(1) * inv_freq.unsqueeze(0)
            cached = self._table = (torch.sin(angles), torch.cos(angles))
        return cached[0][start:end], cached[1][start:end]

    def rotate(self, vector: Tensor, start: int, length: int) -> Tensor:
        """vector (1, dim) placed at positions [start, start+length) -> (length, dim)."""
        sin, cos = self.sinusoids(start, length, vector.device)
        sin, cos = sin.to(vector.dtype), cos.to(vector.dtype)
        first, second = vector.chunk(2, dim=-1)
        return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)

    def query_key_factors(self, k_len: int, q_start: int = 0, q_len: int = None) -> tuple:
        """(q_len, dim) and (k_len, dim) factors whose product is the bias; lets softmax attention fold the
        bias into one fused scaled-dot-product call by appending them to queries and keys."""
        q_len = k_len if q_len is None else q_len
        return self.rotate(self.alpha, q_start, q_len), self.rotate(self.b_param, 0, k_len)

    def forward(self, k_len: int, q_start: int = 0, q_len: int = None) -> Tensor:
        query_factor, key_factor = self.query_key_factors(k_len, q_start, q_len)
        return query_factor @ key_factor.transpose(0, 1)


def build_relative_bias(kind: str, z_dim: int, max_positions: int) -> nn.Module:
    from .config import check_choice  # config imports this module for REL_POS_BIASES

    check_choice("rel_pos_bias", kind, REL_POS_BIASES)
    if kind == "simple":
        return SimpleRelativePositionalBias(max_positions)
    return RotaryRelativePositionalBias(z_dim)  # kind == "rotary"


def recenter_simple_bias(weight: Tensor, new_numel: int, center: int = None, new_center: int = None) -> Tensor:
    """A simple relative bias vector re-laid out for another span: offsets -r..r are copied, the rest is zero.

    `weight` (N,) holds the bias of offset o at index center + o (default center = (N - 1) // 2, the
    layout of `SimpleRelativePositionalBias`: N = 2P - 1, offsets -(P-1)..P-1).  The result (new_numel,)
    holds it at index new_center + o (default (new_numel - 1) // 2), for |o| <= r with
    r = min(center, N - 1 - center, new_center, new_numel - 1 - new_center); other offsets are 0.
    """
    center = (weight.numel() - 1) // 2 if center is None else center
    new_center = (new_numel - 1) // 2 if new_center is None else new_center
    out = weight.new_zeros(new_numel)
    radius = min(center, weight.numel() - 1 - center, new_center, new_numel - 1 - new_center)
    out[new_center - radius : new_center + radius + 1] = weight[center - radius : center + radius + 1]
    return out
