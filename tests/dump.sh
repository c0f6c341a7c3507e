#!/usr/bin/env bash
# pbpipe-dump over a real trace (PBPIPE_TRACE with the demo), over raw
# streams built byte by byte from docs/PROTOCOL.md section 8, and over
# truncated, malformed and missing input.
# Usage: dump.sh <dir with pbpipe-parent and pbpipe-dump> <source dir>
# PBPTEST_DUMP_VALGRIND=1 runs every pbpipe-dump under valgrind memcheck.
#
# -e is off on purpose: most cases expect a non-zero exit status, which
# each check captures and compares.
set -uo pipefail
bin=$1
src=$2
fails=0
check() { # description, condition
  if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

wrap=()
if [ "${PBPTEST_DUMP_VALGRIND:-}" = 1 ]; then
  wrap=(valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=all
        --errors-for-leak-kinds=all)
fi
# Runs pbpipe-dump: stdout in $out, stderr in $err, exit status in $rc.
dump() {
  "${wrap[@]}" "$bin/pbpipe-dump" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(<"$tmp/out")
  err=$(<"$tmp/err")
}
hex() { # hex digits (spaces ignored) -> file
  tr -d ' \n' | xxd -r -p >"$2" <<<"$1"
}
ts='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z'

# ---- a trace written by the demo: the parent and the child append to it ----
trace=$tmp/demo.trace
# The shell's pid is the parent's: exec keeps it.
demo=$(PBPIPE_TRACE=$trace bash -c 'echo "$$"; exec "$0"' "$bin/pbpipe-parent" 2>&1)
rc=$?
check "demo with PBPIPE_TRACE exits 0" '[ $rc -eq 0 ]'
ppid=$(head -n1 <<<"$demo")
cpid=$(sed -n 's/.*spawned .* (pid \([0-9]*\)).*/\1/p' <<<"$demo")
check "demo names the child pid" '[ -n "$cpid" ] && [ "$cpid" != "$ppid" ]'

dump "$trace"
echo "$out"
check "trace dumps cleanly" '[ $rc -eq 0 ]'
hello() { # writer pid, direction, pid in the Hello
  grep -Eq "^@[0-9]+ $2 pid $1 $ts [0-9]+ bytes: Hello magic=0x50425050 version=1\.[0-9]+ pid=$3 pointer_bits=(32|64) max_frame=[0-9]+ schema_fingerprint=0x[0-9a-f]{16}\$" <<<"$out"
}
check "parent sends its Hello" 'hello "$ppid" S "$ppid"'
check "child sends its Hello" 'hello "$cpid" S "$cpid"'
check "child receives the parent Hello" 'hello "$cpid" R "$ppid"'
check "parent receives the child Hello" 'hello "$ppid" R "$cpid"'
greeting() { # writer pid, direction
  grep -Eq "^@[0-9]+ $2 pid $1 $ts 30 bytes: Message type=1 id=0 payload=23 bytes\$" <<<"$out"
}
check "parent sends a greeting of type 1" 'greeting "$ppid" S'
check "child receives it" 'greeting "$cpid" R'
check "child answers with type 1" 'greeting "$cpid" S'
check "parent receives the answer" 'greeting "$ppid" R'
check "parent says Goodbye DONE" \
  'grep -Eq "^@[0-9]+ S pid $ppid $ts 5 bytes: Goodbye reason=DONE detail=\"\"\$" <<<"$out"'
check "child receives the Goodbye" \
  'grep -Eq "^@[0-9]+ R pid $cpid .* Goodbye reason=DONE" <<<"$out"'
frames=$(grep -c '^@' <<<"$out")
check "summary counts every frame and byte" \
  '[ "$(tail -n1 <<<"$out")" = "end: clean, $frames frames, $(stat -c %s "$trace") bytes" ]'

dump --proto "$src/proto/demo.proto" --type 1=demo.Greeting "$trace"
check "with the schema: exits 0" '[ $rc -eq 0 ]'
check "with the schema: the parent greeting decoded" \
  'grep -qx "    text: \"Hello from Process A!\"" <<<"$out"'
check "with the schema: the child answer decoded" \
  'grep -qx "    text: \"Hello from Process B!\"" <<<"$out"'
check "decoded text follows its frame line" \
  'grep -A1 "Message type=1" <<<"$out" | grep "^    text: " >/dev/null'

dump <"$trace"
stdin_out=$out
dump --trace "$trace"
check "stdin and --trace give the same output" '[ $rc -eq 0 ] && [ "$stdin_out" = "$out" ]'

# ---- a truncated trace -------------------------------------------------------
dump "$trace"
msg=$(grep -m1 'Message type=1' <<<"$out" | sed 's/^@\([0-9]*\) .*/\1/')
head -c $((msg + 25)) "$trace" >"$tmp/cut"
dump "$tmp/cut"
check "trace cut inside a frame exits 1" '[ $rc -eq 1 ]'
check "error line says truncated, at the record" \
  '[ "$(tail -n1 <<<"$out")" = "error at offset $msg: truncated frame: end of stream inside a frame body (4 of 29 bytes)" ]'
head -c $((msg + 7)) "$trace" >"$tmp/cut"
dump "$tmp/cut"
check "trace cut inside a record header exits 1" \
  '[ $rc -eq 1 ] && grep -q "^error at offset $msg: truncated frame: .*record header" <<<"$out"'
head -c "$msg" "$trace" >"$tmp/cut"
dump "$tmp/cut"
check "trace cut between records is clean" '[ $rc -eq 0 ] && grep -q "^end: clean" <<<"$out"'

# ---- raw streams ---------------------------------------------------------------
# The worked examples of docs/PROTOCOL.md section 8, back to back.
hex "1c 0a1a 0d50504250 1001 20d209 2840 3080808002 39efcdab8967452301
     08 1a06 0801 1a026162
     0c 1a0a 089601 10ac02 1a026162
     08 1a06 0807 1000 1a00
     09 1207 0801 1203627965" "$tmp/raw"
expected='@0 29 bytes: Hello magic=0x50425050 version=1.0 pid=1234 pointer_bits=64 max_frame=4194304 schema_fingerprint=0x0123456789abcdef
@29 9 bytes: Message type=1 id=0 payload=2 bytes
@38 13 bytes: Message type=150 id=300 payload=2 bytes
@51 9 bytes: Message type=7 id=0 payload=0 bytes
@60 10 bytes: Goodbye reason=DONE detail="bye"
end: clean, 5 frames, 70 bytes'
dump "$tmp/raw"
echo "$out"
check "raw stream dumps cleanly" '[ $rc -eq 0 ]'
check "raw stream: every field, offset and size" '[ "$out" = "$expected" ]'
dump --raw <"$tmp/raw"
check "raw stream from stdin with --raw" '[ $rc -eq 0 ] && [ "$out" = "$expected" ]'
dump --decode-raw "$tmp/raw"
check "a payload protoc refuses is reported on its line, not fatal" \
  '[ $rc -eq 0 ] && grep -q "^@29 .* payload=2 bytes (protoc: .*)$" <<<"$out"'

# A capture starting after the Hello: the parent's frames after its Hello,
# cut out of the trace by offset and size.
: >"$tmp/capture"
dump "$trace"
while read -r off size; do
  tail -c +$((off + 21)) "$trace" | head -c "$size" >>"$tmp/capture"
done < <(sed -En "s/^@([0-9]+) S pid $ppid .* ([0-9]+) bytes: (Message|Goodbye).*/\1 \2/p" <<<"$out")
dump --proto "$src/proto/demo.proto" --type 1=demo.Greeting "$tmp/capture"
echo "$out"
check "capture without its Hello dumps cleanly" \
  '[ $rc -eq 0 ] && [ "$(tail -n1 <<<"$out")" = "end: clean, 2 frames, 35 bytes" ]'
check "capture: the greeting, decoded" \
  'grep -qx "@0 30 bytes: Message type=1 id=0 payload=23 bytes" <<<"$out" &&
   grep -qx "    text: \"Hello from Process A!\"" <<<"$out"'
check "capture: the Goodbye" 'grep -qx "@30 5 bytes: Goodbye reason=DONE detail=\"\"" <<<"$out"'

# ---- malformed input -----------------------------------------------------------
malformed() { # description, hex, expected error line (a glob pattern)
  local want=$3
  hex "$2" "$tmp/bad"
  dump "$tmp/bad"
  check "$1: exit 1" '[ $rc -eq 1 ]'
  check "$1: $want" '[[ "$(tail -n1 <<<"$out")" == $want ]] || { echo "got: $out"; false; }'
}
malformed "garbage text" "$(printf 'garbage, not frames' | xxd -p)" \
  "error at offset 0: truncated frame: end of stream inside a frame body (18 of 103 bytes)"
# The rest of this line is nanopb's message.
malformed "garbage body" "03 ffffff" \
  "error at offset 0: message decode failed: malformed envelope: *"
malformed "length prefix over 5 bytes" "80 80 80 80 80 00" \
  "error at offset 0: protocol error: bad frame length prefix (varint longer than 5 bytes or over 32 bits)"
malformed "message type 0" "02 1a00" \
  "error at offset 0: protocol error: application message without a type (type 0)"
malformed "two bodies" "08 1a02 0807 1202 0801" \
  "error at offset 0: protocol error: envelope holds more than one body"
malformed "declared length over 1 GiB" "ffffffff0f" \
  "error at offset 0: frame too large: frame of 4294967295 bytes exceeds the limit of 1073741824 bytes"
malformed "a good frame, then garbage" "04 1a02 0807 00" \
  "error at offset 5: protocol error: envelope holds no body"
hex "5042505402 53 0000 00000000 0000000000000000 00" "$tmp/bad"
dump "$tmp/bad"
check "trace record of an unknown version: exit 1" \
  '[ $rc -eq 1 ] && [ "$(tail -n1 <<<"$out")" = "error at offset 0: protocol error: trace record version 2, expected 1" ]'
dump --trace "$tmp/raw"
check "--trace on a raw stream: exit 1" '[ $rc -eq 1 ] && grep -q "^error at offset 0: .*PBPT" <<<"$out"'

# ---- usage and I/O errors -------------------------------------------------------
dump "$tmp/missing"
check "missing file: exit 2" '[ $rc -eq 2 ]'
check "missing file: one line naming it" \
  '[ "$err" = "pbpipe-dump: cannot open '"'"'$tmp/missing'"'"': No such file or directory" ] && [ -z "$out" ]'
dump "$tmp"
check "a directory: exit 2 naming it" '[ $rc -eq 2 ] && grep -q "$tmp.*Is a directory" <<<"$err"'
dump --bogus "$tmp/raw"
check "unknown option: exit 2" '[ $rc -eq 2 ] && grep -q "^usage: pbpipe-dump" <<<"$err"'
dump --type 1=demo.Greeting "$tmp/raw"
check "--type without --proto: exit 2" '[ $rc -eq 2 ]'
dump --proto "$src/proto/demo.proto" --type 0=demo.Greeting "$tmp/raw"
check "--type 0: exit 2" '[ $rc -eq 2 ]'
dump "$tmp/raw" "$tmp/raw"
check "two files: exit 2" '[ $rc -eq 2 ]'

if [ $fails -ne 0 ]; then echo "$fails dump checks failed"; exit 1; fi
echo "dump: all checks passed"
