#!/usr/bin/env bash
# Fails when a binary needs a newer glibc than Raspberry Pi OS bookworm has (2.36): the highest
# GLIBC_x.y symbol version among its dynamic symbols must not be above it.
#
#   packaging/check-glibc.sh BINARY...
set -euo pipefail
limit=2.36
status=0
for binary in "$@"; do
    highest=$(readelf --dyn-syms --wide "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' \
        | sed 's/GLIBC_//' | sort -uV | tail -n1)
    [ -n "$highest" ] || { echo "FAIL: $binary has no GLIBC symbol versions (static or not ELF?)"; status=1; continue; }
    if [ "$(printf '%s\n%s\n' "$highest" "$limit" | sort -V | tail -n1)" = "$limit" ]; then
        echo "ok: $binary needs glibc $highest (bookworm has $limit)"
    else
        echo "FAIL: $binary needs glibc $highest, above bookworm's $limit"
        status=1
    fi
done
exit $status
