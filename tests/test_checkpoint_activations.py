"""Activation checkpointing (`--checkpoint-activations`, `--offload-activations`): gradients equal to the plain
run with dropout on, batch-norm statistics updated once, never used in eval / no-grad / incremental decoding,
and the flag reaches every Mega model (LM, translation, masked LM / heads, LRA)."""

import itertools

import pytest
import torch
from torch import nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack
from mega_fairseq.testing import randomize_

DROPOUTS = dict(dropout=0.2, attention_dropout=0.2, hidden_dropout=0.2, ffn_hidden_dropout=0.2)


def build(checkpoint: bool, causal: bool, cross: bool, norm: str, chunk: int, softmax_dropout: bool = True):
    dropouts = dict(DROPOUTS, attention_dropout=0.2 if softmax_dropout else 0.0)
    cfg = MegaLayerConfig(
        embed_dim=16, z_dim=8, hidden_dim=24, ffn_dim=20, n_dim=4, max_positions=64, chunk_size=chunk,
        causal=causal, bidirectional=not causal, cross_attention=cross, normalization_type=norm, **dropouts,
    )  # fmt: skip
    stack = MegaStack(cfg, 3, nn.Embedding(40, 16, padding_idx=1), checkpoint_activations=checkpoint)
    return randomize_(stack, 0).train()


def step(model, tokens, encoder_out=None):
    torch.manual_seed(1234)
    model.zero_grad(set_to_none=True)
    hidden, _, _ = model(tokens, tokens.eq(1), encoder_out=encoder_out)
    hidden.pow(2).mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return hidden.detach(), grads, {name: b.clone() for name, b in model.named_buffers()}


CASES = list(itertools.product([False, True], ["layernorm", "batchnorm"], [-1, 4]))


@pytest.mark.parametrize("causal,norm,chunk", CASES)
def test_gradients_equal_with_dropout(causal, norm, chunk):
    tokens = torch.randint(2, 40, (3, 10), generator=torch.Generator().manual_seed(0))
    tokens[1, 6:] = 1
    cross = causal and chunk == -1
    encoder_out = torch.randn(3, 7, 16) if cross else None
    # attention dropout keeps the explicit route; without it the fused one runs (both must recompute exactly)
    for softmax_dropout in (True, False):
        plain = step(build(False, causal, cross, norm, chunk, softmax_dropout), tokens, encoder_out)
        checkpointed = step(build(True, causal, cross, norm, chunk, softmax_dropout), tokens, encoder_out)
        assert torch.equal(plain[0], checkpointed[0])
        assert plain[1].keys() == checkpointed[1].keys() and len(plain[1]) > 10
        for name, grad in plain[1].items():
            assert torch.allclose(grad, checkpointed[1][name], rtol=0, atol=1e-7), name
        for name, buf in plain[2].items():  # batch-norm statistics: one update per step, as without checkpointing
            assert torch.equal(buf, checkpointed[2][name]), name


def count_saved(model, tokens):
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hidden, _, _ = model(tokens)
    hidden.sum().backward()
    return sum(saved)


def test_checkpointing_keeps_only_layer_inputs():
    tokens = torch.randint(2, 40, (2, 32))
    plain = count_saved(build(False, True, False, "layernorm", -1), tokens)
    checkpointed = count_saved(build(True, True, False, "layernorm", -1), tokens)
    assert checkpointed * 5 < plain, (checkpointed, plain)


def test_not_used_in_eval_no_grad_or_decoding():
    model = build(True, True, False, "layernorm", 4)
    tokens = torch.randint(2, 40, (2, 9))
    calls = []
    import mega_fairseq.modules.layer as layer_module

    original = layer_module.checkpoint
    layer_module.checkpoint = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        model.eval()
        full, _, _ = model(tokens)
        with torch.no_grad():
            model.train()
            model(tokens)
        model.eval()
        states, outs = None, []
        for i in range(tokens.size(1)):  # incremental decoding, token by token
            out, states, _ = model(tokens[:, i : i + 1], states=states, return_state=True, position=i)
            outs.append(out)
        assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
        assert not calls
        model.train()
        model(tokens)[0].sum().backward()
        assert len(calls) == 3  # one per layer
    finally:
        layer_module.checkpoint = original


@pytest.mark.parametrize(
    "model,arch,sides",
    [
        ("mega_lm", "mega_lm_tiny", ("decoder",)),
        ("mega", "mega_translation_tiny", ("encoder", "decoder")),
        ("mega_encoder", "mega_tiny", ("encoder",)),
        ("lra", "mega_lra_listop", ("encoder",)),
    ],
)
def test_flag_reaches_every_model(model, arch, sides):
    from test_options import build_as_fairseq_train

    small = ["--encoder-layers", "1", "--decoder-layers", "1"] if model == "mega" else []
    for argv, checkpoint, offload in (
        ([], False, False),
        (["--checkpoint-activations"], True, False),
        (["--offload-activations"], True, True),
    ):
        built = build_as_fairseq_train(model, arch, *small, *argv)
        for side in sides:
            layers = getattr(built, side).stack.layers
            assert all(layer.checkpoint_activations == checkpoint for layer in layers), (side, argv)
            assert all(layer.offload_activations == offload for layer in layers), (side, argv)
