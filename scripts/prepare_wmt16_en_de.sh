#!/usr/bin/env bash
# Binarize WMT'16 English-German for the paper's recipe (configs/translation/mega_wmt16_en_de.yaml).
#
#   bash scripts/prepare_wmt16_en_de.sh RAW_DIR OUT_DIR
#
# RAW_DIR holds raw (untokenized) UTF-8 text, one sentence per line, aligned by line:
#   train.en / train.de                 WMT'16 training data (Europarl v7 + Common Crawl + News Commentary v11,
#                                       ~4.5M pairs; e.g. the concatenation fairseq's prepare-wmt14en2de.sh builds)
#   newstest2013.en / newstest2013.de   validation
#   newstest2014.en / newstest2014.de   test (the paper's numbers are on newstest2014)
# Nothing is downloaded.  Steps: one joint sentencepiece model (unigram, VOCAB pieces, trained on
# SPM_SENTENCES sampled lines) -> OUT_DIR/spm/{train,valid,test}.{en,de} -> fairseq-preprocess with a
# joined dictionary -> OUT_DIR (the data directory for fairseq-train / fairseq-hydra-train).
# Pairs with an empty side or more than MAX_CHARS characters on either side are dropped from train.
# Knobs: VOCAB (32000), SPM_SENTENCES (4000000), MAX_CHARS (1000), WORKERS (8).
# Then, e.g.:
#   fairseq-hydra-train --config-dir configs/translation --config-name mega_wmt16_en_de \
#       task.data=$PWD/OUT_DIR common.user_dir=$PWD/user_dir checkpoint.save_dir=$PWD/checkpoints/wmt16
#   fairseq-generate OUT_DIR --user-dir user_dir --path checkpoints/wmt16/checkpoint_best.pt --gen-subset test \
#       --beam 5 --lenpen 0.5 --post-process sentencepiece --batch-size 128 --required-batch-size-multiple 1 > gen.out
#   grep ^D- gen.out | sed 's/^D-//' | sort -n -k1,1 | cut -f3 | sacrebleu RAW_DIR/newstest2014.de
set -euo pipefail
if [ $# -ne 2 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
RAW="$1"
OUT="$2"
VOCAB="${VOCAB:-32000}"
SPM_SENTENCES="${SPM_SENTENCES:-4000000}"
MAX_CHARS="${MAX_CHARS:-1000}"
WORKERS="${WORKERS:-8}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"

for f in train.en train.de newstest2013.en newstest2013.de newstest2014.en newstest2014.de; do
    if [ ! -s "$RAW/$f" ]; then
        echo "prepare_wmt16_en_de: missing or empty $RAW/$f (expected files: train.{en,de}, newstest2013.{en,de}, newstest2014.{en,de})" >&2
        exit 1
    fi
done
for split in train newstest2013 newstest2014; do
    n_en="$(wc -l < "$RAW/$split.en")"; n_de="$(wc -l < "$RAW/$split.de")"
    if [ "$n_en" -ne "$n_de" ]; then
        echo "prepare_wmt16_en_de: $RAW/$split.en has $n_en lines but $RAW/$split.de has $n_de: parallel files need" \
             "line i of one to be the translation of line i of the other; fix or re-extract them" >&2
        exit 1
    fi
done

mkdir -p "$OUT/text"
echo "== filter training pairs (empty or > $MAX_CHARS characters) -> $OUT/text"
paste -d '\t' "$RAW/train.en" "$RAW/train.de" \
    | awk -F '\t' -v max="$MAX_CHARS" 'NF == 2 && length($1) > 0 && length($2) > 0 && length($1) <= max && length($2) <= max' \
    > "$OUT/text/train.tsv"
cut -f1 "$OUT/text/train.tsv" > "$OUT/text/train.en"
cut -f2 "$OUT/text/train.tsv" > "$OUT/text/train.de"
rm "$OUT/text/train.tsv"
echo "   kept $(wc -l < "$OUT/text/train.en") of $(wc -l < "$RAW/train.en") pairs"
for lang in en de; do
    cp "$RAW/newstest2013.$lang" "$OUT/text/valid.$lang"
    cp "$RAW/newstest2014.$lang" "$OUT/text/test.$lang"
done

echo "== joint sentencepiece ($VOCAB pieces) -> $OUT/spm"
python "$REPO/scripts/spm_prepare.py" "$OUT/text" "$OUT/spm" --langs en de --vocab-size "$VOCAB" --input-sentence-size "$SPM_SENTENCES"

echo "== fairseq-preprocess --joined-dictionary -> $OUT"
fairseq-preprocess -s en -t de --trainpref "$OUT/spm/train" --validpref "$OUT/spm/valid" --testpref "$OUT/spm/test" \
    --destdir "$OUT" --joined-dictionary --workers "$WORKERS"
cp "$OUT/spm/spm.model" "$OUT/spm.model"
echo "done: $OUT (sentencepiece model $OUT/spm.model)"
