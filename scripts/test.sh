#!/usr/bin/env bash
# Lint, format check and the whole test suite against real servers; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q "$@"
