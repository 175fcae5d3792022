#!/usr/bin/env bash
# Makes sure a Chromium is here for the dashboard's browser tests (tests/dashboard/test_browser.py),
# which drive the system browser headless through Playwright; they never download one. Installs
# Debian's `chromium` when it is missing; where it cannot, it says so and succeeds, and those
# tests skip.
set -euo pipefail

have_chromium() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null
}

have_chromium && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "ensure_chromium: no chromium, and installing it needs root and apt-get; the browser" \
    "tests will skip (install the chromium package to run them)" >&2
  exit 0
fi

echo "ensure_chromium: installing the Debian chromium package"
export DEBIAN_FRONTEND=noninteractive
# apt chats on stderr even when quiet; show what it said only if it failed.
if ! out="$(apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends chromium fonts-liberation 2>&1)"; then
  echo "$out" >&2
  # A package mirror hiccup must not fail the whole suite: say so loudly; those tests skip.
  echo "ensure_chromium: WARNING installing chromium failed; the browser tests will SKIP" >&2
  exit 0
fi
have_chromium || { echo "ensure_chromium: chromium installed but not on PATH" >&2; exit 1; }
