#!/usr/bin/env bash
# loop_examples.sh PROGRAM [ARG]...
# Runs an event-loop example (pbpipe-uv, pbpipe-event) and checks its
# summary line "<prog>: helpers H calls C ok C failed 0 nested C restarts 1
# reissued R lost 0 during_restart D ms T": every call ended with the
# right result through its nested Lookup, none failed or was lost, one
# helper was restarted, and the other helpers completed calls (D > 0)
# while the replacement's handshake was under way, which a blocking
# handshake would not allow.  The program must exit 0.
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: loop_examples.sh PROGRAM [ARG]..." >&2
  exit 2
fi
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
fails=0
fail() { echo "FAIL: $*"; fails=1; }
[ $rc -eq 0 ] || fail "$1 exited with status $rc"
line=$(grep -E '^pbpipe-[a-z]+: helpers [0-9]+ calls [0-9]+ ' <<<"$out" | tail -n 1)
if [ -z "$line" ]; then
  fail "no summary line"
  exit 1
fi
# field NAME: the number after NAME in the summary line.
field() { sed -n "s/.* $1 \([0-9][0-9]*\)\( .*\)\{0,1\}$/\1/p" <<<"$line"; }
calls=$(field calls)
for f in ok nested; do
  [ "$(field $f)" = "$calls" ] || fail "$f is $(field $f), not calls ($calls)"
done
[ "$(field failed)" = 0 ] || fail "failed is $(field failed), not 0"
[ "$(field lost)" = 0 ] || fail "lost is $(field lost), not 0"
[ "$(field restarts)" = 1 ] || fail "restarts is $(field restarts), not 1"
d=$(field during_restart)
[ -n "$d" ] && [ "$d" -gt 0 ] ||
  fail "during_restart is ${d:-missing}: no call completed while the replacement's handshake was under way"
grep -qE '^pbpipe-[a-z]+: helper [0-9]+ ended .*killed by signal 9' <<<"$out" ||
  fail "no report of the killed helper"
[ $fails -eq 0 ] || exit 1
echo "loop_examples: all checks passed"
