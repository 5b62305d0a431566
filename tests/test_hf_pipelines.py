"""The pipelines an export ships (convert/hf_code/pipeline_mega_fairseq.py, ``custom_pipelines`` in config.json) for
the tasks transformers 5.x removed: question-answering, translation, text2text-generation.  Each runs on transformers
4.57.6 (this env) and 5.23 (.venv-hf5, env MEGA_HF5_PYTHON; skipped where absent) through tests/hf_pipeline_check.py,
gives what the model computes by hand (and fairseq), and the same on both versions."""

import json
import sys
from pathlib import Path

import pytest
import torch
from test_hf_heads import checkpoint_with_heads  # noqa: F401  (fixture)
from test_hf_remote_code import HF5_PYTHON
from test_hf_remote_code import check as run_check

from conftest import fairseq_cli, train_spm

PYTHONS = [sys.executable] + ([HF5_PYTHON] if Path(HF5_PYTHON).exists() else [])
QA_EXAMPLES = [
    ["w1 w2", "w3 w4 w5 w6 w7 a1 a2 p3 q4 w9"],
    ["o3 o4 o5", "l1 l2 m3 m4 w10 w11 w12 q1 q2 q3 q4 o1 o2 a5"],
    ["a1", "w5"],
]


def check(python: str, export_dir: Path, spec: dict, spec_file: Path) -> dict:
    """tests/hf_pipeline_check.py run by `python` on `export_dir` with `spec` (written to `spec_file`)."""
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    return run_check(python, export_dir, spec_file, script="hf_pipeline_check.py")


@pytest.fixture(scope="module")
def qa_export(checkpoint_with_heads, tmp_path_factory):  # noqa: F811
    from mega_fairseq.convert.hf_export import export

    checkpoint, data = checkpoint_with_heads
    out = tmp_path_factory.mktemp("qa") / "hf"
    export(str(checkpoint), str(out), data=str(data), head="qa")
    return out


def test_exports_with_a_removed_pipeline_ship_it_and_name_it_in_config(qa_export):
    from mega_fairseq.convert.remote_code import PIPELINE_FILE, custom_pipelines

    config = json.loads((qa_export / "config.json").read_text())
    assert config["model_type"] == "mega"  # still the native export
    assert config["custom_pipelines"] == {
        "question-answering": {
            "impl": "pipeline_mega_fairseq.MegaQuestionAnsweringPipeline",
            "pt": ["AutoModelForQuestionAnswering"],
        }
    }
    code = (qa_export / PIPELINE_FILE).read_text()
    imports = {line.split()[1] for line in code.splitlines() if line.startswith(("import ", "from "))}
    assert {i.split(".")[0] for i in imports} <= {"typing", "torch", "transformers"}
    card = (qa_export / "README.md").read_text()  # the model card says how, and the price on 4.57.6
    assert "`custom_pipelines`" in card and 'pipeline("question-answering", model=DIR, trust_remote_code=True)' in card
    assert "needs `trust_remote_code=True` even where the model loads natively" in card
    assert set(custom_pipelines("EncoderDecoderModel")) == {"translation", "text2text-generation"}
    for hf_class in ("MegaForMaskedLM", "MegaForCausalLM", "MegaForSequenceClassification"):
        assert custom_pipelines(hf_class) == {}  # transformers' own pipelines serve these


def fairseq_spans(checkpoint, data, examples):
    """fairseq's best (start, end) input positions over the context (qa_windows' rule) on the word tokenizer's pair."""
    from hf_remote_check import word_tokenizer

    from mega_fairseq.convert.hf_export import load_fairseq_model
    from mega_fairseq.data.qa_windows import best_span_in_window
    from mega_fairseq.models.mega_encoder import segments_from_separator

    model, _ = load_fairseq_model(str(checkpoint), str(data))
    tokenizer = word_tokenizer(str(data))
    spans = []
    for question, context in examples:
        enc = tokenizer(question, context)
        tokens = torch.tensor([enc["input_ids"]])
        with torch.no_grad():
            logits = model(tokens, token_types=segments_from_separator(tokens, 2), classification_head_name="qa")[0]
        positions = [i for i, sid in enumerate(enc.sequence_ids()) if sid == 1]
        _, s, e = best_span_in_window(logits[0, positions, 0], logits[0, positions, 1], 15)
        spans.append([positions[s], positions[e]])
    return spans


