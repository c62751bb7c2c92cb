#!/usr/bin/env bash
# systemd_verify.sh - config/systemd/vsrhost@.service passes `systemd-analyze verify`
# (unknown keys, bad values, a non-executable command all fail it), with
# ExecStart pointed at the vsrhost just built.
set -euo pipefail
unit=$1 vsrhost=$2
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing (Debian: systemd)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/local/bin/vsrhost#$vsrhost#" "$unit" > "$dir/vsrhost@.service"
out=$(systemd-analyze verify "$dir/vsrhost@.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "$out"; exit 1; fi
echo "systemd-analyze verify: clean"
