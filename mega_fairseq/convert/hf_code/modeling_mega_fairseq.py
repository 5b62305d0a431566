"""Mega models for transformers' ``trust_remote_code`` loading, written next to an export by ``mega-export-hf``.

The maths is mega_fairseq's own torch-only ``modules/`` package, copied beside this file as flat
``mega_<name>.py`` files (transformers copies only files imported relatively from this directory).
This file only arranges those modules under transformers' Mega parameter names, so one
``model.safetensors`` in transformers' native Mega layout loads both here and (when the config allows)
in transformers 4.x's own Mega classes:

    embedding_layer.word_embeddings / .token_type_embeddings   <- MegaStack.embed_tokens / .embed_token_types
    layers.{i}.mega_layer.norm.norm.*                  <- layers.{i}.mega_layer.norm.*  (also nffn, cross_attn)
    layers.{i}.mega_layer.ema_gate.*                            <- layers.{i}.mega_layer.ema.*
    layers.{i}.*.rel_pos_bias.rel_pos_bias (2*max_positions-1)  <- the simple bias, centred as transformers does
    layers.{i}.*.rel_pos_bias._float_tensor                     <- a marker buffer transformers' rotary bias keeps

Decoding keeps mega_fairseq's exact incremental state (per layer: EMA state, the current chunk's keys and
values, the encoder's keys and values once) in a `MegaFairseqCache` passed as ``past_key_values``;
``generate()`` (greedy, sampling, beam search) works on transformers 4.57 and 5.x.
Imports: torch and transformers only.
"""

from typing import List, Optional

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .configuration_mega_fairseq import MegaFairseqConfig, MegaFairseqSeq2SeqConfig
from .mega_config import HF_CONFIG_FIELDS as CONFIG_FIELDS
from .mega_config import MegaLayerConfig
from .mega_masking import first_token, leading_padding, right_align_order
from .mega_relative_position import RotaryRelativePositionalBias, SimpleRelativePositionalBias, recenter_simple_bias
from .mega_stack import MegaStack

# MEGA_MODULE_IMPORTS (mega-export-hf imports every copied module here, so transformers copies them all)

try:  # transformers >= 4.50; 5.x's PreTrainedModel no longer provides generate()
    from transformers import GenerationMixin
except ImportError:  # pragma: no cover
    GenerationMixin = object

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5


def layer_config(config: MegaFairseqConfig) -> MegaLayerConfig:
    """The `MegaLayerConfig` of a (transformers-named) config."""
    kwargs = {ours: getattr(config, theirs) for ours, theirs in CONFIG_FIELDS}
    kwargs.update(
        chunk_size=config.chunk_size if config.use_chunking else -1,
        normalize_before_ffn=config.normalize_before_ffn,
        norm_eps=getattr(config, "norm_eps", 1e-5),
        causal=bool(config.is_decoder),
        cross_attention=bool(config.is_decoder and config.add_cross_attention),
    )
    return MegaLayerConfig(**kwargs)


