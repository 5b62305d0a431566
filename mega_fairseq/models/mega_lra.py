"""`lra`: sequence classifiers for the Long Range Arena (the original fork's `lra` model).

    tokens (B, T) or pixels (B, T) -> encoder -> pooled (B, D) -> MLP -> logits (B, C)

The body is the shared `MegaEncoder` (`--layer-type mega`), or fairseq's own
`TransformerEncoderBase` (`--layer-type transformer`, the baseline; token inputs only).
Pooling (`--sen-rep-type`): `mp` = mean over the non-padding positions (padding-invariant) or
`cls` = the output at a `<CLS>` token the model puts in front of every input.  Pixel inputs
(`lra-image`) are real numbers embedded by `PixelEmbedding` (x * w + b, as the fork's
RealNumberEmbedding) and have no padding.  Retrieval (`lra-text` with a second document):
both documents go through the same encoder separately and the head reads
[u, v, u*v, u-v] (LRA's dual-encoder setup; `--retrieval-interaction concat` = the fork's [u, v]).

Presets keep the fork's names and sizes, with the model flags of its README recipes
(layers, normalization, attention, pre-norm, dropout): `mega_lra_listop`, `mega_lra_imdb`,
`mega_lra_aan`, `mega_lra_cifar10`, `mega_lra_pf32`, `mega_lra_pf128`; `transformer_lra_listop`
is the baseline.  Mega-chunk: `--encoder-chunk-size N`.
"""

from dataclasses import field
from typing import Optional, Tuple

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from torch import Tensor, nn

from ..modules.activations import ACTIVATION_FNS
from .dictionary_fingerprint import DictionaryFingerprintMixin
from .encoder import MegaEncoder
from .options import (
    MegaEncoderSizes,
    MegaLayerOptions,
    layer_config,
    model_config,
    resolve_model_config,
    scale_options,
    set_defaults,
)
from .pairing import check_task

CLS_SYMBOL = "<CLS>"
CLASSIFIER_ACTIVATIONS = ACTIVATION_FNS
TRANSFORMER_ACTIVATIONS = ("relu", "gelu", "tanh")
LAYER_TYPES = ("mega", "transformer")
SEN_REP_TYPES = ("cls", "mp")
PAIR_INTERACTIONS = ("nli", "concat")


@model_config("lra")
class MegaLRAConfig(MegaLayerOptions, MegaEncoderSizes):
    layer_type: ChoiceEnum(LAYER_TYPES) = field(
        default="mega", metadata={"help": "encoder body: Mega, or fairseq's Transformer (baseline)"}
    )
    encoder_attention_heads: int = field(
        default=8, metadata={"help": "attention heads (--layer-type transformer only)"}
    )
    normalize_embedding: bool = field(default=False, metadata={"help": "normalize the input embeddings"})
    max_positions: int = field(default=1024, metadata={"help": "longest input the model accepts, <CLS> included"})
    sentence_class_num: int = field(default=2, metadata={"help": "number of classes"})
    sen_rep_type: ChoiceEnum(SEN_REP_TYPES) = field(
        default="mp", metadata={"help": "sequence representation: <CLS> output or mean pooling"}
    )
    classifier_layers: int = field(default=1, metadata={"help": "hidden layers of the classification MLP"})
    classifier_out_dim: int = field(default=2048, metadata={"help": "width of the classification MLP"})
    classifier_activation_fn: ChoiceEnum(list(CLASSIFIER_ACTIVATIONS)) = field(
        default="gelu", metadata={"help": "activation of the classification MLP"}
    )
    retrieval_interaction: ChoiceEnum(PAIR_INTERACTIONS) = field(
        default="nli", metadata={"help": "pair features: [u,v,u*v,u-v] (LRA) or [u,v] (the fork)"}
    )


class PixelEmbedding(nn.Module):
    """Real-valued inputs (B, T) -> (B, T, D) = x * weight + bias; no padding index."""

    padding_idx = None

    def __init__(self, embedding_dim: int):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(embedding_dim).normal_(0.0, 1.0))
        self.bias = nn.Parameter(torch.empty(embedding_dim).normal_(0.0, 0.1))

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():
            raise ValueError(
                f"pixel inputs must be real numbers (a float tensor), got {x.dtype}: use the lra-image task"
            )
        return x.unsqueeze(-1) * self.weight + self.bias


