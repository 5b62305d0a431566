"""Bad input gets a ValueError naming the problem and the fix, never a reshape traceback."""

import pytest
import torch
from torch import nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack, MovingAverageGatedAttention, SimpleRelativePositionalBias


def small(**kw):
    base = dict(embed_dim=16, z_dim=8, hidden_dim=24, ffn_dim=20, n_dim=4)
    base.update(kw)
    return MegaLayerConfig(**base)


def test_simple_bias_past_max_positions():
    layer = MovingAverageGatedAttention(small(rel_pos_bias="simple", max_positions=8)).eval()
    with pytest.raises(ValueError, match="longer than the simple relative bias supports \\(8\\).*chunk"):
        layer(torch.randn(1, 9, 16))
    assert SimpleRelativePositionalBias(8)(8).shape == (8, 8)


def test_chunked_simple_bias_handles_any_length():
    layer = MovingAverageGatedAttention(small(rel_pos_bias="simple", max_positions=8, chunk_size=4)).eval()
    assert layer(torch.randn(1, 50, 16))[0].shape == (1, 50, 16)


@pytest.mark.parametrize(
    "mask,message",
    [
        (torch.zeros(2, 6, dtype=torch.bool), r"shape \(batch, length\) = \(1, 5\), got \(2, 6\)"),
        (torch.zeros(1, 5, 1, dtype=torch.bool), r"got \(1, 5, 1\)"),
        (torch.zeros(1, 5), "must be a bool tensor"),
    ],
)
def test_padding_mask_of_the_wrong_shape_or_type(mask, message):
    layer = MovingAverageGatedAttention(small()).eval()
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(1, 5, 16), padding_mask=mask)


@pytest.mark.parametrize("chunk", [0, -5])
def test_chunk_size_must_be_positive(chunk):
    with pytest.raises(ValueError, match="chunk_size must be a positive number of tokens"):
        small(chunk_size=chunk)


@pytest.mark.parametrize(
    "field,value,message",
    [
        (
            "attention_activation",
            "sigmoid",
            "unknown attention_activation 'sigmoid'; choose one of softmax, laplace, relu2",
        ),
        ("normalization_type", "groupnorm", "unknown normalization_type 'groupnorm'"),
        ("rel_pos_bias", "alibi", "unknown rel_pos_bias 'alibi'"),
        ("activation", "swish", "unknown activation 'swish'"),
    ],
)
def test_unknown_names(field, value, message):
    with pytest.raises(ValueError, match=message):
        small(**{field: value})


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(z_dim=7), "rotary relative bias needs an even z_dim"),
        (dict(embed_dim=0), "embed_dim must be a positive integer"),
        (dict(n_dim=-1), "n_dim must be a positive integer"),
        (dict(ffn_dim=0), "ffn_dim must be a positive integer"),
        (dict(truncation=0), "truncation must be a positive"),
        (dict(causal=True, bidirectional=True), "cannot use a bidirectional EMA"),
        (dict(cross_attention=True), "cross-attention belongs to decoder layers"),
        (dict(rel_pos_bias="simple", chunk_size=32, max_positions=16), "chunk_size 32 exceeds max_positions 16"),
        (dict(dropout=1.0), "dropout must be in"),
    ],
)
def test_sizes_that_do_not_fit(kw, message):
    with pytest.raises(ValueError, match=message):
        small(**kw)


def test_input_width_mismatch():
    with pytest.raises(ValueError, match="expected inputs of width 16, got 12"):
        MovingAverageGatedAttention(small())(torch.randn(1, 4, 12))


def test_embedding_width_mismatch():
    with pytest.raises(ValueError, match="embedding width 8 does not match embed_dim 16"):
        MegaStack(small(), 1, nn.Embedding(10, 8))


def test_state_on_an_encoder_layer():
    with pytest.raises(ValueError, match="incremental state needs a causal layer"):
        MovingAverageGatedAttention(small())(torch.randn(1, 4, 16), return_state=True)


def test_token_types_without_embeddings():
    stack = MegaStack(small(), 1, nn.Embedding(10, 16))
    with pytest.raises(ValueError, match="no token-type embeddings"):
        stack(torch.ones(1, 3, dtype=torch.long), token_types=torch.zeros(1, 3, dtype=torch.long))
