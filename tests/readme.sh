#!/usr/bin/env bash
# Compiles the README's death-report example (the ```c block that calls
# pbp_child_report) as the body of a function, and fails if that function
# needs more than 16 KiB of stack: a pbp_report carries up to 64 KiB of
# the child's stderr, which does not belong on a thread's stack.
# Usage: readme.sh <pbpipe source dir> <scratch dir>
set -euo pipefail
src=$1
work=$2
mkdir -p "$work"
block=$(awk '/^```c$/ { inb = 1; buf = ""; next }
             inb && /^```$/ { inb = 0; if (buf ~ /pbp_child_report\(/) { printf "%s", buf; exit } next }
             inb { buf = buf $0 "\n" }' "$src/README.md")
[ -n "$block" ] || { echo "FAIL: no \`\`\`c block with pbp_child_report( in README.md"; exit 1; }
{
  echo '#include <stdio.h>'
  echo '#include <stdlib.h>'
  echo '#include <pbpipe/pbpipe.h>'
  echo 'void readme_report_example(pbp_child *c);'
  echo 'void readme_report_example(pbp_child *c) {'
  grep -vx '[[:space:]]*\.\.\.[[:space:]]*' <<<"$block"
  echo '}'
} >"$work/readme_report.c"
if ! cc -std=c11 -O0 -Werror=frame-larger-than=16384 -I"$src/include" -c "$work/readme_report.c" \
       -o "$work/readme_report.o" 2>"$work/readme_report.log"; then
  cat "$work/readme_report.c" "$work/readme_report.log"
  echo "FAIL: the README's pbp_report example does not compile, or puts more than 16 KiB on the stack"
  exit 1
fi
echo "readme: the pbp_report example compiles and keeps its frame under 16 KiB"
