#!/usr/bin/env bash
# Runs every test of Parley: the Rust suites and the browser end-to-end test.
# Installs what the tests need when it is missing (Debian/Ubuntu: chromium, cmake, pkg-config, ffmpeg;
# the e2e test's npm dependencies). Exits non-zero when anything fails; the last line is a summary.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

declare -a RESULTS=()
FAILED=0
step() { # step "name" command...
  local name=$1; shift
  echo "==> $name"
  local start=$SECONDS
  if "$@"; then
    RESULTS+=("ok   $name ($((SECONDS - start))s)")
  else
    RESULTS+=("FAIL $name ($((SECONDS - start))s)")
    FAILED=1
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

install_prerequisites() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  # ffprobe checks the recording files the SFU writes.
  command -v ffprobe >/dev/null || missing+=(ffmpeg)
  # Janus (its VideoRoom) is the comparison server of the media load test's smoke test.
  command -v janus >/dev/null || missing+=(janus)
  # coturn relays the TURN test's client to the SFU (the credentials Parley hands out).
  command -v turnserver >/dev/null || missing+=(coturn)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
      echo "installing: ${missing[*]}"
      as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" || return 1
    else
      echo "missing ${missing[*]} and no apt-get: install them by hand" >&2
      return 1
    fi
  fi
  # The SMTP test of the user invitations talks to Python's aiosmtpd on loopback.
  if ! python3 -m aiosmtpd --version >/dev/null 2>&1; then
    python3 -m pip install --quiet aiosmtpd || python3 -m pip install --quiet --break-system-packages aiosmtpd || return 1
  fi
  command -v node >/dev/null || { echo "node (>= 18) is required for the browser test" >&2; return 1; }
  if [ ! -d tests/e2e/node_modules/playwright-core ]; then
    # playwright-core only: the browser is Debian's chromium, never a downloaded one.
    (cd tests/e2e && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi) || return 1
  fi
}

step "prerequisites" install_prerequisites
step "cargo build --release -p parley-signaling --features parley-sfu/mixdown" cargo build --release -p parley-signaling --features parley-sfu/mixdown
# `mixdown` (libopus, built with cmake) adds the recordings' mixed audio track and its tests.
LOG_DIR=$(mktemp -d)
rust_tests() { cargo test --workspace --no-fail-fast --features parley-sfu/mixdown 2>&1 | tee "$LOG_DIR/cargo.log"; return "${PIPESTATUS[0]}"; }
step "cargo test --workspace --features parley-sfu/mixdown" rust_tests
# The black-box suites once more with every server on PostgreSQL (a schema per test server), so
# each query of the signaling store is exercised on both databases.
if [ -n "${PARLEY_TEST_POSTGRES_URL:-}" ]; then
  postgres_tests() {
    local names=()
    for f in tests/tests/*.rs; do names+=(--test "$(basename "$f" .rs)"); done
    PARLEY_TEST_SIGNALING_DB=postgres cargo test --workspace --no-fail-fast --features parley-sfu/mixdown "${names[@]}" 2>&1 | tee "$LOG_DIR/cargo-postgres.log"
    return "${PIPESTATUS[0]}"
  }
  step "black-box suites on PostgreSQL" postgres_tests
fi
if [ -x target/release/parley ]; then
  export PARLEY_BIN=${PARLEY_BIN:-$ROOT/target/release/parley}
  browser_tests() { node --test --test-concurrency=1 tests/e2e/ 2>&1 | tee "$LOG_DIR/node.log"; return "${PIPESTATUS[0]}"; }
  step "browser e2e (node --test tests/e2e/)" browser_tests
else
  RESULTS+=("FAIL browser e2e (no server binary)")
  FAILED=1
fi

echo
echo "==> summary"
printf '  %s\n' "${RESULTS[@]}"
# One plain total over both runners: cargo's "test result" lines and node's "# pass / # fail".
passed=$(cat "$LOG_DIR"/*.log 2>/dev/null | awk '/^test result:/ {p += $4} /^# pass / {p += $3} END {print p + 0}')
failed=$(cat "$LOG_DIR"/*.log 2>/dev/null | awk '/^test result:/ {f += $6} /^# fail / {f += $3} END {print f + 0}')
if [ $FAILED -eq 0 ]; then
  echo "ALL TESTS PASSED (${#RESULTS[@]} steps, ${SECONDS}s)"
else
  echo "TESTS FAILED ($(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL') of ${#RESULTS[@]} steps failed, ${SECONDS}s)"
fi
echo "$passed passed, $failed failed"
exit $FAILED