class NormSlot(nn.Module):
    """Holds a norm one level deeper (transformers' ``norm.norm.*`` names); same call."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x, padding_mask=None):
        return self.norm(x, padding_mask)


class SimpleBiasSlot(nn.Module):
    """A simple relative bias stored as transformers lays it out: 2*max_positions-1 entries centred at `center`
    (chunk_size-1 when chunked).  Computes with the wrapped `SimpleRelativePositionalBias` on the re-centred
    window (offsets outside the stored span are 0)."""

    def __init__(self, inner: SimpleRelativePositionalBias, numel: int, center: int):
        super().__init__()
        self.center, self.span = center, inner.max_positions
        self.rel_pos_bias = nn.Parameter(torch.zeros(numel))
        self._inner = [inner]  # not a submodule: only its forward is used

    def forward(self, *args, **kwargs):
        window = recenter_simple_bias(self.rel_pos_bias, 2 * self.span - 1, center=self.center)
        return torch.func.functional_call(self._inner[0], {"rel_pos_bias": window}, args, kwargs)


def _rename_child(module: nn.Module, old: str, new: str) -> None:
    """Registers `module.old` as `module.new`; `module.old` still reads it (the module's code is unchanged)."""
    child = module._modules.pop(old)
    base = type(module)
    renamed = type(base.__name__, (base,), {old: property(lambda self: getattr(self, new))})
    module.__class__ = renamed
    module.add_module(new, child)


def _hf_layout(stack: MegaStack, cfg: MegaLayerConfig) -> None:
    """Rearranges the stack's layers under transformers' Mega names (in place)."""
    center = (cfg.chunk_size if cfg.chunked else cfg.max_positions) - 1
    for layer in stack.layers:
        for block_name in ("mega_layer", "cross_attn", "nffn"):
            block = getattr(layer, block_name, None)
            if block is None:
                continue
            block.norm = NormSlot(block.norm)
            bias = getattr(block, "rel_pos_bias", None)
            if isinstance(bias, SimpleRelativePositionalBias):
                block.rel_pos_bias = SimpleBiasSlot(bias, 2 * cfg.max_positions - 1, center)
            elif isinstance(bias, RotaryRelativePositionalBias):
                bias.register_buffer("_float_tensor", torch.zeros(1))
        _rename_child(layer.mega_layer, "ema", "ema_gate")


class CacheGroup:
    """Rows of a decoding batch whose Mega-chunk windows share one phase: `shift` leading columns of the batch
    (left padding) are not part of their stream, so their first token is at stream position 0 whatever the
    batch's padding.  `rows` (n,) are the rows' indices in the batch; `states` the stack's layer states for
    them (batch first, in `rows` order), None before the first step."""

    __slots__ = ("shift", "rows", "states")

    def __init__(self, shift: int, rows: torch.Tensor, states: Optional[List[dict]] = None):
        self.shift, self.rows, self.states = shift, rows, states


class MegaFairseqCache:
    """Incremental state of a Mega decoder for ``past_key_values``: `position` columns seen so far (left padding
    included) and, per `CacheGroup`, each layer's {"ema", "key", "value", ["key_padding"], ["cross_*"]} state.
    A batch without left padding (or an unchunked model) is one group; a left-padded batch of a chunked model
    has one group per phase (padding length modulo the chunk), so every row decodes exactly as it would alone.
    Beam search reorders it with `reorder_cache`."""

    is_compileable = False

    def __init__(self):
        self.groups: Optional[List[CacheGroup]] = None
        self.position = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.position

    def __len__(self):
        return 0 if not self.groups or self.groups[0].states is None else len(self.groups[0].states)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Row j of the batch becomes old row beam_idx[j] (beam search, batch expansion and selection)."""
        if self.groups is None:
            return
        batch = sum(group.rows.numel() for group in self.groups)
        group_of = torch.empty(batch, dtype=torch.long)
        index_in_group = torch.empty(batch, dtype=torch.long)
        for g, group in enumerate(self.groups):
            group_of[group.rows] = g
            index_in_group[group.rows] = torch.arange(group.rows.numel())
        beam_idx = beam_idx.cpu()
        new_groups = []
        for g, group in enumerate(self.groups):
            rows = (group_of[beam_idx] == g).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            picked = index_in_group[beam_idx[rows]]
            states = None
            if group.states is not None:
                states = [{k: v.index_select(0, picked.to(v.device)) for k, v in s.items()} for s in group.states]
            new_groups.append(CacheGroup(group.shift, rows, states))
        self.groups = new_groups

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.groups is not None:
            batch = sum(group.rows.numel() for group in self.groups)
            self.reorder_cache(torch.arange(batch).repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)


def phase_groups(padding_mask: Optional[torch.Tensor], batch: int, chunk: Optional[int]) -> List[CacheGroup]:
    """Groups of rows decoded together: with a chunk size, rows whose left padding is congruent modulo the chunk
    (that many leading columns are dropped for them, so their tokens start a chunk); else one group.  The
    first call of a stream (position 0) keeps at least one column of every row: shift < its length."""
    lead = leading_padding(padding_mask, batch)
    if padding_mask is not None:  # a row of padding only is not realigned (it has no first token)
        lead = lead.masked_fill(lead >= padding_mask.size(1), 0)
    shift = lead % chunk if chunk else torch.zeros_like(lead)
    return [CacheGroup(int(r), (shift == r).nonzero().squeeze(1)) for r in torch.unique(shift).tolist()]


class MegaFairseqPreTrainedModel(PreTrainedModel):
    config_class = MegaFairseqConfig
    base_model_prefix = "mega"
    supports_gradient_checkpointing = False
    _no_split_modules = []
    _keys_to_ignore_on_load_unexpected = [r"pooler\."]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)


class MegaFairseqEmbeddings(nn.Module):
    """transformers' ``embedding_layer``: word (and token-type) embeddings of the wrapped `MegaStack`."""

    def __init__(self, stack: MegaStack):
        super().__init__()
        self.word_embeddings = stack.embed_tokens
        if stack.embed_token_types is not None:
            self.token_type_embeddings = stack.embed_token_types


class MegaFairseqModel(MegaFairseqPreTrainedModel):
    """transformers' ``MegaModel``: the Mega body (+ an optional RoBERTa-style pooler on token 0)."""

    def __init__(self, config: MegaFairseqConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        cfg = layer_config(config)
        embed = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        types = config.type_vocab_size if config.add_token_type_embeddings else 0
        stack = MegaStack(cfg, config.num_hidden_layers, embed, type_vocab_size=types)
        _hf_layout(stack, cfg)
        self._stack = [stack]  # the stack's modules are registered below, under transformers' names
        self.embedding_layer = MegaFairseqEmbeddings(stack)
        self.layers = stack.layers
        self.pooler = MegaFairseqPooler(config) if add_pooling_layer else None
        self.post_init()

    @property
    def stack(self) -> MegaStack:
        return self._stack[0]

    def get_input_embeddings(self):
        return self.embedding_layer.word_embeddings

    def set_input_embeddings(self, value):
        self.embedding_layer.word_embeddings = value
        self.stack.embed_tokens = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        """input_ids (B, T); attention_mask (B, T) 1 = token (transformers' convention) or (B, position + T)
        while decoding with `past_key_values` (a `MegaFairseqCache`, updated in place).  Padding may be on
        either side: a row's outputs never depend on it (left-padded rows of a chunked model are realigned so
        their Mega-chunk windows start at their first token, as fairseq's encoder does)."""
        if input_ids is None:
            raise ValueError("input_ids is required (Mega has no inputs_embeds path)")
        length = input_ids.size(1)
        padding_mask = None
        if attention_mask is not None:
            padding_mask = ~attention_mask[:, -length:].bool()
        encoder_padding_mask = None if encoder_attention_mask is None else ~encoder_attention_mask.bool()
        inputs = dict(
            tokens=input_ids,
            padding_mask=padding_mask,
            token_types=token_type_ids,
            encoder_out=encoder_hidden_states,
            encoder_padding_mask=encoder_padding_mask,
        )
        if self.stack.cfg.causal:
            x, hiddens = self._causal(inputs, past_key_values, bool(output_hidden_states))
        else:
            x, hiddens = self._bidirectional(inputs, bool(output_hidden_states))
        pooled = self.pooler(x, padding_mask) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=x,
            pooler_output=pooled,
            past_key_values=past_key_values,
            hidden_states=tuple(hiddens) if output_hidden_states else None,
        )

    def _bidirectional(self, inputs: dict, all_hiddens: bool):
        """Chunked: rows padded anywhere run right-padded (windows start at each row's first token)."""
        padding_mask = inputs["padding_mask"]
        order = None
        if self.stack.cfg.chunked and padding_mask is not None:
            order = right_align_order(padding_mask)
        if order is None:
            x, _, hiddens = self.stack(**inputs, return_all_hiddens=all_hiddens)
            return x, hiddens
        for key in ("tokens", "padding_mask", "token_types"):
            if inputs[key] is not None:
                inputs[key] = inputs[key].gather(1, order)
        x, _, hiddens = self.stack(**inputs, return_all_hiddens=all_hiddens)
        inverse = order.argsort(dim=1).unsqueeze(-1)
        x, *hiddens = [h.gather(1, inverse.expand_as(h)) for h in [x, *hiddens]]
        return x, hiddens

    def _causal(self, inputs: dict, cache: Optional[MegaFairseqCache], all_hiddens: bool):
        """Runs each `CacheGroup` of rows on its own columns (a left-padded chunked batch has several) and
        continues `cache` (if given) in place."""
        cfg, tokens = self.stack.cfg, inputs["tokens"]
        batch, length = tokens.shape
        position = 0 if cache is None else cache.position
        groups = None if cache is None else cache.groups
        if groups is None:
            groups = phase_groups(inputs["padding_mask"], batch, cfg.chunk_size if cfg.chunked else None)
        if len(groups) == 1 and groups[0].shift == 0:  # the whole batch is one stream
            group = groups[0]
            x, states, hiddens = self.stack(
                **inputs,
                states=group.states,
                return_state=cache is not None,
                position=position,
                return_all_hiddens=all_hiddens,
            )
            group.states = states
        else:
            x, hiddens = None, None
            for group in groups:
                skip = max(group.shift - position, 0)  # leading columns not in this group's stream
                rows = group.rows.to(tokens.device)
                part = dict(inputs)
                for key in ("tokens", "padding_mask", "token_types"):
                    if inputs[key] is not None:
                        part[key] = inputs[key].index_select(0, rows)[:, skip:]
                for key in ("encoder_out", "encoder_padding_mask"):
                    if inputs[key] is not None:
                        part[key] = inputs[key].index_select(0, rows)
                out, states, group_hiddens = self.stack(
                    **part,
                    states=group.states,
                    return_state=cache is not None,
                    position=max(position - group.shift, 0),
                    return_all_hiddens=all_hiddens,
                )
                group.states = states
                if x is None:
                    x = out.new_zeros(batch, length, out.size(-1))
                    hiddens = [x.clone() for _ in group_hiddens]
                x[rows, skip:] = out
                for full, h in zip(hiddens, group_hiddens):
                    full[rows, skip:] = h
        if cache is not None:
            cache.groups, cache.position = groups, position + length
        return x, hiddens


class MegaFairseqPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden, padding_mask=None):
        """On each row's first token (its first non-padding position, as fairseq's heads)."""
        return torch.tanh(self.dense(first_token(hidden, padding_mask)))


