"""mega_extractive_qa: SQuAD metrics, context windows and the best span across windows, SQuAD-JSON
preparation and its errors, fairseq-train fine-tuning of a masked-LM mega_encoder checkpoint, inference."""

import importlib.util
import json
import random

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary, ListDataset

import mega_fairseq.plugin  # noqa: F401  registers the plugin
from mega_fairseq.data.qa_spans import predict_spans, score_prediction
from mega_fairseq.data.qa_windows import QAWindowDataset, best_span, best_span_in_window, plan_windows, span_text
from mega_fairseq.metrics.squad import exact_match, normalize_answer, span_exact_match, span_f1, token_f1

from conftest import MLM_MODEL, REPO, assert_exports_to_transformers, fairseq_cli

spec = importlib.util.spec_from_file_location("prepare_extractive_qa", REPO / "scripts" / "prepare_extractive_qa.py")
prepare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare)


def squad_json(path, n, seed, max_len=50):
    """Contexts of filler words w* with one answer of 1-2 words a*; questions of words q*."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        words = [f"w{rng.randrange(30)}" for _ in range(rng.randrange(8, max_len))]
        answer = [f"a{rng.randrange(10)}" for _ in range(rng.randrange(1, 3))]
        pos = rng.randrange(len(words) + 1)
        words[pos:pos] = answer
        start = len(" ".join(words[:pos])) + (1 if pos else 0)
        qas = [
            {
                "id": f"{seed}-{i}",
                "question": " ".join(f"q{rng.randrange(10)}" for _ in range(3)),
                "answers": [{"text": " ".join(answer), "answer_start": start}],
            }
        ]
        paragraphs.append({"context": " ".join(words), "qas": qas})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))


# ---- metrics --------------------------------------------------------------------------------------


def test_squad_metrics_hand_computed():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert exact_match("the Broncos.", ["Denver Broncos", "broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    # 2 common words: precision 2/3, recall 2/2 -> F1 0.8
    assert token_f1("Denver Broncos team", ["the Denver Broncos"]) == pytest.approx(0.8)
    assert token_f1("Denver Broncos team", ["Panthers", "the Denver Broncos"]) == pytest.approx(0.8)  # max over golds
    assert token_f1("a", ["Broncos"]) == 0.0
    assert span_exact_match((3, 4), [(1, 2), (3, 4)]) == 1.0 and span_exact_match((3, 5), [(3, 4)]) == 0.0
    # overlap 2 tokens: precision 2/4, recall 2/4
    assert span_f1((2, 5), [(4, 7)]) == pytest.approx(0.5)
    assert span_f1((0, 1), [(4, 7)]) == 0.0


def test_score_prediction_on_text_or_token_spans():
    meta = {
        "context": "Ada wrote it in 1843.",
        "offsets": [[0, 3], [4, 9], [10, 12], [13, 15], [16, 21]],
        "answers": ["1843"],
    }
    assert span_text(meta, 4, 4) == "1843." and score_prediction((4, 4), [(4, 4)], meta) == (1.0, 1.0)
    assert score_prediction((3, 4), [(4, 4)], meta) == (0.0, pytest.approx(2 / 3))  # "in 1843." vs "1843"
    assert score_prediction((3, 4), [(4, 4)], None) == (0.0, pytest.approx(2 / 3))  # token positions: P 1/2, R 1
    assert score_prediction((3, 4), [], {"id": "x"}) is None


# ---- windows and the best span --------------------------------------------------------------------


def test_plan_windows_cover_the_context():
    assert plan_windows(10, 4, 2) == [(0, 4), (2, 4), (4, 4), (6, 4)]
    assert plan_windows(9, 4, 10) == [(0, 4), (4, 4), (8, 1)]  # a stride above the window is clamped: no gaps
    assert plan_windows(4, 4, 2) == [(0, 4)] and plan_windows(0, 4, 2) == [(0, 0)]
    for n, w, s in [(37, 8, 3), (50, 16, 16), (5, 9, 1)]:
        covered = set()
        for start, length in plan_windows(n, w, s):
            assert 0 < length <= w
            covered |= set(range(start, start + length))
        assert covered == set(range(n))
    with pytest.raises(ValueError, match="doc-stride"):
        plan_windows(10, 4, 0)


def test_best_span_hand_computed():
    start, end = torch.tensor([0.0, 5.0, 1.0]), torch.tensor([4.0, 0.0, 3.0])
    # candidates (s <= e): (0,0)=4 (0,1)=0 (0,2)=3 (1,1)=5 (1,2)=8 (2,2)=4
    assert best_span_in_window(start, end, 30) == (8.0, 1, 2)
    assert best_span_in_window(start, end, 1) == (5.0, 1, 1)  # length limit
    assert best_span_in_window(torch.tensor([0.0, 0.0]), torch.tensor([9.0, 0.0]), 5) == (9.0, 0, 0)  # end >= start
    # across windows: the second window (context offset 4) scores 9 > 8
    windows = [(0, start, end), (4, torch.tensor([1.0, 6.0]), torch.tensor([0.0, 3.0]))]
    assert best_span(windows, 30) == (9.0, 5, 5)
    assert best_span([], 30)[1:] == (-1, -1)


def tokens_dataset(rows):
    return ListDataset([torch.tensor(r) for r in rows], np.array([len(r) for r in rows]))


def test_answer_only_in_second_window():
    d = Dictionary()
    for i in range(20):
        d.add_symbol(f"w{i}")
    question = [d.index("w0"), d.index("w1"), d.eos()]  # 2 tokens + eos
    context = [d.index(f"w{i}") for i in range(12)] + [d.eos()]  # 12 tokens + eos
    # max_positions 12 -> window 12 - 2 - 4 = 6 tokens, stride 4: windows (0,6) (4,6) (8,4); the answer (7, 9)
    # fits only in the second one
    ds = QAWindowDataset(
        tokens_dataset([question]),
        tokens_dataset([context]),
        [[(7, 9)]],
        d,
        max_positions=12,
        doc_stride=4,
        max_question_len=64,
        by_example=True,
    )
    assert [(w[2], w[3]) for w in ds.windows] == [(0, 6), (4, 6), (8, 4)]
    windows = ds[0]
    bos, eos = d.bos(), d.eos()
    second = windows[1]
    assert second["source"].tolist() == [bos, question[0], question[1], eos, eos] + context[4:10] + [eos]
    assert second["token_types"].tolist() == [0] * 4 + [1] * 8
    offset = second["context_offset"]
    assert offset == 5 and second["target"] == (7 - 4 + offset, 9 - 4 + offset)
    assert windows[0]["target"] == (0, 0) and windows[2]["target"] == (0, 0)
    assert all(len(w["source"]) <= 12 for w in windows)

    # logits peaked at the answer in window 2 and at a decoy (lower) in window 1 -> the context span (7, 9)
    sample = ds.collater([ds[0]])
    start = torch.full(sample["net_input"]["src_tokens"].shape, -5.0)
    end = start.clone()
    start[1, offset + 3], end[1, offset + 5] = 4.0, 4.0  # window 2: context 7..9
    start[0, offset + 1], end[0, offset + 2] = 3.0, 3.0  # window 1: decoy 1..2
    ((score, s, e),) = predict_spans(start, end, sample["qa"], 30)
    assert (s, e, score) == (7, 9, 8.0)
    assert sample["qa"]["gold_spans"] == [[(7, 9)]] and sample["nsentences"] == 1 and len(sample["target"]) == 3


def test_question_too_long_for_the_window_is_an_error():
    d = Dictionary()
    q = [4] * 10 + [d.eos()]
    with pytest.raises(ValueError, match="raise --max-positions or lower --max-question-len"):
        QAWindowDataset(
            tokens_dataset([q]),
            tokens_dataset([[4, d.eos()]]),
            [[]],
            d,
            max_positions=12,
            doc_stride=4,
            max_question_len=64,
        )


# ---- preparation, fine-tuning, inference ----------------------------------------------------------


@pytest.fixture(scope="module")
def squad(tmp_path_factory):
    root = tmp_path_factory.mktemp("squad")
    squad_json(root / "train.json", 200, 0)
    squad_json(root / "valid.json", 30, 1)
    return root


def test_prepare_maps_answers_to_spm_token_spans(squad, tmp_path):
    import sentencepiece as spm

    lines = [p["context"] for p in json.loads((squad / "train.json").read_text())["data"][0]["paragraphs"]]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(tmp_path / "spm"),
        vocab_size=30,
        model_type="bpe",
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
    )
    prepare.main(
        [
            "--train",
            str(squad / "train.json"),
            "--valid",
            str(squad / "valid.json"),
            "--destdir",
            str(tmp_path / "bin"),
            "--spm",
            str(tmp_path / "spm.model"),
        ]
    )
    contexts = (tmp_path / "bin/text/valid.context").read_text().splitlines()
    records = [json.loads(line) for line in (tmp_path / "bin/label/valid.jsonl").read_text().splitlines()]
    assert len(records) == len(contexts) == 30
    pieces_per_word = []
    for tokens, record in zip(contexts, records):
        tokens = tokens.split()
        assert len(tokens) == len(record["offsets"])
        ((s, e),) = record["spans"]
        assert span_text(record, s, e) == record["answers"][0]  # the token span spells the answer
        assert "".join(t.replace("\u2581", "") for t in tokens[s : e + 1]) == record["answers"][0].replace(" ", "")
        pieces_per_word.append(len(tokens) / len(record["context"].split()))
    assert max(pieces_per_word) > 1  # words were split into pieces
    for sub in ("input0", "input1"):
        assert (tmp_path / "bin" / sub / "valid.bin").exists()
    assert (tmp_path / "bin/input0/dict.txt").read_text() == (tmp_path / "bin/input1/dict.txt").read_text()


def test_prepare_errors_name_the_question(tmp_path):
    def write(answer_start, text):
        qa = {"id": "q-42", "question": "who ?", "answers": [{"text": text, "answer_start": answer_start}]}
        (tmp_path / "bad.json").write_text(
            json.dumps({"data": [{"paragraphs": [{"context": "Ada wrote it", "qas": [qa]}]}]})
        )
        return ["--train", str(tmp_path / "bad.json"), "--destdir", str(tmp_path / "out"), "--no-binarize"]

    with pytest.raises(
        ValueError, match=r"question q-42: answer 0 span \[10, 15\) lies outside its context of 12 characters"
    ):
        prepare.main(write(10, "it is"))
    with pytest.raises(
        ValueError, match=r"question q-42: answer 0 text 'Bob' does not match the context at answer_start 0: 'Ada'"
    ):
        prepare.main(write(0, "Bob"))
    prepare.main(write(4, "wrote"))


def test_finetune_from_masked_lm_checkpoint_and_answer(squad, mlm_checkpoint, tmp_path):
    checkpoint, mlm_dict = mlm_checkpoint
    data = tmp_path / "bin"
    prepare.main(
        [
            "--train",
            str(squad / "train.json"),
            "--valid",
            str(squad / "valid.json"),
            "--destdir",
            str(data),
            "--srcdict",
            str(mlm_dict),
        ]
    )

    # every validation example is scored, whatever --required-batch-size-multiple (fairseq drops uneven last batches)
    from fairseq.tasks import TASK_REGISTRY

    from mega_fairseq.tasks.extractive_qa import ExtractiveQAConfig

    task = TASK_REGISTRY["mega_extractive_qa"].setup_task(
        ExtractiveQAConfig(data=str(data), max_positions=32, doc_stride=16, train_subset="train")
    )
    valid = task.load_dataset("valid")
    batches = task.get_batch_iterator(valid, max_sentences=16, required_batch_size_multiple=8).next_epoch_itr(
        shuffle=False
    )
    assert sum(b["nsentences"] for b in batches) == 30
    assert len(valid.windows) > 30  # long contexts span several windows

    proc = fairseq_cli(
        "fairseq-train",
        data,
        "--task",
        "mega_extractive_qa",
        "--criterion",
        "mega_extractive_qa",
        *MLM_MODEL,
        "--user-dir",
        REPO / "user_dir",
        "--cpu",
        "--num-workers",
        "0",
        "--batch-size",
        "16",
        "--optimizer",
        "adam",
        "--lr",
        "3e-3",
        "--max-update",
        "30",
        "--max-positions",
        "32",
        "--doc-stride",
        "16",
        "--log-format",
        "json",
        "--log-interval",
        "5",
        "--seed",
        "1",
        "--dropout",
        "0",
        "--no-epoch-checkpoints",
        "--best-checkpoint-metric",
        "f1",
        "--maximize-best-checkpoint-metric",
        "--save-dir",
        tmp_path / "ckpt",
        "--restore-file",
        checkpoint,
        "--reset-optimizer",
        "--reset-dataloader",
        "--reset-meters",
    )
    log = proc.stdout + proc.stderr
    assert f"Loaded checkpoint {checkpoint}" in log

    def json_log(kind):
        marker = f"| INFO | {kind} | "
        return [json.loads(line.split(marker, 1)[1]) for line in log.splitlines() if marker in line]

    train = [float(r["loss"]) for r in json_log("train_inner")]
    valid_rows = json_log("valid")
    assert len(train) >= 5 and train[-1] < 0.5 * train[0], train
    assert valid_rows and {"valid_em", "valid_f1"} <= set(valid_rows[-1])
    assert float(valid_rows[-1]["valid_f1"]) > 50, valid_rows[-1]

    from mega_fairseq.qa_inference import QAPredictor

    qa = QAPredictor.from_checkpoint(tmp_path / "ckpt/checkpoint_best.pt")
    context = (
        " ".join(f"w{i % 30}" for i in range(40)) + " a3 a4 w5 w6"
    )  # 44 tokens: the answer is past the first window
    assert qa.answer("q1 q2 q3", context)[0] == "a3 a4"
    assert_exports_to_transformers(
        tmp_path / "ckpt/checkpoint_best.pt", data, "AutoModelForQuestionAnswering", tmp_path / "hf"
    )
