"""Options declared once: size fields, per-model defaults, vocabularies from the registries, one validation whose
errors name the CLI flag, MegaDecoder built from keywords, one build_model(cls, cfg, task)."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary

import mega_fairseq.plugin  # noqa: F401  registers the models, tasks and criterions

from conftest import REPO

TASK_ARGS = {
    "mega_lm": ["--task", "language_modeling", "--tokens-per-sample", "64"],
    "mega_encoder": ["--task", "masked_lm"],
    "lra": ["--task", "lra-text"],
    "mega": ["--task", "translation", "-s", "en", "-t", "de"],
}


def dictionary():
    d = Dictionary()
    for i in range(30):
        d.add_symbol(f"w{i}")
    return d


def parse(model, arch, *argv):
    from fairseq import options

    return options.parse_args_and_arch(
        options.get_training_parser(),
        ["/tmp/no-data", *TASK_ARGS[model], "--arch", arch, "--user-dir", str(REPO / "user_dir"), *argv],
    )


def fake_task():
    d = dictionary()
    return SimpleNamespace(source_dictionary=d, target_dictionary=d, paired=False)


def build_as_fairseq_train(model, arch, *argv):
    """argparse -> hydra config -> fairseq.models.build_model, as fairseq-train does (without data)."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models import build_model

    return build_model(convert_namespace_to_omegaconf(parse(model, arch, *argv)).model, fake_task())


@pytest.mark.parametrize(
    "model,arch,argv,message",
    [
        (
            "mega_lm",
            "mega_lm_tiny",
            ["--decoder-chunk-size", "0"],
            r"^--decoder-chunk-size must be a positive number of tokens",
        ),
        (
            "mega_lm",
            "mega_lm_tiny",
            ["--decoder-z-dim", "7"],
            r"even --decoder-z-dim, got 7; use an even --decoder-z-dim or --rel-pos-bias",
        ),
        (
            "mega_lm",
            "mega_lm",
            ["--decoder-chunk-size", "100", "--max-target-positions", "64"],
            r"^--decoder-chunk-size 100 exceeds --max-target-positions 64",
        ),
        ("mega", "mega_translation_tiny", ["--encoder-z-dim", "7"], r"even --encoder-z-dim, got 7"),
        ("mega", "mega_translation_tiny", ["--decoder-chunk-size", "-3"], r"^--decoder-chunk-size must be a positive"),
        (
            "mega_encoder",
            "mega_tiny",
            ["--attention-dropout", "1.0"],
            r"^--attention-dropout must be in \[0, 1\), got 1.0",
        ),
        ("mega_encoder", "mega_tiny", ["--encoder-n-dim", "0"], r"^--encoder-n-dim must be a positive integer, got 0"),
        (
            "lra",
            "mega_lra_listop",
            ["--encoder-chunk-size", "4000"],
            r"--encoder-chunk-size 4000 exceeds --max-positions 2002.*raise --max-positions",
        ),
        (
            "lra",
            "mega_lra_listop",
            ["--truncation-length", "0"],
            r"^--truncation-length must be a positive kernel length",
        ),
    ],
)
def test_bad_value_error_names_the_flag(model, arch, argv, message):
    from mega_fairseq.modules.config import MegaConfigError

    with pytest.raises(MegaConfigError, match=message) as caught:
        build_as_fairseq_train(model, arch, *argv)
    assert isinstance(caught.value, ValueError)
    assert "_" not in str(caught.value).split(" ")[0].lstrip("-")  # a flag, not a field name


def test_layer_config_error_outside_fairseq_names_the_field():
    from mega_fairseq.modules import MegaLayerConfig
    from mega_fairseq.modules.config import MegaConfigError

    with pytest.raises(MegaConfigError) as caught:
        MegaLayerConfig(chunk_size=0)
    error = caught.value
    assert str(error).startswith("chunk_size must be") and error.fields == ("chunk_size",)
    assert str(error.renamed({"chunk_size": "chunk"})).startswith("chunk must be")


def test_every_layer_config_field_a_user_sets_has_a_flag():
    from mega_fairseq.models.options import LAYER_CONFIG_OPTIONS, MegaDecoderSizes, MegaEncoderSizes, MegaLayerOptions
    from mega_fairseq.modules import MegaLayerConfig

    layer_fields = {f.name for f in dataclasses.fields(MegaLayerConfig)}
    assert set(LAYER_CONFIG_OPTIONS) <= layer_fields
    # structural (the model decides), given by the model with its option, or not offered by the fairseq models
    assert layer_fields - set(LAYER_CONFIG_OPTIONS) == {
        "bidirectional",
        "causal",
        "cross_attention",
        "max_positions",
        "norm_eps",
        "normalize_before_ffn",
    }
    for side, sizes in (("encoder", MegaEncoderSizes), ("decoder", MegaDecoderSizes)):
        declared = {f.name for f in dataclasses.fields(MegaLayerOptions)} | {f.name for f in dataclasses.fields(sizes)}
        assert {option.format(side=side) for option, _ in LAYER_CONFIG_OPTIONS.values()} <= declared