def _dropout(config) -> nn.Dropout:
    p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(p)


def _tied(target: str, source: str):
    return {target: source} if TRANSFORMERS_5 else [target]


class MegaFairseqForMaskedLM(MegaFairseqPreTrainedModel):
    _tied_weights_keys = _tied("mlm_head.weight", "mega.embedding_layer.word_embeddings.weight")

    def __init__(self, config):
        super().__init__(config)
        self.mega = MegaFairseqModel(config, add_pooling_layer=False)
        if config.add_lm_hidden_dense_layer:
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout_prob)
        self.mlm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self):
        return self.mlm_head

    def set_output_embeddings(self, value):
        self.mlm_head = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        x = self.mega(input_ids, attention_mask, token_type_ids).last_hidden_state
        if self.config.add_lm_hidden_dense_layer:
            x = torch.tanh(self.dense(x))
        logits = self.mlm_head(self.dropout(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits)


class MegaFairseqForCausalLM(MegaFairseqPreTrainedModel, GenerationMixin):
    _tied_weights_keys = _tied("lm_head.weight", "mega.embedding_layer.word_embeddings.weight")

    def __init__(self, config):
        super().__init__(config)
        self.mega = MegaFairseqModel(config, add_pooling_layer=False)
        if config.add_lm_hidden_dense_layer:
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        labels=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        """Full forward, or (with `past_key_values`, or use_cache=True) a decoding step that continues the cache."""
        if past_key_values is not None and not isinstance(past_key_values, MegaFairseqCache):
            past_key_values = MegaFairseqCache() if _empty_cache(past_key_values) else past_key_values
        if past_key_values is None and use_cache:
            past_key_values = MegaFairseqCache()
        out = self.mega(
            input_ids,
            attention_mask,
            token_type_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            output_hidden_states=output_hidden_states,
        )
        x = out.last_hidden_state
        if self.config.add_lm_hidden_dense_layer:
            x = torch.tanh(self.dense(x))
        logits = self.lm_head(x)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1))
        return CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=past_key_values, hidden_states=out.hidden_states
        )

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, **kwargs):
        cache = past_key_values if isinstance(past_key_values, MegaFairseqCache) else MegaFairseqCache()
        return {
            "input_ids": input_ids[:, cache.position :],
            "attention_mask": attention_mask,
            "past_key_values": cache,
            "use_cache": True,
        }

    def _reorder_cache(self, past_key_values, beam_idx):
        past_key_values.reorder_cache(beam_idx)
        return past_key_values


