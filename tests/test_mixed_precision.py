"""Mixed precision on CPU: long chunked forward in fp16/bf16 vs fp32, and fairseq-train with
--fp16, --memory-efficient-fp16, --bf16 (made to work on CPU by mega_fairseq/fairseq_patches.py) and --amp."""

import copy
import importlib.util
import re
import sys
import types

import pytest
import torch
from torch import nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack
from mega_fairseq.testing import randomize_

from conftest import LM_TRAIN_ARGS, fairseq_cli

# measured max |half - fp32| / max |fp32| over all 8192 positions: fp16 2.7e-3, bf16 2.1e-2 (see README)
LONG_TOL = {torch.float16: 1e-2, torch.bfloat16: 6e-2}


@pytest.fixture(scope="module")
def long_run():
    """A 2-layer causal Mega-chunk stack (D=16, chunk 128) on 8192 tokens: (model, tokens, fp32 output)."""
    cfg = MegaLayerConfig(
        embed_dim=16,
        z_dim=8,
        hidden_dim=32,
        ffn_dim=32,
        n_dim=4,
        bidirectional=False,
        causal=True,
        chunk_size=128,
        normalization_type="layernorm",
    )
    model = randomize_(MegaStack(cfg, 2, nn.Embedding(50, 16, padding_idx=1))).eval()
    tokens = torch.randint(2, 50, (1, 8192), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model, tokens, model(tokens)[0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_long_chunked_forward_in_half_precision_matches_fp32(long_run, dtype):
    model, tokens, expected = long_run
    with torch.no_grad():
        out = copy.deepcopy(model).to(dtype)(tokens)[0]
    assert out.dtype == dtype and torch.isfinite(out).all()
    error = (out.float() - expected).abs()
    scale = expected.abs().max()
    assert error.max() / scale < LONG_TOL[dtype], f"{dtype}: relative error {error.max() / scale:.2e}"
    # no drift with position: the tail (positions 6144-8191) is as accurate as the head (0-2047)
    assert error[:, -2048:].max() < 3 * error[:, :2048].max() + 1e-3


def test_long_chunked_forward_under_cpu_autocast_matches_fp32(long_run):
    """torch.autocast (what --amp uses on CUDA) with bf16 on the CPU: same bound as a bf16 model."""
    model, tokens, expected = long_run
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens)[0]
    assert torch.isfinite(out).all()
    assert (out.float() - expected).abs().max() / expected.abs().max() < LONG_TOL[torch.bfloat16]


def test_ema_stays_fp32_under_autocast():
    from mega_fairseq.modules import MultiHeadDampedEMA

    ema = randomize_(MultiHeadDampedEMA(16, 4))
    x = torch.randn(1, 3000, 16)
    kernel, (y, state) = ema.kernel(5000), ema(x, return_state=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernel_ac, (y_ac, state_ac) = ema.kernel(5000), ema(x, return_state=True)
        ema_step, _ = ema.step(x[:, 0])
    assert kernel_ac.dtype == state_ac.dtype == ema_step.dtype == torch.float32
    assert torch.equal(kernel_ac, kernel) and torch.equal(y_ac, y) and torch.equal(state_ac, state)


# ---- fairseq-train -----------------------------------------------------------------------------
def train_losses(log):
    """(per-update training losses, log lines) from fairseq's train_inner lines (--log-interval 1)."""
    lines = log.splitlines()
    return [
        float(m.group(1)) for m in (re.search(r"train_inner .* loss=([0-9.]+)", line) for line in lines) if m
    ], lines


@pytest.mark.parametrize(
    "flags,kind",
    [
        (["--fp16"], "fp16"),
        (["--memory-efficient-fp16"], "fp16"),
        (["--bf16"], "bf16"),
        pytest.param(["--memory-efficient-bf16"], "bf16", marks=pytest.mark.slow),
        pytest.param(["--amp"], "amp", marks=pytest.mark.slow),  # CUDA autocast: trains in fp32 on the CPU
    ],
    ids=lambda v: v[0].lstrip("-") if isinstance(v, list) else "",
)
def test_mixed_precision_training_on_cpu(lm_data, tmp_path, flags, kind):
    proc = fairseq_cli(
        "fairseq-train",
        lm_data,
        *LM_TRAIN_ARGS,
        *flags,
        "--max-update",
        "8",
        "--log-interval",
        "1",
        "--disable-validation",
        "--save-dir",
        tmp_path,
    )
    log = proc.stdout + proc.stderr
    losses, lines = train_losses(log)
    assert len(losses) == 8 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0] - 1.0, losses
    # loss scaling may skip updates while it finds its scale, never once training has started
    first_update = next(i for i, line in enumerate(lines) if "train_inner" in line)
    assert not [line for line in lines[first_update:] if "overflow" in line]
    # the run really used the mixed-precision path (checkpoints are stored in fp32 whatever the training dtype)
    inner = [line for line in lines if "train_inner" in line]
    assert all(("loss_scale=" in line) == (kind != "bf16") for line in inner)  # bf16 runs without loss scaling
    if kind == "bf16":
        assert "training in bfloat16 on the CPU" in log


# ---- apex: used when importable, never required ------------------------------------------------
def test_layernorm_uses_apex_fused_layer_norm_only_when_apex_imports_and_cuda_exists(monkeypatch):
    from mega_fairseq.modules import LayerNorm, build_norm, norms

    if importlib.util.find_spec("apex") is None or not torch.cuda.is_available():
        assert norms.apex_layer_norm_class() is None and type(build_norm("layernorm", 8)) is LayerNorm
    calls = []

    class FakeFused(nn.LayerNorm):  # stands in for apex.normalization.FusedLayerNorm
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    monkeypatch.setitem(sys.modules, "apex", types.ModuleType("apex"))
    monkeypatch.setitem(sys.modules, "apex.normalization", types.SimpleNamespace(FusedLayerNorm=FakeFused))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    norms.apex_layer_norm_class.cache_clear()
    try:
        norm = build_norm("layernorm", 8)
        assert isinstance(norm, FakeFused) and set(norm.state_dict()) == {"weight", "bias"}
        x = torch.randn(2, 3, 8)
        assert torch.equal(norm(x, torch.zeros(2, 3, dtype=torch.bool)), LayerNorm(8)(x)) and calls == [x.shape]
        # apex directly: modules/ (and the HF export's copy of it) never import fairseq
        assert not any(c.__module__.startswith("fairseq") for c in type(norm).__mro__)
    finally:
        norms.apex_layer_norm_class.cache_clear()
