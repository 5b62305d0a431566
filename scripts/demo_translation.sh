#!/usr/bin/env bash
# Translation on built-in data: English->German message pairs from the machine's gettext catalogs
# (/usr/share/locale/de/LC_MESSAGES/*.mo), a small Mega encoder-decoder against a stock fairseq
# transformer of about the same size, trained with the same recipe and update budget.
#
#   bash scripts/demo_translation.sh
#
# corpus (scripts/make_gettext_corpus.py) -> joint sentencepiece (scripts/spm_prepare.py --langs)
# -> fairseq-preprocess --joined-dictionary -> fairseq-train (mega, then transformer)
# -> fairseq-generate on the test split (beam 5, lenpen 0.5) -> SacreBLEU on detokenized output.
# Target: under ~15 minutes on 2 idle CPU cores after the first install.  Knobs (all optional):
#   MAX_UPDATE (default 300), MAX_TOKENS (4096), VOCAB (sentencepiece pieces, 4000), LR (2e-3),
#   MODELS ("mega transformer"), EXTRA (more fairseq-train flags for both), VALID_EVERY (validate every 50 updates),
#   GENERATE_EXTRA (more fairseq-generate flags, e.g. "--max-len-b 20" for a quick look)
# Everything is written under data-bin/demo_mt* and checkpoints/demo_mt; each run starts afresh.
# The terminal shows fairseq's progress lines (scripts/demo_logs.py filter drops third-party deprecation noise);
# full logs are in checkpoints/demo_mt/<model>/train.log, and validation loss against updates and wall time
# of both models is drawn to checkpoints/demo_mt/curves.png (matplotlib: the `demo` extra, installed here).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

MAX_UPDATE="${MAX_UPDATE:-300}"
MAX_TOKENS="${MAX_TOKENS:-4096}"
VOCAB="${VOCAB:-4000}"
LR="${LR:-2e-3}"
MODELS="${MODELS:-mega transformer}"
EXTRA="${EXTRA:-}"
VALID_EVERY="${VALID_EVERY:-50}"
GENERATE_EXTRA="${GENERATE_EXTRA:-}"

TEXT=data-bin/demo_mt_text
SPM=data-bin/demo_mt_spm
DATA=data-bin/demo_mt
SAVE=checkpoints/demo_mt
mega_demo_start "$TEXT" "$SPM" "$DATA" "$SAVE"
python -c "import matplotlib" 2>/dev/null || python -m pip install -q -c constraints.txt -e '.[demo]'

# Both models: 3 encoder + 3 decoder layers, width 128, pre-norm, shared embeddings (~2M parameters).
ARGS_mega="--arch mega_translation_tiny --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 128 --encoder-hidden-dim 256
    --encoder-ffn-embed-dim 256 --encoder-z-dim 64 --encoder-n-dim 16"
ARGS_transformer="--arch transformer --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 128 --decoder-embed-dim 128
    --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 --decoder-attention-heads 4
    --encoder-normalize-before --decoder-normalize-before --share-all-embeddings"

echo "== 1/5 corpus: gettext catalogs -> $TEXT"
python scripts/make_gettext_corpus.py "$TEXT"

echo "== 2/5 joint sentencepiece (unigram, $VOCAB pieces) -> $SPM"
python scripts/spm_prepare.py "$TEXT" "$SPM" --langs en de --vocab-size "$VOCAB"

echo "== 3/5 fairseq-preprocess --joined-dictionary -> $DATA"
fairseq-preprocess -s en -t de --trainpref "$SPM/train" --validpref "$SPM/valid" --testpref "$SPM/test" \
    --destdir "$DATA" --joined-dictionary --workers 2 > "$SAVE/preprocess.log" 2>&1

summary=()
for model in $MODELS; do
    args_var="ARGS_$model"
    dir="$SAVE/$model"
    mkdir -p "$dir"
    echo "== 4/5 fairseq-train $model ($MAX_UPDATE updates of $MAX_TOKENS tokens) -> $dir"
    t0=$(date +%s)
    # shellcheck disable=SC2086  # the model arguments and EXTRA are lists of flags and must word-split
    fairseq-train "$DATA" --task translation -s en -t de --user-dir user_dir ${!args_var} $EXTRA \
        --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
        --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 1.0 --weight-decay 0.01 \
        --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates 100 --dropout 0.1 \
        --max-tokens "$MAX_TOKENS" --required-batch-size-multiple 1 --max-update "$MAX_UPDATE" --seed 1 \
        --cpu --num-workers 0 --save-dir "$dir" --no-epoch-checkpoints --validate-interval-updates "$VALID_EVERY" \
        --log-format simple --log-interval 25 2>&1 | tee "$dir/train.log" | python scripts/demo_logs.py filter \
        || { echo "fairseq-train $model failed; full log: $dir/train.log"; exit 1; }
    train_s=$(( $(date +%s) - t0 ))
    params=$(grep -o 'num. shared model params: [0-9,]*' "$dir/train.log" | head -1 | grep -o '[0-9,]*$')

    echo "== 5/5 fairseq-generate $model on the test split (beam 5, lenpen 0.5)"
    t0=$(date +%s)
    # --required-batch-size-multiple 1: fairseq otherwise drops a last batch that is not a multiple of 8
    fairseq-generate "$DATA" --user-dir user_dir --path "$dir/checkpoint_last.pt" --gen-subset test \
        --beam 5 --lenpen 0.5 --post-process sentencepiece --batch-size 128 --required-batch-size-multiple 1 \
        --cpu --num-workers 0 $GENERATE_EXTRA > "$dir/generate.out" 2> "$dir/generate.err" || { tail -30 "$dir/generate.err"; exit 1; }
    gen_s=$(( $(date +%s) - t0 ))
    grep '^D-' "$dir/generate.out" | sed 's/^D-//' | sort -n -k1,1 | cut -f3 > "$dir/test.hyp"
    if [ "$(wc -l < "$dir/test.hyp")" -ne "$(wc -l < "$TEXT/test.de")" ]; then
        echo "generation covered $(wc -l < "$dir/test.hyp") of $(wc -l < "$TEXT/test.de") test sentences" >&2; exit 1
    fi
    bleu=$(sacrebleu "$TEXT/test.de" -i "$dir/test.hyp" -b -w 2)
    paste "$TEXT/test.en" "$dir/test.hyp" | sed -n '1,3s/^/   /p'  # (sed reads on: no SIGPIPE under pipefail)
    summary+=("$(printf '| %-11s | %10s | %8s s | %9s s | %9s |' "$model" "$params" "$train_s" "$gen_s" "$bleu")")
done

runs=()
for model in $MODELS; do runs+=("$model=$SAVE/$model/train.log"); done
python scripts/demo_logs.py plot "$SAVE/curves.png" "${runs[@]}" --title "gettext en-de: validation"

cat <<SUMMARY

== done in $(mega_demo_elapsed) s ($(wc -l < "$TEXT/train.en") training pairs, $(wc -l < "$TEXT/test.en") test pairs)
| model       | parameters | train time | test decode | SacreBLEU |
|-------------|------------|------------|-------------|-----------|
$(printf '%s\n' "${summary[@]}")
   SacreBLEU: detokenized (sentencepiece-decoded) hypotheses against the raw German test messages
   logs and outputs: $SAVE/<model>/{train.log,generate.out,test.hyp}; data: $DATA (sentencepiece model $SPM/spm.model)
   validation curves (loss vs updates and vs wall time): $SAVE/curves.png
SUMMARY
