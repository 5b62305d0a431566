"""mega_token_classification: BIO entity scores, CoNLL preparation with first-subword labels, bad input,
and fairseq-train fine-tuning of a masked-LM mega_encoder checkpoint (loss falls, entity F1 logged)."""

import importlib.util
import json
import random

import pytest
import torch

import mega_fairseq.plugin  # noqa: F401  registers the plugin
from mega_fairseq.data.token_labels import IGNORE_INDEX
from mega_fairseq.metrics.bio import chunk_counts, extract_chunks, precision_recall_f1
from mega_fairseq.tasks.token_classification import TokenClassificationConfig, TokenClassificationTask

from conftest import MLM_MODEL, REPO, assert_exports_to_transformers, fairseq_cli


def json_log(log, kind):
    """Rows of fairseq's json log lines of one kind ("train_inner", "valid", "train")."""
    marker = f"| INFO | {kind} | "
    return [json.loads(line.split(marker, 1)[1]) for line in log.splitlines() if marker in line]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = load_script("prepare_token_classification")


def write_conll(path, n, seed):
    """Labels follow from the words: p* starts a person (B-PER) and q* continues it, l*/m* the same for
    locations, o* is O.  Returns [(words, labels)]."""
    rng = random.Random(seed)
    lines, sentences = ["-DOCSTART- -X- O", ""], []
    for _ in range(n):
        pairs = []
        while len(pairs) < 8:
            r = rng.random()
            for first, rest, kind, p in (("p", "q", "PER", 0.2), ("l", "m", "LOC", 0.35)):
                if r < p:
                    pairs.append((f"{first}{rng.randrange(8)}", f"B-{kind}"))
                    if rng.random() < 0.5:
                        pairs.append((f"{rest}{rng.randrange(8)}", f"I-{kind}"))
                    break
            else:
                pairs.append((f"o{rng.randrange(20)}", "O"))
        lines += [f"{w} NN {t}" for w, t in pairs] + [""]
        sentences.append(pairs)
    path.write_text("\n".join(lines) + "\n")
    return sentences


# ---- entity scores --------------------------------------------------------------------------------


def test_bio_chunks_follow_conlleval():
    assert extract_chunks("B-PER I-PER O B-LOC I-LOC B-LOC O".split()) == [("PER", 0, 1), ("LOC", 3, 4), ("LOC", 5, 5)]
    assert extract_chunks("I-PER I-PER O I-LOC".split()) == [("PER", 0, 1), ("LOC", 3, 3)]  # I without B starts a chunk
    assert extract_chunks("B-PER I-LOC I-LOC B-PER B-PER".split()) == [
        ("PER", 0, 0),
        ("LOC", 1, 2),
        ("PER", 3, 3),
        ("PER", 4, 4),
    ]
    assert extract_chunks("S-PER B-LOC E-LOC I-LOC O".split()) == [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]  # IOBES
    assert extract_chunks(["O", "O"]) == [] and extract_chunks([]) == []


def test_entity_precision_recall_f1_hand_computed():
    gold = "B-PER I-PER O B-LOC I-LOC O B-ORG".split()
    pred = "B-PER I-PER O B-LOC O O I-ORG".split()
    # gold: PER(0,1) LOC(3,4) ORG(6,6); pred: PER(0,1) LOC(3,3) ORG(6,6) -> 2 correct of 3 and 3
    assert chunk_counts(gold, pred) == (2, 3, 3)
    p, r, f = precision_recall_f1(2, 3, 3)
    assert p == pytest.approx(200 / 3) and r == pytest.approx(200 / 3) and f == pytest.approx(200 / 3)
    p, r, f = precision_recall_f1(1, 2, 4)
    assert (p, r) == (25.0, 50.0) and f == pytest.approx(100 / 3)
    assert precision_recall_f1(0, 0, 0) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="differ in length"):
        chunk_counts(["O"], ["O", "O"])


# ---- data preparation -----------------------------------------------------------------------------


def train_spm(text_lines, prefix):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text_lines),
        model_prefix=str(prefix),
        vocab_size=24,
        model_type="bpe",
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
    )
    return f"{prefix}.model"


@pytest.fixture(scope="module")
def conll(tmp_path_factory):
    root = tmp_path_factory.mktemp("conll")
    sentences = {"train": write_conll(root / "train.conll", 200, 0), "valid": write_conll(root / "valid.conll", 30, 1)}
    return root, sentences


def test_prepare_with_spm_labels_first_subwords(conll, tmp_path):
    root, sentences = conll
    model = train_spm([" ".join(w for w, _ in s) for s in sentences["train"]], tmp_path / "spm")
    prepare.main(
        [
            "--train",
            str(root / "train.conll"),
            "--valid",
            str(root / "valid.conll"),
            "--destdir",
            str(tmp_path / "bin"),
            "--spm",
            model,
        ]
    )
    tokens = (tmp_path / "bin/text/valid.input0").read_text().splitlines()
    labels = (tmp_path / "bin/text/valid.label").read_text().splitlines()
    split_words = 0
    for pairs, token_line, label_line in zip(sentences["valid"], tokens, labels):
        pieces, tags = token_line.split(), label_line.split()
        assert len(pieces) == len(tags)
        # each word = one piece starting with the word marker + continuation pieces labelled <pad>
        words, word_labels = [], []
        for piece, tag in zip(pieces, tags):
            if tag != "<pad>":
                assert piece.startswith("\u2581")
                words.append(piece[1:]), word_labels.append(tag)
            else:
                assert not piece.startswith("\u2581")
                words[-1] += piece
                split_words += 1
        assert words == [w for w, _ in pairs] and word_labels == [t for _, t in pairs]
    assert split_words > 0  # the test exercises subword labelling
    assert (tmp_path / "bin/label/dict.txt").read_text().split()[::2] == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    for sub in ("input0", "label"):
        assert (tmp_path / "bin" / sub / "valid.bin").exists()

    # binarized targets: <s>/</s> and non-first subwords ignored, first subwords carry the class id
    task = TokenClassificationTask.setup_task(TokenClassificationConfig(data=str(tmp_path / "bin"), no_shuffle=True))
    dataset = task.load_dataset("valid")
    item = dataset[0]
    names = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    expect = (
        [IGNORE_INDEX] + [IGNORE_INDEX if t == "<pad>" else names.index(t) for t in labels[0].split()] + [IGNORE_INDEX]
    )
    assert item["target"].tolist() == expect
    tokens = item["net_input.src_tokens"]
    assert tokens[0] == task.dictionary.bos() and tokens[-1] == task.dictionary.eos() and len(tokens) == len(expect)


