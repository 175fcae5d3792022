# Sourced by scripts/ensure_*.sh: installs the Debian packages a group of tests needs.
#
#   apt_install TAG MISSING SKIPS PACKAGE...
#
# Where it cannot (not root, no apt-get, a package mirror hiccup) it says so on stderr, naming
# what is missing and what SKIPS, and returns 1: the caller exits 0 and those tests skip.

apt_install() {
  local tag=$1 missing=$2 skips=$3
  shift 3
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "$tag: $missing, and installing it needs root and apt-get; $skips (install $* to" \
      "run them)" >&2
    return 1
  fi
  echo "$tag: installing the Debian package(s) $*"
  export DEBIAN_FRONTEND=noninteractive
  local out
  # apt chats on stderr even when quiet; show what it said only if it failed.
  if ! out="$(apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends "$@" 2>&1)"; then
    echo "$out" >&2
    # A package mirror hiccup must not fail the whole suite: say so loudly; those tests skip.
    echo "$tag: WARNING installing $* failed; $skips" >&2
    return 1
  fi
}
