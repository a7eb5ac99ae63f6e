#!/usr/bin/env bash
# Install what Quarterdeck's tests and demo need; safe to run again.
#
#   scripts/setup.sh                 Debian packages for the real test servers + .venv
#   scripts/setup.sh --python-only   .venv only; missing Debian packages are just reported
set -euo pipefail
cd "$(dirname "$0")/.."

python_only=false
case "${1:-}" in
  --python-only) python_only=true ;;
  "") ;;
  *) echo "usage: $0 [--python-only]" >&2; exit 2 ;;
esac

say() { echo "setup: $*" >&2; }

# Debian installs some server binaries outside a normal user's PATH.
have() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

missing_server_packages() {
  have redis-server || echo redis-server
  have_postgres || echo postgresql
  have prometheus || echo prometheus
  have prometheus-alertmanager || echo prometheus-alertmanager
  have haproxy || echo haproxy
  have nginx || echo nginx-light
  have chromium || echo chromium
}

missing_python_packages() {
  [[ -x .venv/bin/python ]] && return
  have python3 || { printf '%s\n' python3 python3-venv; return; }
  python3 -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv
}

mapfile -t servers_missing < <(missing_server_packages)
mapfile -t wanted_packages < <(missing_python_packages)
if ((${#servers_missing[@]})); then
  if $python_only; then
    say "warning: Debian packages missing (the tests need them, the demo does not):" \
      "${servers_missing[*]}"
  else
    wanted_packages+=("${servers_missing[@]}")
  fi
fi

if ((${#wanted_packages[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${wanted_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${wanted_packages[@]}" >/dev/null
  else
    say "missing Debian packages: ${wanted_packages[*]}"
    say "install them with: sudo apt-get install -y --no-install-recommends ${wanted_packages[*]}"
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  python=""
  for candidate in python3.13 python3.12 python3.11 python3; do
    # Quietly: a pyenv shim for a version that is installed but not selected is on PATH,
    # and answers with "command not found" and advice on stderr.
    if have "$candidate" &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      python=$candidate
      break
    fi
  done
  if [[ -z "$python" ]]; then
    say "Python 3.11 or newer is required to create .venv; python3 is $(python3 --version 2>&1)"
    exit 1
  fi
  say "creating .venv with $python"
  "$python" -m venv .venv
fi

# Reinstall only when the dependency list changed since the last successful install.
stamp=.venv/.quarterdeck-pyproject.sha256
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
  say "installing Python dependencies into .venv"
  # Quiet unless it fails: build backends print warnings that pip's --quiet does not silence.
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]' \
    >.venv/pip-install.log 2>&1; then
    tail -n 40 .venv/pip-install.log >&2
    say "pip install failed; full log in .venv/pip-install.log"
    exit 1
  fi
  echo "$wanted" >"$stamp"
fi
