"""`MegaDecoder`: a causal Mega stack as a fairseq `FairseqIncrementalDecoder` (`MegaEncoder`'s twin).

The one decoder behind the language model (`mega_lm`) and the translation model (`mega`, with gated
cross-attention in every layer).  Like `MegaEncoder` it takes a `MegaLayerConfig` (the models build it
with `options.layer_config(cfg, "decoder", ...)`), the number of layers, the dictionary and the embeddings,
and the structural switches as keyword arguments.

    prev_output_tokens (B, T) -> embeddings -> causal Mega layers [-> final norm] -> features (B, T, D)
        -> output projection (B, T, V) (or the adaptive softmax's features)

Decoding is incremental: each layer keeps its EMA state (B, D, N) and the keys/values of the current chunk
(plus, with cross-attention, the projected encoder output), so a generated token costs O(chunk) however long
the context is.  The states live in fairseq's `incremental_state` under "mega_state", flattened to
{"<layer>.<name>": tensor, "position": tokens seen}.
"""

from typing import Dict, List, Optional, Sequence

import torch
from fairseq.models import FairseqIncrementalDecoder
from fairseq.modules import AdaptiveSoftmax
from torch import Tensor, nn

from ..modules import MegaLayerConfig
from .encoder import build_embedding, build_stack


class MegaDecoder(FairseqIncrementalDecoder):
    """Embeddings -> causal Mega layers [-> final norm] -> output projection (or adaptive softmax)."""

    def __init__(
        self,
        layer_cfg: MegaLayerConfig,
        num_layers: int,
        dictionary,
        embed_tokens: Optional[nn.Module] = None,
        *,
        max_positions: int,
        scale_embedding: bool = True,
        normalize_embedding: bool = False,
        final_norm: bool = False,
        final_norm_affine: bool = True,
        share_input_output_embed: bool = False,
        output_bias: bool = False,
        adaptive_softmax_cutoff: Optional[Sequence[int]] = None,
        adaptive_softmax_dropout: float = 0.0,
        adaptive_softmax_factor: float = 4.0,
        tie_adaptive_weights: bool = False,
        tie_adaptive_proj: bool = False,
        checkpoint_activations: bool = False,
        offload_activations: bool = False,
        min_params_to_wrap: Optional[int] = None,
    ):
        """layer_cfg: causal layers of width D (cross_attention=True for an encoder-decoder model; its max_positions
        is the simple bias's span); embed_tokens: (B, T) -> (B, T, D), default a new `build_embedding`;
        max_positions: the longest target (`max_target_positions`); embeddings are dropped out with
        layer_cfg.dropout.  With `adaptive_softmax_cutoff` the output is an `AdaptiveSoftmax` (tied to adaptive
        input embeddings with `tie_adaptive_weights`), else a D x V projection, tied to the embeddings with
        `share_input_output_embed`.  Checkpointing and FSDP wrapping: `encoder.build_stack`
        (`options.scale_options`)."""
        super().__init__(dictionary)
        self.max_target_positions = max_positions
        if embed_tokens is None:
            embed_tokens = build_embedding(len(dictionary), layer_cfg.embed_dim, dictionary.pad())
        self.stack = build_stack(
            layer_cfg,
            num_layers,
            embed_tokens,
            checkpoint_activations=checkpoint_activations,
            offload_activations=offload_activations,
            min_params_to_wrap=min_params_to_wrap,
            scale_embedding=scale_embedding,
            normalize_embedding=normalize_embedding,
            final_norm=final_norm,
            final_norm_affine=final_norm_affine,
            embedding_dropout=layer_cfg.dropout,
        )
        self.adaptive_softmax = None
        self.output_projection = None
        if adaptive_softmax_cutoff is not None:
            self.adaptive_softmax = AdaptiveSoftmax(
                len(dictionary),
                layer_cfg.embed_dim,
                list(adaptive_softmax_cutoff),
                dropout=adaptive_softmax_dropout,
                adaptive_inputs=embed_tokens if tie_adaptive_weights else None,
                factor=adaptive_softmax_factor,
                tie_proj=tie_adaptive_proj,
            )
        else:
            self.output_projection = nn.Linear(layer_cfg.embed_dim, len(dictionary), bias=output_bias)
            if share_input_output_embed:
                self.output_projection.weight = embed_tokens.weight
            else:
                nn.init.normal_(self.output_projection.weight, mean=0.0, std=layer_cfg.embed_dim**-0.5)
            if output_bias:
                nn.init.zeros_(self.output_projection.bias)

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, features_only=False, **kwargs):
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        if not features_only:
            x = self.output_layer(x)
        return x, extra

    def extract_features(self, prev_output_tokens: Tensor, encoder_out=None, incremental_state=None, **kwargs):
        """prev_output_tokens: (B, T).  In incremental mode only the tokens not yet seen are run."""
        enc, enc_mask = None, None
        if encoder_out is not None:
            enc = encoder_out["encoder_out"][0].transpose(0, 1)
            masks = encoder_out.get("encoder_padding_mask") or []
            enc_mask = masks[0] if masks else None
        states, position = None, 0
        if incremental_state is not None:
            saved = self.get_incremental_state(incremental_state, "mega_state")
            if saved is not None:
                position = int(saved["position"].item())
                states = self._unflatten(saved)
            prev_output_tokens = prev_output_tokens[:, position:]
        padding_mask = prev_output_tokens.eq(self.dictionary.pad())
        x, next_states, _ = self.stack(
            prev_output_tokens,
            padding_mask,
            encoder_out=enc,
            encoder_padding_mask=enc_mask,
            states=states,
            return_state=incremental_state is not None,
            position=position,
        )
        if incremental_state is not None:
            flat = self._flatten(next_states)
            flat["position"] = torch.tensor(position + prev_output_tokens.size(1))
            self.set_incremental_state(incremental_state, "mega_state", flat)
        return x, {"attn": [None], "inner_states": [x]}

    def output_layer(self, features: Tensor) -> Tensor:
        return features if self.adaptive_softmax is not None else self.output_projection(features)

    @staticmethod
    def _flatten(states: List[Dict[str, Tensor]]) -> Dict[str, Optional[Tensor]]:
        return {f"{i}.{k}": v for i, s in enumerate(states) for k, v in s.items()}

    def _unflatten(self, flat: Dict[str, Optional[Tensor]]) -> List[Dict[str, Tensor]]:
        states: List[Dict[str, Tensor]] = [{} for _ in self.stack.layers]
        for key, value in flat.items():
            if key != "position" and value is not None:
                index, name = key.split(".", 1)
                states[int(index)][name] = value
        return states

    def reorder_incremental_state(self, incremental_state, new_order: Tensor):
        saved = self.get_incremental_state(incremental_state, "mega_state")
        if saved is None:
            return
        reordered = {k: (v if k == "position" or v is None else v.index_select(0, new_order)) for k, v in saved.items()}
        self.set_incremental_state(incremental_state, "mega_state", reordered)

    def max_positions(self):
        return self.stack.cfg.max_length
