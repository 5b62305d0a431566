"""The EMA's FFT path, recurrent step and streaming state compute the same maths."""

import pytest
import torch

from mega_fairseq.modules import MultiHeadDampedEMA
from mega_fairseq.testing import randomize_

D, N = 6, 4


def make(bidirectional=False, truncation=None, seed=0):
    return randomize_(MultiHeadDampedEMA(D, N, bidirectional=bidirectional, truncation=truncation), seed)


def reference(ema, x):
    """Direct float64 evaluation of h_t = p*beta*x_t + q*h_{t-1}, y = silu(sum_n gamma h + omega x)."""
    w_in, q, w_out = (t.double() for t in ema.coefficients())
    rows = w_in.size(0)
    xd = x.double()
    L = x.size(1)

    def run(seq, w_in, q, w_out):
        h = torch.zeros(x.size(0), seq.size(-1), N, dtype=torch.float64)
        outs = []
        for t in range(L):
            h = w_in * seq[:, t].unsqueeze(-1) + q * h
            outs.append((h * w_out).sum(-1))
        return torch.stack(outs, 1)

    out = run(xd, w_in[:D], q[:D], w_out[:D])
    if rows == 2 * D:
        out = out + run(xd.flip(1), w_in[D:], q[D:], w_out[D:]).flip(1)
    return torch.nn.functional.silu(out + xd * ema.residual_weight.double())


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fft_equals_recurrence(bidirectional):
    ema = make(bidirectional)
    x = torch.randn(2, 37, D)
    y, _ = ema(x)
    assert (y.double() - reference(ema, x)).abs().max() < 1e-5


def test_truncation_limits_the_kernel():
    ema = make(truncation=5)
    x = torch.randn(1, 20, D)
    y, _ = ema(x)
    x2 = x.clone()
    x2[:, :10] = torch.randn(1, 10, D)  # positions >= 5 steps before t=14 cannot reach it
    y2, _ = ema(x2)
    assert torch.allclose(y[:, 14:], y2[:, 14:], atol=1e-6)
    assert not torch.allclose(y[:, 10:14], y2[:, 10:14], atol=1e-3)
    assert ema.kernel(20).shape == (D, 5)


def test_step_by_step_equals_full_forward():
    ema = make()
    x = torch.randn(3, 16, D)
    full, _ = ema(x)
    state, outs = ema.default_state(3), []  # a zero state is the same as no history
    for t in range(16):
        y, state = ema(x[:, t : t + 1], state=state, return_state=True)
        outs.append(y)
    assert (torch.cat(outs, 1) - full).abs().max() < 1e-5


@pytest.mark.parametrize("blocks", [[16], [5, 11], [1, 7, 1, 7], [3, 3, 3, 3, 4]])
def test_streaming_blocks_equal_one_pass(blocks):
    ema = make()
    x = torch.randn(2, 16, D)
    full, full_state = ema(x, return_state=True)
    state, outs, start = None, [], 0
    for size in blocks:
        y, state = ema(x[:, start : start + size], state=state, return_state=True)
        outs.append(y)
        start += size
    assert (torch.cat(outs, 1) - full).abs().max() < 1e-5
    assert (state - full_state).abs().max() < 1e-5
    # the state is the recurrence's hidden vector: continuing from it matches a longer pass
    more = torch.randn(2, 4, D)
    y_more, _ = ema(more, state=state)
    longer, _ = ema(torch.cat([x, more], 1))
    assert (y_more - longer[:, 16:]).abs().max() < 1e-5


def test_padding_is_zeroed_before_the_ema():
    ema = make(bidirectional=True)
    x = torch.randn(1, 10, D)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[:, 7:] = True
    y_masked, _ = ema(x, mask)
    y_short, _ = ema(x[:, :7])
    assert (y_masked[:, :7] - y_short).abs().max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_kernel_is_computed_in_fp32(dtype):
    """Positions past 2048 are exact: the kernel does not go through half-precision arange/exp."""
    ema32 = make()
    ema_half = make().to(dtype)
    k_half = ema_half.kernel(5000)
    assert k_half.dtype == torch.float32
    # identical up to the rounding of the parameters themselves
    ema_rounded = make()
    ema_rounded.load_state_dict({k: v.to(dtype).float() for k, v in ema32.state_dict().items()})
    assert torch.allclose(k_half, ema_rounded.kernel(5000), atol=1e-6)
    x = torch.randn(1, 3000, D).to(dtype)
    y, _ = ema_half(x)
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_bidirectional_has_no_state():
    with pytest.raises(ValueError, match="bidirectional"):
        make(bidirectional=True)(torch.randn(1, 3, D), return_state=True)


