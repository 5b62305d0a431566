#!/usr/bin/env bash
# Demo: train a small language model on built-in data (docstrings of Python's
# standard library) with fairseq on the CPU, then report test perplexity.
#
#   bash scripts/demo.sh
#
# Environment knobs (all optional):
#   ARCH         fairseq architecture                     (default: mega_lm_tiny)
#   EXTRA        extra fairseq-train flags, e.g. model sizes (default: none)
#   MAX_UPDATE   number of training updates               (default: 300)
#   TOKENS_PER_SAMPLE, MAX_TOKENS, LR                     (defaults: 128, 2048, 1e-3)
# Example with a stock fairseq model:
#   ARCH=transformer_lm_gpt2_tiny bash scripts/demo.sh
# Writes only under data-bin/ and checkpoints/ (and .venv/); each run starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
mega_env_setup

ARCH="${ARCH:-mega_lm_tiny}"
EXTRA="${EXTRA:-}"
MAX_UPDATE="${MAX_UPDATE:-300}"
TOKENS_PER_SAMPLE="${TOKENS_PER_SAMPLE:-128}"
MAX_TOKENS="${MAX_TOKENS:-2048}"
LR="${LR:-1e-3}"

TEXT=data-bin/demo_lm_text
DATA=data-bin/demo_lm
SAVE=checkpoints/demo_lm
rm -rf "$TEXT" "$DATA" "$SAVE"

echo "== 1/4 corpus: docstrings of the Python standard library -> $TEXT"
python scripts/make_demo_corpus.py "$TEXT"

echo "== 2/4 fairseq-preprocess -> $DATA"
fairseq-preprocess --only-source \
    --trainpref "$TEXT/train.txt" --validpref "$TEXT/valid.txt" --testpref "$TEXT/test.txt" \
    --destdir "$DATA" --workers 2

echo "== 3/4 fairseq-train --arch $ARCH ($MAX_UPDATE updates) -> $SAVE"
# shellcheck disable=SC2086  # EXTRA is a list of flags and must word-split
fairseq-train "$DATA" \
    --task language_modeling --user-dir user_dir --arch "$ARCH" $EXTRA \
    --tokens-per-sample "$TOKENS_PER_SAMPLE" --max-tokens "$MAX_TOKENS" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 1.0 \
    --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates 50 \
    --max-update "$MAX_UPDATE" --seed 1 --cpu --num-workers 0 \
    --save-dir "$SAVE" --no-epoch-checkpoints \
    --log-format simple --log-interval 25

echo "== 4/4 fairseq-eval-lm on the test split"
fairseq-eval-lm "$DATA" --user-dir user_dir --path "$SAVE/checkpoint_best.pt" \
    --gen-subset test --tokens-per-sample "$TOKENS_PER_SAMPLE" --max-tokens "$MAX_TOKENS" \
    --cpu --num-workers 0 2>&1 | tee "$SAVE/eval_test.log"

echo "== done: $(grep -o 'Loss (base 2).*' "$SAVE/eval_test.log" || echo 'no perplexity line found')"
