"""The fused routes of softmax attention with the rotary bias folded into q and k -- torch's
scaled_dot_product_attention ("sdpa") and our blockwise one ("blockwise", one query row per block here so every
block boundary is crossed) -- equal the explicit (Lq, Lk) route: outputs and gradients, float64 and float32, masks
and causality, within 1e-5 of the values' scale (torch's CPU flash kernel computes exp to about float32 accuracy
even in float64)."""

import itertools

import pytest
import torch
from torch import nn
from torch.profiler import profile

from mega_fairseq.modules import MegaLayerConfig, MegaStack, attention_kernel
from mega_fairseq.modules.relative_position import RotaryRelativePositionalBias, SimpleRelativePositionalBias
from mega_fairseq.testing import randomize_


@pytest.fixture(params=["sdpa", "blockwise"])
def explicit_then_fused(request, monkeypatch):
    """Yields a function running f() with the explicit route, then with the fused one of the parameter."""
    from mega_fairseq.modules import blockwise_attention

    monkeypatch.setattr(blockwise_attention, "BLOCK_ELEMENTS", 1)  # one query row per block

    def both(f):
        results = []
        for setting in (False, request.param):
            attention_kernel.FUSED_ATTENTION = setting
            results.append(f())
        return results

    yield both
    attention_kernel.FUSED_ATTENTION = "auto"


