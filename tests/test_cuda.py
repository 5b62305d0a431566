"""CUDA-only checks (skipped without a GPU; scripts/gpu_check.sh runs them): half-precision and autocast
forwards of a chunked Mega stack against fp32, the EMA kernel kept in fp32, and apex's fused Adam picked
up by fairseq when apex is importable."""

import copy
import importlib.util

import pytest
import torch
from torch import nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack, MultiHeadDampedEMA
from mega_fairseq.testing import randomize_

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# same bounds as tests/test_mixed_precision.py (CPU): max |half - fp32| / max |fp32|
TOL = {torch.float16: 1e-2, torch.bfloat16: 6e-2}
LENGTH = 8192


@pytest.fixture(scope="module")
def chunked():
    cfg = MegaLayerConfig(
        embed_dim=64,
        z_dim=32,
        hidden_dim=128,
        ffn_dim=128,
        n_dim=16,
        bidirectional=False,
        causal=True,
        chunk_size=512,
        normalization_type="layernorm",
    )
    model = randomize_(MegaStack(cfg, 2, nn.Embedding(100, 64, padding_idx=1))).eval().cuda()
    tokens = torch.randint(2, 100, (2, LENGTH), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.no_grad():
        return model, tokens, model(tokens)[0]


def relative_error(out, expected):
    return ((out.float() - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_model_forward_matches_fp32(chunked, dtype):
    model, tokens, expected = chunked
    with torch.no_grad():
        out = copy.deepcopy(model).to(dtype)(tokens)[0]
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert relative_error(out, expected) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_forward_matches_fp32(chunked, dtype):
    model, tokens, expected = chunked
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        out = model(tokens)[0]
    assert torch.isfinite(out).all()
    assert relative_error(out, expected) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_backward_is_finite(chunked, dtype):
    model, tokens, _ = chunked
    model = copy.deepcopy(model).train()
    with torch.autocast("cuda", dtype=dtype):
        loss = model(tokens)[0].float().pow(2).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ema_kernel_stays_fp32_on_cuda(dtype):
    ema32 = randomize_(MultiHeadDampedEMA(16, 4)).cuda()
    ema_half = copy.deepcopy(ema32).to(dtype)
    kernel = ema_half.kernel(5000)
    assert kernel.dtype == torch.float32
    rounded = copy.deepcopy(ema32)
    rounded.load_state_dict({k: v.to(dtype).float() for k, v in ema32.state_dict().items()})
    assert torch.allclose(kernel, rounded.kernel(5000), atol=1e-5)
    with torch.autocast("cuda", dtype=dtype):
        assert ema32.kernel(5000).dtype == torch.float32


@pytest.mark.skipif(importlib.util.find_spec("apex") is None, reason="apex not installed")
def test_fairseq_adam_uses_apex_fused_adam():
    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
    from fairseq.optim.fused_adam import get_fused_adam_class

    fused = get_fused_adam_class()
    assert fused is not None
    optimizer = FairseqAdam(FairseqAdamConfig(lr=[1e-3], tpu=False), [nn.Parameter(torch.zeros(4, device="cuda"))])
    assert isinstance(optimizer.optimizer, fused)
