#!/usr/bin/env bash
# GPU check (one CUDA GPU; about 7 minutes on an H100):
#   1. the CUDA-only unit tests (tests/test_cuda.py);
#   2. synthetic tokens (scripts/gpu_train_bench.py data);
#   3. fairseq-train of a ~100M-parameter mega_lm (tokens-per-sample 2048, chunk 512) and a
#      transformer_lm of about the same size, each in fp16 and in bf16, UPDATES updates;
#   4. the mega_lm run again in bf16 with --checkpoint-activations, and with --ddp-backend fully_sharded
#      (fairseq's FairScale FSDP, each Mega layer its own FSDP unit) plus --checkpoint-activations;
#   5. a table of tokens/s, peak GPU memory and final training loss for the runs;
#   6. a fully_sharded checkpoint (mega_lm_tiny with transformers' structure, 20 updates) that must load with
#      --restore-file in a plain (pytorch_ddp) run and export with mega-export-hf.
#   In the CPU dry run the fully_sharded steps only check that fairseq-train refuses them by flag (FairScale's
#   FSDP needs CUDA); the checkpointing run runs.
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
run mega_lm_bf16_ckpt --bf16 "${MEGA_ARCH[@]}" --decoder-chunk-size "$CHUNK" --checkpoint-activations
SHARDED_RC=0
if [ "$CPU_DRY_RUN" = "1" ]; then
    echo "== 4. fully_sharded on CPU: must be refused by flag"
    python -m fairseq_cli.train "${COMMON[@]}" --ddp-backend fully_sharded "${MEGA_ARCH[@]}" \
        > "$OUT/fsdp_refused.log" 2>&1
    if grep -q -- "--ddp-backend fully_sharded needs CUDA" "$OUT/fsdp_refused.log"; then
        echo "   refused as expected"
    else
        echo "   NOT refused by flag; last lines:"; tail -5 "$OUT/fsdp_refused.log"; SHARDED_RC=1
    fi
else
    run mega_lm_fp16_fsdp_ckpt --fp16 "${MEGA_ARCH[@]}" --decoder-chunk-size "$CHUNK" --ddp-backend fully_sharded \
        --checkpoint-activations
fi

echo
echo "== 5. results (tokens-per-sample $TOKENS, batch $BATCH sequences, up to $UPDATES updates; tokens/s after $WARMUP warm-up updates)"
python scripts/gpu_train_bench.py table "$RESULTS" --expect "${RUNS[@]}"

if [ "$CPU_DRY_RUN" != "1" ]; then
    echo "== 6. fully_sharded checkpoint -> --restore-file (pytorch_ddp) and mega-export-hf"
    SMALL=("$OUT/data" --task language_modeling --user-dir user_dir --tokens-per-sample 256 --sample-break-mode none
        --batch-size 4 --optimizer adam --lr 1e-3 --disable-validation --num-workers 0 --log-format simple
        --arch mega_lm_tiny --no-scale-embedding --no-final-norm --decoder-chunk-size 64 --seed 1)
    python -m fairseq_cli.train "${SMALL[@]}" --max-update 20 --ddp-backend fully_sharded --checkpoint-activations \
        --save-dir "$OUT/fsdp_ckpt" > "$OUT/fsdp_ckpt.log" 2>&1 || SHARDED_RC=1
    python -m fairseq_cli.train "${SMALL[@]}" --max-update 22 --restore-file "$OUT/fsdp_ckpt/checkpoint_last.pt" \
        --save-dir "$OUT/fsdp_restored" > "$OUT/fsdp_restored.log" 2>&1 || SHARDED_RC=1
    grep -q "@ 20 updates" "$OUT/fsdp_restored.log" || SHARDED_RC=1
    python -m mega_fairseq.convert.hf_export "$OUT/fsdp_ckpt/checkpoint_last.pt" "$OUT/fsdp_hf" --data "$OUT/data" > "$OUT/fsdp_export.log" 2>&1 \
        || SHARDED_RC=1
    if [ $SHARDED_RC -eq 0 ]; then echo "   saved, restored and exported"; else
        echo "   FAILED; see $OUT/fsdp_ckpt.log, fsdp_restored.log, fsdp_export.log"; tail -5 "$OUT"/fsdp_*.log; fi
fi
echo "unit tests: $([ $TESTS_RC -eq 0 ] && echo passed || echo "FAILED (exit $TESTS_RC)"); sharded: $([ $SHARDED_RC -eq 0 ] && echo ok || echo FAILED); total $(( SECONDS - START )) s"
FAILED=$(( TESTS_RC != 0 || SHARDED_RC != 0 ))
for name in "${RUNS[@]}"; do grep -q "\"name\": \"$name\"" "$RESULTS" 2>/dev/null || FAILED=1; done
exit $FAILED
