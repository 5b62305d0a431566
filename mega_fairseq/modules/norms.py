"""Sequence normalizations used by Mega layers, on (batch, length, dim) inputs.

scalenorm, layernorm and rmsnorm act on each token alone.  batchnorm and syncbatchnorm pool
statistics over the batch and time, and never over padding (pass `padding_mask`, True at
padding).  syncbatchnorm all-reduces those statistics across the default process group and
falls back to plain batchnorm when there is none.  Parameter and buffer names follow
torch.nn (weight, bias, running_mean, running_var, num_batches_tracked).

`NORMS` is the registry (name -> builder(dim, eps, affine)); `NORM_TYPES` (its names) is the vocabulary
that `MegaLayerConfig` validates and the fairseq models offer as `--normalization-type`.
"""

import functools
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class ScaleNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps) with one learned scalar g."""

    def __init__(self, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.scalar = nn.Parameter(torch.ones(1)) if affine else None

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        out = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return out * self.scalar if self.scalar is not None else out


class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps): a real RMS normalization (HF's MegaRMSNorm skips the division)."""

    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        out = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return out * self.weight if self.weight is not None else out


class LayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return super().forward(x)


@functools.lru_cache(maxsize=None)
def apex_layer_norm_class():
    """A LayerNorm on apex's FusedLayerNorm when apex imports and CUDA is available (the switch fairseq's
    ``fairseq.modules.LayerNorm`` makes, without importing fairseq), else None.  Same parameters (weight, bias)
    as LayerNorm."""
    if not torch.cuda.is_available():
        return None
    try:
        from apex.normalization import FusedLayerNorm
    except ImportError:
        return None

    class ApexLayerNorm(FusedLayerNorm):
        def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
            if not x.is_cuda:  # apex falls back to torch's layer norm
                return super().forward(x)
            with torch.cuda.device(x.device):
                return super().forward(x)

    return ApexLayerNorm


class MaskedBatchNorm(nn.Module):
    """Batch normalization over every non-padding token of the batch (optionally across processes)."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True, sync: bool = False):
        super().__init__()
        self.dim, self.eps, self.momentum, self.sync = dim, eps, momentum, sync
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _synced(self) -> bool:
        return self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.dim)
        if not self.training:
            return F.batch_norm(
                flat, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            ).view(shape)
        has_padding = padding_mask is not None and bool(padding_mask.any())
        if not has_padding and not self._synced():
            # fast path: torch's fused kernel, identical to nn.BatchNorm1d over (batch, dim, length)
            self.num_batches_tracked.add_(1)
            return F.batch_norm(
                flat, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps
            ).view(shape)
        keep = torch.ones(
            flat.size(0), 1, dtype=torch.float32, device=flat.device
        )  # fp32: exact counts past 2048 tokens
        if has_padding:
            keep = (~padding_mask).reshape(-1, 1).float()
        stats = torch.cat([keep.sum(0), (flat.float() * keep).sum(0), (flat.float().pow(2) * keep).sum(0)])
        if self._synced():
            from torch.distributed.nn.functional import all_reduce

            stats = all_reduce(stats)
        count = stats[0].clamp(min=1.0)
        mean = stats[1 : 1 + self.dim] / count
        var = (stats[1 + self.dim :] / count - mean.pow(2)).clamp(min=0.0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            unbiased = var * count / (count - 1).clamp(min=1.0)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        out = (flat.float() - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight.float() + self.bias.float()
        return out.to(x.dtype).view(shape)


NORMS = {
    "scalenorm": lambda dim, eps, affine: ScaleNorm(eps, affine),
    "layernorm": lambda dim, eps, affine: (apex_layer_norm_class() or LayerNorm)(
        dim, eps=eps, elementwise_affine=affine
    ),
    "rmsnorm": lambda dim, eps, affine: RMSNorm(dim, eps, affine),
    "batchnorm": lambda dim, eps, affine: MaskedBatchNorm(dim, eps=eps, affine=affine),
    "syncbatchnorm": lambda dim, eps, affine: MaskedBatchNorm(dim, eps=eps, affine=affine, sync=True),
}
NORM_TYPES = tuple(NORMS)


def build_norm(norm_type: str, dim: int, eps: float = 1e-5, affine: bool = True) -> nn.Module:
    """The `norm_type` normalization of width `dim` (an unknown name: `config.MegaConfigError`)."""
    from .config import check_choice  # config imports this module for NORM_TYPES

    check_choice("normalization_type", norm_type, NORM_TYPES)
    return NORMS[norm_type](dim, eps, affine)
