"""`mega_lm`: a Mega causal language model for fairseq's `language_modeling` task.

Presets keep the original fork's names and hyperparameters (`mega_lm`, `mega_lm_big`,
`mega_lm_adaptive_big` = WikiText-103, `mega_lm_adaptive_base`, `mega_lm_enwik8_base`,
`mega_lm_enwik8_large`), plus `mega_lm_tiny` for CPU demos and `mega_lm_hf`, whose structure
is exactly HF's `MegaForCausalLM` (no embedding scale, no final norm, biased output layer)
so its checkpoints export to transformers.

Decoding is incremental: each layer keeps its EMA state (B, D, N) and the keys/values of the
current chunk, so a generated token costs O(chunk) however long the context is.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from fairseq import options
from fairseq.dataclass import ChoiceEnum
from fairseq.models import FairseqIncrementalDecoder, FairseqLanguageModel, register_model, register_model_architecture
from fairseq.modules import AdaptiveInput, AdaptiveSoftmax
from fairseq.utils import safe_getattr
from omegaconf import II
from torch import Tensor, nn

from ..modules import MegaStack
from ..modules.config import NORM_TYPES, REL_POS_BIASES
from .encoder import build_embedding
from .options import MegaDecoderSizes, MegaDecoderStructureOptions, MegaLayerOptions, layer_config, set_defaults

DEFAULT_MAX_TARGET_POSITIONS = 1024


@dataclass
class MegaLMConfig(MegaLayerOptions, MegaDecoderSizes, MegaDecoderStructureOptions):
    # defaults = the original fork's `mega_lm` (base_lm_architecture)
    decoder_hidden_dim: int = field(default=1664, metadata={"help": "value/gate width H"})
    decoder_ffn_embed_dim: int = field(default=1664, metadata={"help": "normalized FFN width"})
    rel_pos_bias: ChoiceEnum(REL_POS_BIASES) = field(default="simple", metadata={"help": "relative position bias: simple or rotary"})
    normalization_type: ChoiceEnum(NORM_TYPES) = field(default="layernorm", metadata={"help": "normalization layer"})
    normalize_before: bool = field(default=False, metadata={"help": "pre-norm (adds a final norm after the last layer)"})
    truncation_length: Optional[int] = field(default=2048, metadata={"help": "truncate the EMA kernel to this many positions"})
    adaptive_input: bool = field(default=False, metadata={"help": "adaptive input embeddings"})
    adaptive_input_factor: float = field(default=4, metadata={"help": "adaptive input factor"})
    adaptive_input_cutoff: Optional[str] = field(default=None, metadata={"help": "comma-separated adaptive input cutoffs"})
    max_target_positions: Optional[int] = II("task.max_target_positions")
    tokens_per_sample: int = II("task.tokens_per_sample")


@register_model("mega_lm", dataclass=MegaLMConfig)
class MegaLanguageModel(FairseqLanguageModel):
    @classmethod
    def build_model(cls, args, task):
        if safe_getattr(args, "max_target_positions", None) is None:
            args.max_target_positions = safe_getattr(args, "tokens_per_sample", DEFAULT_MAX_TARGET_POSITIONS)
        dictionary = task.target_dictionary
        embed_tokens = None
        if args.adaptive_input:
            embed_tokens = AdaptiveInput(
                len(dictionary), dictionary.pad(), args.decoder_embed_dim, args.adaptive_input_factor,
                args.decoder_embed_dim, options.eval_str_list(args.adaptive_input_cutoff, type=int),
            )
        if args.tie_adaptive_weights:
            if not args.adaptive_input or args.adaptive_softmax_cutoff != args.adaptive_input_cutoff:
                raise ValueError("--tie-adaptive-weights needs --adaptive-input with the same cutoffs as --adaptive-softmax-cutoff")
        return cls(MegaDecoder(args, dictionary, embed_tokens))


class MegaDecoder(FairseqIncrementalDecoder):
    """Embeddings -> causal Mega layers [-> final norm] -> output projection (or adaptive softmax)."""

    def __init__(self, args, dictionary, embed_tokens: Optional[nn.Module] = None, cross_attention: bool = False):
        super().__init__(dictionary)
        self.max_target_positions = args.max_target_positions
        layer_cfg = layer_config(args, "decoder", bidirectional=False, causal=True, cross_attention=cross_attention, max_positions=max(args.max_target_positions, 1))
        if embed_tokens is None:
            embed_tokens = build_embedding(len(dictionary), layer_cfg.embed_dim, dictionary.pad())
        final_norm = args.normalize_before and not args.no_final_norm
        self.stack = MegaStack(
            layer_cfg,
            args.decoder_layers,
            embed_tokens,
            scale_embedding=not args.no_scale_embedding,
            normalize_embedding=args.normalize_embedding,
            final_norm=final_norm,
            final_norm_affine=not args.no_affine_final_norm,
            embedding_dropout=args.dropout,
        )
        self.adaptive_softmax = None
        self.output_projection = None
        if args.adaptive_softmax_cutoff is not None:
            self.adaptive_softmax = AdaptiveSoftmax(
                len(dictionary), layer_cfg.embed_dim, options.eval_str_list(args.adaptive_softmax_cutoff, type=int),
                dropout=args.adaptive_softmax_dropout, adaptive_inputs=embed_tokens if args.tie_adaptive_weights else None,
                factor=args.adaptive_softmax_factor, tie_proj=args.tie_adaptive_proj,
            )
        else:
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


@register_model_architecture("mega_lm", "mega_lm_big")
def mega_lm_big(args):
    set_defaults(args, decoder_layers=16, decoder_embed_dim=1024, decoder_hidden_dim=2048, decoder_ffn_embed_dim=2048, decoder_z_dim=256)


def _adaptive(args, dropout):
    set_defaults(
        args,
        decoder_layers=16,
        dropout=dropout,
        attention_dropout=0.1,
        hidden_dropout=0.1,
        activation_dropout=0.1,
        adaptive_input=True,
        tie_adaptive_weights=True,
        tie_adaptive_proj=True,
        adaptive_input_cutoff="20000,60000",
        adaptive_softmax_cutoff="20000,60000",
        adaptive_softmax_dropout=0.2,
    )


@register_model_architecture("mega_lm", "mega_lm_adaptive_big")
def mega_lm_adaptive_big(args):
    """WikiText-103 (the paper: 252M parameters, test ppl 18.07); train with --criterion adaptive_loss."""
    _adaptive(args, dropout=0.3)
    mega_lm_big(args)


@register_model_architecture("mega_lm", "mega_lm_adaptive_base")
def mega_lm_adaptive_base(args):
    set_defaults(args, decoder_embed_dim=768, decoder_hidden_dim=1536, decoder_ffn_embed_dim=1536, decoder_z_dim=128)
    _adaptive(args, dropout=0.3)


@register_model_architecture("mega_lm", "mega_lm_enwik8_base")
def mega_lm_enwik8_base(args):
    """enwik8 (the paper: 39M parameters, 1.02 bpc with chunk 2048)."""
    set_defaults(args, decoder_layers=12, decoder_embed_dim=512, decoder_hidden_dim=1024, decoder_ffn_embed_dim=1024, decoder_z_dim=128, decoder_n_dim=16, dropout=0.1)


@register_model_architecture("mega_lm", "mega_lm_enwik8_large")
def mega_lm_enwik8_large(args):
    set_defaults(
        args, decoder_layers=24, decoder_embed_dim=1024, decoder_hidden_dim=1536, decoder_ffn_embed_dim=1536, decoder_z_dim=128,
        decoder_n_dim=16, dropout=0.2, attention_dropout=0.1, hidden_dropout=0.1,
    )


@register_model_architecture("mega_lm", "mega_lm_hf")
def mega_lm_hf(args):
    """Exactly HF's MegaForCausalLM structure (defaults of transformers' MegaConfig): exportable."""
    set_defaults(
        args,
        decoder_layers=4,
        decoder_embed_dim=128,
        decoder_hidden_dim=256,
        decoder_ffn_embed_dim=256,
        decoder_z_dim=64,
        decoder_n_dim=16,
        rel_pos_bias="rotary",
        normalization_type="scalenorm",
        normalize_before=True,
        no_final_norm=True,
        no_scale_embedding=True,
        share_decoder_input_output_embed=True,
        output_bias=True,
        truncation_length=None,
    )


@register_model_architecture("mega_lm", "mega_lm_tiny")
def mega_lm_tiny(args):
    """A half-million-parameter model for CPU demos and tests (rotary, chunk 64, pre-norm)."""
    set_defaults(
        args,
        decoder_layers=2,
        decoder_embed_dim=64,
        decoder_hidden_dim=128,
        decoder_ffn_embed_dim=128,
        decoder_z_dim=32,
        decoder_n_dim=8,
        decoder_chunk_size=64,
        rel_pos_bias="rotary",
        normalize_before=True,
        share_decoder_input_output_embed=True,
        truncation_length=None,
        dropout=0.1,
    )
