"""The mega translation model exports to transformers' EncoderDecoderModel (MegaModel encoder +
MegaForCausalLM decoder with gated cross-attention) with the same logits, or is refused with the reason."""

import pytest
import torch
from test_translation import TRAIN_ARGS, preprocess, write_toy_parallel

from conftest import fairseq_cli

EXPORTABLE = ["--no-scale-embedding", "--no-final-norm", "--output-bias"]


@pytest.fixture(scope="module")
def translation_checkpoints(tmp_path_factory):
    """(data, exportable checkpoint, the stock mega_translation_tiny checkpoint), each trained 5 updates."""
    root = tmp_path_factory.mktemp("hf_translation")
    write_toy_parallel(root / "text", {"train": 100, "valid": 10, "test": 10})
    data = preprocess(root / "text", root / "bin")
    fairseq_cli("fairseq-train", data, *TRAIN_ARGS, *EXPORTABLE, "--max-update", "5", "--save-dir", root / "hf_ckpt")
    fairseq_cli("fairseq-train", data, *TRAIN_ARGS, "--max-update", "1", "--save-dir", root / "ckpt")
    return data, root / "hf_ckpt" / "checkpoint_last.pt", root / "ckpt" / "checkpoint_last.pt"


def test_translation_model_exports_to_encoder_decoder_model(translation_checkpoints, tmp_path):
    from transformers import AutoConfig, EncoderDecoderModel

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    data, checkpoint, _ = translation_checkpoints
    assert export(str(checkpoint), str(tmp_path / "hf"), data=str(data)) <= 1e-5
    assert AutoConfig.from_pretrained(tmp_path / "hf").model_type == "encoder-decoder"
    hf = EncoderDecoderModel.from_pretrained(tmp_path / "hf").eval()
    model, task = load_fairseq_model(str(checkpoint), str(data))
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, len(task.source_dictionary), (3, 12), generator=gen)  # three chunks of 4
    tgt = torch.randint(4, len(task.target_dictionary), (3, 8), generator=gen)
    tgt[:, 0] = task.target_dictionary.eos()  # fairseq's decoder input starts with </s>
    with torch.no_grad():
        ours = model(src, None, tgt)[0]
        theirs = hf(input_ids=src, decoder_input_ids=tgt, use_cache=False).logits
    assert (ours - theirs).abs().max() <= 1e-5
    assert hf.config.decoder_start_token_id == task.target_dictionary.eos()


def test_translation_export_refuses_what_transformers_cannot_express(translation_checkpoints, tmp_path):
    from mega_fairseq.convert.common import ConversionError
    from mega_fairseq.convert.hf_export import export

    data, _, checkpoint = translation_checkpoints
    with pytest.raises(ConversionError) as err:
        export(str(checkpoint), str(tmp_path / "hf"), data=str(data))
    message = str(err.value)
    assert (
        "EncoderDecoderModel" in message
        and "encoder: embeddings are scaled" in message
        and "decoder: a final norm" in message
    )
    assert "--no-scale-embedding" in message and "--no-final-norm" in message
    assert not (tmp_path / "hf").exists()


def test_encoder_decoder_imports_back_exactly_and_generates(translation_checkpoints, tmp_path):
    from safetensors.torch import load_file

    from mega_fairseq.convert.hf_export import export, load_fairseq_model
    from mega_fairseq.convert.hf_import import import_hf

    from conftest import REPO

    data, checkpoint, _ = translation_checkpoints
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data))
    assert import_hf(str(tmp_path / "hf"), str(tmp_path / "ft" / "model.pt")) <= 1e-5
    assert (tmp_path / "ft" / "dict.src.txt").read_text() == (data / "dict.en.txt").read_text()
    original, _ = load_fairseq_model(str(checkpoint), str(data))
    imported, _ = load_fairseq_model(str(tmp_path / "ft" / "model.pt"))  # its own dict.src.txt / dict.tgt.txt
    for key, value in original.state_dict().items():
        assert torch.equal(value, imported.state_dict()[key]), key
    export(str(tmp_path / "ft" / "model.pt"), str(tmp_path / "hf2"))
    first, second = (
        load_file(str(tmp_path / "hf" / "model.safetensors")),
        load_file(str(tmp_path / "hf2" / "model.safetensors")),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    generated = fairseq_cli(
        "fairseq-generate",
        data,
        "--user-dir",
        REPO / "user_dir",
        "--path",
        tmp_path / "ft" / "model.pt",
        "--cpu",
        "-s",
        "en",
        "-t",
        "de",
        "--gen-subset",
        "test",
        "--beam",
        "2",
        "--batch-size",
        "4",
        "--required-batch-size-multiple",
        "1",
    )
    assert sum(line.startswith("H-") for line in generated.stdout.splitlines()) == 10
