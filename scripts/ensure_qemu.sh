#!/usr/bin/env bash
# Makes sure qemu's user-mode emulator is here for the cross-CPU score test
# (tests/model/test_infer.py: the scorer under an emulated AVX2-only Haswell gives the same
# bits as on this CPU). Installs Debian's `qemu-user` when it is missing; where it cannot, it
# says so and succeeds, and that test skips.
set -euo pipefail
source "$(dirname "$0")/lib/apt_install.sh"

command -v qemu-x86_64 >/dev/null && exit 0

apt_install ensure_qemu "no qemu-x86_64" "the cross-CPU score test will SKIP" qemu-user || exit 0
command -v qemu-x86_64 >/dev/null || { echo "ensure_qemu: qemu-user installed but no qemu-x86_64" >&2; exit 1; }
