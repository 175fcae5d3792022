#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries are here for the store's PostgreSQL tests, which
# start their own throwaway server (finsent/postgres_local.py). Installs Debian's `postgresql`
# when they are missing; where it cannot, it says so and succeeds, and those tests skip.
set -euo pipefail
source "$(dirname "$0")/lib/apt_install.sh"

have_server() {
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null
}

have_server && exit 0

if [[ "$(id -u)" == 0 ]]; then
  # The tests run their own clusters: don't let the package create and start one on port 5432.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/finsent.conf
fi
apt_install ensure_postgres "no PostgreSQL server binaries" "the PostgreSQL tests will SKIP" \
  postgresql || exit 0
have_server || { echo "ensure_postgres: postgresql installed but no pg_ctl found" >&2; exit 1; }
