"""mega-export-hf: fairseq mega_lm checkpoints -> transformers MegaForCausalLM, verified or refused."""

import json

import pytest
import torch

from conftest import LM_TRAIN_ARGS, REPO, fairseq_cli


class NotAllowlisted:
    """A class a weights_only load must refuse."""


HF_TRAIN_ARGS = [a for a in LM_TRAIN_ARGS if a != "mega_lm_tiny"]
HF_TRAIN_ARGS[HF_TRAIN_ARGS.index("--arch") + 1 : HF_TRAIN_ARGS.index("--arch") + 1] = ["mega_lm_hf"]


@pytest.fixture(scope="module")
def hf_lm_checkpoint(lm_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("hf_lm")
    fairseq_cli(
        "fairseq-train",
        lm_data,
        *HF_TRAIN_ARGS,
        "--decoder-layers",
        "2",
        "--decoder-embed-dim",
        "32",
        "--decoder-hidden-dim",
        "48",
        "--decoder-ffn-embed-dim",
        "48",
        "--decoder-z-dim",
        "16",
        "--max-update",
        "3",
        "--save-dir",
        save,
    )
    return lm_data, save / "checkpoint_last.pt"


def test_export_loads_in_transformers_with_the_same_logits(hf_lm_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    data, checkpoint = hf_lm_checkpoint
    diff = export(str(checkpoint), str(tmp_path), data=str(data))
    assert diff <= 1e-4
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mega"
    assert (tmp_path / "model.safetensors").exists() and "Verified" in (tmp_path / "README.md").read_text()
    hf = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    model, task = load_fairseq_model(str(checkpoint), str(data))
    tokens = torch.randint(4, len(task.target_dictionary), (3, 16))  # two chunks of 8
    with torch.no_grad():
        assert (model(tokens)[0] - hf(tokens, use_cache=False).logits).abs().max() <= 1e-5


def test_cli_exports_and_refuses_with_the_option_to_change(hf_lm_checkpoint, trained_lm, tmp_path):
    data, checkpoint = hf_lm_checkpoint
    ok = fairseq_cli("mega-export-hf", checkpoint, tmp_path / "ok", "--data", data)
    assert "verified: max |output diff|" in ok.stdout
    _, tiny_checkpoint, _ = trained_lm  # mega_lm_tiny: scaled embeddings and a final norm
    refused = fairseq_cli("mega-export-hf", tiny_checkpoint, tmp_path / "refused", "--data", data, check=False)
    assert refused.returncode == 2
    assert (
        "--no-scale-embedding" in refused.stderr
        and "--no-final-norm" in refused.stderr
        and "mega_lm_hf" in refused.stderr
    )
    assert not (tmp_path / "refused" / "model.safetensors").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = fairseq_cli("mega-export-hf", tmp_path / "nope.pt", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_export_writes_nothing_when_verification_fails(hf_lm_checkpoint, tmp_path, monkeypatch):
    from mega_fairseq.convert import hf_export

    data, checkpoint = hf_lm_checkpoint
    monkeypatch.setattr(hf_export, "TOLERANCE", -1.0)  # any difference fails
    with pytest.raises(hf_export.ConversionError, match="verification failed"):
        hf_export.export(str(checkpoint), str(tmp_path / "out"), data=str(data))
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_import_round_trip_is_exact_and_fairseq_uses_the_checkpoint(hf_lm_checkpoint, tmp_path):
    """fairseq -> HF -> fairseq -> HF: identical tensors; the imported checkpoint evaluates and resumes training."""
    from safetensors.torch import load_file

    from mega_fairseq.convert.hf_export import export, load_fairseq_model
    from mega_fairseq.convert.hf_import import import_hf

    data, checkpoint = hf_lm_checkpoint
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data))
    diff = import_hf(str(tmp_path / "hf"), str(tmp_path / "ft" / "model.pt"))
    assert diff <= 1e-4
    assert (tmp_path / "ft" / "dict.txt").read_text() == (data / "dict.txt").read_text()
    original, _ = load_fairseq_model(str(checkpoint), str(data))
    imported, _ = load_fairseq_model(str(tmp_path / "ft" / "model.pt"), str(data))
    for key, value in original.state_dict().items():
        assert torch.equal(value, imported.state_dict()[key]), key
    export(str(tmp_path / "ft" / "model.pt"), str(tmp_path / "hf2"), data=str(data))
    first, second = (
        load_file(str(tmp_path / "hf" / "model.safetensors")),
        load_file(str(tmp_path / "hf2" / "model.safetensors")),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    evaluated = fairseq_cli(
        "fairseq-eval-lm",
        data,
        "--user-dir",
        REPO / "user_dir",
        "--cpu",
        "--path",
        tmp_path / "ft" / "model.pt",
        "--tokens-per-sample",
        "16",
        "--max-tokens",
        "256",
    )
    assert "Perplexity" in evaluated.stdout + evaluated.stderr
    resumed = fairseq_cli(
        "fairseq-train",
        data,
        *HF_TRAIN_ARGS,
        "--decoder-layers",
        "2",
        "--decoder-embed-dim",
        "32",
        "--decoder-hidden-dim",
        "48",
        "--decoder-ffn-embed-dim",
        "48",
        "--decoder-z-dim",
        "16",
        "--restore-file",
        tmp_path / "ft" / "model.pt",
        "--max-update",
        "2",
        "--save-dir",
        tmp_path / "resumed",
    )
    assert (
        "Loaded checkpoint" in resumed.stdout + resumed.stderr
        and "(epoch 1 @ 0 updates)" in resumed.stdout + resumed.stderr
    )


def test_import_refuses_mismatched_or_unsafe_files(hf_lm_checkpoint, tmp_path):
    import shutil

    from mega_fairseq.convert.common import ConversionError
    from mega_fairseq.convert.hf_export import export
    from mega_fairseq.convert.hf_import import import_hf

    data, checkpoint = hf_lm_checkpoint
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data))
    # weights of another size than config.json says
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "hf", bad)
    config = json.loads((bad / "config.json").read_text())
    config["intermediate_size"] += 8
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"(?s)do not fit.*v_proj\.weight: \(48, 32\) vs expected \(56, 32\)"):
        import_hf(str(bad), str(tmp_path / "out" / "model.pt"))
    assert not (tmp_path / "out" / "model.pt").exists()
    # a corrupt safetensors file
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConversionError, match="not a readable safetensors"):
        import_hf(str(bad), str(tmp_path / "out" / "model.pt"))
    # a pickle with a global outside the allowlist is refused (weights_only=True)
    (bad / "model.safetensors").unlink()
    torch.save({"weights": torch.zeros(1), "payload": NotAllowlisted()}, bad / "pytorch_model.bin")
    with pytest.raises(ConversionError, match="weights_only=True"):
        import_hf(str(bad), str(tmp_path / "out" / "model.pt"))
    # a transformers class without a fairseq counterpart, a non-mega config
    with pytest.raises(ConversionError, match="no fairseq counterpart"):
        import_hf(str(tmp_path / "hf"), str(tmp_path / "out" / "model.pt"), head="MegaForNothing")
    config["model_type"] = "bert"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="not 'mega'"):
        import_hf(str(bad), str(tmp_path / "out" / "model.pt"))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_import_of_a_default_transformers_causal_lm_is_refused_with_the_reason(tmp_path):
    from transformers import MegaConfig, MegaForCausalLM

    from mega_fairseq.convert.common import ConversionError
    from mega_fairseq.convert.hf_import import import_hf

    MegaForCausalLM(
        MegaConfig(is_decoder=True, bidirectional=False, num_hidden_layers=1, vocab_size=40)
    ).save_pretrained(tmp_path / "hf")
    with pytest.raises(ConversionError, match="add_lm_hidden_dense_layer=True"):
        import_hf(str(tmp_path / "hf"), str(tmp_path / "out.pt"))
    MegaForCausalLM(
        MegaConfig(num_hidden_layers=1, vocab_size=40, add_token_type_embeddings=True, add_lm_hidden_dense_layer=False)
    ).save_pretrained(tmp_path / "hf")
    with pytest.raises(ConversionError, match="token-type embeddings.*is_decoder=True"):
        import_hf(str(tmp_path / "hf"), str(tmp_path / "out.pt"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"normalization_type": "rmsnorm"}, "MegaRMSNorm does not normalize"),
        ({"norm_eps": 1e-6}, "norm epsilon"),
        ({"truncation": 16}, "--truncation-length"),
    ],
)
def test_structures_transformers_cannot_compute_are_named(change, message):
    from torch import nn

    from mega_fairseq.convert.targets import stack_problems
    from mega_fairseq.modules import MegaLayerConfig, MegaStack

    cfg = MegaLayerConfig(embed_dim=16, z_dim=8, hidden_dim=32, ffn_dim=32, n_dim=2, bidirectional=False, causal=True)
    assert (
        stack_problems(MegaStack(cfg, 1, nn.Embedding(10, 16, padding_idx=1)), decoder=True, preset="mega_lm_hf") == []
    )
    stack = MegaStack(cfg.replace(**change), 1, nn.Embedding(10, 16, padding_idx=1), scale_embedding=True)
    problems = stack_problems(stack, decoder=True, preset="mega_lm_hf")
    assert len(problems) == 2 and "--no-scale-embedding" in problems[0] and message in problems[1]
