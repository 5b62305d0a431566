"""Multi-dimensional damped exponential moving average (Mega's EMA sub-layer).

For every model channel d and expansion dimension n (N of them):

    h_t[d, n] = p[d, n] * beta[d, n] * x_t[d] + q[d, n] * h_{t-1}[d, n],  p = sigmoid(delta), q = 1 - p * sigmoid(alpha)
    ema_t[d]  = sum_n gamma[d, n] / sqrt(N) * h_t[d, n]
    y_t       = silu(ema_t + omega[d] * x_t)

Training runs the recurrence as one FFT convolution with the kernel
k_l = sum_n gamma/sqrt(N) * p * beta * q^l; decoding and streaming run the same maths from a
carried state h (batch, D, N).  Kernel and FFT are computed in fp32 whatever the module's dtype
(and with autocast off), so positions past 2048 stay exact under fp16/bf16.  A bidirectional EMA
has 2D kernel rows: the first D look back, the last D look forward (both include the current token).
"""

import functools
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _autocast_off(method):
    """Runs a method with autocast disabled on the module's device: under --amp / torch.autocast the kernel
    matmul, FFT and state einsums would otherwise drop to half precision."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with torch.autocast(self.residual_weight.device.type, enabled=False):
            return method(self, *args, **kwargs)

    return wrapper


class MultiHeadDampedEMA(nn.Module):
    def __init__(self, embed_dim: int, n_dim: int, bidirectional: bool = False, truncation: Optional[int] = None):
        super().__init__()
        self.embed_dim = embed_dim
        self.n_dim = n_dim
        self.bidirectional = bidirectional
        self.truncation = truncation
        self.scale = math.sqrt(1.0 / n_dim)
        rows = 2 * embed_dim if bidirectional else embed_dim
        self.damping_factor = nn.Parameter(torch.empty(rows, n_dim, 1))  # delta
        self.decay_factor = nn.Parameter(torch.empty(rows, n_dim, 1))  # alpha
        self.ema_expansion_matrix = nn.Parameter(torch.empty(rows, n_dim, 1))  # beta
        self.kernel_projection_matrix = nn.Parameter(torch.empty(rows, n_dim))  # gamma
        self.residual_weight = nn.Parameter(torch.empty(embed_dim))  # omega
        self.reset_parameters()

    def reset_parameters(self, delta_alpha_std: float = 0.2, beta_std: float = 0.02, gamma_omega_std: float = 1.0):
        with torch.no_grad():
            nn.init.normal_(self.damping_factor, 0.0, delta_alpha_std)
            nn.init.normal_(self.decay_factor, 0.0, delta_alpha_std)
            signs = torch.ones(self.n_dim, 1)
            signs[1::2] = -1.0  # alternate +1/-1 so the expansion starts diverse
            self.ema_expansion_matrix.normal_(0.0, beta_std).add_(signs)
            nn.init.normal_(self.kernel_projection_matrix, 0.0, gamma_omega_std)
            nn.init.normal_(self.residual_weight, 0.0, gamma_omega_std)

    # ---- coefficients (always fp32) -------------------------------------------------------
    def coefficients(self) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (input weight p*beta, decay q, output weight gamma/sqrt(N)), each (rows, N) in fp32."""
        p = torch.sigmoid(self.damping_factor.float())
        q = 1.0 - p * torch.sigmoid(self.decay_factor.float())
        return (
            (p * self.ema_expansion_matrix.float()).squeeze(-1),
            q.squeeze(-1),
            self.kernel_projection_matrix.float() * self.scale,
        )

    def _powers(self, q: Tensor, start: int, length: int, step: int = 1) -> Tensor:
        """q ** t for t = start, start+step, ... (length values): (rows, N, length) in fp32.

        Computed as exp(t log q) with an exact fp32 arange (exact to 2**24).  Powers below e^-30
        (< 1e-13, far under the fp32 resolution of any kernel sum) are set to exactly 0: this keeps
        denormal floats, which are many times slower on CPUs, out of the kernel."""
        t = torch.arange(start, start + length * step, step, device=q.device, dtype=torch.float32)
        log_powers = t * torch.log(q).unsqueeze(-1)
        return torch.exp(log_powers.masked_fill(log_powers < -30.0, float("-inf")))

    @_autocast_off
    def kernel(self, length: int, coefficients: Optional[Tuple[Tensor, Tensor, Tensor]] = None) -> Tensor:
        """EMA convolution kernel k_l = sum_n w_n q_n^l, (rows, min(length, truncation)) in fp32.

        q^l is split as q^(iB) * q^j (l = iB + j, B ~ sqrt(length)), so the sum over n is one
        batched matmul and only O(N sqrt(length)) exponentials are taken per row.  `coefficients`
        (from `coefficients()`) can be passed by a caller that already computed them."""
        if self.truncation is not None:
            length = min(length, self.truncation)
        weight_in, q, weight_out = coefficients if coefficients is not None else self.coefficients()
        block = math.isqrt(max(length - 1, 0)) + 1
        blocks = -(-length // block)
        inner = self._powers(q, 0, block)  # (rows, N, B): q^j
        outer = self._powers(q, 0, blocks, step=block) * (weight_in * weight_out).unsqueeze(-1)  # (rows, N, blocks)
        kernel = torch.bmm(outer.transpose(1, 2), inner)  # (rows, blocks, B)
        return kernel.reshape(kernel.size(0), -1)[:, :length]

    # ---- state interface --------------------------------------------------------------------
    def default_state(self, batch_size: int, device=None) -> Tensor:
        return torch.zeros(batch_size, self.embed_dim, self.n_dim, device=device, dtype=torch.float32)

    @_autocast_off
    def forward(
        self,
        x: Tensor,
        padding_mask: Optional[Tensor] = None,
        state: Optional[Tensor] = None,
        return_state: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """x: (batch, length, D); padding_mask: (batch, length) bool, True at padding (zeroed before the EMA).

        state: (batch, D, N) fp32 EMA state before x (causal EMA only).  Returns (y (batch, length, D),
        next_state or None); next_state is computed when `state` is given or `return_state` is set.
        """
        bsz, length, dim = x.shape
        if dim != self.embed_dim:
            raise ValueError(f"EMA expects inputs of width {self.embed_dim}, got {dim}")
        if self.bidirectional and (state is not None or return_state):
            raise ValueError(
                "a bidirectional EMA has no recurrent state; streaming and decoding need bidirectional=False"
            )
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        residual = x * self.residual_weight
        if length == 1 and (state is not None or return_state):
            ema, next_state = self.step(x[:, 0], state)
            return F.silu(ema.unsqueeze(1).to(x.dtype) + residual), next_state

        xf = x.float().transpose(1, 2)  # (batch, D, length)
        coefficients = self.coefficients()
        ema = self._fft_conv(xf, self.kernel(length, coefficients), length)
        next_state = None
        if state is not None or return_state:
            weight_in, q, weight_out = coefficients
            if state is not None:
                # contribution of the carried state: sum_n gamma * q^(t+1) * h[n]
                ema = ema + torch.einsum("bdn,dnl->bdl", state, weight_out.unsqueeze(-1) * self._powers(q, 1, length))
            next_state = torch.einsum("bdl,dnl->bdn", xf, weight_in.unsqueeze(-1) * self._powers(q, 0, length).flip(-1))
            if state is not None:
                next_state = next_state + state * torch.exp(length * torch.log(q))
        y = F.silu(ema.transpose(1, 2).to(x.dtype) + residual)
        return y, next_state

    @_autocast_off
    def step(self, x: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """One token of the recurrence. x: (batch, D); state: (batch, D, N) or None.

        Returns (ema (batch, D) fp32, without the residual/silu gate, next_state (batch, D, N) fp32).
        """
        weight_in, q, weight_out = self.coefficients()
        next_state = weight_in * x.float().unsqueeze(-1)
        if state is not None:
            next_state = next_state + q * state
        return torch.einsum("bdn,dn->bd", next_state, weight_out), next_state

    def _fft_conv(self, xf: Tensor, kernel: Tensor, length: int) -> Tensor:
        """xf: (batch, D, length) fp32; kernel: (rows, K).  One rFFT of size 2*length, no wrap-around."""
        n = 2 * length
        x_fft = torch.fft.rfft(xf, n=n)
        if self.bidirectional:
            forward_kernel, backward_kernel = kernel.split(self.embed_dim, dim=0)
            # anti-causal part as a correlation: conj() of the kernel spectrum reads x[t + l]
            k_fft = torch.fft.rfft(forward_kernel, n=n) + torch.fft.rfft(backward_kernel, n=n).conj()
        else:
            k_fft = torch.fft.rfft(kernel, n=n)
        return torch.fft.irfft(x_fft * k_fft, n=n)[..., :length]

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, n_dim={self.n_dim}, bidirectional={self.bidirectional}, "
            f"truncation={self.truncation}"
        )
