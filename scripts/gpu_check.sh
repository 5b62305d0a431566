#!/usr/bin/env bash
# GPU check (one CUDA GPU; about 7 minutes on an H100):
#   1. the CUDA-only unit tests (tests/test_cuda.py);
#   2. synthetic tokens (scripts/gpu_train_bench.py data);
#   3. fairseq-train of a ~100M-parameter mega_lm (tokens-per-sample 2048, chunk 512) and a
#      transformer_lm of about the same size, each in fp16 and in bf16, UPDATES updates;
#   4. a table of tokens/s, peak GPU memory and final training loss for the four runs.
#
#   bash scripts/gpu_check.sh                    # needs a CUDA build of torch in the active env (or .venv)
#   GPU_CHECK_CPU=1 bash scripts/gpu_check.sh    # dry run on the CPU: tiny models, a few updates (plumbing only)
#
# Knobs: UPDATES (200), BATCH (sequences of 2048 tokens per update: 4), STOP_SECONDS (75: cap on
# each run's training time, so the whole check stays within 8 minutes even if a run is slower
# than expected; the table shows how many updates each run made), OUT (gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

CPU_DRY_RUN="${GPU_CHECK_CPU:-0}"
OUT="${OUT:-gpu_check_out}"
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"
rm -f "$RESULTS"
START=$SECONDS

if [ "$CPU_DRY_RUN" = "1" ]; then
    UPDATES="${UPDATES:-4}"; BATCH="${BATCH:-2}"; STOP_SECONDS="${STOP_SECONDS:-60}"
    TOKENS=256; CHUNK=64; DATA_ARGS=(--vocab 500 --sequences 32 --length 256); DEVICE=(--cpu); WARMUP=1
    MEGA_ARCH=(--arch mega_lm_tiny)
    TRANSFORMER_ARCH=(--arch transformer_lm --decoder-layers 2 --decoder-embed-dim 64 --decoder-ffn-embed-dim 256
        --decoder-attention-heads 4 --share-decoder-input-output-embed)
    echo "== GPU check: CPU DRY RUN (tiny models; numbers are meaningless)"
else
    UPDATES="${UPDATES:-200}"; BATCH="${BATCH:-4}"; STOP_SECONDS="${STOP_SECONDS:-75}"
    TOKENS=2048; CHUNK=512; DATA_ARGS=(--vocab 16000 --sequences 1000 --length 2048); DEVICE=(); WARMUP=20
    # ~104M parameters (11 layers x 8.3M + 12.3M embeddings, shared with the output layer)
    MEGA_ARCH=(--arch mega_lm --decoder-layers 11 --decoder-embed-dim 768 --decoder-hidden-dim 1536
        --decoder-ffn-embed-dim 1536 --decoder-z-dim 192 --decoder-n-dim 16)
    # ~101M parameters (13 layers x 7.1M + 12.3M embeddings, shared with the output layer)
    TRANSFORMER_ARCH=(--arch transformer_lm --decoder-layers 13 --decoder-embed-dim 768 --decoder-ffn-embed-dim 3072
        --decoder-attention-heads 12 --share-decoder-input-output-embed)
    if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: torch.cuda.is_available() is False in $(command -v python) (torch $(python -c 'import torch; print(torch.__version__)' 2>/dev/null))." >&2
        echo "       Install a CUDA build of torch in this environment, or run the CPU dry run: GPU_CHECK_CPU=1 bash scripts/gpu_check.sh" >&2
        exit 2
    fi
    python -c "import torch; p = torch.cuda.get_device_properties(0); print(f'== GPU check on {p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}')"
fi

echo "== 1. CUDA unit tests (tests/test_cuda.py)"
python -m pytest -q tests/test_cuda.py -p no:cacheprovider
TESTS_RC=$?

echo "== 2. synthetic tokens -> $OUT/data"
python scripts/gpu_train_bench.py data "$OUT/data" "${DATA_ARGS[@]}" || exit 1

COMMON=(
    "$OUT/data" --task language_modeling --user-dir user_dir --tokens-per-sample "$TOKENS" --sample-break-mode none
    --batch-size "$BATCH" --required-batch-size-multiple 1 --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm 1.0
    --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 50 --max-update "$UPDATES"
    --stop-time-hours "$(python -c "print($STOP_SECONDS / 3600)")" --dropout 0.1 --seed 1
    --disable-validation --no-save --num-workers 2 --log-format simple --log-interval 20 "${DEVICE[@]}"
)
RUNS=()
run() {  # run NAME PRECISION_FLAG ARCH_ARGS...
    local name="$1" precision="$2"
    shift 2
    RUNS+=("$name")
    echo "== 3. $name ($(( SECONDS - START )) s elapsed; log: $OUT/$name.log)"
    timeout $(( STOP_SECONDS + 150 )) python scripts/gpu_train_bench.py train "$name" "$RESULTS" --warmup "$WARMUP" -- \
        "${COMMON[@]}" "$precision" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    grep -E "^RESULT" "$OUT/$name.log"
    if [ $rc -ne 0 ]; then
        echo "   $name FAILED (exit $rc$([ $rc -eq 124 ] && echo ': timed out')); last lines of its log:"
        tail -5 "$OUT/$name.log"
    fi
}
run mega_lm_fp16 --fp16 "${MEGA_ARCH[@]}" --decoder-chunk-size "$CHUNK"
run mega_lm_bf16 --bf16 "${MEGA_ARCH[@]}" --decoder-chunk-size "$CHUNK"
run transformer_lm_fp16 --fp16 "${TRANSFORMER_ARCH[@]}"
run transformer_lm_bf16 --bf16 "${TRANSFORMER_ARCH[@]}"

echo
echo "== 4. results (tokens-per-sample $TOKENS, batch $BATCH sequences, up to $UPDATES updates; tokens/s after $WARMUP warm-up updates)"
python scripts/gpu_train_bench.py table "$RESULTS" --expect "${RUNS[@]}"
echo "unit tests: $([ $TESTS_RC -eq 0 ] && echo passed || echo "FAILED (exit $TESTS_RC)"); total $(( SECONDS - START )) s"
FAILED=$(( TESTS_RC != 0 ))
for name in "${RUNS[@]}"; do grep -q "\"name\": \"$name\"" "$RESULTS" 2>/dev/null || FAILED=1; done
exit $FAILED
