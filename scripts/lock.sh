#!/usr/bin/env bash
# Regenerates requirements/*.lock from pyproject.toml: run `make lock` after changing a
# dependency there (pins that still fit are kept); `make lock UPGRADE=1` moves every pin to the
# newest. Each lock pins exact versions with hashes, for CPython 3.11 on x86-64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="$(bash scripts/bootstrap.sh --uv)"
compile=("$uv" pip compile --quiet --generate-hashes --python-version 3.11
  --python-platform x86_64-manylinux_2_28 --override requirements/overrides.txt ${UPGRADE:+--upgrade})
"${compile[@]}" requirements/tools.in -o requirements/tools.lock
for extra in demo dev; do
  "${compile[@]}" pyproject.toml requirements/build.in --extra "$extra" -o "requirements/$extra.lock"
done
# No extra: the light workers, and what tests/test_installed_package.py installs.
"${compile[@]}" pyproject.toml -o requirements/base.lock
# The Docker image (compose.yaml): every stage, on PostgreSQL.
"${compile[@]}" pyproject.toml requirements/build.in --extra demo --extra lexicon \
  --extra postgres -o requirements/docker.lock
# The compose stack's slimmer images (Dockerfile targets): the pipeline's stages, and the
# dashboard; each installs over base.lock's layer, so their pins of it must stay the same.
"${compile[@]}" pyproject.toml requirements/build.in --extra model --extra lexicon \
  --extra postgres -o requirements/stages.lock
"${compile[@]}" pyproject.toml requirements/build.in --extra dashboard --extra backtest \
  --extra postgres -o requirements/dashboard.lock
echo "lock: wrote requirements/{tools,base,demo,dev,docker,stages,dashboard}.lock"