def _empty_cache(cache) -> bool:
    """Whether `cache` is a transformers cache object generate() made before our first step (nothing in it)."""
    length = getattr(cache, "get_seq_length", None)
    return length is not None and length() == 0


class MegaFairseqClassificationHead(nn.Module):
    """RoBERTa-style head on the first token (non-padding, as fairseq's): dropout, dense, tanh, dropout, out_proj."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = _dropout(config)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, x, padding_mask=None):
        x = self.dropout(first_token(x, padding_mask))
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


def _classification_loss(config, logits, labels):
    if labels is None:
        return None
    if config.num_labels == 1 or config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))


class MegaFairseqForSequenceClassification(MegaFairseqPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.mega = MegaFairseqModel(config, add_pooling_layer=False)
        self.classifier = MegaFairseqClassificationHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        x = self.mega(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.classifier(x, None if attention_mask is None else ~attention_mask.bool())
        return SequenceClassifierOutput(loss=_classification_loss(self.config, logits, labels), logits=logits)


class MegaFairseqForMultipleChoice(MegaFairseqPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.mega = MegaFairseqModel(config, add_pooling_layer=True)
        self.dropout = _dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        """input_ids (B, C, T) -> logits (B, C)."""
        choices = input_ids.size(1)

        def flat(t):
            return None if t is None else t.reshape(-1, t.size(-1))

        pooled = self.mega(flat(input_ids), flat(attention_mask), flat(token_type_ids)).pooler_output
        logits = self.classifier(self.dropout(pooled)).view(-1, choices)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss=loss, logits=logits)


class MegaFairseqForTokenClassification(MegaFairseqPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.mega = MegaFairseqModel(config, add_pooling_layer=False)
        self.dropout = _dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        x = self.mega(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.classifier(self.dropout(x))
        loss = None if labels is None else F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return TokenClassifierOutput(loss=loss, logits=logits)


class MegaFairseqForQuestionAnswering(MegaFairseqPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.mega = MegaFairseqModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, start_positions=None, end_positions=None, **kw
    ):
        x = self.mega(input_ids, attention_mask, token_type_ids).last_hidden_state
        start, end = self.qa_outputs(x).split(1, dim=-1)
        start, end = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end)


class MegaFairseqForConditionalGeneration(MegaFairseqPreTrainedModel, GenerationMixin):
    """Translation: a bidirectional Mega encoder and a causal Mega decoder with gated cross-attention, under
    transformers' ``EncoderDecoderModel`` names (``encoder.*`` a MegaModel, ``decoder.*`` a MegaForCausalLM).
    The decoder input starts with ``decoder_start_token_id`` (fairseq: ``</s>``)."""

    config_class = MegaFairseqSeq2SeqConfig
    base_model_prefix = "encoder_decoder"
    main_input_name = "input_ids"
    _keys_to_ignore_on_load_unexpected = []

    def __init__(self, config: MegaFairseqSeq2SeqConfig):
        super().__init__(config)
        self.encoder = MegaFairseqModel(config.encoder, add_pooling_layer=True)
        self.decoder = MegaFairseqForCausalLM(config.decoder)
        if self.decoder.config.tie_word_embeddings:
            self.decoder.lm_head.weight = self.decoder.mega.get_input_embeddings().weight
        self.post_init()

    def _init_weights(self, module):
        std = self.config.decoder.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def get_encoder(self):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self):
        return None

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        use_cache=None,
        labels=None,
        return_dict=None,
        **kwargs,
    ):
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask)
        enc = encoder_outputs[0] if isinstance(encoder_outputs, (tuple, list)) else encoder_outputs.last_hidden_state
        if decoder_input_ids is None and labels is not None:
            start = self.config.decoder_start_token_id
            decoder_input_ids = torch.cat([labels.new_full((labels.size(0), 1), start), labels[:, :-1]], dim=1)
            decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids == -100, self.config.pad_token_id)
        out = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=enc,
            encoder_attention_mask=attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        loss = None
        if labels is not None:
            loss = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return Seq2SeqLMOutput(
            loss=loss, logits=out.logits, past_key_values=out.past_key_values, encoder_last_hidden_state=enc
        )

    def prepare_inputs_for_generation(
        self, input_ids, past_key_values=None, attention_mask=None, encoder_outputs=None, **kwargs
    ):
        cache = past_key_values if isinstance(past_key_values, MegaFairseqCache) else MegaFairseqCache()
        return {
            "decoder_input_ids": input_ids[:, cache.position :],
            "decoder_attention_mask": kwargs.get("decoder_attention_mask"),
            "attention_mask": attention_mask,
            "encoder_outputs": encoder_outputs,
            "past_key_values": cache,
            "use_cache": True,
        }

    def _reorder_cache(self, past_key_values, beam_idx):
        past_key_values.reorder_cache(beam_idx)
        return past_key_values


AUTO_CLASSES = {
    "AutoModel": MegaFairseqModel,
    "AutoModelForMaskedLM": MegaFairseqForMaskedLM,
    "AutoModelForCausalLM": MegaFairseqForCausalLM,
    "AutoModelForSequenceClassification": MegaFairseqForSequenceClassification,
    "AutoModelForMultipleChoice": MegaFairseqForMultipleChoice,
    "AutoModelForTokenClassification": MegaFairseqForTokenClassification,
    "AutoModelForQuestionAnswering": MegaFairseqForQuestionAnswering,
    "AutoModelForSeq2SeqLM": MegaFairseqForConditionalGeneration,
}
