#!/usr/bin/env bash
# Makes sure a compose client is here for tests/test_compose.py, which runs the client's own
# `config` validation of compose.yaml (no Docker daemon needed). Installs Debian's
# `docker-compose` when neither `docker compose` nor `docker-compose` is there; where it cannot,
# it says so and succeeds, and those two tests skip.
set -euo pipefail
source "$(dirname "$0")/lib/apt_install.sh"

have_compose() {
  command -v docker-compose >/dev/null || { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; }
}

have_compose && exit 0

apt_install ensure_compose "no compose client" "the compose client's config check will SKIP" \
  docker-compose || exit 0
have_compose || { echo "ensure_compose: docker-compose installed but not on PATH" >&2; exit 1; }
