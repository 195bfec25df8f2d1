#!/usr/bin/env bash
# The packaged binary carries no test tooling: no emulator (an HTTP server with test
# credentials), no demo, no soak. Runs the arm64 binary from the package under qemu-user.
# Usage: packaging/check-no-test-tooling.sh kioskpay_<version>_arm64.deb
set -euo pipefail
deb=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work"
bin="$work/usr/bin/kioskpay"
run() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$bin" "$@"; }

run --version
help=$(run --help)
for command in emulator demo soak; do
  if grep -qw "$command" <<<"$(sed -n '/^Commands:/,/^Options:/p' <<<"$help")"; then
    echo "FAIL: the packaged binary lists the test command '$command'" >&2
    exit 1
  fi
  set +e
  out=$(run "$command" --help 2>&1)
  status=$?
  set -e
  if [ "$status" -ne 2 ] || ! grep -q "unrecognized subcommand" <<<"$out"; then
    echo "FAIL: 'kioskpay $command' is not refused as unknown by the packaged binary (exit $status): $out" >&2
    exit 1
  fi
done
if strings "$bin" | grep -q "KIOSKPAY_CRASH_AFTER_JOURNAL"; then
  echo "FAIL: the packaged binary contains the soak's crash hook" >&2
  exit 1
fi
echo "ok: the packaged binary has no emulator, demo or soak command and no crash hook ($(stat -c %s "$bin") bytes)"
