#!/usr/bin/env bash
# Makes sure qemu's user-mode emulator is here for the cross-CPU score test
# (tests/model/test_infer.py: the scorer under an emulated AVX2-only Haswell gives the same
# bits as on this CPU). Installs Debian's `qemu-user` when it is missing; where it cannot, it
# says so and succeeds, and that test skips.
set -euo pipefail

command -v qemu-x86_64 >/dev/null && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "ensure_qemu: no qemu-x86_64, and installing it needs root and apt-get; the cross-CPU" \
    "score test will skip (install the qemu-user package to run it)" >&2
  exit 0
fi

echo "ensure_qemu: installing the Debian qemu-user package"
export DEBIAN_FRONTEND=noninteractive
if ! out="$(apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends qemu-user 2>&1)"; then
  echo "$out" >&2
  # A package mirror hiccup must not fail the whole suite: say so loudly; that test skips.
  echo "ensure_qemu: WARNING installing qemu-user failed; the cross-CPU test will SKIP" >&2
  exit 0
fi
command -v qemu-x86_64 >/dev/null || { echo "ensure_qemu: qemu-user installed but no qemu-x86_64" >&2; exit 1; }
