#!/usr/bin/env bash
# Tests the CMake helper (cmake/PbpipeProtobuf.cmake) the way a user meets
# it: a project with its own .proto is configured and built; editing the
# .proto or .options regenerates on the next build; an .options typo fails
# the build; the fingerprint ignores comments and follows real changes.
# Usage: run.sh <pbpipe source dir> <scratch dir>
set -euo pipefail
src=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cp -r "$src/tests/cmake/proj" "$work/proj"
mkdir -p "$work/proj/proto"
p=$work/proj
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$p/proto/app.proto" <<'P'
syntax = "proto3";
package app;
message Note { string text = 1; }
P
echo 'app.Note.text max_size:16' > "$p/proto/app.options"

cmake -S "$p" -B "$p/b" -G Ninja -DPBPIPE_SOURCE_DIR="$src" >/dev/null
cmake --build "$p/b" >/dev/null
out1=$("$p/b/show")
echo "initial: $out1"
[[ $out1 == *"text_size=16"* ]] || fail "options not applied: $out1"

# The generated fingerprint header compiles on its own (it includes
# <stdint.h> for UINT64_C itself), as C99 and C11.
fph=$(find "$p/b" -name app_fingerprint.h | head -n 1)
[ -n "$fph" ] || fail "no app_fingerprint.h generated"
printf '#include "app_fingerprint.h"\nstatic const unsigned long long fp = APP_SCHEMA_FINGERPRINT;\nunsigned long long get(void) { return fp; }\n' >"$work/fp_alone.c"
for std in c99 c11; do
  cc -std=$std -Wall -Wextra -Wpedantic -Werror -I"$(dirname "$fph")" -c "$work/fp_alone.c" \
    -o "$work/fp_alone.o" 2>"$work/fp_alone.log" ||
    fail "app_fingerprint.h does not compile alone (-std=$std): $(cat "$work/fp_alone.log")"
done
echo "fingerprint header: compiles alone"

# A comment changes nothing that matters: same fingerprint.
sleep 1
sed -i '1i // a comment' "$p/proto/app.proto"
cmake --build "$p/b" >/dev/null
out2=$("$p/b/show")
[[ ${out1%% *} == "${out2%% *}" ]] || fail "fingerprint changed on a comment: $out1 / $out2"

# Editing .options regenerates on the next build.
sleep 1
echo 'app.Note.text max_size:40' > "$p/proto/app.options"
cmake --build "$p/b" >/dev/null
out3=$("$p/b/show")
[[ $out3 == *"text_size=40"* ]] || fail ".options edit not picked up: $out3"

# A schema change regenerates and changes the fingerprint.
sleep 1
sed -i 's/message Note { string text = 1; }/message Note { string text = 1; int32 n = 2; }/' "$p/proto/app.proto"
cmake --build "$p/b" >/dev/null
out4=$("$p/b/show")
[[ ${out3%% *} != "${out4%% *}" ]] || fail "fingerprint unchanged after a schema change: $out4"
echo "after a schema change: $out4"

# A typo in .options fails the build, naming the pattern.
sleep 1
echo 'app.Note.txet max_size:40' > "$p/proto/app.options"
if log=$(cmake --build "$p/b" 2>&1); then
  fail "a typo in .options did not fail the build"
fi
grep -q 'app.Note.txet' <<<"$log" || fail "the build error does not name the bad pattern: $log"
echo "options typo: build failed as it should"
echo "cmake helper: all checks passed"