def test_size_fields_are_declared_once_per_side():
    from mega_fairseq.models.mega_encoder import MegaEncoderConfig
    from mega_fairseq.models.mega_lm import MegaLMConfig
    from mega_fairseq.models.options import MegaDecoderSizes, MegaEncoderSizes, size_fields, size_options

    def declared(cls):
        return tuple(
            f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")
        )  # FairseqDataclass has _name

    assert declared(MegaEncoderSizes) == size_fields("encoder") and declared(MegaDecoderSizes) == size_fields("decoder")
    sizes = size_options("decoder", layers=4, embed_dim=128, hidden_dim=256, ffn_embed_dim=256, z_dim=64, n_dim=16)
    assert sizes == dict(
        decoder_layers=4,
        decoder_embed_dim=128,
        decoder_hidden_dim=256,
        decoder_ffn_embed_dim=256,
        decoder_z_dim=64,
        decoder_n_dim=16,
        decoder_chunk_size=-1,
    )
    assert MegaLMConfig(**sizes).decoder_z_dim == 64  # the keys are the model config's options
    assert set(size_options("encoder", **{k.split("_", 1)[1]: v for k, v in sizes.items()})) <= {
        f.name for f in dataclasses.fields(MegaEncoderConfig)
    }
    with pytest.raises(TypeError, match="unknown sizes \\['width'\\]"):
        size_options("encoder", width=3, layers=1, embed_dim=2, hidden_dim=2, ffn_embed_dim=2, z_dim=2, n_dim=2)
    with pytest.raises(ValueError, match="side must be"):
        size_fields("middle")


def test_model_defaults_come_from_one_table():
    from mega_fairseq.models.mega_encoder import MegaEncoderConfig
    from mega_fairseq.models.mega_lm import MegaLMConfig
    from mega_fairseq.models.mega_lra import MegaLRAConfig
    from mega_fairseq.models.mega_translation import MegaTranslationConfig
    from mega_fairseq.models.options import MODEL_DEFAULTS, MegaLayerOptions

    configs = {
        "mega_lm": MegaLMConfig,
        "mega_encoder": MegaEncoderConfig,
        "lra": MegaLRAConfig,
        "mega": MegaTranslationConfig,
    }
    assert set(configs) == set(MODEL_DEFAULTS)
    shared = {f.name: f for f in dataclasses.fields(MegaLayerOptions)}
    for name, config in configs.items():
        own = {f.name: f for f in dataclasses.fields(config)}
        for option, default in MODEL_DEFAULTS[name].items():
            assert own[option].default == default
        for option, declared in shared.items():  # same help everywhere, default from the table or the declaration
            assert own[option].metadata == declared.metadata
            if option not in MODEL_DEFAULTS[name]:
                assert own[option].default == declared.default
    assert MegaLMConfig().normalize_before is False  # fairseq: a True bool default would be a store_false flag


def test_model_config_refuses_true_bools_and_unknown_options(monkeypatch):
    from mega_fairseq.models import options

    monkeypatch.setitem(options.MODEL_DEFAULTS, "test_true", {"normalize_before": True})
    monkeypatch.setitem(options.MODEL_DEFAULTS, "test_unknown", {"no_such_option": 3})
    with pytest.raises(TypeError, match="store_false"):
        options.model_config("test_true")(type("C", (options.MegaLayerOptions,), {"__annotations__": {}}))
    with pytest.raises(TypeError, match="does not inherit"):
        options.model_config("test_unknown")(type("C", (options.MegaLayerOptions,), {"__annotations__": {}}))


