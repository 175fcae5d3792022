#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries are here for the store's PostgreSQL tests, which
# start their own throwaway server (finsent/postgres_local.py). Installs Debian's `postgresql`
# when they are missing; where it cannot, it says so and succeeds, and those tests skip.
set -euo pipefail

have_server() {
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null
}

have_server && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "ensure_postgres: no PostgreSQL server binaries, and installing them needs root and" \
    "apt-get; the PostgreSQL tests will skip (install the postgresql package to run them)" >&2
  exit 0
fi

echo "ensure_postgres: installing the Debian postgresql package"
# The tests run their own clusters: don't let the package create and start one on port 5432.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/finsent.conf
export DEBIAN_FRONTEND=noninteractive
# apt chats on stderr even when quiet; show what it said only if it failed.
if ! out="$(apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends postgresql 2>&1)"; then
  echo "$out" >&2
  # A package mirror hiccup must not fail the whole suite: say so loudly; those tests skip.
  echo "ensure_postgres: WARNING installing postgresql failed; the PostgreSQL tests will SKIP" >&2
  exit 0
fi
have_server || { echo "ensure_postgres: postgresql installed but no pg_ctl found" >&2; exit 1; }
