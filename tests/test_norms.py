"""Sequence normalizations: real RMS normalization, batch statistics that ignore padding."""

import pytest
import torch
from torch import nn

from mega_fairseq.modules import MaskedBatchNorm, RMSNorm, ScaleNorm, build_norm


def test_rmsnorm_normalizes():
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(2, 5, 8) * 7.0
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    assert (norm(x) - expected).abs().max() < 1e-5
    # unlike HF's MegaRMSNorm, the output scale does not follow the input scale
    assert (norm(x * 100) - norm(x)).abs().max() < 1e-4


def test_scalenorm_formula():
    norm = ScaleNorm()
    with torch.no_grad():
        norm.scalar.fill_(1.7)
    x = torch.randn(3, 4, 6)
    assert (norm(x) - 1.7 * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)).abs().max() < 1e-5


def test_batchnorm_without_padding_equals_torch():
    ours, ref = MaskedBatchNorm(6).train(), nn.BatchNorm1d(6, eps=1e-5).train()
    x = torch.randn(3, 7, 6)
    expected = ref(x.transpose(1, 2)).transpose(1, 2)
    assert (ours(x) - expected).abs().max() < 1e-5
    assert torch.allclose(ours.running_mean, ref.running_mean) and torch.allclose(ours.running_var, ref.running_var)


@pytest.mark.parametrize("kind", ["batchnorm", "syncbatchnorm"])
def test_batchnorm_statistics_ignore_padding(kind):
    ours, ref = build_norm(kind, 6).train(), nn.BatchNorm1d(6, eps=1e-5).train()
    x = torch.randn(2, 9, 6)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 5:] = True
    x_pad = x.masked_fill(mask.unsqueeze(-1), 1e3)  # garbage in padding must not leak into statistics
    out = ours(x_pad, mask)
    real = x[~mask]  # (tokens, 6)
    expected = ref(real)
    assert (out[~mask] - expected).abs().max() < 1e-4
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-5)
    ours.eval(), ref.eval()
    assert (ours(x)[0] - ref(x[0])).abs().max() < 1e-5


def test_masked_batchnorm_gradients_match_torch():
    ours, ref = MaskedBatchNorm(4).train(), nn.BatchNorm1d(4).train()
    x = torch.randn(10, 4, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[0, 10:] = True
    padded = torch.cat([x, torch.zeros(2, 4)]).unsqueeze(0)
    (ours(padded, mask)[0, :10] * torch.arange(40.0).view(10, 4)).sum().backward()
    (ref(x2) * torch.arange(40.0).view(10, 4)).sum().backward()
    assert (x.grad - x2.grad).abs().max() < 1e-4


def test_syncbatchnorm_falls_back_without_process_group():
    sync = build_norm("syncbatchnorm", 5)
    assert isinstance(sync, MaskedBatchNorm) and sync.sync
    plain = build_norm("batchnorm", 5)
    x = torch.randn(2, 3, 5)
    assert torch.allclose(sync.train()(x), plain.train()(x), atol=1e-6)


def test_unknown_norm_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown normalization_type 'groupnorm'"):
        build_norm("groupnorm", 4)