def test_vocabularies_come_from_the_registries():
    from mega_fairseq.models.mega_lm import MegaLMConfig
    from mega_fairseq.models.mega_lra import CLASSIFIER_ACTIVATIONS
    from mega_fairseq.modules import activations, attention_kernel, config, norms, relative_position

    assert (
        config.ACTIVATIONS == tuple(activations.ACTIVATION_FNS) and CLASSIFIER_ACTIVATIONS is activations.ACTIVATION_FNS
    )
    assert config.NORM_TYPES == tuple(norms.NORMS)
    assert config.ATTENTION_ACTIVATIONS == ("softmax", *attention_kernel.ELEMENT_ACTIVATIONS)
    assert config.REL_POS_BIASES is relative_position.REL_POS_BIASES
    choices = {
        f.name: set(f.type.__members__) for f in dataclasses.fields(MegaLMConfig) if hasattr(f.type, "__members__")
    }
    assert choices["activation_fn"] == set(config.ACTIVATIONS) and choices["normalization_type"] == set(
        config.NORM_TYPES
    )
    for kind in norms.NORM_TYPES:
        assert isinstance(norms.build_norm(kind, 4), torch.nn.Module)


def test_builders_share_the_one_validation():
    from mega_fairseq.modules.attention_kernel import attend
    from mega_fairseq.modules.config import MegaConfigError
    from mega_fairseq.modules.norms import build_norm
    from mega_fairseq.modules.relative_position import build_relative_bias

    with pytest.raises(MegaConfigError, match="unknown normalization_type 'groupnorm'; choose one of scalenorm"):
        build_norm("groupnorm", 4)
    with pytest.raises(MegaConfigError, match="unknown rel_pos_bias 'alibi'; choose one of simple, rotary"):
        build_relative_bias("alibi", 8, 16)
    q = torch.zeros(1, 1, 2, 4)
    with pytest.raises(
        MegaConfigError, match="unknown attention_activation 'sigmoid'; choose one of softmax, laplace, relu2"
    ):
        attend(q, q, q, activation="sigmoid", rel_pos_bias=lambda *a: torch.zeros(2, 2))


def test_decoder_is_built_from_keywords_like_the_encoder():
    from mega_fairseq.models.decoder import MegaDecoder
    from mega_fairseq.models.encoder import MegaEncoder
    from mega_fairseq.models.mega_lm import MegaDecoder as ReExported
    from mega_fairseq.modules import MegaLayerConfig

    assert ReExported is MegaDecoder
    d = dictionary()
    layer = MegaLayerConfig(
        embed_dim=16, z_dim=8, hidden_dim=24, ffn_dim=20, n_dim=4, bidirectional=False, causal=True, max_positions=40
    )
    decoder = MegaDecoder(layer, 2, d, max_positions=32, share_input_output_embed=True, final_norm=True)
    assert decoder.max_target_positions == 32 and len(decoder.stack.layers) == 2
    assert decoder.output_projection.weight is decoder.stack.embed_tokens.weight
    tokens = torch.randint(d.nspecial, len(d), (2, 5))
    assert decoder(tokens)[0].shape == (2, 5, len(d))
    encoder = MegaEncoder(layer.replace(bidirectional=True, causal=False), 1, d, max_positions=32)
    assert encoder(tokens)["encoder_out"][0].shape == (5, 2, 16)


def test_translation_decoder_span_and_target_limit_without_patching():
    """The decoder's simple bias spans max(source, target) positions; its target limit is --max-target-positions."""
    model = build_as_fairseq_train(
        "mega",
        "mega_wmt_en_de",
        *"--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 "
        "--encoder-hidden-dim 16 --encoder-z-dim 8 --encoder-n-dim 2 --max-source-positions 50 "
        "--max-target-positions 30".split(),
    )
    assert model.decoder.max_target_positions == 30 and model.max_positions() == (50, 30)
    assert model.decoder.stack.cfg.max_positions == 50 and model.encoder.stack.cfg.max_positions == 50
    assert model.decoder.stack.cfg.cross_attention and model.decoder.stack.cfg.causal


@pytest.mark.parametrize(
    "model,arch",
    [
        ("mega_lm", "mega_lm_tiny"),
        ("mega", "mega_translation_tiny"),
        ("mega_encoder", "mega_tiny"),
        ("lra", "mega_lra_listop"),
    ],
)
def test_one_build_model_signature_takes_a_namespace_or_a_config(model, arch):
    """fairseq passes build_model(cfg, task) a config (hydra) or an argparse Namespace (legacy); both build the same."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models import ARCH_MODEL_REGISTRY, build_model

    cls = ARCH_MODEL_REGISTRY[arch]
    small = ["--encoder-layers", "1", "--decoder-layers", "1"] if model == "mega" else []
    torch.manual_seed(0)
    from_namespace = cls.build_model(parse(model, arch, *small), fake_task())
    torch.manual_seed(0)
    from_config = build_model(convert_namespace_to_omegaconf(parse(model, arch, *small)).model, fake_task())
    a, b = from_namespace.state_dict(), from_config.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert from_namespace.max_positions() == from_config.max_positions()
