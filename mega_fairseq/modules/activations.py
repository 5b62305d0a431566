"""Element-wise activations of Mega's values, gates and normalized FFN, by name (the original fork's names).

`ACTIVATION_FNS` is the registry (name -> function on tensors of any shape); `ACTIVATIONS` (its names, in
order) is the vocabulary that `MegaLayerConfig` validates and the fairseq models offer as `--activation-fn`.
"""

import torch
import torch.nn.functional as F

ACTIVATION_FNS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh}
ACTIVATIONS = tuple(ACTIVATION_FNS)
