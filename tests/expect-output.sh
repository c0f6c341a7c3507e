#!/usr/bin/env bash
# expect-output.sh PATTERN... -- COMMAND [ARG]...
# Runs COMMAND and passes if it exits 0 and, for each PATTERN (grep -E), a
# line of its output (stdout and stderr) matches.  Prints the output, then
# what is missing.  Used by the cross-width tests (xarch.cmake).
set -uo pipefail
pats=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  pats+=("$1")
  shift
done
if [ $# -lt 2 ]; then
  echo "usage: expect-output.sh PATTERN... -- COMMAND [ARG]..." >&2
  exit 2
fi
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
fails=0
if [ $rc -ne 0 ]; then
  echo "FAIL: $1 exited with status $rc"
  fails=1
fi
for p in "${pats[@]}"; do
  if ! grep -qE -- "$p" <<<"$out"; then
    echo "FAIL: no line matches: $p"
    fails=1
  fi
done
exit $fails
