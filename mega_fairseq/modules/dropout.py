"""Element or feature dropout for (batch, ..., dim) tensors."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MegaDropout(nn.Module):
    """With `featurewise`, one keep/drop draw per (sample, feature) shared over all positions (Mega's feature
    dropout)."""

    def __init__(self, p: float, featurewise: bool = False):
        super().__init__()
        self.p = p
        self.featurewise = featurewise

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not self.featurewise:
            return F.dropout(x, self.p, training=True)
        shape = (x.size(0),) + (1,) * (x.dim() - 2) + (x.size(-1),)
        keep = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, featurewise={self.featurewise}"
