"""Train a sentencepiece model on TEXT_DIR/train.txt and encode the splits for fairseq-preprocess.

    python scripts/spm_prepare.py TEXT_DIR OUT_DIR [--vocab-size N]

Writes OUT_DIR/spm.model (+ .vocab) and OUT_DIR/{train,valid,test}.spm (space-separated pieces).
"""
import argparse
from pathlib import Path

import sentencepiece as spm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--vocab-size", type=int, default=4000)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prefix = args.out_dir / "spm"
    spm.SentencePieceTrainer.train(
        input=str(args.text_dir / "train.txt"), model_prefix=str(prefix), vocab_size=args.vocab_size,
        model_type="unigram", character_coverage=1.0, num_threads=2, minloglevel=2,
        bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,  # fairseq's dictionary adds its own specials
    )
    processor = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    for split in ("train", "valid", "test"):
        lines = (args.text_dir / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        pieces = processor.encode(lines, out_type=str)
        (args.out_dir / f"{split}.spm").write_text("\n".join(" ".join(p) for p in pieces) + "\n", encoding="utf-8")
        print(f"{args.out_dir / (split + '.spm')}: {sum(map(len, pieces))} pieces")
    print(f"{prefix}.model: vocabulary {processor.get_piece_size()}")


if __name__ == "__main__":
    main()
