"""What a fairseq user reaches for first: RoBERTa's hub interface on a Mega encoder (and the LM and
translation hub interfaces), fine-tuning with token types from a checkpoint without them, and a clear
error for an --arch that does not fit the --task."""

import logging
from argparse import Namespace
from types import SimpleNamespace

import pytest
import torch
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_CONFIG_REGISTRY, build_model

import mega_fairseq.plugin  # noqa: F401  registers the plugin
from mega_fairseq.models.mega_encoder import MegaEncoderConfig, MegaEncoderModel
from mega_fairseq.models.pairing import TaskPairingError

from conftest import REPO


def encoder(**overrides):
    d = Dictionary()
    for i in range(20):
        d.add_symbol(f"w{i}")
    args = Namespace(**overrides)
    ARCH_CONFIG_REGISTRY["mega_tiny"](args)
    return MegaEncoderModel.build_model(MegaEncoderConfig(**vars(args)), SimpleNamespace(source_dictionary=d))


# ------------------------------------------------------------------------------ token types on fine-tuning
def test_token_types_start_fresh_from_a_checkpoint_without_them(caplog):
    pretrained = encoder().state_dict()
    model = encoder(add_token_type_embeddings=True)
    fresh = model.encoder.stack.embed_token_types.weight.detach().clone()
    state = dict(pretrained)
    with caplog.at_level(logging.INFO, logger="mega_fairseq.models.mega_encoder"):
        model.upgrade_state_dict_named(state, "")
    model.load_state_dict(state, strict=True)  # before the fix: Missing key(s) encoder.stack.embed_token_types
    assert "no token-type embeddings" in caplog.text and "--add-token-type-embeddings" in caplog.text
    assert torch.equal(model.encoder.stack.embed_token_types.weight, fresh)
    assert torch.equal(model.encoder.stack.embed_tokens.weight, pretrained["encoder.stack.embed_tokens.weight"])


# ------------------------------------------------------------------------------ --arch / --task pairing
@pytest.mark.parametrize(
    "arch, task, names",
    [
        ("mega_base", "language_modeling", ["--arch mega_base", "--task language_modeling", "mega_lm_tiny"]),
        ("mega_lm_tiny", "masked_lm", ["--arch mega_lm_tiny", "--task masked_lm", "mega_base", "language_modeling"]),
        ("mega_translation_tiny", "masked_lm", ["--task masked_lm", "mega_tiny", "--task translation"]),
        ("mega_lra_listop", "sentence_prediction", ["--task sentence_prediction", "mega_base", "lra-text"]),
    ],
)
def test_wrong_arch_for_task_names_the_right_pair(lm_data, arch, task, names):
    argv = [str(lm_data), "--task", task, "--arch", arch, "--user-dir", str(REPO / "user_dir"), "--cpu"]
    if task == "sentence_prediction":
        argv += ["--criterion", "sentence_prediction", "--num-classes", "2"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)  # mega_lm_tiny + masked_lm used to fail here (interpolation)
    if task == "sentence_prediction":  # needs input0/ and label/: an (unset) task object of that class
        from fairseq.tasks.sentence_prediction import SentencePredictionTask

        task_obj = SentencePredictionTask.__new__(SentencePredictionTask)
    else:
        task_obj = tasks.setup_task(cfg.task)
    with pytest.raises(TaskPairingError) as error:
        build_model(cfg.model, task_obj)
    for name in names:
        assert name in str(error.value), str(error.value)


def test_a_users_own_task_is_not_refused():
    from mega_fairseq.models.pairing import check_task

    check_task(Namespace(arch="mega_base"), SimpleNamespace(), "mega_encoder")  # not a task we know: no error


# ------------------------------------------------------------------------------ hub interfaces
def test_roberta_hub_interface_on_a_mega_encoder(mlm_checkpoint):
    from fairseq.models.roberta.hub_interface import RobertaHubInterface

    checkpoint, dict_txt = mlm_checkpoint
    hub = MegaEncoderModel.from_pretrained(
        str(checkpoint.parent), checkpoint.name, data_name_or_path=str(dict_txt.parent)
    ).eval()
    assert isinstance(hub, RobertaHubInterface) and isinstance(hub.model, MegaEncoderModel)
    tokens = hub.encode("w1 w2 w3", "a4 a5")
    d = hub.task.source_dictionary
    assert tokens.tolist()[:1] == [d.bos()] and tokens.tolist().count(d.eos()) == 3
    assert hub.decode(tokens) == ["w1 w2 w3", "a4 a5"]
    features = hub.extract_features(tokens)
    assert features.shape == (1, len(tokens), hub.model.embed_dim)
    assert len(hub.extract_features(tokens, return_all_hiddens=True)) == len(hub.model.encoder.stack.layers) + 1
    filled = hub.fill_mask("w1 w2 <mask> w4", topk=3)  # (text, probability, predicted symbol); special symbols left out
    assert 1 <= len(filled) <= 3 and all(d.index(symbol) != d.unk() and symbol in text for text, _, symbol in filled)
    hub.register_classification_head("topic", num_classes=3)
    log_probs = hub.predict("topic", tokens)
    assert log_probs.shape == (1, 3) and torch.allclose(log_probs.exp().sum(), torch.tensor(1.0))


def test_lm_hub_interface_generates(trained_lm):
    from fairseq.hub_utils import GeneratorHubInterface

    from mega_fairseq.models.mega_lm import MegaLanguageModel

    data, checkpoint, _ = trained_lm
    hub = MegaLanguageModel.from_pretrained(str(checkpoint.parent), checkpoint.name, data_name_or_path=str(data))
    assert isinstance(hub, GeneratorHubInterface)
    out = hub.sample("w1 w2", beam=1, max_len_b=5)
    assert out.startswith("w1 w2") and len(out.split()) > 2


@pytest.mark.slow
def test_translation_hub_interface_translates(tmp_path):
    from fairseq.hub_utils import GeneratorHubInterface
    from test_translation import TRAIN_ARGS, preprocess, write_toy_parallel

    from mega_fairseq.models.mega_translation import MegaTranslationModel

    from conftest import fairseq_cli

    write_toy_parallel(tmp_path / "text", counts={"train": 40, "valid": 8, "test": 4})
    data = preprocess(tmp_path / "text", tmp_path / "bin")
    fairseq_cli("fairseq-train", data, *TRAIN_ARGS, "--max-update", "2", "--save-dir", tmp_path / "ckpt")
    hub = MegaTranslationModel.from_pretrained(
        str(tmp_path / "ckpt"), "checkpoint_last.pt", data_name_or_path=str(data), source_lang="en", target_lang="de"
    )
    assert isinstance(hub, GeneratorHubInterface)
    source = (tmp_path / "text" / "test.en").read_text().splitlines()[0]
    assert isinstance(hub.translate(source, beam=2, max_len_b=10), str)


def test_checkpoints_with_numpy_meters_load_weights_only(tmp_path):
    """--eval-bleu keeps numpy n-gram counts in extra_state (the WMT'16 recipe): fairseq-generate must load them."""
    import numpy as np

    path = tmp_path / "checkpoint.pt"
    torch.save({"args": Namespace(arch="mega"), "extra_state": {"counts": np.array([8, 0, 0, 0])}}, path)
    state = torch.load(path, weights_only=True)
    assert state["extra_state"]["counts"].tolist() == [8, 0, 0, 0]
