#!/usr/bin/env bash
# Built-in Long Range Arena run with no download: generated ListOps, a scaled-down Mega
# (`mega_lra_listop`, 2 layers, D=64, Mega-chunk 128) against a fairseq Transformer classifier
# (`transformer_lra_listop` scaled to about the same parameter count), each trained for the same
# wall-clock budget, then test accuracy of both.
#
#   bash scripts/demo_lra_listops.sh
#
# make_listops.py (20k/1k/1k expressions, 500-1000 tokens) -> prepare_lra.py listops ->
# fairseq-train both models at the same time, one CPU thread each, for MINUTES of training ->
# fairseq-validate on the test split -> a table (model, parameters, updates, time, test accuracy).
# About MINUTES + 3 minutes on 2 idle cores.  Knobs (environment, all optional):
#   MINUTES (10), TRAIN (20000), VALID (1000), TEST (1000), MIN_LEN (500), MAX_LEN (1000),
#   BATCH (16), LR (0.002), SEQUENTIAL=1 (train one after the other, THREADS threads each; default
#   both at once with one thread each), THREADS (2, with SEQUENTIAL=1), MEGA_ARGS, TRANSFORMER_ARGS,
#   VALID_EVERY (validate every 200 updates: the points of the curves).
# Output under data-bin/demo_lra_listops* and checkpoints/demo_lra_listops/{mega,transformer}; the terminal shows
# fairseq's progress lines of the Mega run (scripts/demo_logs.py filter), full logs are in */train.log, and
# validation accuracy and loss of both models against updates and wall time go to
# checkpoints/demo_lra_listops/curves.png (matplotlib: the `demo` extra, installed here).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

MINUTES="${MINUTES:-10}"
TRAIN="${TRAIN:-20000}"; VALID="${VALID:-1000}"; TEST="${TEST:-1000}"
MIN_LEN="${MIN_LEN:-500}"; MAX_LEN="${MAX_LEN:-1000}"
BATCH="${BATCH:-16}"; LR="${LR:-0.002}"
SEQUENTIAL="${SEQUENTIAL:-0}"; THREADS="${THREADS:-2}"; VALID_EVERY="${VALID_EVERY:-200}"
MEGA_ARGS="${MEGA_ARGS:---encoder-layers 2 --encoder-embed-dim 64 --encoder-hidden-dim 128 --encoder-ffn-embed-dim 128 --encoder-z-dim 32 --encoder-n-dim 16 --classifier-out-dim 128 --encoder-chunk-size 128}"
# same width and depth; the FFN width makes the parameter count match Mega's (printed below)
TRANSFORMER_ARGS="${TRANSFORMER_ARGS:---encoder-layers 2 --encoder-embed-dim 64 --encoder-ffn-embed-dim 336 --encoder-attention-heads 4 --classifier-out-dim 128 --sen-rep-type mp --attention-dropout 0.0}"

RAW=data-bin/demo_lra_listops_raw
DATA=data-bin/demo_lra_listops
SAVE=checkpoints/demo_lra_listops
mega_demo_start "$RAW" "$DATA" "$SAVE"
mkdir -p "$SAVE/mega" "$SAVE/transformer"
python -c "import matplotlib" 2>/dev/null || python -m pip install -q -c constraints.txt -e '.[demo]'

echo "== 1/4 generate ListOps: $TRAIN/$VALID/$TEST expressions of $MIN_LEN-$MAX_LEN tokens -> $RAW"
python scripts/make_listops.py "$RAW" --train "$TRAIN" --valid "$VALID" --test "$TEST" --min-length "$MIN_LEN" --max-length "$MAX_LEN" --seed 1

echo "== 2/4 binarize -> $DATA"
python scripts/prepare_lra.py listops "$RAW" "$DATA" 2>&1 | python scripts/demo_logs.py quiet

