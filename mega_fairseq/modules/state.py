"""Incremental (decoding) state of one Mega layer's attention block.

A ``State`` maps names to tensors that carry a layer over from one decoding step (or one streamed
block) to the next.  Self-attention (`gated_attention.py`) keeps
{"ema": (B, D, N) fp32, "key": (B, c, z), "value": (B, c, H), "key_padding": (B, c) bool or absent},
c counting the tokens of the current chunk; cross-attention (`cross_attention.py`) keeps the projected
encoder output and its padding ("cross_padding": (B, S) bool).
"""

from typing import Dict

from torch import Tensor

State = Dict[str, Tensor]