def pool(x: Tensor, padding_mask: Optional[Tensor], how: str) -> Tensor:
    """x: (B, T, D), padding_mask: (B, T) True at padding -> (B, D): position 0 (`cls`) or the mean of the
    non-padding positions (`mp`)."""
    if how == "cls":
        return x[:, 0]
    if padding_mask is None:
        return x.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).type_as(x)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def build_transformer_encoder(cfg: MegaLRAConfig, dictionary, max_positions: int):
    """fairseq's TransformerEncoderBase with the LRA config's sizes (sinusoidal positions, embedding scale)."""
    from fairseq.models.transformer import TransformerConfig, TransformerEncoderBase

    from .encoder import build_embedding

    if str(cfg.activation_fn) not in TRANSFORMER_ACTIVATIONS:
        raise ValueError(
            f"--layer-type transformer supports --activation-fn {'/'.join(TRANSFORMER_ACTIVATIONS)}, got "
            f"{cfg.activation_fn}"
        )
    tcfg = TransformerConfig()
    tcfg.encoder.embed_dim = cfg.encoder_embed_dim
    tcfg.encoder.ffn_embed_dim = cfg.encoder_ffn_embed_dim
    tcfg.encoder.layers = cfg.encoder_layers
    tcfg.encoder.attention_heads = cfg.encoder_attention_heads
    tcfg.encoder.normalize_before = cfg.normalize_before
    tcfg.dropout, tcfg.attention_dropout, tcfg.activation_dropout = (
        cfg.dropout,
        cfg.attention_dropout,
        cfg.activation_dropout,
    )
    tcfg.activation_fn = str(cfg.activation_fn)
    tcfg.max_source_positions = max_positions
    embed = build_embedding(len(dictionary), cfg.encoder_embed_dim, dictionary.pad())
    return TransformerEncoderBase(tcfg, dictionary, embed)


@register_model("lra", dataclass=MegaLRAConfig)
class LRAModel(DictionaryFingerprintMixin, BaseFairseqModel):
    def __init__(
        self, cfg: MegaLRAConfig, encoder: nn.Module, pixel_input: bool, paired: bool, cls_index: Optional[int]
    ):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.pixel_input = pixel_input
        self.paired = paired
        self.cls_index = cls_index
        self.sen_rep_type = str(cfg.sen_rep_type)
        width = cfg.encoder_embed_dim
        if paired:
            width *= 4 if str(cfg.retrieval_interaction) == "nli" else 2
        layers = []
        for _ in range(cfg.classifier_layers):
            layers.append(nn.Linear(width, cfg.classifier_out_dim))
            width = cfg.classifier_out_dim
        self.classifier = nn.ModuleList(layers)
        self.classifier_activation = CLASSIFIER_ACTIVATIONS[str(cfg.classifier_activation_fn)]
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_projection = nn.Linear(width, cfg.sentence_class_num, bias=False)
        for linear in [*self.classifier, self.output_projection]:
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        self.register_dictionary_fingerprint()  # self.encoder is set after super().__init__()

    @classmethod
    def build_model(cls, cfg, task):
        check_task(cfg, task, "lra")
        cfg = resolve_model_config(cfg, MegaLRAConfig)
        if cfg.sentence_class_num < 2:
            raise ValueError(f"--sentence-class-num must be at least 2, got {cfg.sentence_class_num}")
        dictionary = task.source_dictionary
        pixel_input = dictionary is None
        paired = bool(getattr(task, "paired", False))
        use_cls = str(cfg.sen_rep_type) == "cls"
        cls_index = None
        if use_cls:
            if pixel_input:
                raise ValueError(
                    "--sen-rep-type cls needs token inputs; pixel (lra-image) inputs use --sen-rep-type mp"
                )
            if CLS_SYMBOL not in dictionary:
                raise ValueError(
                    f"--sen-rep-type cls needs a {CLS_SYMBOL} symbol in the source dictionary (the lra-text task adds "
                    "it)"
                )
            cls_index = dictionary.index(CLS_SYMBOL)
        if str(cfg.layer_type) == "transformer":
            if pixel_input:
                raise ValueError(
                    "--layer-type transformer takes token inputs only (lra-text); use --layer-type mega for lra-image"
                )
            encoder = build_transformer_encoder(cfg, dictionary, cfg.max_positions)
        else:
            embed = PixelEmbedding(cfg.encoder_embed_dim) if pixel_input else None
            encoder = MegaEncoder(
                layer_config(
                    cfg, "encoder", max_positions=max(cfg.max_positions, 1), max_positions_option="max_positions"
                ),
                cfg.encoder_layers,
                dictionary,
                embed,
                max_positions=cfg.max_positions,
                normalize_embedding=cfg.normalize_embedding,
                final_norm=cfg.normalize_before,
                **scale_options(cfg),
            )
        return cls(cfg, encoder, pixel_input, paired, cls_index)

    def features(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """src_tokens: (B, T) ids (right-padded) or pixels -> (hidden (B, T', D), padding mask (B, T') or None)."""
        if self.cls_index is not None:
            cls = src_tokens.new_full((src_tokens.size(0), 1), self.cls_index)
            src_tokens = torch.cat([cls, src_tokens], dim=1)
        if self.pixel_input:  # real-valued pixels: no padding, run the Mega stack directly
            x, _, _ = self.encoder.stack(src_tokens)
            return x, None
        out = self.encoder(src_tokens, src_lengths)
        mask = out["encoder_padding_mask"][0] if out["encoder_padding_mask"] else None
        return out["encoder_out"][0].transpose(0, 1), mask

    def sentence_representation(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None) -> Tensor:
        """(B, T) -> (B, D)."""
        x, mask = self.features(src_tokens, src_lengths)
        return pool(x, mask, self.sen_rep_type)

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Optional[Tensor] = None,
        src1_tokens: Optional[Tensor] = None,
        src1_lengths: Optional[Tensor] = None,
        **unused,
    ) -> Tensor:
        """-> logits (B, C).  Retrieval models take the second documents as src1_tokens."""
        rep = self.sentence_representation(src_tokens, src_lengths)
        if self.paired:
            if src1_tokens is None:
                raise ValueError(
                    "this retrieval model needs the second documents (src1_tokens); use lra-text data with src1-bin/"
                )
            other = self.sentence_representation(src1_tokens, src1_lengths)
            if str(self.cfg.retrieval_interaction) == "nli":
                rep = torch.cat([rep, other, rep * other, rep - other], dim=-1)
            else:
                rep = torch.cat([rep, other], dim=-1)
        elif src1_tokens is not None:
            raise ValueError("got second documents (src1_tokens) but the model was built for single inputs")
        for layer in self.classifier:
            rep = self.dropout(self.classifier_activation(layer(rep)))
        return self.output_projection(rep)

    def max_positions(self) -> int:
        return self.cfg.max_positions - (1 if self.cls_index is not None else 0)


