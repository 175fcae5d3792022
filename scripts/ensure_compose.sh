#!/usr/bin/env bash
# Makes sure a compose client is here for tests/test_compose.py, which runs the client's own
# `config` validation of compose.yaml (no Docker daemon needed). Installs Debian's
# `docker-compose` when neither `docker compose` nor `docker-compose` is there; where it cannot,
# it says so and succeeds, and those two tests skip.
set -euo pipefail

have_compose() {
  command -v docker-compose >/dev/null || { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; }
}

have_compose && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "ensure_compose: no compose client, and installing one needs root and apt-get; the" \
    "compose client's config check will skip (install docker-compose to run it)" >&2
  exit 0
fi

echo "ensure_compose: installing the Debian docker-compose package"
export DEBIAN_FRONTEND=noninteractive
if ! out="$(apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends docker-compose 2>&1)"; then
  echo "$out" >&2
  echo "ensure_compose: WARNING installing docker-compose failed; its config check will SKIP" >&2
  exit 0
fi
have_compose || { echo "ensure_compose: docker-compose installed but not on PATH" >&2; exit 1; }
