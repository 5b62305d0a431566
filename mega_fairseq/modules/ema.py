"""Multi-dimensional damped exponential moving average (Mega's EMA sub-layer).

For every model channel d and expansion dimension n (N of them):

    h_t[d, n] = p[d, n] * beta[d, n] * x_t[d] + q[d, n] * h_{t-1}[d, n],  p = sigmoid(delta), q = 1 - p * sigmoid(alpha)
    ema_t[d]  = sum_n gamma[d, n] / sqrt(N) * h_t[d, n]
    y_t       = silu(ema_t + omega[d] * x_t)

Training runs the recurrence as one FFT convolution with the kernel
k_l = sum_n gamma/sqrt(N) * p * beta * q^l; decoding and streaming run the same maths from a
carried state.  Kernel and FFT are computed in fp32 whatever the module's dtype (and with autocast
off), so positions past 2048 stay exact under fp16/bf16; a float64 module computes in float64.  A
bidirectional EMA has 2D kernel rows: the first D look back, the last D look forward (both include
the current token).

Truncation (`truncation` = T, `--truncation-length`): ema_t = sum_{l=0}^{T-1} k_l x_{t-l}, i.e. the
kernel keeps its first T taps and every token sees exactly the T most recent inputs (itself included).

Decoding rule (one rule for every stateful call, which fairseq-generate, `fairseq-eval-lm --stream-state`
and the layers' `forward(x, state)` all use): a stateful call computes exactly what the full forward
(training) computes at those positions, truncation included.  So, truncation on or off, for any split
of a sequence into blocks (a prompt, then single tokens, or `--tokens-per-sample` blocks):

    blocks fed with the carried state == the same tokens fed one at a time == one full forward

(to fp32 rounding, at every position, also past T).  The state that makes this possible is

* no truncation: h (batch, D, N), the recurrence's hidden vector (O(D N) per token);
* truncation T:  the last min(seen, T - 1) inputs x (batch, D, <= T - 1) after masking, oldest first: the
  window the next token's kernel reaches (a damped EMA cut after T taps has no finite hidden state).
  A token costs O(D T); the state grows with the decoded length up to T - 1 positions.

Either way the state is one fp32 (float64 for a float64 module) tensor indexed by batch first, so a beam
reorder is `state.index_select(0, order)`; `default_state` gives the empty history.  (The original fork's
`step` ignored truncation when decoding, so its generation and streaming evaluation past T tokens differ
from its own training forward; ours do not.)
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

    # ---- coefficients (fp32, or float64 for a float64 module) ---------------------------------
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the kernel, FFT and state: float64 for a float64 module, else float32 (never half)."""
        return torch.float64 if self.residual_weight.dtype == torch.float64 else torch.float32

    def coefficients(self) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (input weight p*beta, decay q, output weight gamma/sqrt(N)), each (rows, N) in `compute_dtype()`."""
        dtype = self.compute_dtype()
        p = torch.sigmoid(self.damping_factor.to(dtype))
        q = 1.0 - p * torch.sigmoid(self.decay_factor.to(dtype))
        return (
            (p * self.ema_expansion_matrix.to(dtype)).squeeze(-1),
            q.squeeze(-1),
            self.kernel_projection_matrix.to(dtype) * self.scale,
        )

    def _powers(self, q: Tensor, start: int, length: int, step: int = 1) -> Tensor:
        """q ** t for t = start, start+step, ... (length values): (rows, N, length) in q's dtype.

        Computed as exp(t log q) with an exact arange (fp32: exact to 2**24).  In fp32, powers below
        e^-30 (< 1e-13, far under the fp32 resolution of any kernel sum) are set to exactly 0 (float64:
        below e^-700): this keeps denormal floats, which are many times slower on CPUs, out of the kernel."""
        t = torch.arange(start, start + length * step, step, device=q.device, dtype=q.dtype)
        log_powers = t * torch.log(q).unsqueeze(-1)
        floor = -700.0 if q.dtype == torch.float64 else -30.0
        return torch.exp(log_powers.masked_fill(log_powers < floor, float("-inf")))

    @_autocast_off
    def kernel(self, length: int, coefficients: Optional[Tuple[Tensor, Tensor, Tensor]] = None) -> Tensor:
        """EMA convolution kernel k_l = sum_n w_n q_n^l, (rows, min(length, truncation)) in `compute_dtype()`.

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
        """The empty history: h = 0 (batch, D, N), or with truncation an empty window (batch, D, 0)."""
        width = self.n_dim if self.truncation is None else 0
        return torch.zeros(batch_size, self.embed_dim, width, device=device, dtype=self.compute_dtype())

    @_autocast_off
    def forward(
        self,
        x: Tensor,
        padding_mask: Optional[Tensor] = None,
        state: Optional[Tensor] = None,
        return_state: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """x: (batch, length, D); padding_mask: (batch, length) bool, True at padding (zeroed before the EMA).

        state: the EMA state before x (causal EMA only; see the module doc: h (batch, D, N), or with
        truncation the window of recent inputs (batch, D, <= T - 1)).  Returns (y (batch, length, D),
        next_state or None); next_state is computed when `state` is given or `return_state` is set.
        Stateful calls equal the full forward over the whole stream, truncation included.
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
        stateful = state is not None or return_state
        if stateful and self.truncation is not None:
            ema, next_state = self._windowed(x.to(self.compute_dtype()).transpose(1, 2), state)
            return F.silu(ema.transpose(1, 2).to(x.dtype) + residual), next_state
        if length == 1 and stateful:
            ema, next_state = self.step(x[:, 0], state)
            return F.silu(ema.unsqueeze(1).to(x.dtype) + residual), next_state

        xf = x.to(self.compute_dtype()).transpose(1, 2)  # (batch, D, length)
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
        """One token of the recurrence. x: (batch, D); state: (batch, D, N) (with truncation: the window) or None.

        Returns (ema (batch, D) in `compute_dtype()`, without the residual/silu gate, next_state).
        """
        if self.truncation is not None:
            ema, next_state = self._windowed(x.to(self.compute_dtype()).unsqueeze(-1), state)
            return ema.squeeze(-1), next_state
        weight_in, q, weight_out = self.coefficients()
        next_state = weight_in * x.to(self.compute_dtype()).unsqueeze(-1)
        if state is not None:
            next_state = next_state + q * state
        return torch.einsum("bdn,dn->bd", next_state, weight_out), next_state

    def _windowed(self, xf: Tensor, window: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Truncated EMA continuing a stream.  xf: (batch, D, L) new inputs; window: (batch, D, w <= T - 1) the
        most recent earlier inputs, or None (no history).

        ema_t = sum_{l<T} k_l x_{t-l} over [window, xf] (the window reaches every tap a new token needs), as a
        direct sum for one token, an FFT convolution otherwise.  Returns (ema (batch, D, L), the last
        min(w + L, T - 1) inputs as the next window)."""
        if window is None:
            window = xf.new_zeros(xf.size(0), xf.size(1), 0)
        elif window.size(-1) >= self.truncation:
            raise ValueError(
                f"an EMA with truncation {self.truncation} carries at most {self.truncation - 1} past inputs as its "
                f"state, got {window.size(-1)} (a state of another EMA?)"
            )
        stream = torch.cat([window.to(xf.dtype), xf], dim=-1)
        total, length = stream.size(-1), xf.size(-1)
        kernel = self.kernel(total)
        if length == 1:
            taps = kernel.size(-1)
            ema = torch.einsum("bdl,dl->bd", stream[..., total - taps :], kernel.flip(-1)).unsqueeze(-1)
        else:
            ema = self._fft_conv(stream, kernel, total)[..., total - length :]
        keep = min(total, self.truncation - 1)
        return ema, stream[..., total - keep :]

    def _fft_conv(self, xf: Tensor, kernel: Tensor, length: int) -> Tensor:
        """xf: (batch, D, length) in `compute_dtype()`; kernel: (rows, K).  One rFFT of size 2*length, no wraparound."""
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
