"""Our Mega stack vs transformers 4.57.6's MegaModel with identical (randomized) weights: max |diff| <= 1e-5 in fp32."""

import itertools
import warnings

import pytest
import torch
import transformers  # noqa: E402,F401  the test extra installs it: a missing package fails, never skips

from mega_fairseq.convert.hf_names import stack_state_dict_from_hf, stack_state_dict_to_hf
from mega_fairseq.modules import MegaLayerConfig
from mega_fairseq.testing import hf_twin

warnings.filterwarnings("ignore", category=FutureWarning)

TOL = 1e-5
LENGTHS = [12, 9, 5]  # right padding; with chunk 4 the last sample has a chunk of pure padding


def small_config(**overrides) -> MegaLayerConfig:
    base = dict(embed_dim=16, z_dim=8, hidden_dim=24, ffn_dim=20, n_dim=4, max_positions=16)
    base.update(overrides)
    return MegaLayerConfig(**base)


def padded_batch(lengths, vocab=50, pad=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, vocab, (len(lengths), max(lengths)), generator=gen)
    keep = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return tokens.masked_fill(~keep, pad), keep


def compare(cfg, num_layers=2, lengths=LENGTHS, train=False):
    ours, hf = hf_twin(cfg, num_layers)
    # HF decoders default to use_cache=True, which runs the EMA as a recurrence and ignores truncation;
    # use_cache=False takes its FFT path.  Exercise both where they should agree.
    hf_kwargs = {"use_cache": cfg.truncation is None} if cfg.causal else {}
    if train:
        ours.train(), hf.train()
    tokens, keep = padded_batch(lengths)
    with torch.no_grad():
        _, _, our_hiddens = ours(tokens, ~keep, return_all_hiddens=True)
        hf_out = hf(tokens, attention_mask=keep.long(), output_hidden_states=True, **hf_kwargs)
    assert len(our_hiddens) == len(hf_out.hidden_states) == num_layers + 1
    worst = max((a - b).abs()[keep].max().item() for a, b in zip(our_hiddens, hf_out.hidden_states))
    scale = hf_out.last_hidden_state[keep].abs().max().item()
    assert scale > 0.5, "outputs too small for the comparison to mean anything"
    assert worst <= TOL, f"max abs diff {worst:.3g} (output scale {scale:.3g})"


MATRIX = list(
    itertools.product(
        ["bidirectional", "causal"],
        ["softmax", "laplace", "relu2"],
        ["rotary", "simple"],
        [-1, 4],
        ["scalenorm", "layernorm", "batchnorm"],
        [True, False],
        [None, 3],
    )
)


@pytest.mark.parametrize("direction,activation,bias,chunk,norm,prenorm,truncation", MATRIX)
def test_stack_matches_hf(direction, activation, bias, chunk, norm, prenorm, truncation):
    causal = direction == "causal"
    cfg = small_config(
        bidirectional=not causal,
        causal=causal,
        attention_activation=activation,
        rel_pos_bias=bias,
        chunk_size=chunk,
        normalization_type=norm,
        normalize_before=prenorm,
        truncation=truncation,
    )
    compare(cfg)


@pytest.mark.parametrize("norm", ["scalenorm", "layernorm", "batchnorm"])
def test_training_mode_matches_hf_without_padding(norm):
    """Train mode (dropout 0): batch statistics of batchnorm agree with HF when nothing is padding."""
    compare(small_config(normalization_type=norm), lengths=[12, 12, 12], train=True)


@pytest.mark.parametrize(
    "options",
    [
        dict(use_nffn=False),
        dict(norm_affine=False),
        dict(activation="gelu"),
        dict(normalize_before=True, normalize_before_ffn=False),
    ],
)
def test_other_options_match_hf(options):
    compare(small_config(**options))


@pytest.mark.parametrize(
    "activation,bias", list(itertools.product(["softmax", "laplace", "relu2"], ["rotary", "simple"]))
)
def test_cross_attention_decoder_matches_hf(activation, bias):
    cfg = small_config(
        bidirectional=False, causal=True, cross_attention=True, attention_activation=activation, rel_pos_bias=bias
    )
    ours, hf = hf_twin(cfg, 2)
    tokens, keep = padded_batch([10, 7, 4])
    src = torch.randn(3, 6, 16)
    src_keep = torch.arange(6)[None] < torch.tensor([6, 4, 5])[:, None]
    with torch.no_grad():
        ours_out, _, _ = ours(tokens, ~keep, encoder_out=src, encoder_padding_mask=~src_keep)
        hf_out = hf(
            tokens, attention_mask=keep.long(), encoder_hidden_states=src, encoder_attention_mask=src_keep.long()
        ).last_hidden_state
    assert (ours_out - hf_out).abs()[keep].max().item() <= TOL


def test_token_type_embeddings_match_hf():
    ours, hf = hf_twin(small_config(), 2, type_vocab_size=3)
    tokens, keep = padded_batch(LENGTHS)
    types = torch.randint(0, 3, tokens.shape)
    with torch.no_grad():
        a, _, _ = ours(tokens, ~keep, token_types=types)
        b = hf(tokens, attention_mask=keep.long(), token_type_ids=types).last_hidden_state
    assert (a - b).abs()[keep].max().item() <= TOL


@pytest.mark.parametrize("bias,chunk", [("simple", -1), ("simple", 4), ("rotary", 4)])
def test_state_dict_round_trip_is_exact(bias, chunk):
    cfg = small_config(rel_pos_bias=bias, chunk_size=chunk)
    ours, _ = hf_twin(cfg, 2)
    original = ours.state_dict()
    back = stack_state_dict_from_hf(stack_state_dict_to_hf(original, cfg), cfg)
    assert back.keys() == original.keys()
    for key in original:
        assert torch.equal(back[key], original[key]), key


def test_exported_names_avoid_gamma_and_beta():
    ours, hf = hf_twin(small_config(bidirectional=False, causal=True, cross_attention=True), 1)
    names = stack_state_dict_to_hf(ours.state_dict(), ours.cfg, prefix="")
    assert not [k for k in names if "gamma" in k or "beta" in k]
    assert set(names) == set(hf.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("causal,chunk", [(False, -1), (False, 256), (True, -1), (True, 256)])
def test_long_sequences_match_hf(causal, chunk):
    """1024 positions (past where half-precision positions would break), kernel and chunking at scale."""
    cfg = small_config(
        bidirectional=not causal, causal=causal, chunk_size=chunk, max_positions=1024, rel_pos_bias="simple"
    )
    compare(cfg, lengths=[1024, 1000, 700])
