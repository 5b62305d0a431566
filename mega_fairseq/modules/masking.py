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


def right_align_order(padding_mask: Tensor) -> Optional[Tensor]:
    """(B, T) permutation moving each row's padding (True) after its tokens, order kept; None if already so."""
    if padding_mask.size(1) < 2 or not bool((padding_mask[:, :-1] & ~padding_mask[:, 1:]).any()):
        return None
    return torch.sort(padding_mask.to(torch.uint8), dim=1, stable=True).indices


def leading_padding(padding_mask: Optional[Tensor], batch: int) -> Tensor:
    """(B,) number of padding positions before each row's first token (a left-padded batch's padding);
    zeros without a mask.  An all-padding row counts its whole length."""
    if padding_mask is None:
        return torch.zeros(batch, dtype=torch.long)
    return padding_mask.long().cumprod(dim=1).sum(dim=1).cpu()


def first_token(features: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """(B, T, D) -> (B, D): each sample's first non-padding position (position 0 without padding)."""
    if padding_mask is None:
        return features[:, 0]
    first = (~padding_mask).long().argmax(dim=1)
    return features[torch.arange(features.size(0), device=features.device), first]
