#!/usr/bin/env bash
# Makes sure a Chromium is here for the dashboard's browser tests (tests/dashboard/test_browser.py),
# which drive the system browser headless through Playwright; they never download one. Installs
# Debian's `chromium` when it is missing; where it cannot, it says so and succeeds, and those
# tests skip.
set -euo pipefail
source "$(dirname "$0")/lib/apt_install.sh"

have_chromium() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null
}

have_chromium && exit 0

apt_install ensure_chromium "no chromium" "the browser tests will SKIP" chromium fonts-liberation || exit 0
have_chromium || { echo "ensure_chromium: chromium installed but not on PATH" >&2; exit 1; }