def test_question_answering_pipeline_matches_the_model_on_every_transformers(
    qa_export,
    checkpoint_with_heads,  # noqa: F811
    tmp_path,
):
    """pipeline("question-answering", trust_remote_code=True) answers with the best span of the model's own
    start/end logits (fairseq's too), the same on transformers 4.57.6 and 5.23."""
    spec = {"kind": "qa", "tokenizer": "word", "examples": QA_EXAMPLES, "max_seq_len": 12}
    expected = fairseq_spans(*checkpoint_with_heads, QA_EXAMPLES)
    results = {}
    for python in PYTHONS:
        result = check(python, qa_export, spec, tmp_path / "spec.json")
        version = result.pop("transformers")
        assert result["pipeline_class"] == "MegaQuestionAnsweringPipeline", (version, result)
        assert result["model_class"] == "MegaFairseqForQuestionAnswering", (version, result)
        for (question, context), found, span in zip(QA_EXAMPLES, result["examples"], expected):
            got, by_hand = found["pipeline"], found["by_hand"]
            assert {k: got[k] for k in ("answer", "start", "end")} == {
                k: by_hand[k] for k in ("answer", "start", "end")
            }
            assert by_hand["tokens"] == span, (version, found, span)  # == fairseq's span
            assert got["answer"] and context[got["start"] : got["end"]] == got["answer"] and 0 < got["score"] <= 1
            top2 = found["top2"]
            assert top2[0] == got and (len(top2) == 1 or top2[1]["score"] <= 1), top2
            windowed = found["windowed"]  # windows of 12 tokens overlapping by 3
            assert context[windowed["start"] : windowed["end"]] == windowed["answer"], windowed
        assert result["batch"] == [found["pipeline"] for found in result["examples"]]
        results[version] = result
    if len(results) == 2:
        first, second = results.values()
        for one, other in zip(first["examples"], second["examples"]):
            for key in ("pipeline", "windowed"):
                assert one[key]["answer"] == other[key]["answer"] and one[key]["start"] == other[key]["start"]
                assert abs(one[key]["score"] - other[key]["score"]) <= 1e-6
            assert [a["answer"] for a in one["top2"]] == [a["answer"] for a in other["top2"]]


def test_native_export_needs_trust_remote_code_for_question_answering_on_transformers_4(qa_export):
    """The documented price of shipping the pipeline: transformers 4.x no longer picks its own QA pipeline for
    a native export; it asks for trust_remote_code=True (the models themselves still load natively)."""
    import transformers
    from hf_remote_check import word_tokenizer

    with pytest.raises(ValueError, match="trust_remote_code=True"):
        transformers.pipeline("question-answering", model=str(qa_export), tokenizer=word_tokenizer(str(qa_export)))
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(str(qa_export))
    assert type(model).__name__ == "MegaForQuestionAnswering"


def test_spm_tokenizer_is_refused_for_separate_translation_dictionaries(tmp_path):
    from fairseq.data import Dictionary

    from mega_fairseq.convert.common import ConversionError
    from mega_fairseq.convert.tokenizer import check_joined, save_tokenizer

    source, target = Dictionary(), Dictionary()
    for word in ("a", "b"):
        source.add_symbol(word)
    for word in ("c", "d"):
        target.add_symbol(word)
    with pytest.raises(ConversionError, match="--spm.*fairseq-preprocess --joined-dictionary"):
        save_tokenizer(str(tmp_path / "missing.model"), source, str(tmp_path / "out"), target_dictionary=target)
    assert not (tmp_path / "out").exists()
    check_joined(source, source)  # one dictionary: fine
    check_joined(source, None)  # not a translation model


