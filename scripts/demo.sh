#!/usr/bin/env bash
# Start Quarterdeck with a simulated fleet; arguments go to `quarterdeck demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo needs only Python: missing Debian packages are reported, not installed.
bash scripts/setup.sh --python-only
exec .venv/bin/quarterdeck demo "$@"
