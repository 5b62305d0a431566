"""`MegaEncoder`: a bidirectional Mega stack as a fairseq `FairseqEncoder`.

The one encoder behind every encoder-side model (masked LM and fine-tuning heads, LRA
classifiers, the translation encoder).  It takes a `MegaLayerConfig` (the models build it from
their options with `options.layer_config(cfg, "encoder", ...)`), the number of layers, and the
structural switches each model decides (embedding scale, final norm, token types) as keyword
arguments; `decoder.MegaDecoder` is its causal twin.

Output follows fairseq's encoder contract (time-first tensors in lists), so fairseq's
`SequenceGenerator` and the `translation` task can use it unchanged:
``{"encoder_out": [T x B x D], "encoder_padding_mask": [B x T], "encoder_states": [...], ...}``.
"""

from typing import Dict, List, Optional

import torch
from fairseq.distributed.fully_sharded_data_parallel import fsdp_wrap
from fairseq.models import FairseqEncoder
from torch import Tensor, nn

from ..modules import MegaLayerConfig, MegaStack
from ..modules.masking import right_align_order


def build_embedding(num_embeddings: int, dim: int, padding_idx: int) -> nn.Embedding:
    """Token embeddings initialised N(0, D^-1/2) with a zero padding row (fairseq's convention)."""
    embedding = nn.Embedding(num_embeddings, dim, padding_idx=padding_idx)
    nn.init.normal_(embedding.weight, mean=0.0, std=dim**-0.5)
    nn.init.zeros_(embedding.weight[padding_idx])
    return embedding


def check_fsdp_device() -> None:
    """Under ``--ddp-backend fully_sharded`` (fairseq builds the model inside FairScale's `enable_wrap`) without
    CUDA: a `ValueError` naming the flag, instead of FairScale's "Torch not compiled with CUDA enabled"."""
    try:
        from fairscale.nn.wrap.auto_wrap import ConfigAutoWrap
    except ImportError:  # fairseq's fsdp_wrap is a no-op then
        return
    if ConfigAutoWrap.in_autowrap_context and not torch.cuda.is_available():
        raise ValueError(
            "--ddp-backend fully_sharded needs CUDA: FairScale's FullyShardedDataParallel (fairseq's sharding engine; "
            "FairScale 0.3.9 to 0.4.13) runs its all-gather and reduce-scatter on CUDA streams. On CPU "
            "shard the optimizer state instead with --zero-sharding os (default --ddp-backend), or train on a GPU."
        )


def build_stack(
    layer_cfg: MegaLayerConfig,
    num_layers: int,
    embed_tokens: nn.Module,
    *,
    checkpoint_activations: bool = False,
    offload_activations: bool = False,
    min_params_to_wrap: Optional[int] = None,
    **stack_options,
) -> MegaStack:
    """A `MegaStack` whose layers checkpoint their activations if asked and are each wrapped by fairseq's
    `fsdp_wrap` (its own FSDP unit under ``--ddp-backend fully_sharded``, unchanged otherwise): layers of at least
    `min_params_to_wrap` parameters, every layer when checkpointing (as fairseq's transformer does)."""
    stack = MegaStack(
        layer_cfg,
        num_layers,
        embed_tokens,
        checkpoint_activations=checkpoint_activations,
        offload_activations=offload_activations,
        **stack_options,
    )
    if checkpoint_activations or offload_activations:
        min_params_to_wrap = 0
    check_fsdp_device()
    stack.layers = nn.ModuleList([fsdp_wrap(layer, min_num_params=min_params_to_wrap) for layer in stack.layers])
    return stack


class MegaEncoder(FairseqEncoder):
    """Embeddings -> bidirectional Mega layers [-> final norm]; padding never changes other tokens."""

    def __init__(
        self,
        layer_cfg: MegaLayerConfig,
        num_layers: int,
        dictionary,
        embed_tokens: Optional[nn.Module] = None,
        *,
        max_positions: int,
        type_vocab_size: int = 0,
        scale_embedding: bool = False,
        normalize_embedding: bool = False,
        final_norm: bool = False,
        final_norm_affine: bool = True,
        checkpoint_activations: bool = False,
        offload_activations: bool = False,
        min_params_to_wrap: Optional[int] = None,
    ):
        """layer_cfg: bidirectional layers of width D; embed_tokens: (B, T) -> (B, T, D), default a new
        `build_embedding`; max_positions: the longest input (`max_source_positions`); embeddings are dropped out
        with layer_cfg.dropout; checkpointing and FSDP wrapping: `build_stack` (`options.scale_options`)."""
        super().__init__(dictionary)
        self.max_source_positions = max_positions
        if embed_tokens is None:
            embed_tokens = build_embedding(len(dictionary), layer_cfg.embed_dim, dictionary.pad())
        self.stack = build_stack(
            layer_cfg,
            num_layers,
            embed_tokens,
            checkpoint_activations=checkpoint_activations,
            offload_activations=offload_activations,
            min_params_to_wrap=min_params_to_wrap,
            type_vocab_size=type_vocab_size,
            scale_embedding=scale_embedding,
            normalize_embedding=normalize_embedding,
            final_norm=final_norm,
            final_norm_affine=final_norm_affine,
            embedding_dropout=layer_cfg.dropout,
        )

    @property
    def embed_tokens(self) -> nn.Module:
        return self.stack.embed_tokens

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Optional[Tensor] = None,
        token_types: Optional[Tensor] = None,
        return_all_hiddens: bool = False,
        **unused,
    ) -> Dict[str, List[Tensor]]:
        """src_tokens: (B, T) ids, padded with the dictionary's pad anywhere (left, as fairseq's translation
        data does, or right): a sample's output never depends on its padding.  token_types: (B, T) segment ids
        when the model has token-type embeddings."""
        padding_mask = src_tokens.eq(self.dictionary.pad())
        order = right_align_order(padding_mask) if self.stack.cfg.chunked else None
        if order is None:
            x, _, hiddens = self.stack(
                src_tokens, padding_mask, token_types=token_types, return_all_hiddens=return_all_hiddens
            )
        else:  # Mega-chunk windows start at position 0: run every row right-padded, then restore positions
            types = None if token_types is None else token_types.gather(1, order)
            x, _, hiddens = self.stack(
                src_tokens.gather(1, order),
                padding_mask.gather(1, order),
                token_types=types,
                return_all_hiddens=return_all_hiddens,
            )
            inverse = order.argsort(dim=1).unsqueeze(-1)
            x, *hiddens = [h.gather(1, inverse.expand_as(h)) for h in [x, *hiddens]]
        return {
            "encoder_out": [x.transpose(0, 1)],  # T x B x D
            "encoder_padding_mask": [padding_mask],  # B x T, True at padding
            "encoder_embedding": [],
            "encoder_states": [h.transpose(0, 1) for h in hiddens],  # each T x B x D (embeddings first)
            "src_tokens": [],
            "src_lengths": [src_lengths] if src_lengths is not None else [],
        }

    @torch.jit.export
    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order: Tensor) -> Dict[str, List[Tensor]]:
        """Selects batch entries `new_order` of every tensor (beam search)."""
        batch_dim = {"encoder_out": 1, "encoder_states": 1}
        return {
            key: [t.index_select(batch_dim.get(key, 0), new_order) for t in tensors]
            for key, tensors in encoder_out.items()
        }

    def max_positions(self) -> int:
        return self.stack.cfg.max_length