def spm_translation_data(root: Path):
    """The toy parallel task (w_i -> w_(i+1) reversed) encoded with a tiny unigram sentencepiece model, binarized
    with one joined dictionary: (data-bin, spm model, raw test source lines)."""
    from test_translation import preprocess, write_toy_parallel

    write_toy_parallel(root / "text", {"train": 60, "valid": 8, "test": 8})
    raw = root / "text"
    corpus = root / "spm_train.txt"
    corpus.write_text((raw / "train.en").read_text() + (raw / "train.de").read_text())
    processor = train_spm(corpus, root / "spm", 40, hard_vocab_limit=False)
    (root / "pieces").mkdir()
    for path in raw.iterdir():
        lines = path.read_text().splitlines()
        (root / "pieces" / path.name).write_text(
            "".join(" ".join(processor.encode(t, out_type=str)) + "\n" for t in lines)
        )
    return preprocess(root / "pieces", root / "bin"), root / "spm.model", (raw / "test.en").read_text().splitlines()


def test_translation_pipelines_with_the_exported_tokenizer(tmp_path):
    """(~25 s: trains a toy translation model for 30 updates.)
    --spm on a translation model (joined dictionary): the tokenizer encodes a text as fairseq's source (pieces +
    </s>); pipeline("translation") and pipeline("text2text-generation") give model.generate + decode of the same
    ids (beam search, generate kwargs passed through), == fairseq's own beam search, on transformers 4.57.6 and 5.23."""
    import sentencepiece as spm
    from fairseq.sequence_generator import SequenceGenerator
    from huggingface_hub import ModelCard
    from test_translation import TRAIN_ARGS

    from mega_fairseq.convert.hf_export import export, load_fairseq_model

    data, spm_model, texts = spm_translation_data(tmp_path)
    exportable = ["--no-scale-embedding", "--no-final-norm", "--output-bias", "--max-update", "30"]
    fairseq_cli("fairseq-train", data, *TRAIN_ARGS, *exportable, "--save-dir", tmp_path / "ckpt")
    checkpoint = tmp_path / "ckpt" / "checkpoint_last.pt"
    export(str(checkpoint), str(tmp_path / "hf"), data=str(data), spm=str(spm_model))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert set(config["custom_pipelines"]) == {"translation", "text2text-generation"}
    assert ModelCard.load(tmp_path / "hf" / "README.md").data.pipeline_tag == "translation"
    assert not (tmp_path / "hf" / "dict.target.txt").exists()

    texts = texts[:3]
    model, task = load_fairseq_model(str(checkpoint), str(data))
    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    beam, max_new = 3, 9
    generator = SequenceGenerator([model], tgt_dict, beam_size=beam, max_len_a=0, max_len_b=max_new)
    source_ids, fairseq_texts = [], []
    for text in texts:
        pieces = " ".join(processor.encode(text, out_type=str))
        src = src_dict.encode_line(pieces, append_eos=True, add_if_not_exist=False).long()
        source_ids.append(src.tolist())
        sample = {"net_input": {"src_tokens": src[None], "src_lengths": torch.tensor([src.numel()])}}
        with torch.no_grad():
            best = generator.generate([model], sample)[0][0]["tokens"]
        fairseq_texts.append(processor.decode(tgt_dict.string(best).split()))
    # fairseq's beam search never ends a translation at its first step (SequenceGenerator's min_len=1): min_new_tokens
    generate = {"num_beams": beam, "max_new_tokens": max_new, "min_new_tokens": 1, "length_penalty": 1.0}
    generate["early_stopping"] = True
    spec = {"kind": "translation", "tokenizer": "export", "texts": texts, "generate": generate}
    results = {}
    for python in PYTHONS:
        result = check(python, tmp_path / "hf", spec, tmp_path / "spec.json")
        version = result.pop("transformers")
        assert result["model_class"] == "MegaFairseqForConditionalGeneration", (version, result)
        assert [t["source_ids"] for t in result["texts"]] == source_ids, (version, result)
        by_hand = [t["by_hand"] for t in result["texts"]]
        assert by_hand == fairseq_texts, (version, by_hand, fairseq_texts)
        for task_name, found in result["pipelines"].items():
            assert found["texts"] == by_hand, (version, task_name, found)
        assert result["pipelines"]["translation"]["class"] == "MegaTranslationPipeline"
        assert result["pipelines"]["text2text-generation"]["class"] == "MegaText2TextGenerationPipeline"
        results[version] = result
    if len(results) == 2:
        first, second = results.values()
        assert first == second
