"""Shared fixtures: a tiny binarized LM corpus and a mega_lm checkpoint trained on it with fairseq-train."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def fairseq_cli(tool, *args, check=True, **kwargs):
    """Runs a fairseq-* console script of this venv with the plugin importable; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([str(BIN / tool), *map(str, args)], env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def write_corpus(text_dir: Path, lines=None, seed=0):
    """Sorted random words: a corpus with structure a tiny model learns within a few updates."""
    text_dir.mkdir(parents=True, exist_ok=True)
    words = [f"w{i}" for i in range(40)]
    gen = torch.Generator().manual_seed(seed)
    for split, count in (lines or {"train": 200, "valid": 20, "test": 20}).items():
        with open(text_dir / f"{split}.txt", "w") as f:
            for _ in range(count):
                ids = torch.randint(0, 40, (12,), generator=gen).tolist()
                f.write(" ".join(words[i] for i in sorted(ids)) + "\n")


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    write_corpus(root / "text")
    fairseq_cli(
        "fairseq-preprocess",
        "--only-source",
        "--trainpref",
        root / "text/train.txt",
        "--validpref",
        root / "text/valid.txt",
        "--testpref",
        root / "text/test.txt",
        "--destdir",
        root / "bin",
    )
    return root / "bin"


LM_TRAIN_ARGS = [
    "--task",
    "language_modeling",
    "--user-dir",
    REPO / "user_dir",
    "--arch",
    "mega_lm_tiny",
    "--tokens-per-sample",
    "32",
    "--max-tokens",
    "512",
    "--optimizer",
    "adam",
    "--lr",
    "3e-3",
    "--cpu",
    "--num-workers",
    "0",
    "--no-epoch-checkpoints",
    "--log-format",
    "simple",
    "--log-interval",
    "5",
    "--decoder-chunk-size",
    "8",
    "--seed",
    "1",
]


@pytest.fixture(scope="session")
def trained_lm(lm_data, tmp_path_factory):
    """(data-bin dir, checkpoint path, fairseq-train output) of a mega_lm_tiny trained for 30 updates."""
    save = tmp_path_factory.mktemp("lm_ckpt")
    proc = fairseq_cli("fairseq-train", lm_data, *LM_TRAIN_ARGS, "--max-update", "30", "--save-dir", save)
    return lm_data, save / "checkpoint_last.pt", proc.stdout + proc.stderr


# words of the fine-tuning tests' synthetic data (token classification: p/q/l/m/o; extractive QA: w/a/q)
MLM_WORDS = [
    f"{c}{i}" for c, n in (("w", 40), ("a", 10), ("p", 8), ("q", 10), ("l", 8), ("m", 8), ("o", 20)) for i in range(n)
]
MLM_MODEL = ["--arch", "mega_tiny", "--encoder-chunk-size", "8", "--add-token-type-embeddings"]


@pytest.fixture(scope="session")
def mlm_checkpoint(tmp_path_factory):
    """(checkpoint, dict.txt) of a `mega_tiny` masked LM (MLM_MODEL options) pretrained for 8 updates with
    fairseq's masked_lm task on random sentences of MLM_WORDS: a starting point for fine-tuning tests."""
    from fairseq import options
    from fairseq_cli import preprocess

    root = tmp_path_factory.mktemp("mlm")
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 160), ("valid", 16)):
        ids = torch.randint(0, len(MLM_WORDS), (n, 12), generator=gen).tolist()
        (root / f"{split}.txt").write_text("".join(" ".join(MLM_WORDS[i] for i in row) + "\n" for row in ids))
    argv = [
        "--only-source",
        "--trainpref",
        root / "train.txt",
        "--validpref",
        root / "valid.txt",
        "--destdir",
        root / "bin",
        "--workers",
        "1",
    ]
    preprocess.main(options.get_preprocessing_parser().parse_args(list(map(str, argv))))
    fairseq_cli(
        "fairseq-train",
        root / "bin",
        "--task",
        "masked_lm",
        "--criterion",
        "masked_lm",
        *MLM_MODEL,
        "--user-dir",
        REPO / "user_dir",
        "--cpu",
        "--num-workers",
        "0",
        "--optimizer",
        "adam",
        "--lr",
        "3e-3",
        "--batch-size",
        "16",
        "--tokens-per-sample",
        "32",
        "--sample-break-mode",
        "eos",
        "--max-update",
        "8",
        "--no-epoch-checkpoints",
        "--disable-validation",
        "--seed",
        "1",
        "--save-dir",
        root / "ckpt",
    )
    return root / "ckpt" / "checkpoint_last.pt", root / "bin" / "dict.txt"


def assert_exports_to_transformers(checkpoint, data, auto_class: str, out_dir, head=None):
    """mega-export-hf's export of a fairseq-trained checkpoint (verified against the fairseq model inside
    export) loads with transformers' `auto_class`; returns the verified max abs output difference."""
    import transformers

    from mega_fairseq.convert.hf_export import export

    diff = export(str(checkpoint), str(out_dir), data=str(data), head=head)
    assert diff <= 1e-4, diff
    loaded = getattr(transformers, auto_class).from_pretrained(str(out_dir))
    assert type(loaded).__name__.startswith("MegaFor") or type(loaded).__name__ == "MegaModel"
    return diff


def train_spm(corpus, prefix, vocab_size: int, **options):
    """A unigram sentencepiece model `prefix`.model trained on the text file `corpus` (no BOS/EOS/PAD pieces, <unk>
    id 0, as fairseq's dictionaries expect); returns its processor."""
    import sentencepiece as spm

    settings = dict(model_type="unigram", character_coverage=1.0, minloglevel=2, bos_id=-1, eos_id=-1, pad_id=-1)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, unk_id=0, **{**settings, **options}
    )
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model")
