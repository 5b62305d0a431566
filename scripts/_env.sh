# Shared environment setup for scripts/test.sh and the demos (scripts/demo*.sh). Source it, then call
#   mega_env_setup            # runtime deps:            pip install -e .
#   mega_env_setup test       # plus test/hf extras:     pip install -e '.[test]'
# It cds to the repository root, creates .venv if missing, activates it, installs
# torch==2.13.0 on its own first (a later unpinned `torch` requirement would otherwise
# make pip download a multi-GB CUDA build), then the package with constraints.txt.
# Re-runs are quick: both steps are skipped when already done.
# The demos start with
#   mega_demo_start OUT_DIR... # mega_env_setup, then remove every OUT_DIR (each run starts afresh),
#                              # create the last one (the checkpoints directory) and start the clock
#   ... mega_demo_elapsed      # seconds since mega_demo_start

MEGA_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEGA_TORCH_VERSION="2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1

mega_env_setup() {
    local extras="${1:-}"
    local stamp=".venv/.mega_fairseq_installed"
    cd "$MEGA_REPO_ROOT"

    if [ ! -x .venv/bin/python ]; then
        echo "[env] creating .venv with ${PYTHON:-python3}"
        "${PYTHON:-python3}" -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate

    if python -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$MEGA_TORCH_VERSION')" 2>/dev/null; then
        echo "[env] torch $MEGA_TORCH_VERSION already installed"
    else
        echo "[env] installing torch==$MEGA_TORCH_VERSION"
        python -m pip install -q "torch==$MEGA_TORCH_VERSION"
    fi

    # The stamp holds the extras that were installed; it is valid while newer than the
    # packaging files and the package is still registered in the venv.
    local target="."
    [ -n "$extras" ] && target=".[$extras]"
    if [ -f "$stamp" ] && [ "$stamp" -nt setup.py ] && [ "$stamp" -nt constraints.txt ] \
        && { [ -z "$extras" ] || grep -qxF "$extras" "$stamp"; } \
        && python -c "import importlib.metadata as m; m.version('mega_fairseq')" 2>/dev/null; then
        echo "[env] mega_fairseq already installed ($target)"
    else
        echo "[env] installing -e '$target' (constraints.txt)"
        python -m pip install -q -c constraints.txt -e "$target"
        if [ -n "$extras" ]; then echo "$extras" > "$stamp"; else : > "$stamp"; fi
    fi
}

mega_demo_start() {
    mega_env_setup
    rm -rf "$@"
    mkdir -p "${@: -1}"
    MEGA_DEMO_START=$(date +%s)
}

mega_demo_elapsed() {
    echo $(( $(date +%s) - MEGA_DEMO_START ))
}

# The transformers 5.x environment (.venv-hf5) for the tests of exported model code (tests/test_hf_remote_code.py):
# transformers 5 has no Mega and needs no fairseq, so it is a separate venv with torch==$MEGA_TORCH_VERSION
# installed first (as above), then transformers==$MEGA_HF5_TRANSFORMERS_VERSION.  Cached: skipped when present.
MEGA_HF5_TRANSFORMERS_VERSION="5.23.0"

mega_hf5_env_setup() {
    local venv="$MEGA_REPO_ROOT/.venv-hf5"
    local stamp="$venv/.mega_hf5_installed"
    if [ -f "$stamp" ] && grep -qxF "$MEGA_TORCH_VERSION $MEGA_HF5_TRANSFORMERS_VERSION" "$stamp"; then
        echo "[env] .venv-hf5 ready (transformers $MEGA_HF5_TRANSFORMERS_VERSION)"
    else
        echo "[env] creating .venv-hf5 (torch $MEGA_TORCH_VERSION, transformers $MEGA_HF5_TRANSFORMERS_VERSION)"
        [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
        "$venv/bin/python" -m pip install -q "torch==$MEGA_TORCH_VERSION"
        "$venv/bin/python" -m pip install -q -c "$MEGA_REPO_ROOT/constraints.txt" \
            "transformers==$MEGA_HF5_TRANSFORMERS_VERSION" safetensors sentencepiece protobuf
        echo "$MEGA_TORCH_VERSION $MEGA_HF5_TRANSFORMERS_VERSION" > "$stamp"
    fi
    export MEGA_HF5_PYTHON="$venv/bin/python"
}