HOURS=$(python -c "print($MINUTES / 60)")
train() {  # name arch threads show(1: progress lines on the terminal) args...
    local name=$1 arch=$2 threads=$3 show=$4; shift 4
    # shellcheck disable=SC2068
    OMP_NUM_THREADS=$threads fairseq-train "$DATA" --task lra-text --user-dir user_dir --arch "$arch" $@ \
        --criterion lra_cross_entropy --dropout 0.1 \
        --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-8 --clip-norm 1.0 --weight-decay 0.01 \
        --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates 100 \
        --batch-size "$BATCH" --batch-size-valid 64 --required-batch-size-multiple 1 \
        --stop-time-hours "$HOURS" --max-update 1000000 --seed 1 --cpu --num-workers 0 \
        --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
        --save-dir "$SAVE/$name" --no-epoch-checkpoints --log-format simple --log-interval 25 \
        --validate-interval-updates "$VALID_EVERY" 2>&1 | tee "$SAVE/$name/train.log" \
        | if [ "$show" = 1 ]; then python scripts/demo_logs.py filter | sed "s/^/   [$name] /"; else cat > /dev/null; fi
    echo "   $name done: $(grep -o 'num_updates [0-9]*' "$SAVE/$name/train.log" | tail -1)"
}
echo "== 3/4 train mega_lra_listop and transformer_lra_listop for $MINUTES minutes each (logs: $SAVE/*/train.log)"
if [ "$SEQUENTIAL" = "1" ]; then
    train mega mega_lra_listop "$THREADS" 1 $MEGA_ARGS
    train transformer transformer_lra_listop "$THREADS" 1 $TRANSFORMER_ARGS
else
    train mega mega_lra_listop 1 1 $MEGA_ARGS &
    pid_mega=$!
    train transformer transformer_lra_listop 1 0 $TRANSFORMER_ARGS &
    pid_transformer=$!
    wait "$pid_mega"; wait "$pid_transformer"
fi

echo "== 4/4 test accuracy (fairseq-validate --valid-subset test)"
for name in mega transformer; do
    fairseq-validate "$DATA" --task lra-text --user-dir user_dir --path "$SAVE/$name/checkpoint_best.pt" \
        --valid-subset test --batch-size 64 --required-batch-size-multiple 1 --cpu --num-workers 0 > "$SAVE/$name/test.log" 2>&1
done

python - "$SAVE" "$RAW/basic_test.tsv" <<'EOF'
import collections, re, sys
save, test_tsv = sys.argv[1], sys.argv[2]
labels = [line.rsplit("\t", 1)[1] for line in open(test_tsv).read().splitlines()[1:]]
majority = 100.0 * collections.Counter(labels).most_common(1)[0][1] / len(labels)
def last(pattern, text, default="?"):
    found = re.findall(pattern, text)
    return found[-1] if found else default
print(f"\n{'model':<24}{'params':>10}{'updates':>10}{'wall s':>10}{'test acc %':>12}")
for name, arch in (("mega", "mega_lra_listop"), ("transformer", "transformer_lra_listop")):
    train, test = open(f"{save}/{name}/train.log").read(), open(f"{save}/{name}/test.log").read()
    params = last(r"num\. shared model params: ([\d,]+)", train)
    updates = last(r"num_updates[ =](\d+)", train)
    wall = last(r"(?<![_\w])wall[ =](\d+)", train)
    acc = last(r"\| accuracy ([\d.]+)", test)
    print(f"{arch:<24}{params:>10}{updates:>10}{wall:>10}{acc:>12}")
print(f"{'majority class':<24}{'':>10}{'':>10}{'':>10}{majority:>12.1f}")
EOF
python scripts/demo_logs.py plot "$SAVE/curves.png" mega="$SAVE/mega/train.log" transformer="$SAVE/transformer/train.log" \
    --title "ListOps: validation"
echo
echo "== done in $(mega_demo_elapsed) s; checkpoints and logs in $SAVE/{mega,transformer}"