def run_attend(dtype, causal, padded, q_len, k_len, q_start, h_dim, z_dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    bias = RotaryRelativePositionalBias(z_dim).to(dtype)
    with torch.no_grad():
        bias.alpha.copy_(torch.randn(1, z_dim, generator=gen))
        bias.b_param.copy_(torch.randn(1, z_dim, generator=gen))
    q = torch.randn(2, 3, q_len, z_dim, generator=gen, dtype=dtype).requires_grad_()
    k = torch.randn(2, 3, k_len, z_dim, generator=gen, dtype=dtype).requires_grad_()
    v = torch.randn(2, 3, k_len, h_dim, generator=gen, dtype=dtype).requires_grad_()
    mask = None
    if padded:
        mask = torch.rand(2, 3, k_len, generator=gen) < 0.4
        mask[0, 0] = True  # a block with no key at all
        mask[1, 1, :5] = True  # causal rows 0..4 read nothing
    out = attention_kernel.attend(
        q, k, v, activation="softmax", rel_pos_bias=bias, q_start=q_start, causal=causal, key_padding_mask=mask
    )
    (out * torch.randn(out.shape, generator=gen, dtype=dtype)).sum().backward()
    return [out.detach()] + [t.grad for t in (q, k, v, bias.alpha, bias.b_param)]


# (q_len, k_len, q_start): full attention, fewer queries, one decoding step, a block mid-stream (blockwise only)
SHAPES = [(9, 9, 0), (7, 12, 0), (1, 12, 11), (4, 12, 5)]


@pytest.mark.parametrize(
    "causal,padded,shape,h_dim", list(itertools.product([False, True], [False, True], SHAPES, [20, 5]))
)
def test_fused_equals_explicit(explicit_then_fused, causal, padded, shape, h_dim):
    for dtype in (torch.float64, torch.float32):
        explicit, fused = explicit_then_fused(lambda: run_attend(dtype, causal, padded, *shape, h_dim))
        for name, a, b in zip(("out", "q", "k", "v", "alpha", "beta"), explicit, fused):
            scale = max(a.abs().max().item(), 1.0)
            assert (a - b).abs().max().item() <= 1e-5 * scale, (dtype, name)


def test_route_choice():
    rotary, simple = RotaryRelativePositionalBias(8), SimpleRelativePositionalBias(16)
    blockwise = attention_kernel.blockwise_route_applies
    assert blockwise("softmax", rotary, 0.0) and not blockwise("softmax", rotary, 0.1)
    assert not blockwise("softmax", simple, 0.0) and not blockwise("relu2", rotary, 0.0)
    applies = attention_kernel.fused_route_applies
    assert applies("softmax", rotary, 0, True, 10, 0.0)
    assert applies("softmax", rotary, 9, True, 10, 0.0)  # a decoding step: causality masks nothing
    assert not applies("softmax", rotary, 3, True, 10, 0.0)  # queries mid-stream under a causal mask
    assert not applies("softmax", rotary, 0, False, 10, 0.1)  # attention dropout
    assert not applies("softmax", simple, 0, False, 10, 0.0)
    assert not applies("laplace", rotary, 0, False, 10, 0.0)


@pytest.mark.parametrize("setting", ["sdpa", "blockwise"])
def test_fused_route_holds_no_length_squared_tensor(monkeypatch, setting):
    """At L = 1024 the explicit route allocates (L, L) scores; the fused ones never do (the flash kernel, or
    blocks of 128 query rows)."""
    from mega_fairseq.modules import blockwise_attention

    monkeypatch.setattr(attention_kernel, "FUSED_ATTENTION", setting)  # "auto" fuses on the CPU from 4096 keys
    monkeypatch.setattr(blockwise_attention, "BLOCK_ELEMENTS", 128 * 1024)
    length, z_dim = 1024, 16
    q, k = torch.randn(1, 1, length, z_dim), torch.randn(1, 1, length, z_dim)
    v = torch.randn(1, 1, length, 32, requires_grad=True)
    with profile(profile_memory=True) as prof:
        attention_kernel.attend(
            q, k, v, activation="softmax", rel_pos_bias=RotaryRelativePositionalBias(z_dim), causal=True
        ).sum().backward()
    names = {event.key for event in prof.key_averages()}
    assert "aten::_softmax" not in names and not any("baddbmm" in n for n in names)
    assert any("scaled_dot_product" in n for n in names) == (setting == "sdpa")
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert largest < length * length * 4 / 2  # far below one (L, L) float matrix


@pytest.mark.parametrize("causal,chunk", list(itertools.product([False, True], [-1, 4])))
def test_stack_gradients_equal(explicit_then_fused, causal, chunk):
    cfg = MegaLayerConfig(
        embed_dim=16, z_dim=8, hidden_dim=24, ffn_dim=20, n_dim=4, max_positions=64,
        chunk_size=chunk, causal=causal, bidirectional=not causal,
    )  # fmt: skip
    model = randomize_(MegaStack(cfg, 2, nn.Embedding(40, 16, padding_idx=1)), 0).double().train()
    tokens = torch.randint(2, 40, (3, 11), generator=torch.Generator().manual_seed(0))
    tokens[1, 7:], tokens[2, 2:] = 1, 1

    def step():
        model.zero_grad(set_to_none=True)
        hidden, _, _ = model(tokens, tokens.eq(1))
        hidden.pow(2).mean().backward()
        return [hidden.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    explicit, fused = explicit_then_fused(step)
    assert len(explicit) == len(fused)
    for a, b in zip(explicit, fused):
        assert (a - b).abs().max().item() <= 1e-6 * max(a.abs().max().item(), 1.0)


def test_auto_takes_the_blockwise_route_on_cpu_only_for_long_keys(monkeypatch):
    """ "auto" (the default) on the CPU: explicit below FUSED_MIN_KEYS_CPU keys (faster there), blockwise from it
    on (linear memory, the explicit route's arithmetic); the flash kernel (sdpa) only on CUDA."""
    assert attention_kernel.FUSED_ATTENTION == "auto"
    calls = []
    for name in ("fused_softmax_attention", "blockwise_rotary_attention"):
        monkeypatch.setattr(attention_kernel, name, lambda *a, _name=name, **k: calls.append((_name, a)) or a[0])
    bias = RotaryRelativePositionalBias(8)
    for k_len in (16, attention_kernel.FUSED_MIN_KEYS_CPU):
        q = torch.zeros(1, 1, 2, 8)
        k, v = torch.zeros(1, 1, k_len, 8), torch.zeros(1, 1, k_len, 8)
        attention_kernel.attend(q, k, v, activation="softmax", rel_pos_bias=bias)
    assert [(name, a[1].size(-2)) for name, a in calls] == [
        ("blockwise_rotary_attention", attention_kernel.FUSED_MIN_KEYS_CPU)
    ]
