"""Mega building blocks, one concept per file; tensors are batch-first (batch, length, dim)."""

from .config import MegaLayerConfig
from .cross_attention import GatedCrossAttention
from .dropout import MegaDropout
from .ema import MultiHeadDampedEMA
from .gated_attention import MovingAverageGatedAttention
from .layer import MegaDecoderLayer, MegaEncoderLayer, MegaLayer
from .nffn import NormalizedFeedForwardNetwork
from .norms import LayerNorm, MaskedBatchNorm, RMSNorm, ScaleNorm, build_norm
from .relative_position import RotaryRelativePositionalBias, SimpleRelativePositionalBias
from .stack import MegaStack

__all__ = [
    "GatedCrossAttention",
    "LayerNorm",
    "MaskedBatchNorm",
    "MegaDecoderLayer",
    "MegaDropout",
    "MegaEncoderLayer",
    "MegaLayer",
    "MegaLayerConfig",
    "MegaStack",
    "MovingAverageGatedAttention",
    "MultiHeadDampedEMA",
    "NormalizedFeedForwardNetwork",
    "RMSNorm",
    "RotaryRelativePositionalBias",
    "ScaleNorm",
    "SimpleRelativePositionalBias",
    "build_norm",
]
