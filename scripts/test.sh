#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args]
#   bash scripts/test.sh            # fast tests (tests marked `slow` are skipped)
#   bash scripts/test.sh -m slow    # only the slow tests
#   bash scripts/test.sh -m ""      # everything
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
mega_env_setup test
# transformers 5.x env for the exported model code's tests (MEGA_SKIP_HF5=1 skips building it; those tests skip)
if [ "${MEGA_SKIP_HF5:-0}" != "1" ]; then
    mega_hf5_env_setup
    source .venv/bin/activate  # mega_hf5_env_setup leaves the main env active; make sure
fi
# one math thread per process: the tests' models are tiny, and several tests run fairseq in
# parallel subprocesses, where 2 threads each on 2 cores slow everything down many times over
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -q tests "$@"
