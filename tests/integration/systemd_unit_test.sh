#!/bin/sh
# deploy/pantry.service as systemd reads it: `systemd-analyze verify` must print nothing (it exits
# 0 even for an unknown key or a misspelt section, so its output is what counts). The unit names
# /usr/local/bin/pantry; the check points it at the binary under test, which must exist.
#   tests/integration/systemd_unit_test.sh PANTRY_BINARY
set -eu
binary=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
unit="$here/../../deploy/pantry.service"
work=$(mktemp -d /tmp/pantry-systemd-unit-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
sed "s#/usr/local/bin/pantry#$binary#g" "$unit" > "$work/pantry.service"
out=$(systemd-analyze verify "$work/pantry.service" 2>&1) || {
  echo "systemd-analyze verify failed on deploy/pantry.service:"; echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify has something to say about deploy/pantry.service:"
  echo "$out"
  exit 1
fi
# The unit's ExecStartPre checks the config it starts with; the example config must pass it.
"$binary" config check "$here/../../deploy/pantry.example.yaml" > "$work/check.out" 2>&1 || {
  echo "pantry config check deploy/pantry.example.yaml failed:"; cat "$work/check.out"; exit 1; }
echo "deploy/pantry.service: systemd-analyze verify says nothing; the example config checks"
