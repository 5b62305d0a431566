"""Helpers shared by the tests and benchmarks: random weights far from init, and HF twins of our stacks."""

import math

import torch
from torch import nn

from .convert.hf_names import stack_state_dict_from_hf, to_hf_config_kwargs
from .modules import MegaLayerConfig, MegaStack


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fills every parameter (and batch-norm statistics) with values well away from their init,
    so that a wrong sign, scale or index cannot hide behind near-zero weights."""
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        leaf = name.rsplit(".", 1)[-1]
        if not tensor.is_floating_point():
            continue
        if leaf == "running_var":
            values = torch.rand(tensor.shape, generator=gen) * 1.5 + 0.5
        elif leaf in ("scalar",) or (leaf == "weight" and tensor.dim() == 1):
            values = 1.0 + 0.3 * torch.randn(tensor.shape, generator=gen)
        elif leaf == "weight" and tensor.dim() == 2 and "embed" not in name and "embedding" not in name:
            values = torch.randn(tensor.shape, generator=gen) / math.sqrt(tensor.shape[1])
        elif leaf in ("bias", "running_mean", "qk_bias", "rel_pos_bias", "alpha", "b_param"):
            values = 0.3 * torch.randn(tensor.shape, generator=gen)
        elif leaf == "_float_tensor":
            continue
        elif leaf == "qk_weight":
            values = 0.5 * torch.randn(tensor.shape, generator=gen)
        else:  # embeddings, EMA parameters
            values = torch.randn(tensor.shape, generator=gen)
        tensor.copy_(values.to(tensor.dtype))
    return module


def hf_twin(
    cfg: MegaLayerConfig,
    num_layers: int,
    vocab_size: int = 50,
    pad_token_id: int = 1,
    seed: int = 0,
    type_vocab_size: int = 0,
):
    """(our MegaStack, transformers MegaModel) with the same randomized weights, both in eval mode."""
    from transformers import MegaConfig, MegaModel

    hf_config = MegaConfig(**to_hf_config_kwargs(cfg, num_layers, vocab_size, pad_token_id, type_vocab_size))
    hf_model = MegaModel(hf_config, add_pooling_layer=False)
    randomize_(hf_model, seed)
    ours = MegaStack(
        cfg,
        num_layers,
        nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=pad_token_id),
        type_vocab_size=type_vocab_size,
    )
    ours.load_state_dict(stack_state_dict_from_hf(hf_model.state_dict(), cfg, prefix=""))
    return ours.eval(), hf_model.eval()
