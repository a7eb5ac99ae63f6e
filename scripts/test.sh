#!/usr/bin/env bash
# Lint, format check and the whole test suite against real servers; arguments go to pytest.
# The suite runs in pytest-xdist workers (most tests wait on real servers, not on the CPU);
# `-n 0` runs it in one process. tests/conftest.py groups the tests per module for loadgroup.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q -n 3 --dist loadgroup "$@"
