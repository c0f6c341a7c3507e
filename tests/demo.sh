#!/usr/bin/env bash
# The demo as a user runs it: pbpipe-parent and pbpipe-child, the happy
# path and the failures a user can provoke by hand.
# Usage: demo.sh <dir with pbpipe-parent and pbpipe-child>
set -uo pipefail
bin=$1
fails=0
check() { # description, condition
  if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}

out=$("$bin/pbpipe-parent" 2>&1); rc=$?
echo "$out"
check "demo exits 0" '[ $rc -eq 0 ]'
check "child prints the parent greeting" 'grep -qx "child: received \"Hello from Process A!\"" <<<"$out"'
check "parent prints the child answer" 'grep -qx "parent: received \"Hello from Process B!\"" <<<"$out"'
check "child sees a clean end of stream" 'grep -q "^child: end of stream" <<<"$out"'
check "parent reports exit status 0" 'grep -qx "parent: child exited with status 0" <<<"$out"'

err=$("$bin/pbpipe-child" 2>&1 >/dev/null); rc=$?
check "child without handles exits 2" '[ $rc -eq 2 ]'
check "child without handles prints usage" 'grep -q "^usage: pbpipe-child .*WRITE_HANDLE READ_HANDLE" <<<"$err"'
err=$("$bin/pbpipe-child" 7 x 2>&1 >/dev/null); rc=$?
check "child with a bad handle exits 2" '[ $rc -eq 2 ]'
check "child names the bad handle" 'grep -q "'"'"'x'"'"' is not a decimal fd number" <<<"$err"'
err=$("$bin/pbpipe-child" 3 4 2>&1 >/dev/null </dev/null 3>&- 4>&-); rc=$?
check "child with closed fds exits 2" '[ $rc -eq 2 ]'

err=$("$bin/pbpipe-parent" --child /nonexistent/helper 2>&1 >/dev/null); rc=$?
check "parent with a missing child fails" '[ $rc -ne 0 ]'
check "one-line error naming the path" '[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "cannot execute '"'"'/nonexistent/helper'"'"': No such file or directory" <<<"$err"'
err=$("$bin/pbpipe-parent" --child /bin/true 2>&1 >/dev/null); rc=$?
check "parent with a child that is not a pbpipe peer fails" '[ $rc -ne 0 ]'
check "one-line error saying how the child ended" '[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "exited with status 0" <<<"$err"'
echo "$err"
err=$("$bin/pbpipe-parent" --bogus 2>&1); rc=$?
check "parent with a bad option exits 2" '[ $rc -eq 2 ]'

# A greeting over demo.Greeting's bound (text max_size:256 in
# proto/demo.options): the child refuses it with a Goodbye of reason ERROR
# instead of dying, and the parent prints the reason.
long=$(printf 'x%.0s' $(seq 300))
out=$(timeout 20 "$bin/pbpipe-parent" --greeting "$long" 2>&1); rc=$?
echo "$out"
check "300-byte greeting: parent exits 1" '[ $rc -eq 1 ]'
check "300-byte greeting: parent prints the child's reason" \
  'grep -q "^pbpipe-parent: the child refused: refused greeting: .*string overflow (its text holds at most 255 bytes: proto/demo.options)$" <<<"$out"'
check "300-byte greeting: child says why on stderr" 'grep -q "^pbpipe-child: refusing a greeting: .*string overflow" <<<"$out"'
check "300-byte greeting: child exits 0 after the parent ends the stream" \
  'grep -qx "parent: child exited with status 0" <<<"$out"'
check "300-byte greeting: no receive failure, no crash" \
  '! grep -qE "receive failed|signal|Segmentation|Abort" <<<"$out"'
out=$(timeout 20 "$bin/pbpipe-parent" --greeting "${long:0:255}" 2>&1); rc=$?
check "255-byte greeting: answered, exit 0" \
  '[ $rc -eq 0 ] && grep -qx "child: received \"${long:0:255}\"" <<<"$out" && grep -qx "parent: received \"Hello from Process B!\"" <<<"$out"'

if [ $fails -ne 0 ]; then echo "$fails demo checks failed"; exit 1; fi
echo "demo: all checks passed"
