"""Train a sentencepiece model on TEXT_DIR/train.txt and encode the splits for fairseq-preprocess.

    mega-spm-prepare TEXT_DIR OUT_DIR [--vocab-size N]
    mega-spm-prepare TEXT_DIR OUT_DIR --langs en de [--splits train valid test] [--input-sentence-size N]

Writes OUT_DIR/spm.model (+ .vocab) and OUT_DIR/{train,valid,test}.spm (space-separated pieces).
With --langs (translation): one joint model trained on TEXT_DIR/train.{en,de}, and the splits
encoded to OUT_DIR/{split}.{lang} (the layout `fairseq-preprocess -s en -t de --trainpref OUT_DIR/train` reads).
"""

import argparse
from pathlib import Path

import sentencepiece as spm

from ..data.prepare_cli import count_lines


def check_training_text(paths):
    """SystemExit naming the file (and line) of an empty or non-UTF-8 training file."""
    for source in paths:
        if count_lines(source) == 0:
            raise SystemExit(f"spm_prepare: {source} is empty: sentencepiece needs training text")
        with open(source, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise SystemExit(
                        f"spm_prepare: {source}:{number}: not UTF-8 text ({err.reason}); convert the file to UTF-8 "
                        "(e.g. iconv -f latin1 -t utf-8)"
                    ) from None


def train_spm(training_files, prefix, args):
    """Trains the unigram model on `training_files` into `prefix`.model / .vocab."""
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, training_files)),
        model_prefix=str(prefix),
        vocab_size=args.vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=2,
        minloglevel=2,
        input_sentence_size=args.input_sentence_size,
        shuffle_input_sentence=args.input_sentence_size > 0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,  # fairseq's dictionary adds its own specials
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument(
        "--langs", nargs="+", help="language suffixes of parallel files (TEXT_DIR/{split}.{lang}); one joint model"
    )
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    parser.add_argument("--input-sentence-size", type=int, default=0, help="train on this many sampled lines (0: all)")
    args = parser.parse_args(argv)
    if args.vocab_size < 1:
        parser.error(f"--vocab-size must be a positive number of pieces, got {args.vocab_size}")
    if args.input_sentence_size < 0:
        parser.error(f"--input-sentence-size must be >= 0 (0: all lines), got {args.input_sentence_size}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prefix = args.out_dir / "spm"
    # (source file, encoded file) per split: TEXT_DIR/{split}.txt -> {split}.spm, or {split}.{lang} -> {split}.{lang}
    files = {
        split: [(args.text_dir / f"{split}.{lang}", args.out_dir / f"{split}.{lang}") for lang in args.langs]
        if args.langs
        else [(args.text_dir / f"{split}.txt", args.out_dir / f"{split}.spm")]
        for split in args.splits
    }
    for source, _ in (pair for pairs in files.values() for pair in pairs):
        if not source.is_file():
            raise SystemExit(f"spm_prepare: missing input file {source}")
    if args.langs:  # parallel files: line i of every language is the same sentence
        for split, pairs in files.items():
            counts = {source: count_lines(source) for source, _ in pairs}
            if len(set(counts.values())) > 1:
                listed = ", ".join(f"{source} has {n} lines" for source, n in counts.items())
                raise SystemExit(
                    f"spm_prepare: the {split} files of --langs {' '.join(args.langs)} differ in length: {listed}. "
                    f"Parallel files need one sentence per line, line i of one the translation of line i of the other: "
                    f"fix or re-extract them."
                )
    training_files = [source for source, _ in files[args.splits[0]]]
    check_training_text(training_files)
    try:
        train_spm(training_files, prefix, args)
    except RuntimeError as err:  # sentencepiece's own checks, e.g. a vocabulary larger than the text allows
        message = str(err).split("]")[-1].strip() or str(err)
        raise SystemExit(
            f"spm_prepare: sentencepiece could not train on {', '.join(map(str, training_files))}: {message} "
            "(choose another --vocab-size, or give it more text)"
        ) from None
    processor = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    for source, target in (pair for pairs in files.values() for pair in pairs):
        count = 0
        with open(source, encoding="utf-8") as fin, open(target, "w", encoding="utf-8") as fout:
            while lines := [line.rstrip("\n") for _, line in zip(range(100_000), fin)]:
                pieces = processor.encode(lines, out_type=str)
                fout.write("".join(" ".join(p) + "\n" for p in pieces))
                count += sum(map(len, pieces))
        print(f"{target}: {count} pieces")
    print(f"{prefix}.model: vocabulary {processor.get_piece_size()}")


if __name__ == "__main__":
    main()
