#!/usr/bin/env bash
# Makes .venv ready: a virtualenv cached under the finsent cache dir, keyed on a hash of the
# dependency files, so a fresh clone reuses it and only a dependency change rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${FINSENT_EXTRAS:-dev}"
CACHE="${FINSENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/finsent}"
# Only what pip installs feeds the key, so editing pytest or ruff settings reuses the venv.
deps="$("$PYTHON" - <<'PY'
import json, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
keep = {k: project["project"].get(k) for k in ("dependencies", "optional-dependencies", "requires-python")}
print(json.dumps([keep, project.get("build-system"), sys.version], sort_keys=True))
PY
)"
key="$( (echo "$deps"; echo "$EXTRAS") | sha256sum | cut -c1-16)"
venv="$CACHE/venvs/$key"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "finsent needs Python 3.11 or newer (found $("$PYTHON" --version))" >&2; exit 1; }

if [[ ! -f "$venv/.complete" ]]; then
  echo "bootstrap: creating $venv (extras: $EXTRAS)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
  # Install the dependencies only; the project itself is linked below, per checkout.
  "$venv/bin/python" -m pip install -q ".[${EXTRAS}]"
  "$venv/bin/python" -m pip uninstall -q -y finsent
  touch "$venv/.complete"
fi
# Point the shared venv at this checkout (cheap; makes the `finsent` script run this code).
if ! out="$("$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
ln -sfn "$venv" .venv
