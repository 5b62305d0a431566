"""Mega layers: incremental decoding, Mega-chunk at any length, padding, cross-attention state."""

import itertools

import pytest
import torch
from torch import nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack, MovingAverageGatedAttention
from mega_fairseq.testing import randomize_

TOL = 1e-5


def cfg_for(**overrides):
    base = dict(embed_dim=16, z_dim=8, hidden_dim=24, ffn_dim=20, n_dim=4, max_positions=64)
    base.update(overrides)
    return MegaLayerConfig(**base)


def decoder_cfg(**overrides):
    return cfg_for(bidirectional=False, causal=True, **overrides)


def stack(cfg, layers=2, seed=0, vocab=40):
    return randomize_(MegaStack(cfg, layers, nn.Embedding(vocab, cfg.embed_dim, padding_idx=1)), seed).eval()


DECODING = list(itertools.product(["softmax", "laplace", "relu2"], ["rotary", "simple"], [-1, 4]))


@pytest.mark.parametrize("activation,bias,chunk", DECODING)
def test_token_by_token_equals_full_forward(activation, bias, chunk):
    model = stack(decoder_cfg(attention_activation=activation, rel_pos_bias=bias, chunk_size=chunk))
    tokens = torch.randint(2, 40, (3, 11))
    with torch.no_grad():
        full, _, _ = model(tokens)
        states, outs = None, []
        for t in range(tokens.size(1)):
            y, states, _ = model(tokens[:, t : t + 1], states=states, return_state=True, position=t)
            outs.append(y)
    assert (torch.cat(outs, 1) - full).abs().max() <= TOL


@pytest.mark.parametrize("activation,bias,chunk", DECODING)
def test_prompt_then_steps_and_blocks_equal_full_forward(activation, bias, chunk):
    """A prompt shorter than a chunk, then blocks crossing chunk boundaries, then single tokens."""
    model = stack(decoder_cfg(attention_activation=activation, rel_pos_bias=bias, chunk_size=chunk))
    tokens = torch.randint(2, 40, (2, 14))
    with torch.no_grad():
        full, _, _ = model(tokens)
        states, outs, start = None, [], 0
        for size in [3, 6, 1, 1, 3]:
            y, states, _ = model(tokens[:, start : start + size], states=states, return_state=True, position=start)
            outs.append(y)
            start += size
    assert (torch.cat(outs, 1) - full).abs().max() <= TOL


def test_chunk_cache_holds_only_the_current_chunk():
    layer = randomize_(MovingAverageGatedAttention(decoder_cfg(chunk_size=4))).eval()
    x = torch.randn(2, 6, 16)
    _, state = layer(x, return_state=True)
    assert state["key"].shape[1] == 2 and state["value"].shape[1] == 2
    _, state = layer(torch.randn(2, 2, 16), state=state)
    assert "key" not in state  # a full chunk is forgotten; the EMA state carries the past


@pytest.mark.parametrize(
    "activation,bias,causal",
    list(itertools.product(["softmax", "laplace", "relu2"], ["rotary", "simple"], [False, True])),
)
def test_chunked_any_length_equals_explicit_padding(activation, bias, causal):
    """Length 10 with chunk 4: internal padding gives what a caller padding to 12 with a mask gets."""
    cfg = cfg_for(
        attention_activation=activation, rel_pos_bias=bias, chunk_size=4, bidirectional=not causal, causal=causal
    )
    model = stack(cfg)
    tokens = torch.randint(2, 40, (2, 10))
    padded = torch.cat([tokens, torch.ones(2, 2, dtype=torch.long)], 1)
    mask = padded.eq(1)
    with torch.no_grad():
        a, _, _ = model(tokens)
        b, _, _ = model(padded, mask)
    assert (a - b[:, :10]).abs().max() <= TOL


@pytest.mark.parametrize("activation", ["softmax", "laplace", "relu2"])
def test_chunks_are_independent_attention_windows(activation):
    """With chunking, attention of chunk 2 ignores chunk 1 (only the EMA carries information across)."""
    cfg = cfg_for(attention_activation=activation, chunk_size=4, bidirectional=False, causal=True)
    layer = randomize_(MovingAverageGatedAttention(cfg)).eval()
    q = torch.randn(1, 8, 8)
    k, v = torch.randn(1, 8, 8), torch.randn(1, 8, 24)
    out = layer._attention(q, k, v, None, 0)
    k2, v2 = k.clone(), v.clone()
    k2[:, :4], v2[:, :4] = torch.randn(1, 4, 8), torch.randn(1, 4, 24)
    out2 = layer._attention(q, k2, v2, None, 0)
    assert torch.allclose(out[:, 4:], out2[:, 4:], atol=1e-6)


@pytest.mark.parametrize(
    "activation,bias,chunk,norm",
    list(
        itertools.product(
            ["softmax", "laplace", "relu2"],
            ["rotary", "simple"],
            [-1, 4],
            ["scalenorm", "layernorm", "rmsnorm", "batchnorm"],
        )
    ),
)
def test_right_padding_never_changes_a_sample(activation, bias, chunk, norm):
    for causal in (False, True):
        cfg = cfg_for(
            attention_activation=activation,
            rel_pos_bias=bias,
            chunk_size=chunk,
            normalization_type=norm,
            bidirectional=not causal,
            causal=causal,
        )
        model = stack(cfg)
        tokens = torch.randint(2, 40, (3, 9))
        lengths = [9, 6, 2]
        for i, n in enumerate(lengths):
            tokens[i, n:] = 1
        with torch.no_grad():
            batch, _, _ = model(tokens, tokens.eq(1))
            for i, n in enumerate(lengths):
                alone, _, _ = model(tokens[i : i + 1, :n])
                assert (batch[i, :n] - alone[0]).abs().max() <= TOL, (causal, i)


