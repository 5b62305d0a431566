#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args]
#   bash scripts/test.sh            # fast tests (tests marked `slow` are skipped)
#   bash scripts/test.sh -m slow    # only the slow tests
#   bash scripts/test.sh -m ""      # everything
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
mega_env_setup test
# one math thread per process: the tests' models are tiny, and several tests run fairseq in
# parallel subprocesses, where 2 threads each on 2 cores slow everything down many times over
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -q tests "$@"
