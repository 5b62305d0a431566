"""mega-export-hf: fairseq mega_lm checkpoints -> transformers MegaForCausalLM, verified or refused."""
import json

import pytest
import torch

from conftest import LM_TRAIN_ARGS, fairseq_cli

HF_TRAIN_ARGS = [a for a in LM_TRAIN_ARGS if a != "mega_lm_tiny"]
HF_TRAIN_ARGS[HF_TRAIN_ARGS.index("--arch") + 1 : HF_TRAIN_ARGS.index("--arch") + 1] = ["mega_lm_hf"]


@pytest.fixture(scope="module")
def hf_lm_checkpoint(lm_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("hf_lm")
    fairseq_cli("fairseq-train", lm_data, *HF_TRAIN_ARGS, "--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-hidden-dim", "48",
                "--decoder-ffn-embed-dim", "48", "--decoder-z-dim", "16", "--max-update", "3", "--save-dir", save)
    return lm_data, save / "checkpoint_last.pt"


def test_export_loads_in_transformers_with_the_same_logits(hf_lm_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    from mega_fairseq.hf_export import export, load_fairseq_lm

    data, checkpoint = hf_lm_checkpoint
    diff = export(str(checkpoint), str(tmp_path), data=str(data))
    assert diff <= 1e-4
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mega"
    assert (tmp_path / "model.safetensors").exists() and "Verified" in (tmp_path / "README.md").read_text()
    hf = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    model, task = load_fairseq_lm(str(checkpoint), str(data))
    tokens = torch.randint(4, len(task.target_dictionary), (3, 16))  # two chunks of 8
    with torch.no_grad():
        assert (model(tokens)[0] - hf(tokens, use_cache=False).logits).abs().max() <= 1e-5


def test_cli_exports_and_refuses_with_the_option_to_change(hf_lm_checkpoint, trained_lm, tmp_path):
    data, checkpoint = hf_lm_checkpoint
    ok = fairseq_cli("mega-export-hf", checkpoint, tmp_path / "ok", "--data", data)
    assert "verified: max |logits diff|" in ok.stdout
    _, tiny_checkpoint, _ = trained_lm  # mega_lm_tiny: scaled embeddings and a final norm
    refused = fairseq_cli("mega-export-hf", tiny_checkpoint, tmp_path / "refused", "--data", data, check=False)
    assert refused.returncode == 2
    assert "--no-scale-embedding" in refused.stderr and "--no-final-norm" in refused.stderr and "mega_lm_hf" in refused.stderr
    assert not (tmp_path / "refused" / "model.safetensors").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = fairseq_cli("mega-export-hf", tmp_path / "nope.pt", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
