#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args]
#   bash scripts/test.sh            # fast tests (tests marked `slow` are skipped)
#   bash scripts/test.sh -m slow    # only the slow tests
#   bash scripts/test.sh -m ""      # everything
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
mega_env_setup test
python -m pytest -q tests "$@"
