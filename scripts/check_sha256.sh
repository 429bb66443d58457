#!/usr/bin/env bash
# usage: scripts/check_sha256.sh FILE RECORD
# Checks FILE against the SHA-256 in RECORD (`sha256sum FILE >RECORD` output, or the bare hash;
# the name in it is not used, so the record holds wherever FILE is checked from). Exit 0 and one
# "ok" line on stdout when they match; exit 1 with a line saying which is missing or how they
# differ otherwise. scripts/setup.sh and scripts/demo.sh check the committed drafter with it.
set -uo pipefail
[ $# = 2 ] || { echo "usage: $0 FILE RECORD" >&2; exit 2; }
file=$1 record=$2
[ -f "$record" ] || { echo "$record is missing, so $file cannot be checked" >&2; exit 1; }
[ -f "$file" ] || { echo "$file is missing (its SHA-256 record $record is there)" >&2; exit 1; }
want=$(grep -oE '^[0-9a-fA-F]{64}' "$record" | head -1)
[ -n "$want" ] || { echo "$record holds no SHA-256 (64 hex digits at the start of a line)" >&2; exit 1; }
got=$(sha256sum "$file" | cut -d' ' -f1) || { echo "cannot read $file" >&2; exit 1; }
if [ "$got" != "${want,,}" ]; then
  echo "$file has sha256 $got, but $record says ${want,,} (a stale or damaged file)" >&2
  exit 1
fi
echo "$file: sha256 ok ($record)"