# ----------------------------------------------------------------------------- presets
def _mega_lra(args, **sizes):
    set_defaults(args, **sizes)  # first: the preset's own values win over the shared defaults below
    set_defaults(
        args,
        activation_fn="silu",
        attention_activation_fn="softmax",
        encoder_n_dim=16,
        truncation_length=1024,
        rel_pos_bias="simple",
    )


@register_model_architecture("lra", "mega_lra_listop")
def mega_lra_listop(args):
    _mega_lra(
        args,
        encoder_layers=6,
        encoder_embed_dim=80,
        encoder_hidden_dim=160,
        encoder_ffn_embed_dim=160,
        encoder_z_dim=64,
        classifier_out_dim=160,
        max_positions=2002,
        sentence_class_num=10,
        normalization_type="layernorm",
    )


@register_model_architecture("lra", "mega_lra_imdb")
def mega_lra_imdb(args):
    _mega_lra(
        args,
        encoder_layers=4,
        encoder_embed_dim=128,
        encoder_hidden_dim=256,
        encoder_ffn_embed_dim=256,
        encoder_z_dim=64,
        classifier_out_dim=256,
        max_positions=4002,
        normalization_type="scalenorm",
    )


@register_model_architecture("lra", "mega_lra_aan")
def mega_lra_aan(args):
    _mega_lra(
        args,
        encoder_layers=6,
        encoder_embed_dim=128,
        encoder_hidden_dim=256,
        encoder_ffn_embed_dim=256,
        encoder_z_dim=64,
        classifier_out_dim=256,
        max_positions=4002,
        normalization_type="scalenorm",
    )


def _mega_lra_image(args, **sizes):
    set_defaults(args, **sizes)
    _mega_lra(
        args, attention_activation_fn="laplace", normalization_type="batchnorm", normalize_before=True, dropout=0.0
    )


@register_model_architecture("lra", "mega_lra_cifar10")
def mega_lra_cifar10(args):
    _mega_lra_image(
        args,
        encoder_layers=8,
        encoder_embed_dim=160,
        encoder_hidden_dim=320,
        encoder_ffn_embed_dim=320,
        encoder_z_dim=96,
        classifier_out_dim=320,
        encoder_chunk_size=1024,
        max_positions=1024,
        sentence_class_num=10,
    )


@register_model_architecture("lra", "mega_lra_pf32")
def mega_lra_pf32(args):
    _mega_lra_image(
        args,
        encoder_layers=6,
        encoder_embed_dim=128,
        encoder_hidden_dim=256,
        encoder_ffn_embed_dim=256,
        encoder_z_dim=64,
        classifier_out_dim=256,
        encoder_chunk_size=1024,
        max_positions=1024,
    )


@register_model_architecture("lra", "mega_lra_pf128")
def mega_lra_pf128(args):
    _mega_lra_image(
        args,
        encoder_layers=4,
        encoder_embed_dim=64,
        encoder_hidden_dim=128,
        encoder_ffn_embed_dim=128,
        encoder_z_dim=32,
        classifier_out_dim=128,
        encoder_chunk_size=128 * 128,
        truncation_length=4096,
        max_positions=128 * 128,
        normalization_type="syncbatchnorm",
    )


@register_model_architecture("lra", "transformer_lra_listop")
def transformer_lra_listop(args):
    """The fork's Transformer baseline for ListOps (untied layers here): 6 layers, D=512, 8 heads, FFN 2048,
    pre-norm."""
    set_defaults(
        args,
        layer_type="transformer",
        activation_fn="gelu",
        encoder_layers=6,
        encoder_embed_dim=512,
        encoder_ffn_embed_dim=2048,
        encoder_attention_heads=8,
        normalize_before=True,
        attention_dropout=0.1,
        classifier_out_dim=2048,
        max_positions=2002,
        sentence_class_num=10,
        sen_rep_type="cls",
    )
