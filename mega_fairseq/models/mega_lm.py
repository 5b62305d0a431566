"""`mega_lm`: a Mega causal language model for fairseq's `language_modeling` task.

Decoding is incremental: each layer keeps its EMA state (B, D, N) and the keys/values of the
current chunk, so a generated token costs O(chunk) however long the context is.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.models import FairseqIncrementalDecoder, FairseqLanguageModel, register_model, register_model_architecture
from fairseq.utils import safe_getattr
from omegaconf import II
from torch import Tensor, nn

from ..modules import MegaStack
from .options import MegaLayerOptions, layer_config

DEFAULT_MAX_TARGET_POSITIONS = 1024


@dataclass
class MegaLMConfig(MegaLayerOptions):
    decoder_layers: int = field(default=6, metadata={"help": "number of Mega layers"})
    decoder_embed_dim: int = field(default=512, metadata={"help": "model width D"})
    decoder_hidden_dim: int = field(default=1024, metadata={"help": "value/gate width H"})
    decoder_ffn_embed_dim: int = field(default=1024, metadata={"help": "normalized FFN width"})
    decoder_z_dim: int = field(default=128, metadata={"help": "shared query/key width z"})
    decoder_n_dim: int = field(default=16, metadata={"help": "EMA expansion dimension N"})
    decoder_chunk_size: int = field(default=-1, metadata={"help": "Mega-chunk attention window (-1: whole sequence)"})
    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale token embeddings by sqrt(D)"})
    normalize_embedding: bool = field(default=False, metadata={"help": "normalize token embeddings"})
    no_final_norm: bool = field(default=False, metadata={"help": "no normalization after the last layer (HF Mega has none)"})
    share_decoder_input_output_embed: bool = field(default=True, metadata={"help": "tie input and output embeddings"})
    output_bias: bool = field(default=False, metadata={"help": "add a bias to the output projection (HF's lm_head has one)"})
    max_target_positions: Optional[int] = II("task.max_target_positions")
    tokens_per_sample: int = II("task.tokens_per_sample")


@register_model("mega_lm", dataclass=MegaLMConfig)
class MegaLanguageModel(FairseqLanguageModel):
    @classmethod
    def build_model(cls, args, task):
        if safe_getattr(args, "max_target_positions", None) is None:
            args.max_target_positions = safe_getattr(args, "tokens_per_sample", DEFAULT_MAX_TARGET_POSITIONS)
        return cls(MegaDecoder(args, task.target_dictionary))


class MegaDecoder(FairseqIncrementalDecoder):
    """Embeddings -> causal Mega layers [-> final norm] -> output projection."""

    def __init__(self, args, dictionary, embed_tokens: Optional[nn.Embedding] = None, cross_attention: bool = False):
        super().__init__(dictionary)
        self.max_target_positions = args.max_target_positions
        layer_cfg = layer_config(args, "decoder", bidirectional=False, causal=True, cross_attention=cross_attention, max_positions=max(args.max_target_positions, 1))
        if embed_tokens is None:
            embed_tokens = nn.Embedding(len(dictionary), layer_cfg.embed_dim, padding_idx=dictionary.pad())
            nn.init.normal_(embed_tokens.weight, mean=0.0, std=layer_cfg.embed_dim**-0.5)
            nn.init.zeros_(embed_tokens.weight[dictionary.pad()])
        self.stack = MegaStack(
            layer_cfg,
            args.decoder_layers,
            embed_tokens,
            scale_embedding=not args.no_scale_embedding,
            normalize_embedding=args.normalize_embedding,
            final_norm=not args.no_final_norm,
            embedding_dropout=args.dropout,
        )
        self.output_projection = nn.Linear(layer_cfg.embed_dim, len(dictionary), bias=args.output_bias)
        if args.share_decoder_input_output_embed:
            self.output_projection.weight = embed_tokens.weight
        else:
            nn.init.normal_(self.output_projection.weight, mean=0.0, std=layer_cfg.embed_dim**-0.5)
        if args.output_bias:
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
        return self.output_projection(features)

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
        # chunked or rotary models have no hard limit; a simple bias without chunking is capped
        cfg = self.stack.cfg
        return cfg.max_positions if (cfg.rel_pos_bias == "simple" and not cfg.chunked) else int(1e6)

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)


def _defaults(args, **values):
    for name, value in values.items():
        setattr(args, name, safe_getattr(args, name, value))


@register_model_architecture("mega_lm", "mega_lm_tiny")
def mega_lm_tiny(args):
    """A few-hundred-thousand-parameter model for demos and tests on a CPU."""
    _defaults(
        args,
        decoder_layers=2,
        decoder_embed_dim=64,
        decoder_hidden_dim=128,
        decoder_ffn_embed_dim=128,
        decoder_z_dim=32,
        decoder_n_dim=8,
        decoder_chunk_size=64,
        dropout=0.1,
    )