@pytest.mark.parametrize("length", [1, 2, 5, 64, 2049, 8192])
def test_kernel_matches_float64_powers(length):
    """The blocked kernel (q^(iB) * q^j) equals sum_n w_n q_n^l computed in float64, past 2048 too."""
    ema = make(bidirectional=True)
    w_in, q, w_out = (t.double() for t in ema.coefficients())
    reference = torch.einsum("dn,dnl->dl", w_in * w_out, q.unsqueeze(-1) ** torch.arange(length, dtype=torch.float64))
    kernel = ema.kernel(length)
    assert kernel.shape == (2 * D, length) and kernel.dtype == torch.float32
    assert (kernel.double() - reference).abs().max() < 1e-6


def windowed_reference(ema, x):
    """Direct float64 sum of the truncated EMA: y_t = silu(sum_{l < T} k_l x_{t-l} + omega x_t)."""
    w_in, q, w_out = (t.double() for t in ema.coefficients())
    length = x.size(1)
    kernel = torch.einsum("dn,dnl->dl", w_in * w_out, q.unsqueeze(-1) ** torch.arange(length, dtype=torch.float64))
    kernel[:, ema.truncation :] = 0.0
    xd = x.double()
    out = torch.stack(
        [sum(kernel[:, lag] * xd[:, t - lag] for lag in range(t + 1)) for t in range(length)], 1
    )  # (batch, length, D)
    return torch.nn.functional.silu(out + xd * ema.residual_weight.double())


@pytest.mark.parametrize("truncation", [1, 2, 5])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_truncated_stream_blocks_equal_tokens_one_at_a_time_and_the_full_forward(truncation, dtype, tol):
    """The decoding rule with truncation T: blocks fed with the carried state == the same tokens fed one at a time
    == one full (training) forward, at every position, also far past T; the state holds <= T - 1 inputs."""
    ema = make(truncation=truncation).to(dtype)
    x = torch.randn(2, 23, D, dtype=dtype)
    full, _ = ema(x)
    assert (full.double() - windowed_reference(ema, x)).abs().max() <= tol
    state, steps = ema.default_state(2), []
    for t in range(23):
        y, state = ema(x[:, t : t + 1], state=state, return_state=True)
        steps.append(y)
        assert state.shape == (2, D, min(t + 1, truncation - 1)) and state.dtype == dtype
    state, blocks, start = None, [], 0
    for size in [3, 1, 7, 1, 11]:  # a prompt, single tokens, blocks longer than T
        y, state = ema(x[:, start : start + size], state=state, return_state=True)
        blocks.append(y)
        start += size
    steps, blocks = torch.cat(steps, 1), torch.cat(blocks, 1)
    assert (steps - full).abs().max() <= tol
    assert (blocks - full).abs().max() <= tol
    assert (blocks - steps).abs().max() <= tol
    # `step` (the one-token entry point) follows the same rule
    ema_t, _ = ema.step(x[:, 5], state=x[:, 5 - min(5, truncation - 1) : 5].transpose(1, 2))
    y5 = torch.nn.functional.silu(ema_t.to(dtype) + x[:, 5] * ema.residual_weight)
    assert (y5 - full[:, 5]).abs().max() <= tol


def test_truncated_stream_with_padding_and_a_wrong_state():
    """Padding is zeroed before the EMA in the window too (the full forward's view of a padded batch); a state that
    is not a window of this EMA is refused."""
    ema = make(truncation=4)
    x = torch.randn(2, 12, D)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 2:5] = True
    full, _ = ema(x, mask)
    state, outs = None, []
    for start, size in [(0, 3), (3, 1), (4, 6), (10, 2)]:
        y, state = ema(x[:, start : start + size], mask[:, start : start + size], state=state, return_state=True)
        outs.append(y)
    assert (torch.cat(outs, 1) - full).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="truncation 4 carries at most 3"):
        ema(x[:, :1], state=torch.zeros(2, D, 4))


def test_float64_module_computes_in_float64():
    ema = make(bidirectional=True).double()
    x = torch.randn(2, 37, D, dtype=torch.float64)
    y, _ = ema(x)
    assert ema.kernel(5).dtype == torch.float64 and y.dtype == torch.float64
    assert (y - reference(ema, x)).abs().max() <= 1e-12
