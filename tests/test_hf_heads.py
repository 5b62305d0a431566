"""Every mega_encoder head exports to its transformers class (loaded with the Auto class, same outputs)
and imports back exactly; a sentencepiece tokenizer exports with the fairseq dictionary's ids."""

import json

import pytest
import torch

from conftest import REPO, fairseq_cli, train_spm

AUTO_CLASSES = {
    "masked_lm": "AutoModelForMaskedLM",
    "cls": "AutoModelForSequenceClassification",
    "reg": "AutoModelForSequenceClassification",
    "mc": "AutoModelForMultipleChoice",
    "tok": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
    "pool": "AutoModel",
}


@pytest.fixture(scope="module")
def checkpoint_with_heads(mlm_checkpoint, tmp_path_factory):
    """The fairseq-trained masked LM (chunk 8, token types) plus one randomized head of every kind."""
    from mega_fairseq.convert.hf_export import load_fairseq_model
    from mega_fairseq.testing import randomize_

    checkpoint, dict_file = mlm_checkpoint
    data = dict_file.parent
    model, _ = load_fairseq_model(str(checkpoint), str(data))
    model.register_classification_head("cls", num_classes=3)
    model.register_classification_head("reg", num_classes=1)
    model.register_classification_head("mc", num_classes=1, head_type="multiple_choice")
    model.register_token_classification_head("tok", 5)
    model.register_question_answering_head("qa")
    model.register_pooler_head("pool")
    randomize_(model.classification_heads, seed=3)
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = model.state_dict()
    state["cfg"]["model"]["load_checkpoint_heads"] = True
    path = tmp_path_factory.mktemp("heads") / "checkpoint_heads.pt"
    torch.save(state, path)
    return path, data


def hf_outputs(hf, kind, tokens, token_types):
    if kind == "mc":
        return hf(tokens.unsqueeze(1), token_type_ids=token_types.unsqueeze(1)).logits
    out = hf(tokens, token_type_ids=token_types)
    if kind == "qa":
        return torch.stack([out.start_logits, out.end_logits], dim=-1)
    return out.pooler_output if kind == "pool" else out.logits


