#!/usr/bin/env bash
# .ci/deps without touching the system: fake dpkg-query / apt-get / sudo / id on PATH record what would run.
# Checks: nothing is called when every package is present; a missing package is named, with the exact apt-get
# line, and installed only by root or through password-less sudo; `--check` never installs. Fast, no network.
set -euo pipefail
deps=$(cd "$(dirname "$0")/../.." && pwd)/.ci/deps
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
# dpkg-query: every package installed except those listed in $work/missing.
cat > "$work/bin/dpkg-query" <<'FAKE'
#!/usr/bin/env bash
pkg=${!#}
grep -qx "$pkg" "$FAKE_DIR/missing" 2>/dev/null && exit 1
printf 'install ok installed'
FAKE
cat > "$work/bin/apt-get" <<'FAKE'
#!/usr/bin/env bash
echo "apt-get $*" >> "$FAKE_DIR/calls"
FAKE
cat > "$work/bin/sudo" <<'FAKE'
#!/usr/bin/env bash
[ "$1" = -n ] && shift
[ "${FAKE_SUDO:-no}" = yes ] || exit 1
echo "sudo $*" >> "$FAKE_DIR/calls"
[ "$1" = true ] && exit 0
"$@"
FAKE
cat > "$work/bin/id" <<'FAKE'
#!/usr/bin/env bash
echo "${FAKE_UID:-1000}"
FAKE
chmod +x "$work/bin"/*
export FAKE_DIR=$work PATH="$work/bin:$PATH"
fail() { echo "deps_test: FAIL: $*" >&2; exit 1; }
run() {  # runs .ci/deps "$@"; sets rc, err; calls
  rm -f "$work/calls"
  set +e
  err=$(bash "$deps" "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  calls=$(cat "$work/calls" 2>/dev/null || true)
}

: > "$work/missing"
FAKE_UID=0 run
[ $rc -eq 0 ] && [ -z "$calls" ] && [ -z "$err" ] || fail "all present (root): rc=$rc calls='$calls' err='$err'"
FAKE_UID=1000 run
[ $rc -eq 0 ] && [ -z "$calls" ] || fail "all present (user): rc=$rc calls='$calls'"

printf 'libhdf5-dev\nlibpng-dev\n' > "$work/missing"
FAKE_UID=1000 run
[ $rc -eq 1 ] || fail "missing, not root: rc=$rc (want 1)"
[ -z "$calls" ] || fail "missing, not root, no sudo: called '$calls'"
grep -q "missing Debian packages: libpng-dev libhdf5-dev" <<<"$err" || fail "missing not named: $err"
grep -q "sudo apt-get install -y --no-install-recommends libpng-dev libhdf5-dev" <<<"$err" ||
  fail "no apt-get line: $err"
FAKE_UID=1000 run --check
[ $rc -eq 1 ] && [ -z "$calls" ] || fail "--check: rc=$rc calls='$calls'"
FAKE_UID=0 run --check
[ $rc -eq 1 ] && [ -z "$calls" ] || fail "--check as root installed: calls='$calls'"
FAKE_UID=0 run
[ $rc -eq 0 ] || fail "root install: rc=$rc $err"
[ "$calls" = "apt-get update -qq
apt-get install -y -qq --no-install-recommends libpng-dev libhdf5-dev" ] || fail "root install called: '$calls'"
FAKE_UID=1000 FAKE_SUDO=yes run
[ $rc -eq 0 ] && grep -q "sudo apt-get install -y -qq --no-install-recommends libpng-dev libhdf5-dev" <<<"$calls" ||
  fail "password-less sudo: rc=$rc calls='$calls'"
FAKE_UID=1000 run bogus
[ $rc -eq 2 ] || fail "unknown argument: rc=$rc"
echo "deps_test: ok"
