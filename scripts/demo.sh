#!/usr/bin/env bash
# The main job on built-in data: a Mega language model trained with stock fairseq commands on
# real English that ships with Python (its reference topics and standard-library docstrings).
#
#   bash scripts/demo.sh
#
# corpus -> sentencepiece -> fairseq-preprocess -> fairseq-train (mega_lm) -> fairseq-eval-lm
# (validation perplexity) -> fairseq-interactive (a sampled continuation of a prompt).
# About 2 minutes on 2 idle CPU cores after the first install.  The terminal shows fairseq's progress lines
# (third-party deprecation noise filtered by scripts/demo_logs.py); full logs go to checkpoints/demo_lm/*.log.
# Environment knobs (all optional):
#   MAX_UPDATE (default 300), ARCH (default mega_lm_tiny), MODEL_ARGS (model-size flags for the
#   default arch), EXTRA (more fairseq-train flags), PROMPT (text to continue)
# Example, a stock fairseq baseline on the same data:
#   ARCH=transformer_lm MODEL_ARGS="--decoder-layers 2 --decoder-embed-dim 128 --decoder-ffn-embed-dim 512 --decoder-attention-heads 4" bash scripts/demo.sh
# Everything is written under data-bin/demo_lm* and checkpoints/demo_lm; each run starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

ARCH="${ARCH:-mega_lm_tiny}"
DEFAULT_MODEL_ARGS="--decoder-layers 4 --decoder-embed-dim 128 --decoder-hidden-dim 256 --decoder-ffn-embed-dim 256 --decoder-z-dim 64 --decoder-n-dim 16 --decoder-chunk-size 128"
if [ "$ARCH" = "mega_lm_tiny" ]; then MODEL_ARGS="${MODEL_ARGS-$DEFAULT_MODEL_ARGS}"; else MODEL_ARGS="${MODEL_ARGS-}"; fi
EXTRA="${EXTRA:-}"
MAX_UPDATE="${MAX_UPDATE:-300}"
PROMPT="${PROMPT:-The return value of this function is}"

TEXT=data-bin/demo_lm_text
SPM=data-bin/demo_lm_spm
DATA=data-bin/demo_lm
SAVE=checkpoints/demo_lm
mega_demo_start "$TEXT" "$SPM" "$DATA" "$SAVE"

echo "== 1/6 corpus: Python's reference topics and standard-library docstrings -> $TEXT"
python scripts/make_demo_corpus.py "$TEXT"

echo "== 2/6 sentencepiece (unigram, 4000 pieces) -> $SPM"
python scripts/spm_prepare.py "$TEXT" "$SPM" --vocab-size 4000

echo "== 3/6 fairseq-preprocess -> $DATA"
fairseq-preprocess --only-source \
    --trainpref "$SPM/train.spm" --validpref "$SPM/valid.spm" --testpref "$SPM/test.spm" \
    --destdir "$DATA" --workers 2 2>&1 | tee "$SAVE/preprocess.log" | python scripts/demo_logs.py quiet

echo "== 4/6 fairseq-train --arch $ARCH ($MAX_UPDATE updates) -> $SAVE"
# shellcheck disable=SC2086  # MODEL_ARGS and EXTRA are lists of flags and must word-split
fairseq-train "$DATA" \
    --task language_modeling --user-dir user_dir --arch "$ARCH" $MODEL_ARGS $EXTRA \
    --tokens-per-sample 256 --max-tokens 4096 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 1.0 --weight-decay 0.01 \
    --lr 3e-3 --lr-scheduler inverse_sqrt --warmup-updates 100 \
    --max-update "$MAX_UPDATE" --seed 1 --cpu --num-workers 0 \
    --save-dir "$SAVE" --no-epoch-checkpoints --validate-interval-updates 100 --save-interval-updates 100 \
    --log-format simple --log-interval 25 2>&1 | tee "$SAVE/train.log" | python scripts/demo_logs.py filter

echo "== 5/6 fairseq-eval-lm on the validation split"
fairseq-eval-lm "$DATA" --user-dir user_dir --path "$SAVE/checkpoint_best.pt" \
    --gen-subset valid --tokens-per-sample 256 --max-tokens 4096 \
    --cpu --num-workers 0 2>&1 | tee "$SAVE/eval_valid.log" | python scripts/demo_logs.py filter

echo "== 6/6 fairseq-interactive: continue \"$PROMPT\""
echo "$PROMPT" | fairseq-interactive "$DATA" --task language_modeling --user-dir user_dir \
    --path "$SAVE/checkpoint_best.pt" --bpe sentencepiece --sentencepiece-model "$SPM/spm.model" \
    --sampling --sampling-topk 10 --beam 1 --nbest 1 --max-len-b 60 --seed 1 --cpu \
    2>"$SAVE/interactive.err" | tee "$SAVE/interactive.log"

ppl=$(grep -o 'Perplexity: [0-9.]*' "$SAVE/eval_valid.log" | tail -1)
sample=$(grep '^D-' "$SAVE/interactive.log" | head -1 | cut -f3-)
cat <<SUMMARY

== done in $(mega_demo_elapsed) s
   validation ${ppl:-perplexity: not found (see $SAVE/eval_valid.log)}
   sample: ${sample:-none (see $SAVE/interactive.err)}
   checkpoint: $SAVE/checkpoint_best.pt (last: $SAVE/checkpoint_last.pt)
   logs (in full): $SAVE/preprocess.log, $SAVE/train.log, $SAVE/eval_valid.log, $SAVE/interactive.log
   data: $DATA (sentencepiece model $SPM/spm.model)
SUMMARY