@pytest.mark.parametrize("head", list(AUTO_CLASSES))
def test_head_exports_to_its_auto_class_and_imports_back_exactly(head, checkpoint_with_heads, tmp_path):
    import transformers
    from safetensors.torch import load_file

    from mega_fairseq.convert.hf_export import export, load_fairseq_model
    from mega_fairseq.convert.hf_import import import_hf

    checkpoint, data = checkpoint_with_heads
    assert export(str(checkpoint), str(tmp_path / "hf"), data=str(data), head=head) <= 1e-5
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    hf = getattr(transformers, AUTO_CLASSES[head]).from_pretrained(tmp_path / "hf").eval()
    model, task = load_fairseq_model(str(checkpoint), str(data))
    # sentence pairs (<s> A </s> B) of three chunks of 8 (transformers needs a multiple of the chunk)
    tokens = torch.randint(4, len(task.source_dictionary), (3, 24), generator=torch.Generator().manual_seed(1))
    tokens[:, 0], tokens[:, 9] = 0, 2
    types = (torch.arange(24) > 9).long().expand(3, 24)
    with torch.no_grad():
        ours = model(tokens)[0] if head == "masked_lm" else model(tokens, classification_head_name=head)[0]
        theirs = hf_outputs(hf, head, tokens, types)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-5
    if head == "reg":
        assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    # HF -> fairseq -> HF: the same tensors
    assert import_hf(str(tmp_path / "hf"), str(tmp_path / "ft" / "model.pt")) <= 1e-5
    export(str(tmp_path / "ft" / "model.pt"), str(tmp_path / "hf2"), data=str(data))
    first, second = (
        load_file(str(tmp_path / "hf" / "model.safetensors")),
        load_file(str(tmp_path / "hf2" / "model.safetensors")),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_export_names_the_heads_and_refuses_what_hf_cannot_express(checkpoint_with_heads, tmp_path):
    from mega_fairseq.convert.common import ConversionError
    from mega_fairseq.convert.hf_export import export

    checkpoint, data = checkpoint_with_heads
    with pytest.raises(ConversionError, match="no head 'nope'.*masked_lm or cls"):
        export(str(checkpoint), str(tmp_path / "x"), data=str(data), head="nope")
    state = torch.load(checkpoint, weights_only=True)
    state["cfg"]["model"]["final_norm"] = True
    state["model"]["encoder.stack.final_norm.scalar"] = torch.ones(1)
    torch.save(state, tmp_path / "final_norm.pt")
    with pytest.raises(ConversionError, match="--no-final-norm.*mega_base"):
        export(str(tmp_path / "final_norm.pt"), str(tmp_path / "y"), data=str(data), head="cls")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.fixture(scope="module")
def spm_lm(tmp_path_factory):
    """(data-bin, checkpoint, spm model, raw valid lines) of a mega_lm_hf trained 3 updates on sentencepiece pieces."""
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("spm_lm")
    lines = sorted({line.strip() for text in topics.values() for line in text.splitlines() if len(line.strip()) > 30})
    (root / "train.txt").write_text("\n".join(lines[::2][:1500]) + "\n")
    valid = lines[1::2][:200]
    processor = train_spm(root / "train.txt", root / "spm", 500)
    for split, text in (("train", lines[::2][:1500]), ("valid", valid)):
        (root / f"{split}.spm").write_text("".join(" ".join(processor.encode(t, out_type=str)) + "\n" for t in text))
    fairseq_cli(
        "fairseq-preprocess",
        "--only-source",
        "--trainpref",
        root / "train.spm",
        "--validpref",
        root / "valid.spm",
        "--destdir",
        root / "bin",
    )
    fairseq_cli(
        "fairseq-train",
        root / "bin",
        "--task",
        "language_modeling",
        "--user-dir",
        REPO / "user_dir",
        "--arch",
        "mega_lm_hf",
        "--cpu",
        "--decoder-layers",
        "1",
        "--decoder-embed-dim",
        "32",
        "--decoder-hidden-dim",
        "48",
        "--decoder-ffn-embed-dim",
        "48",
        "--decoder-z-dim",
        "16",
        "--tokens-per-sample",
        "32",
        "--max-tokens",
        "256",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--max-update",
        "3",
        "--num-workers",
        "0",
        "--save-dir",
        root / "ckpt",
        "--no-epoch-checkpoints",
        "--disable-validation",
    )
    return root / "bin", root / "ckpt" / "checkpoint_last.pt", root / "spm.model", valid


def test_tokenizer_export_reproduces_fairseq_ids_and_logits_on_raw_text(spm_lm, tmp_path):
    import sentencepiece as spm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    data, checkpoint, spm_model, raw_lines = spm_lm
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data), spm=str(spm_model))
    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    model, task = load_fairseq_model(str(checkpoint), str(data))
    dictionary = task.source_dictionary
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    for use_fast in (True, False):
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf", use_fast=use_fast)
        for line in raw_lines + ["  Unseen   wörds, ﬁ ligatures and ① signs  "]:
            expected = dictionary.encode_line(
                " ".join(processor.encode(line, out_type=str)), append_eos=False, add_if_not_exist=False
            )
            assert tokenizer(line, add_special_tokens=False).input_ids == expected.tolist(), line
        # a causal LM's tokenizer adds no special tokens by default (issue 14, item 5; it used to add <s> ... </s>)
        assert tokenizer("a").input_ids == tokenizer("a", add_special_tokens=False).input_ids
        assert tokenizer.model_max_length == model.max_positions()
    text = raw_lines[0]
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    fairseq_ids = dictionary.encode_line(
        " ".join(processor.encode(text, out_type=str)), append_eos=False, add_if_not_exist=False
    ).long()
    with torch.no_grad():
        assert (model(fairseq_ids[None])[0] - hf(ids, use_cache=False).logits).abs().max() <= 1e-5


def test_tokenizer_export_refuses_a_foreign_sentencepiece_model(spm_lm, tmp_path):
    import sentencepiece as spm

    from mega_fairseq.convert.common import ConversionError
    from mega_fairseq.convert.hf_export import export

    data, checkpoint, _, _ = spm_lm
    (tmp_path / "other.txt").write_text("\n".join(f"zz{i} qq{i * 7} xx" for i in range(300)) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "other.txt"),
        model_prefix=str(tmp_path / "other"),
        vocab_size=60,
        minloglevel=2,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,
    )
    with pytest.raises(ConversionError, match="not pieces of"):
        export(str(checkpoint), str(tmp_path / "hf"), data=str(data), spm=str(tmp_path / "other.model"))
    assert not (tmp_path / "hf").exists()