@pytest.mark.parametrize(
    "activation,bias", list(itertools.product(["softmax", "laplace", "relu2"], ["rotary", "simple"]))
)
def test_left_padding_gives_finite_correct_outputs(activation, bias):
    model = stack(decoder_cfg(attention_activation=activation, rel_pos_bias=bias))
    tokens = torch.randint(2, 40, (2, 8))
    tokens[1, :3] = 1  # left padding
    with torch.no_grad():
        batch, _, _ = model(tokens, tokens.eq(1))
        alone, _, _ = model(tokens[1:, 3:])
    assert torch.isfinite(batch).all()
    assert (batch[1, 3:] - alone[0]).abs().max() <= TOL


def test_left_padded_prompt_then_decoding():
    model = stack(decoder_cfg(chunk_size=-1))
    prompt = torch.randint(2, 40, (2, 5))
    prompt[0, :2] = 1
    nxt = torch.randint(2, 40, (2, 3))
    with torch.no_grad():
        full, _, _ = model(torch.cat([prompt, nxt], 1), torch.cat([prompt, nxt], 1).eq(1))
        _, states, _ = model(prompt, prompt.eq(1), return_state=True)
        outs = []
        for t in range(3):
            y, states, _ = model(nxt[:, t : t + 1], states=states, position=5 + t)
            outs.append(y)
    assert torch.isfinite(full).all()
    assert (torch.cat(outs, 1) - full[:, 5:]).abs().max() <= TOL


@pytest.mark.parametrize(
    "activation,bias", list(itertools.product(["softmax", "laplace", "relu2"], ["rotary", "simple"]))
)
def test_cross_attention_decoder_incremental_equals_full(activation, bias):
    model = stack(decoder_cfg(attention_activation=activation, rel_pos_bias=bias, cross_attention=True, chunk_size=4))
    tokens = torch.randint(2, 40, (2, 7))
    enc = torch.randn(2, 5, 16)
    enc_mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    with torch.no_grad():
        full, _, _ = model(tokens, encoder_out=enc, encoder_padding_mask=enc_mask)
        states, outs = None, []
        for t in range(7):
            y, states, _ = model(
                tokens[:, t : t + 1],
                encoder_out=enc,
                encoder_padding_mask=enc_mask,
                states=states,
                return_state=True,
                position=t,
            )
            outs.append(y)
    assert (torch.cat(outs, 1) - full).abs().max() <= TOL
    assert "cross_key" in states[0]


def test_reordering_state_is_index_select_on_batch():
    """Every cached tensor is batch-first, so beam reordering is one index_select per tensor."""
    model = stack(decoder_cfg(cross_attention=True, chunk_size=4))
    tokens = torch.randint(2, 40, (3, 6))
    enc = torch.randn(3, 5, 16)
    order = torch.tensor([2, 0, 0])
    with torch.no_grad():
        _, states, _ = model(tokens[:, :5], encoder_out=enc, return_state=True)
        reordered = [{k: v.index_select(0, order) for k, v in s.items()} for s in states]
        y, _, _ = model(tokens[order, 5:6], states=reordered, position=5)
        full, _, _ = model(tokens[order], encoder_out=enc[order])
    assert (y[:, 0] - full[:, 5]).abs().max() <= TOL


def test_feature_dropout_drops_whole_features():
    layer = MovingAverageGatedAttention(cfg_for(dropout=0.5, feature_dropout=True)).train()
    x = torch.ones(4, 10, 16)
    y = layer.dropout(x)
    per_feature = y.eq(0).all(dim=1) | y.ne(0).all(dim=1)
    assert per_feature.all() and y.eq(0).any()


def test_encoder_and_decoder_layers_are_configs_of_one_layer():
    from mega_fairseq.modules import MegaDecoderLayer, MegaEncoderLayer

    enc = MegaEncoderLayer(decoder_cfg())
    assert enc.cfg.bidirectional is False and not enc.cfg.causal and enc.cross_attn is None
    dec = MegaDecoderLayer(cfg_for(), cross_attention=True)
    assert dec.cfg.causal and not dec.cfg.bidirectional and dec.cross_attn is not None
    assert type(enc.mega_layer) is type(dec.mega_layer)


@pytest.mark.parametrize(
    "activation,bias", list(itertools.product(["softmax", "laplace", "relu2"], ["rotary", "simple"]))
)
def test_left_padding_with_chunks_stays_finite(activation, bias):
    """Chunk windows move with left padding (so values may differ from the unpadded sample), but a chunk
    made only of padding never produces NaN or inf."""
    for causal in (False, True):
        model = stack(
            cfg_for(
                attention_activation=activation,
                rel_pos_bias=bias,
                chunk_size=4,
                bidirectional=not causal,
                causal=causal,
            )
        )
        tokens = torch.randint(2, 40, (2, 11))
        tokens[1, :6] = 1  # a whole chunk of padding and part of the next
        with torch.no_grad():
            out, _, _ = model(tokens, tokens.eq(1))
        assert torch.isfinite(out).all()