def test_prepare_errors_name_the_line(tmp_path):
    good = "w1 NN O\nw2 NN B-PER\n\n"
    (tmp_path / "train.conll").write_text(good)
    (tmp_path / "bad.conll").write_text("w1 NN O\nw2 B-PER\n")
    with pytest.raises(ValueError, match=r"bad\.conll:2: 2 columns but line 1 has 3; the label column is misaligned"):
        prepare.main(["--train", str(tmp_path / "bad.conll"), "--destdir", str(tmp_path / "out"), "--no-binarize"])
    (tmp_path / "one.conll").write_text("w1 NN O\n\nw2\n")
    with pytest.raises(ValueError, match=r"one\.conll:3: expected 'token \.\.\. label' columns, got 1"):
        prepare.main(["--train", str(tmp_path / "one.conll"), "--destdir", str(tmp_path / "out"), "--no-binarize"])
    (tmp_path / "valid.conll").write_text("w1 NN O\n\nw2 NN O\nw3 NN B-LOC\n")
    with pytest.raises(ValueError, match=r"valid\.conll:4: unknown label 'B-LOC'.*--labels"):
        prepare.main(
            [
                "--train",
                str(tmp_path / "train.conll"),
                "--valid",
                str(tmp_path / "valid.conll"),
                "--destdir",
                str(tmp_path / "out"),
                "--no-binarize",
            ]
        )
    # naming the label set accepts it
    prepare.main(
        [
            "--train",
            str(tmp_path / "train.conll"),
            "--valid",
            str(tmp_path / "valid.conll"),
            "--destdir",
            str(tmp_path / "out"),
            "--no-binarize",
            "--labels",
            "O,B-PER,B-LOC",
        ]
    )


def test_misaligned_binarized_labels_name_the_line(conll, tmp_path):
    root, _ = conll
    prepare.main(
        [
            "--train",
            str(root / "train.conll"),
            "--valid",
            str(root / "valid.conll"),
            "--destdir",
            str(tmp_path / "bin"),
            "--no-binarize",
        ]
    )
    text = tmp_path / "bin/text"
    lines = (text / "valid.label").read_text().splitlines()
    lines[2] += " O"  # one label too many on line 3
    (text / "valid.label").write_text("\n".join(lines) + "\n")
    from mega_fairseq.data.binarize import preprocess_args, run

    for sub, name, srcdict in (("input0", "input0", None), ("label", "label", text / "label.dict.txt")):
        run(
            preprocess_args(
                {"train": text / f"train.{name}", "valid": text / f"valid.{name}"}, tmp_path / "bin" / sub, srcdict
            ),
            False,
        )
    task = TokenClassificationTask.setup_task(TokenClassificationConfig(data=str(tmp_path / "bin"), no_shuffle=True))
    task.load_dataset("train")
    with pytest.raises(ValueError, match=r"label/valid vs input0/valid: line 3 has \d+ tokens but \d+ labels"):
        task.load_dataset("valid")


# ---- fine-tuning with fairseq-train ---------------------------------------------------------------


def test_finetune_from_masked_lm_checkpoint(conll, mlm_checkpoint, tmp_path):
    root, _ = conll
    checkpoint, mlm_dict = mlm_checkpoint
    data = tmp_path / "bin"
    prepare.main(
        [
            "--train",
            str(root / "train.conll"),
            "--valid",
            str(root / "valid.conll"),
            "--destdir",
            str(data),
            "--srcdict",
            str(mlm_dict),
        ]
    )
    proc = fairseq_cli(
        "fairseq-train",
        data,
        "--task",
        "mega_token_classification",
        "--criterion",
        "mega_token_classification",
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
        "26",
        "--max-positions",
        "64",
        "--log-format",
        "json",
        "--log-interval",
        "5",
        "--seed",
        "1",
        "--dropout",
        "0",
        "--pooler-dropout",
        "0",
        "--no-epoch-checkpoints",
        "--best-checkpoint-metric",
        "ent_f1",
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
    train, valid = json_log(log, "train_inner"), json_log(log, "valid")
    train = [float(r["loss"]) for r in train]
    assert len(train) >= 4 and train[-1] < 0.6 * train[0], train
    assert len(valid) == 2 and {"valid_accuracy", "valid_ent_p", "valid_ent_r"} <= set(valid[-1])
    assert float(valid[-1]["valid_ent_f1"]) > 50, valid[-1]
    state = torch.load(tmp_path / "ckpt/checkpoint_best.pt", map_location="cpu", weights_only=False)["model"]
    assert state["classification_heads.token_classification_head.classifier.weight"].shape[0] == 5
    assert_exports_to_transformers(
        tmp_path / "ckpt/checkpoint_best.pt", data, "AutoModelForTokenClassification", tmp_path / "hf"
    )
