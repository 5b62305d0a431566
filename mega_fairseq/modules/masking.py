"""Padding masks: (batch, length) bool tensors, True at padding positions."""

from typing import Optional

import torch
from torch import Tensor


def check_padding_mask(
    padding_mask: Optional[Tensor], batch: int, length: int, what: str = "padding_mask"
) -> Optional[Tensor]:
    """Returns `padding_mask` unchanged after checking it is a (batch, length) bool tensor (or None);
    ValueError naming `what` otherwise."""
    if padding_mask is None:
        return None
    if padding_mask.dim() != 2 or padding_mask.size(0) != batch or padding_mask.size(1) != length:
        raise ValueError(
            f"{what} must have shape (batch, length) = ({batch}, {length}), got {tuple(padding_mask.shape)}; "
            "pass a bool tensor that is True at padding positions"
        )
    if padding_mask.dtype != torch.bool:
        raise ValueError(f"{what} must be a bool tensor (True at padding), got dtype {padding_mask.dtype}")
    return padding_mask
