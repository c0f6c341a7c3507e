#!/usr/bin/env bash
# Checks of scripts/ that need no fresh machine:
# - scripts/install-deps lists the Debian package of every program and
#   runtime file the README commands use (scripts/demo, scripts/test with
#   test-m32, test-tsan, fuzz, valgrind-run, test-windows, wine-run, and tests/*.sh), found with
#   dpkg -S on this machine;
# - scripts/valgrind-run names the cause when valgrind cannot run.
# Usage: scripts.sh <pbpipe source dir>
set -uo pipefail
src=$1
fails=0
check() { # description, condition
  if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}

list=$("$src/scripts/install-deps" --list 2>&1) || { echo "FAIL: install-deps --list: $list"; exit 1; }
# Every package install-deps installs, with everything they depend on.
# shellcheck disable=SC2086
closure=$( (echo "$list"; apt-cache depends --recurse --installed --no-recommends --no-suggests \
             --no-conflicts --no-breaks --no-replaces --no-enhances $list 2>/dev/null) |
           sed -n 's/^ *\(Pre\)\{0,1\}Depends: <\{0,1\}\([^>:]*\).*/\2/p; /^[^ ]/{s/:.*//;p}' | sort -u)
# Program or file -> what uses it.
needs=(
  "cmake:every build" "ninja:every build" "make:tests/consumer" "gcc:every build"
  "pkg-config:tests/consumer" "protoc:the schema fingerprint" "nanopb_generator.py:code generation"
  "/usr/bin/python3:tests/interop" "xxd:tests/dump.sh" "valgrind:scripts/valgrind-run"
  "clang:scripts/fuzz, scripts/test-tsan" "dpkg-source:apt-get source (fuzz/fetch-nanopb-source.sh)"
  "libclang_rt.fuzzer-x86_64.a:scripts/fuzz" "libclang_rt.tsan-x86_64.a:scripts/test-tsan"
  "/usr/include/criterion/criterion.h:the Criterion tests" "/usr/include/pb.h:nanopb's runtime"
  "/usr/lib32/crt1.o:gcc -m32 (scripts/test-m32)"
  "/usr/include/uv.h:pbpipe-uv" "/usr/include/event2/event.h:pbpipe-event"
  "x86_64-w64-mingw32-gcc-win32:scripts/test-windows (x86-64)"
  "i686-w64-mingw32-gcc-win32:scripts/test-windows (i686)"
  "x86_64-w64-mingw32-objdump:scripts/test-windows (DLL imports)"
  "wine:scripts/wine-run" "/usr/lib/wine/wine64:scripts/wine-run (64-bit programs)"
  "wineserver:scripts/wine-run" "wineboot:scripts/wine-run" "flock:scripts/wine-run"
)
for n in "${needs[@]}"; do
  what=${n%%:*} why=${n#*:}
  case $what in
    /*) path=$what ;;
    *.a) path=$(dpkg -L libclang-rt-14-dev 2>/dev/null | grep -m1 "/$what\$") ;;
    *) path=$(command -v "$what") ;;
  esac
  if [ -z "$path" ] || [ ! -e "$path" ]; then
    check "$what ($why) is installed here" false
    continue
  fi
  path=$(readlink -f "$path")
  pkg=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1)
  # A file reached through a symlink may belong to the package of the link.
  if [ -z "$pkg" ]; then
    pkg=$(dpkg -S "$(command -v "$what" 2>/dev/null || echo "$what")" 2>/dev/null | head -n 1 | cut -d: -f1)
  fi
  if [ -z "$pkg" ]; then
    check "$what ($why): owned by a Debian package" false
    continue
  fi
  # The owning package must be listed or be a dependency of a listed one.
  ok=false
  grep -qx "$pkg" <<<"$closure" && ok=true
  check "install-deps installs $pkg, for $what ($why)" "$ok"
done

out=$(VALGRIND=/nonexistent/valgrind "$src/scripts/valgrind-run" demo "$(mktemp -d)" true 2>&1); rc=$?
echo "$out"
check "valgrind-run fails without valgrind" '[ $rc -ne 0 ]'
check "valgrind-run says valgrind was not found" 'grep -q "^valgrind: demo failed: .*/nonexistent/valgrind.*not found" <<<"$out"'

if [ $fails -ne 0 ]; then echo "$fails script checks failed"; exit 1; fi
echo "scripts: all checks passed"
