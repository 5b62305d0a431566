"""mega-import-original: checkpoints of the original facebookresearch/mega fork -> our models.

The fork (fairseq 0.9) cannot run here, so fork-format checkpoints are made from our models by an
inverse mapping written below independently of `convert.original` (ours -> the fork's names and
layouts), checked against the fork's parameter names listed per module.  Each checkpoint is imported
and must give back every tensor exactly and the source model's outputs; the EMA variants and the simple
bias are also checked against the fork's formulas computed directly from the fork-named tensors.
"""

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from mega_fairseq.convert.common import ConversionError
from mega_fairseq.convert.hf_import import fairseq_setup
from mega_fairseq.convert.original import import_original, read_original
from mega_fairseq.testing import randomize_

from conftest import REPO, fairseq_cli

# ---- the fork's parameter names, per module (facebookresearch/mega fairseq/modules/*.py)
FORK_EMA = {"delta", "alpha", "beta", "gamma", "omega"}  # MultiHeadEMA
FORK_MAGA = {
    "gamma",
    "beta",
    "v_proj.weight",
    "v_proj.bias",
    "mx_proj.weight",
    "mx_proj.bias",
    "h_proj.weight",
    "h_proj.bias",
}
FORK_CROSS = {f"{p}_proj.{w}" for p in "kvqh" for w in ("weight", "bias")}  # GatedCrossAttention
FORK_NFFN = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
FORK_BIAS = {"simple": {"rel_pos_bias"}, "rotary": {"alpha", "beta", "_float_tensor"}}
FORK_NORM = {
    "layernorm": {"weight", "bias"},
    "scalenorm": {"scalar"},
    "rmsnorm": {"weight"},
    "batchnorm": {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"},
}  # inside SequenceNorm.norm


def fork_layer_names(norm: str, bias: str, cross: bool = False, nffn: bool = True) -> set:
    """The state-dict keys of one of the fork's Mega layers (MegaDecoderLayer / MegaSentenceEncoderLayer)."""
    names = {f"mega_layer.{n}" for n in FORK_MAGA} | {f"mega_layer.move.{n}" for n in FORK_EMA}
    names |= {f"mega_layer.norm.norm.{n}" for n in FORK_NORM[norm]} | {
        f"mega_layer.rel_pos_bias.{n}" for n in FORK_BIAS[bias]
    }
    if cross:
        names |= {f"cross_attn.{n}" for n in FORK_CROSS} | {f"cross_attn.norm.norm.{n}" for n in FORK_NORM[norm]}
        names |= {f"cross_attn.rel_pos_bias.{n}" for n in FORK_BIAS[bias]}
    if nffn:
        names |= {f"nffn.{n}" for n in FORK_NFFN} | {f"nffn.norm.norm.{n}" for n in FORK_NORM[norm]}
    return names


# ---- inverse mapping: our state dict -> the fork's (names and layouts)
OUR_EMA_TO_FORK = {
    "damping_factor": "delta",
    "decay_factor": "alpha",
    "ema_expansion_matrix": "beta",
    "kernel_projection_matrix": "gamma",
    "residual_weight": "omega",
}  # v1 (p = sigmoid(delta))


def fork_layer_key(name: str, variant: str) -> str:
    block, _, rest = name.partition(".")
    if rest.startswith("norm."):
        return f"{block}.norm.norm.{rest[5:]}"
    if rest.startswith("ema."):
        fork = OUR_EMA_TO_FORK[rest[4:]]
        if variant in ("v2", "v3"):  # v2, v3: p = sigmoid(alpha)
            fork = {"delta": "alpha", "alpha": "delta"}.get(fork, fork)
        return f"{block}.move.{fork}"
    return {
        "qk_weight": f"{block}.gamma",
        "qk_bias": f"{block}.beta",
        "rel_pos_bias.b_param": f"{block}.rel_pos_bias.beta",
    }.get(rest, name)


def first_backward_tap(damping, beta, gamma):
    """Bidirectional EMA rows D..2D-1: sum_n gamma/sqrt(N) * sigmoid(damping) * beta (the backward kernel at
    offset 0)."""
    tap = (
        gamma.double() / math.sqrt(gamma.size(1)) * (torch.sigmoid(damping.double()) * beta.double()).squeeze(-1)
    ).sum(-1)
    return tap[tap.numel() // 2 :]


def to_fork(
    state, kind: str, variant: str = "v1", paired: bool = False, pixel: bool = False, decoder_self_bias: int = None
):
    """Our model's state dict -> the fork's.  kind: lm | translation | lra."""
    stacks = {
        "lm": [("decoder.stack.", "decoder.")],
        "translation": [("encoder.stack.", "encoder."), ("decoder.stack.", "decoder.")],
        "lra": [("encoder.stack.", "encoder.encoder.")],
    }[kind]
    out = {}
    for key, value in state.items():
        if key == "dictionary_digest":
            continue
        fork = None
        for ours, theirs in stacks:
            if key.startswith(ours):
                inner = key[len(ours) :]
                if inner.startswith("layers."):
                    _, index, name = inner.split(".", 2)
                    fork = f"{theirs}layers.{index}.{fork_layer_key(name, variant)}"
                    if (
                        name.startswith("mega_layer.ema.ema_expansion_matrix")
                        and variant == "v3"
                        and value.size(0) == 2 * state[key.replace("ema_expansion_matrix", "residual_weight")].numel()
                    ):  # v3: the fork's backward rows' beta = ours * q
                        p = torch.sigmoid(state[key.replace("ema_expansion_matrix", "damping_factor")].double())
                        q = 1.0 - p * torch.sigmoid(state[key.replace("ema_expansion_matrix", "decay_factor")].double())
                        rows = value.size(0) // 2
                        value = torch.cat([value[:rows].double(), value[rows:].double() * q[rows:]]).float()
                    if (
                        name.startswith("mega_layer.ema.residual_weight")
                        and variant in ("v2", "v3")
                        and state[key.replace("residual_weight", "damping_factor")].size(0) == 2 * value.numel()
                    ):
                        prefix = key[: -len("residual_weight")]
                        value = (
                            value.double()
                            + first_backward_tap(
                                state[prefix + "damping_factor"],
                                state[prefix + "ema_expansion_matrix"],
                                state[prefix + "kernel_projection_matrix"],
                            )
                        ).float()
                    if name == "mega_layer.rel_pos_bias.rel_pos_bias" and theirs == "decoder." and decoder_self_bias:
                        center = (
                            value.numel() - 1
                        ) // 2  # the fork sizes the decoder's self-attention bias by the target length only
                        value = value[center - decoder_self_bias + 1 : center + decoder_self_bias]
                    if name.endswith("rel_pos_bias.b_param"):
                        out[fork.replace(".beta", "._float_tensor")] = torch.zeros(1)
                elif inner.startswith(("embed_norm.", "final_norm.")):
                    part, rest = inner.split(".", 1)
                    fork = f"{theirs}{part}.norm.{rest}"
                elif inner == "embed_tokens.weight" and kind == "lra" and not pixel:
                    fork = f"{theirs}embed_tokens.embed.weight"
                else:
                    fork = theirs + inner
                break
        if fork is None:
            if kind == "lra" and key.startswith("classifier."):
                _, index, param = key.split(".")
                fork = f"classifier.{index}.0.{param}"
                if index == "0" and param == "weight" and paired:
                    half = value.size(1) // 2
                    value = torch.cat([value[:, half:], value[:, :half]], dim=1)  # the fork's pair features are [v, u]
            else:
                fork = (
                    {"output_projection.weight": "sentence_projection_layer.weight"}.get(key, key)
                    if kind == "lra"
                    else key
                )
        out[fork] = value.clone()
    if kind != "lra":
        for _, theirs in stacks:
            out[theirs + "version"] = torch.tensor([3.0])
    return out


def save_fork(path, args: dict, state):
    torch.save({"args": argparse.Namespace(**args), "model": state, "optimizer_history": [], "extra_state": {}}, path)


def build_source(arch, options, task, data, task_options=None, seed=0):
    _, task_obj, model = fairseq_setup(arch, options, task, str(data), task_options)
    randomize_(model, seed=seed)
    return task_obj, model.eval()


def load_imported(path, data):
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides={"data": str(data)})
    return models[0].eval(), task


def assert_same_tensors(fork_state, imported_state, kind, **layout):
    back = to_fork(imported_state, kind, **layout)
    assert set(back) == set(fork_state)
    for key, value in fork_state.items():
        if key.endswith(("_float_tensor", "version")):  # carry no trained value
            continue
        if key.endswith(("move.omega", "move.beta")) and layout.get("variant") in ("v2", "v3"):
            assert torch.allclose(back[key], value, atol=1e-6, rtol=0), key
        else:
            assert torch.equal(back[key], value), key


# ---- the fork's formulas, computed directly from fork-named tensors
def fork_ema(x, move, variant, bidirectional):
    """The fork's MultiHeadEMA on x (L, D), no truncation: direct sums, no FFT, in float64."""
    p_name, d_name = ("delta", "alpha") if variant == "v1" else ("alpha", "delta")
    p = torch.sigmoid(move[p_name].double())
    q = 1.0 - p * torch.sigmoid(move[d_name].double())
    length, dim = x.shape
    powers = q ** torch.arange(length, dtype=torch.float64)  # (rows, N, L)
    kernel = ((move["gamma"].double() / math.sqrt(q.size(1))).unsqueeze(-1) * p * move["beta"].double() * powers).sum(
        1
    )  # (rows, L)
    xd = x.double()
    y = torch.zeros_like(xd)
    for t in range(length):
        for s in range(t + 1):
            y[t] += kernel[:dim, s] * xd[t - s]
        if bidirectional and variant == "v3":  # 7d00ee4: the backward kernel applied to x[t + l + 1]
            for s in range(length - t - 1):
                y[t] += kernel[dim:, s] * xd[t + s + 1]
        elif bidirectional:
            for s in range(
                1 if variant == "v2" else 0, length - t
            ):  # v2 (shift=True): the backward sum starts at the next token
                y[t] += kernel[dim:, s] * xd[t + s]
    return F.silu(y + move["omega"].double() * xd)


def check_against_fork_formulas(model_stack, fork_state, fork_layer_prefix, variant, bidirectional, length=9):
    layer = model_stack.layers[0].mega_layer
    move = {n: fork_state[f"{fork_layer_prefix}mega_layer.move.{n}"] for n in FORK_EMA}
    x = torch.randn(length, layer.cfg.embed_dim)
    with torch.no_grad():
        ours, _ = layer.ema(x.unsqueeze(0))
    assert (ours[0].double() - fork_ema(x, move, variant, bidirectional)).abs().max() <= 1e-5
    key = f"{fork_layer_prefix}mega_layer.rel_pos_bias.rel_pos_bias"
    if key in fork_state:  # simple bias: bias[i, j] = param[P - 1 + j - i]
        param, span = fork_state[key], (fork_state[key].numel() + 1) // 2
        length = min(length, span)
        expected = torch.stack([torch.stack([param[span - 1 + j - i] for j in range(length)]) for i in range(length)])
        assert torch.equal(layer.rel_pos_bias(length), expected)


# ---- tests
LM_OURS = dict(
    decoder_layers=2,
    decoder_embed_dim=32,
    decoder_hidden_dim=48,
    decoder_ffn_embed_dim=40,
    decoder_z_dim=16,
    decoder_n_dim=4,
    decoder_chunk_size=8,
    rel_pos_bias="simple",
    normalization_type="layernorm",
    normalize_before=True,
    truncation_length=12,
    attention_activation_fn="softmax",
    tokens_per_sample=32,
    max_target_positions=32,
)
LM_FORK = dict(
    arch="mega_lm",
    task="language_modeling",
    decoder_layers=2,
    decoder_embed_dim=32,
    decoder_input_dim=32,
    decoder_hidden_dim=48,
    decoder_ffn_embed_dim=40,
    decoder_z_dim=16,
    decoder_n_dim=4,
    decoder_chunk_size=8,
    rel_pos_bias="simple",
    normalization_type="layernorm",
    normalize_before=True,
    normalize_embedding=False,
    no_scale_embedding=False,
    no_affine_final_norm=False,
    truncation_length=12,
    attention_activation_fn="softmax",
    activation_fn="silu",
    dropout=0.1,
    attention_dropout=0.0,
    hidden_dropout=0.0,
    activation_dropout=0.0,
    feature_dropout=False,
    share_decoder_input_output_embed=False,
    adaptive_input=False,
    adaptive_softmax_cutoff=None,
    tokens_per_sample=32,
    max_target_positions=32,
)


def test_lm_imports_exactly_and_fairseq_eval_lm_reads_it(lm_data, tmp_path):
    task, source = build_source("mega_lm", LM_OURS, "language_modeling", lm_data)
    fork_state = to_fork(source.state_dict(), "lm")
    assert {k[len("decoder.layers.0.") :] for k in fork_state if k.startswith("decoder.layers.0.")} == fork_layer_names(
        "layernorm", "simple"
    )
    assert {k for k in fork_state if not k.startswith("decoder.layers.")} == {
        "decoder.embed_tokens.weight",
        "decoder.final_norm.norm.weight",
        "decoder.final_norm.norm.bias",
        "decoder.output_projection.weight",
        "decoder.version",
    }
    save_fork(tmp_path / "fork.pt", LM_FORK, fork_state)
    assert (
        import_original(str(tmp_path / "fork.pt"), str(tmp_path / "out" / "model.pt"), data=str(lm_data)) == "mega_lm"
    )
    imported, _ = load_imported(tmp_path / "out" / "model.pt", lm_data)
    assert_same_tensors(fork_state, imported.state_dict(), "lm")
    tokens = torch.randint(4, len(task.target_dictionary), (3, 20))  # 2.5 chunks of 8
    tokens[1, 15:] = task.target_dictionary.pad()
    with torch.no_grad():
        assert (imported(tokens)[0] - source(tokens)[0])[tokens.ne(1)].abs().max() <= 1e-6
    check_against_fork_formulas(imported.decoder.stack, fork_state, "decoder.layers.0.", "v1", bidirectional=False)
    evaluated = fairseq_cli(
        "fairseq-eval-lm",
        lm_data,
        "--user-dir",
        REPO / "user_dir",
        "--cpu",
        "--path",
        tmp_path / "out" / "model.pt",
        "--tokens-per-sample",
        "32",
        "--max-tokens",
        "512",
    )
    assert "Perplexity" in evaluated.stdout + evaluated.stderr


def test_adaptive_lm_with_placeholder_dictionary(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dict.txt").write_text("".join(f"w{i} 1\n" for i in range(60)))  # 64 entries with the specials
    ours = dict(
        LM_OURS,
        decoder_chunk_size=-1,
        rel_pos_bias="rotary",
        normalization_type="scalenorm",
        normalize_before=False,
        attention_activation_fn="laplace",
        adaptive_input=True,
        adaptive_input_cutoff="20,40",
        adaptive_softmax_cutoff="20,40",
        tie_adaptive_weights=True,
        tie_adaptive_proj=True,
        truncation_length=None,
    )
    task, source = build_source("mega_lm", ours, "language_modeling", data)
    fork_state = to_fork(source.state_dict(), "lm")
    assert {k[len("decoder.layers.1.") :] for k in fork_state if k.startswith("decoder.layers.1.")} == fork_layer_names(
        "scalenorm", "rotary"
    )
    fork_args = dict(
        LM_FORK,
        arch="mega_lm_adaptive_big",
        decoder_chunk_size=-1,
        rel_pos_bias="rotary",
        normalization_type="scalenorm",
        normalize_before=False,
        attention_activation_fn="laplace",
        adaptive_input=True,
        adaptive_input_cutoff="20,40",
        adaptive_softmax_cutoff="20,40",
        tie_adaptive_weights=True,
        tie_adaptive_proj=True,
        adaptive_input_factor=4,
        adaptive_softmax_factor=4,
        truncation_length=None,
    )
    save_fork(tmp_path / "fork.pt", fork_args, fork_state)
    assert import_original(str(tmp_path / "fork.pt"), str(tmp_path / "out" / "model.pt")) == "mega_lm_adaptive_big"
    assert (
        len((tmp_path / "out" / "dict.txt").read_text().splitlines()) == 60
    )  # placeholder of the embedding's size (+ 4 specials)
    imported, _ = load_imported(tmp_path / "out" / "model.pt", tmp_path / "out")
    assert_same_tensors(fork_state, imported.state_dict(), "lm")
    tokens = torch.randint(4, 64, (2, 13))
    with torch.no_grad():
        a, b = imported(tokens), source(tokens)
        assert (a[0] - b[0]).abs().max() <= 1e-6
        assert (
            imported.get_normalized_probs(a, log_probs=True) - source.get_normalized_probs(b, log_probs=True)
        ).abs().max() <= 1e-5


def lra_data(root, paired: bool):
    for folder in ["src-bin", "label-bin"] + (["src1-bin"] if paired else []):
        (root / folder).mkdir(parents=True)
    (root / "src-bin" / "dict.txt").write_text("".join(f"t{i} 1\n" for i in range(20)))
    (root / "label-bin" / "dict.txt").write_text("".join(f"{i} 1\n" for i in range(3)))
    return root


@pytest.mark.parametrize("variant,paired,truncation", [("v1", False, 10), ("v2", True, 10), ("v3", False, None)])
def test_lra_imports_exactly_for_every_ema_variant(tmp_path, variant, paired, truncation):
    data = lra_data(tmp_path / "data", paired)
    ours = dict(
        encoder_layers=2,
        encoder_embed_dim=16,
        encoder_hidden_dim=24,
        encoder_ffn_embed_dim=20,
        encoder_z_dim=8,
        encoder_n_dim=3,
        encoder_chunk_size=8,
        rel_pos_bias="simple",
        normalization_type="batchnorm" if not paired else "scalenorm",
        normalize_before=not paired,
        attention_activation_fn="laplace" if not paired else "softmax",
        truncation_length=truncation,
        max_positions=40,
        sentence_class_num=3,
        sen_rep_type="mp" if paired else "cls",
        classifier_layers=1,
        classifier_out_dim=12,
        retrieval_interaction="concat",
    )
    task, source = build_source("lra", ours, "lra-text", data)
    fork_state = to_fork(source.state_dict(), "lra", variant=variant, paired=paired)
    norm = "scalenorm" if paired else "batchnorm"
    assert {
        k[len("encoder.encoder.layers.0.") :] for k in fork_state if k.startswith("encoder.encoder.layers.0.")
    } == fork_layer_names(norm, "simple")
    assert {k for k in fork_state if "layers." not in k} == {
        "encoder.encoder.embed_tokens.embed.weight",
        "classifier.0.0.weight",
        "classifier.0.0.bias",
        "sentence_projection_layer.weight",
    } | ({"encoder.encoder.final_norm.norm." + n for n in FORK_NORM[norm]} if not paired else set())
    fork_args = dict(
        arch="mega_lra_aan" if paired else "mega_lra_listop",
        task="lra-text",
        layer_type="mega",
        encoder_layers=2,
        encoder_embed_dim=16,
        encoder_hidden_dim=24,
        encoder_ffn_embed_dim=20,
        z_dim=8,
        n_dim=3,
        chunk_size=8,
        rel_pos_bias="simple",
        norm_type=norm,
        encoder_normalize_before=not paired,
        attention_activation_fn=ours["attention_activation_fn"],
        activation_fn="silu",
        truncation_length=truncation,
        max_positions=40,
        sentence_class_num=3,
        sen_rep_type=ours["sen_rep_type"],
        classifier_layers=1,
        classifier_out_dim=12,
        classifier_activation_fn="gelu",
        classifier_in_dim=32 if paired else 16,
        dropout=0.1,
        attention_dropout=0.0,
        act_dropout=0.0,
        feature_dropout=False,
        normalize_embedding=False,
        use_p=False,
        input_type="text",
    )
    save_fork(tmp_path / "fork.pt", fork_args, fork_state)
    import_original(str(tmp_path / "fork.pt"), str(tmp_path / "out.pt"), data=str(data), ema_variant=variant)
    imported, _ = load_imported(tmp_path / "out.pt", data)
    assert_same_tensors(fork_state, imported.state_dict(), "lra", variant=variant, paired=paired)
    tokens = torch.randint(4, 24, (3, 19))
    tokens[2, 11:] = 1
    other = torch.randint(4, 24, (3, 12))
    inputs = dict(
        src_tokens=tokens,
        src_lengths=tokens.ne(1).sum(1),
        **(dict(src1_tokens=other, src1_lengths=other.ne(1).sum(1)) if paired else {}),
    )
    with torch.no_grad():
        assert (imported(**inputs) - source(**inputs)).abs().max() <= 1e-5
    check_against_fork_formulas(
        imported.encoder.stack, fork_state, "encoder.encoder.layers.0.", variant, bidirectional=True
    )


def small_lra(root, variant, truncation):
    """(data dir, our source model, its fork-format state for `variant`, the fork's args): a 2-layer LRA model."""
    data = lra_data(root / "data", paired=False)
    sizes = dict(encoder_layers=2, encoder_embed_dim=16, encoder_hidden_dim=24, encoder_ffn_embed_dim=20)
    common = dict(rel_pos_bias="simple", attention_activation_fn="softmax", truncation_length=truncation)
    common.update(max_positions=48, sentence_class_num=3, sen_rep_type="mp", classifier_layers=1)
    ours = dict(sizes, encoder_z_dim=8, encoder_n_dim=3, encoder_chunk_size=-1, normalization_type="layernorm")
    _, source = build_source("lra", dict(ours, **common, classifier_out_dim=12), "lra-text", data, seed=5)
    fork_args = dict(sizes, z_dim=8, n_dim=3, chunk_size=-1, norm_type="layernorm", encoder_normalize_before=False)
    fork_args.update(common, arch="mega_lra_listop", task="lra-text", layer_type="mega", activation_fn="silu")
    fork_args.update(classifier_out_dim=12, classifier_activation_fn="gelu", classifier_in_dim=16, input_type="text")
    return data, source, to_fork(source.state_dict(), "lra", variant=variant), fork_args


@pytest.mark.parametrize("variant", ["v2", "v3"])
def test_shifted_backward_ema_is_exact_in_float64(tmp_path, variant):
    """The v2 fold (omega) and the v3 reparameterisation (backward beta / q, then omega), applied to a float64 model,
    give the fork's formula (a literal O(L^2) sum over positions in float64) to 1e-10 at a length of 40."""
    from mega_fairseq.convert.original import convert_state

    _, source, fork_state, _ = small_lra(tmp_path, variant, truncation=None)
    fork_state = {k: v.double() if v.is_floating_point() else v for k, v in fork_state.items()}
    model = source.double()
    x = torch.randn(40, 16, dtype=torch.float64)
    diffs = {}
    for imported_as in ("v2", "v3"):
        model.load_state_dict(convert_state(fork_state, "lra", model, imported_as, False, "fork.pt"))
        for i, layer in enumerate(model.encoder.stack.layers):
            move = {n: fork_state[f"encoder.encoder.layers.{i}.mega_layer.move.{n}"] for n in FORK_EMA}
            with torch.no_grad():
                ours, _ = layer.mega_layer.ema(x.unsqueeze(0))
            assert ours.dtype == torch.float64
            diff = (ours[0] - fork_ema(x, move, variant, bidirectional=True)).abs().max().item()
            diffs[imported_as] = max(diffs.get(imported_as, 0.0), diff)
    assert diffs[variant] <= 1e-10
    assert diffs["v3" if variant == "v2" else "v2"] > 1e-3  # the two revisions are told apart


def test_v3_with_truncation_is_refused_and_a_causal_v3_model_imports(lm_data, tmp_path):
    data, _, fork_state, fork_args = small_lra(tmp_path, "v3", truncation=10)
    save_fork(tmp_path / "fork.pt", fork_args, fork_state)
    out = tmp_path / "out" / "model.pt"
    with pytest.raises(
        ConversionError, match=r"--ema-variant v3: .*truncated to 10 positions.*truncation_length to None"
    ):
        import_original(str(tmp_path / "fork.pt"), str(out), data=str(data), ema_variant="v3")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    # a causal EMA has no backward rows: v3 is v2 there, truncation or not
    task, source = build_source("mega_lm", LM_OURS, "language_modeling", lm_data)
    save_fork(tmp_path / "lm.pt", LM_FORK, to_fork(source.state_dict(), "lm", variant="v3"))
    import_original(str(tmp_path / "lm.pt"), str(out), data=str(lm_data), ema_variant="v3")
    imported, _ = load_imported(out, lm_data)
    tokens = torch.randint(4, len(task.target_dictionary), (2, 20))
    with torch.no_grad():
        assert (imported(tokens)[0] - source(tokens)[0]).abs().max() <= 1e-6


def test_no_truncation_survives_a_preset_that_sets_one(tmp_path):
    """A fork LRA model without truncation: our mega_lra_listop preset would re-impose 1024 (presets fill unset
    options, and fairseq reads None as unset), so the import registers it under the base `lra` arch."""
    from mega_fairseq.modules.ema import MultiHeadDampedEMA

    data, _, fork_state, fork_args = small_lra(tmp_path, "v1", truncation=None)
    save_fork(tmp_path / "fork.pt", fork_args, fork_state)
    assert import_original(str(tmp_path / "fork.pt"), str(tmp_path / "a.pt"), data=str(data)) == "lra"
    imported, _ = load_imported(tmp_path / "a.pt", data)
    assert {m.truncation for m in imported.modules() if isinstance(m, MultiHeadDampedEMA)} == {None}
    with pytest.raises(ConversionError, match=r"--arch mega_lra_listop truncates the EMA to \[1024\].*--arch lra"):
        import_original(str(tmp_path / "fork.pt"), str(tmp_path / "b.pt"), data=str(data), arch="mega_lra_listop")
    assert not (tmp_path / "b.pt").exists()


def test_translation_imports_exactly(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for lang in ("de", "en"):
        (data / f"dict.{lang}.txt").write_text("".join(f"x{i} 1\n" for i in range(28)))
    ours = dict(
        encoder_layers=2,
        encoder_embed_dim=16,
        encoder_hidden_dim=24,
        encoder_ffn_embed_dim=20,
        encoder_z_dim=8,
        encoder_n_dim=3,
        encoder_chunk_size=-1,
        decoder_layers=1,
        decoder_embed_dim=16,
        decoder_hidden_dim=24,
        decoder_ffn_embed_dim=20,
        decoder_z_dim=8,
        decoder_n_dim=3,
        decoder_chunk_size=-1,
        rel_pos_bias="simple",
        normalization_type="layernorm",
        normalize_before=False,
        truncation_length=16,
        max_source_positions=40,
        max_target_positions=32,
        share_all_embeddings=True,
    )
    langs = {"source_lang": "de", "target_lang": "en"}
    task, source = build_source("mega", ours, "translation", data, langs)
    fork_state = to_fork(source.state_dict(), "translation", decoder_self_bias=32)
    assert {k[len("decoder.layers.0.") :] for k in fork_state if k.startswith("decoder.layers.0.")} == fork_layer_names(
        "layernorm", "simple", cross=True
    )
    assert (
        fork_state["decoder.layers.0.mega_layer.rel_pos_bias.rel_pos_bias"].numel() == 63
    )  # 2 * max target positions - 1
    fork_args = dict(
        arch="mega_wmt_en_de",
        task="translation",
        encoder_layers=2,
        encoder_embed_dim=16,
        encoder_hidden_dim=24,
        encoder_ffn_embed_dim=20,
        encoder_z_dim=8,
        encoder_n_dim=3,
        encoder_chunk_size=-1,
        decoder_layers=1,
        decoder_input_dim=16,
        rel_pos_bias="simple",
        normalization_type="layernorm",
        normalize_before=False,
        truncation_length=16,
        max_source_positions=40,
        max_target_positions=32,
        share_all_embeddings=True,
        share_decoder_input_output_embed=True,
        source_lang="de",
        target_lang="en",
        activation_fn="silu",
        attention_activation_fn="softmax",
    )
    save_fork(tmp_path / "fork.pt", fork_args, fork_state)
    import_original(str(tmp_path / "fork.pt"), str(tmp_path / "out.pt"), data=str(data))
    imported, _ = load_imported(tmp_path / "out.pt", data)
    assert_same_tensors(fork_state, imported.state_dict(), "translation", decoder_self_bias=32)
    src = torch.randint(4, 32, (2, 11))
    prev = torch.randint(4, 32, (2, 9))
    with torch.no_grad():
        assert (imported(src, src.ne(1).sum(1), prev)[0] - source(src, src.ne(1).sum(1), prev)[0]).abs().max() <= 1e-6


def test_bad_checkpoints_are_refused_by_original_name_and_nothing_is_written(lm_data, tmp_path):
    _, source = build_source("mega_lm", LM_OURS, "language_modeling", lm_data)
    good = to_fork(source.state_dict(), "lm")
    out = tmp_path / "out" / "model.pt"

    def refused(state, args=LM_FORK, match=None, **kwargs):
        save_fork(tmp_path / "bad.pt", args, state)
        with pytest.raises(ConversionError, match=match):
            import_original(str(tmp_path / "bad.pt"), str(out), data=str(lm_data), **kwargs)
        assert not out.parent.exists() or list(out.parent.iterdir()) == []

    missing = dict(good)
    del missing["decoder.layers.1.mega_layer.move.delta"]
    refused(missing, match=r"missing \['decoder\.layers\.1\.mega_layer\.move\.delta'\]")
    refused(
        dict(good, **{"decoder.layers.0.mega_layer.extra": torch.zeros(2)}),
        match=r"unexpected \['decoder\.layers\.0\.mega_layer\.extra'\]",
    )
    refused(
        dict(good, **{"decoder.layers.0.mega_layer.gamma": torch.zeros(2, 9)}),
        match=r"decoder\.layers\.0\.mega_layer\.gamma: \(2, 9\)",
    )
    refused(good, args=dict(LM_FORK, arch="luna_lm"), match="unknown original architecture 'luna_lm'")
    refused(good, args=dict(LM_FORK, decoder_input_dim=16), match="project_in_dim")
    refused(good, args=dict(LM_FORK, activation_fn="gelu_fast"), match="--activation-fn gelu_fast")
    refused(good, match="--arch mega_tiny", arch="mega_tiny")
    torch.save({"args": None, "model": good}, tmp_path / "noargs.pt")
    with pytest.raises(ConversionError, match="no argparse args"):
        read_original(str(tmp_path / "noargs.pt"))


def test_cli(lm_data, tmp_path):
    from mega_fairseq.convert.original import main

    _, source = build_source("mega_lm", LM_OURS, "language_modeling", lm_data)
    state = to_fork(source.state_dict(), "lm")
    save_fork(tmp_path / "custom.pt", dict(LM_FORK, arch="mega_lm_custom"), state)  # a variant name: our mega_lm model
    assert main([str(tmp_path / "custom.pt"), str(tmp_path / "a.pt"), "--data", str(lm_data)]) == 0
    assert torch.load(tmp_path / "a.pt", weights_only=False)["cfg"]["model"]["_name"] == "mega_lm"
    save_fork(
        tmp_path / "other.pt", dict(LM_FORK, arch="my_lm"), state
    )  # an unknown name: refused unless --arch says which model
    assert (
        main([str(tmp_path / "other.pt"), str(tmp_path / "b.pt"), "--data", str(lm_data)]) == 2
        and not (tmp_path / "b.pt").exists()
    )
    assert (
        main([str(tmp_path / "other.pt"), str(tmp_path / "b.pt"), "--data", str(lm_data), "--arch", "mega_lm_big"]) == 0
    )
    assert (
        torch.load(tmp_path / "b.pt", weights_only=False)["cfg"]["model"]["decoder_layers"] == 2
    )  # the checkpoint's options win over the preset
