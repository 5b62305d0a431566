"""A Mega layer: moving-average gated attention [+ gated cross-attention] [+ normalized FFN].

Encoder and decoder layers are the same module; the config decides (bidirectional EMA for
encoders; causal=True for decoders, plus cross_attention=True inside encoder-decoder models).
"""

from typing import Optional, Tuple

from torch import Tensor, nn

from .config import MegaLayerConfig
from .cross_attention import GatedCrossAttention
from .gated_attention import MovingAverageGatedAttention
from .nffn import NormalizedFeedForwardNetwork
from .state import State


class MegaLayer(nn.Module):
    def __init__(self, cfg: MegaLayerConfig):
        super().__init__()
        self.cfg = cfg
        self.mega_layer = MovingAverageGatedAttention(cfg)
        self.cross_attn = GatedCrossAttention(cfg) if cfg.cross_attention else None
        self.nffn = NormalizedFeedForwardNetwork(cfg) if cfg.use_nffn else None

    def forward(
        self,
        x: Tensor,
        padding_mask: Optional[Tensor] = None,
        encoder_out: Optional[Tensor] = None,
        encoder_padding_mask: Optional[Tensor] = None,
        state: Optional[State] = None,
        return_state: bool = False,
        position: int = 0,
    ) -> Tuple[Tensor, Optional[State]]:
        """x: (batch, length, D) -> (batch, length, D), next state (decoders, when asked) or None.

        `position` is the absolute index of x's first token (decoding), used by cross-attention's bias."""
        x, next_state = self.mega_layer(x, padding_mask, state=state, return_state=return_state)
        if self.cross_attn is not None:
            x, cross_state = self.cross_attn(
                x, encoder_out, encoder_padding_mask, padding_mask, state=state, position=position
            )
            if next_state is not None:
                next_state.update({k: v for k, v in cross_state.items() if k.startswith("cross_")})
        if self.nffn is not None:
            x = self.nffn(x, padding_mask)
        return x, next_state


def MegaEncoderLayer(cfg: MegaLayerConfig) -> MegaLayer:
    """A non-causal Mega layer (attention sees the whole sequence); the EMA direction follows cfg.bidirectional."""
    return MegaLayer(cfg.replace(causal=False, cross_attention=False))


def MegaDecoderLayer(cfg: MegaLayerConfig, cross_attention: bool = False) -> MegaLayer:
    """A causal Mega layer (causal EMA and attention mask), optionally reading an encoder."""
    return MegaLayer(cfg.replace(causal=True, bidirectional=False, cross_attention=cross_attention))
