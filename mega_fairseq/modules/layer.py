"""A Mega layer: moving-average gated attention [+ gated cross-attention] [+ normalized FFN].

Encoder and decoder layers are the same module; the config decides (bidirectional EMA for
encoders; causal=True for decoders, plus cross_attention=True inside encoder-decoder models).

Activation checkpointing (`checkpoint_activations`, fairseq's `--checkpoint-activations`): a training
forward with gradients keeps only the layer's inputs; backward runs the layer again
(torch.utils.checkpoint, non-reentrant) with the RNG state of the first run, so dropout draws the same
masks and the gradients are those of the plain run.  Batch-norm running statistics are not updated twice
(the rerun restores the layer's buffers).  Incremental decoding, `return_state`, eval and no-grad runs
are never checkpointed.  `offload_activations` also moves the saved inputs to CPU memory while the
forward runs on a GPU (torch.autograd.graph.save_on_cpu) and implies checkpointing.  The switch lives
on the layer itself, so parameter names do not change and a sharding wrapper (FSDP) placed around the
layer sees the checkpointing inside it, as fairseq's transformer does.
"""

import contextlib
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .config import MegaLayerConfig
from .cross_attention import GatedCrossAttention
from .gated_attention import MovingAverageGatedAttention
from .nffn import NormalizedFeedForwardNetwork
from .state import State


class MegaLayer(nn.Module):
    def __init__(self, cfg: MegaLayerConfig, checkpoint_activations: bool = False, offload_activations: bool = False):
        super().__init__()
        self.cfg = cfg
        self.mega_layer = MovingAverageGatedAttention(cfg)
        self.cross_attn = GatedCrossAttention(cfg) if cfg.cross_attention else None
        self.nffn = NormalizedFeedForwardNetwork(cfg) if cfg.use_nffn else None
        self.checkpoint_activations = checkpoint_activations or offload_activations
        self.offload_activations = offload_activations

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
        args = (x, padding_mask, encoder_out, encoder_padding_mask, state, return_state, position)
        if not (
            self.checkpoint_activations
            and self.training
            and torch.is_grad_enabled()
            and state is None
            and not return_state
        ):
            return self.layer_forward(*args)
        offload = self.offload_activations and x.is_cuda
        calls = []

        def run(*inputs):
            if not calls:  # the first run
                calls.append(1)
                return self.layer_forward(*inputs)
            buffers = [buf.clone() for buf in self.buffers()]  # the rerun inside backward: statistics unchanged
            try:  # torch may stop a rerun early (once it has what backward needs) by raising
                return self.layer_forward(*inputs)
            finally:
                with torch.no_grad():
                    for buf, saved in zip(self.buffers(), buffers):
                        buf.copy_(saved)

        with torch.autograd.graph.save_on_cpu(pin_memory=True) if offload else contextlib.nullcontext():
            return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True)

    def layer_forward(
        self,
        x: Tensor,
        padding_mask: Optional[Tensor] = None,
        encoder_out: Optional[Tensor] = None,
        encoder_padding_mask: Optional[Tensor] = None,
        state: Optional[State] = None,
        return_state: bool = False,
        position: int = 0,
    ) -> Tuple[Tensor, Optional[State]]:
        """`forward` without checkpointing (the function a checkpointed forward runs twice)."""
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
