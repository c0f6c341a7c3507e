#!/usr/bin/env bash
# Installs pbpipe from a build tree into a scratch prefix, then builds the
# consumer project against it (find_package; pkg-config + make, with a run
# path, without one, and statically with pbpipe-static.pc) and runs it;
# checks the installed pbpipe-dump on a trace of that run.
# With --m32 SOURCE_DIR it then also builds and installs a 32-bit pbpipe
# with the README's commands ("A 32-bit helper against an installed
# pbpipe"), builds the consumer 32-bit against that install (find_package
# with the installed m32.cmake, and pkg-config with gcc -m32), and runs the
# 64-bit parent with the 32-bit helper.  Where gcc -m32 cannot link, it
# fails, or with PBP_SKIP_M32=1 exits 77 (skipped).
# Usage: run.sh [--m32 SOURCE_DIR] <pbpipe build dir> <scratch dir>
set -euo pipefail
m32_src=
if [ "${1:-}" = --m32 ]; then
  m32_src=$2
  shift 2
fi
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
log=$work/build.log
quiet() { "$@" >>"$log" 2>&1 || { cat "$log"; echo "FAIL: $*"; exit 1; }; }
fail() { echo "FAIL: $*"; exit 1; }
elf_bits() { case $(od -An -tx1 -j4 -N1 "$1" | tr -d ' ') in 01) echo 32 ;; 02) echo 64 ;; *) echo '?' ;; esac; }

if [ -n "$m32_src" ]; then
  if ! echo 'int main(void){return 0;}' | gcc -m32 -x c - -o "$work/m32check" 2>"$work/m32check.err" ||
     ! "$work/m32check"; then
    if [ "${PBP_SKIP_M32:-}" = 1 ]; then
      echo "SKIPPED (PBP_SKIP_M32=1): gcc -m32 cannot build a program: $(head -n 1 "$work/m32check.err")"
      exit 77
    fi
    fail "gcc -m32 cannot build and run a program (install gcc-multilib): $(head -n 1 "$work/m32check.err")"
  fi
fi

cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }
libdir=$(dirname "$(find "$work/prefix" -name pbpipe.pc)")/..
libdir=$(cd "$libdir" && pwd)

echo "== find_package"
quiet cmake -S "$here" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix"
quiet cmake --build "$work/cmake"
out=$(cd "$work/cmake" && PBPIPE_TRACE="$work/calc.trace" ./calc-parent)
echo "$out"
[ "$out" = "2 + 40 = 42" ] || fail "unexpected output"
# (ldd's output in a variable: grep -q closing the pipe early would make
# ldd die of SIGPIPE, which pipefail turns into a failure.)
libs=$(ldd "$work/cmake/calc-helper")
grep -q "libpbpipe.so.0 => $work/prefix" <<<"$libs" ||
  { echo "$libs"; fail "calc-helper does not use the installed libpbpipe.so"; }

echo "== pbpipe-dump, installed"
dump=$work/prefix/bin/pbpipe-dump
[ -x "$dump" ] || fail "no bin/pbpipe-dump in the install"
help=$("$dump" --help) || fail "pbpipe-dump --help exits $?"
for word in --raw --trace --proto -I --type --decode-raw --help "Input formats" PBPIPE_TRACE \
            "Example" "Exit status" "  0 " "  1 " "  2 "; do
  grep -qF -- "$word" <<<"$help" || fail "pbpipe-dump --help does not mention '$word'"
done
out=$("$dump" --proto "$here/proto/calc.proto" --type 1=calc.Add --type 2=calc.Sum "$work/calc.trace") ||
  fail "pbpipe-dump of the consumer's trace exits $?"
grep -q '^    a: 2$' <<<"$out" && grep -q '^    value: 42$' <<<"$out" ||
  { echo "$out"; fail "pbpipe-dump does not show the Add and Sum of the trace"; }
echo "pbpipe-dump: --help complete, trace decoded"

echo "== pkg-config + make"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pkg-config --modversion pbpipe
quiet make -s -f "$here/Makefile" SRC="$here" OUT="$work/make"
out=$(cd "$work/make" && ./calc-parent)
echo "$out"
[ "$out" = "2 + 40 = 42" ] || fail "unexpected output"

echo "== pkg-config without a run path: needs LD_LIBRARY_PATH"
quiet make -s -f "$here/Makefile" SRC="$here" OUT="$work/make-norpath" RPATH=
if err=$(cd "$work/make-norpath" && ./calc-parent 2>&1); then
  fail "linked without a run path, calc-parent found libpbpipe.so anyway: $err"
fi
grep -q "libpbpipe.so.0: cannot open shared object file" <<<"$err" || fail "unexpected error: $err"
out=$(cd "$work/make-norpath" && LD_LIBRARY_PATH=$libdir ./calc-parent)
[ "$out" = "2 + 40 = 42" ] || fail "with LD_LIBRARY_PATH: unexpected output $out"
echo "ok: without a run path it fails as the README says, and runs with LD_LIBRARY_PATH"

echo "== pkg-config pbpipe-static: no libpbpipe.so at run time"
quiet make -s -f "$here/Makefile" SRC="$here" OUT="$work/make-static" PBP_PC=pbpipe-static RPATH=
for p in calc-parent calc-helper; do
  libs=$(ldd "$work/make-static/$p")
  if grep -q libpbpipe <<<"$libs"; then echo "$libs"; fail "$p still needs libpbpipe.so"; fi
done
out=$(cd "$work/make-static" && ./calc-parent)
echo "$out"
[ "$out" = "2 + 40 = 42" ] || fail "unexpected output"

if [ -z "$m32_src" ]; then
  echo "consumer: all checks passed"
  exit 0
fi

echo "== a 32-bit pbpipe, installed (README: A 32-bit helper against an installed pbpipe)"
nanopb=()
# The nanopb source a 32-bit tree of this build fetched already, if any.
have=$(find "$build/m32/nanopb-source" -mindepth 2 -maxdepth 2 -name pb_decode.c 2>/dev/null | head -n 1 || true)
[ -n "$have" ] && nanopb=(-DPBP_NANOPB_SOURCE_DIR="$(dirname "$have")")
quiet cmake -S "$m32_src" -B "$work/pbpipe32" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$m32_src/cmake/m32.cmake" -DPBP_BUILD_TESTS=OFF "${nanopb[@]}"
quiet cmake --build "$work/pbpipe32"
quiet cmake --install "$work/pbpipe32" --prefix "$work/prefix32"
# A generator in the prefix, as nanopb's own `cmake --install` puts there:
# it runs with whatever python3 is first on PATH, often one without the
# protobuf module.  The helper must use Debian's /usr/bin one regardless.
mkdir -p "$work/prefix32/bin"
printf '#!/bin/sh\necho "ModuleNotFoundError: No module named '"'google'"' (the generator in the prefix ran)" >&2\nexit 1\n' \
  >"$work/prefix32/bin/nanopb_generator.py"
chmod +x "$work/prefix32/bin/nanopb_generator.py"

echo "== find_package, 32-bit"
tc=$(find "$work/prefix32" -name m32.cmake | head -n 1)
[ -n "$tc" ] || fail "the 32-bit install has no m32.cmake"
quiet cmake -S "$here" -B "$work/cmake32" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$tc" \
  -DCMAKE_PREFIX_PATH="$work/prefix32"
quiet cmake --build "$work/cmake32"
for p in calc-parent calc-helper; do
  [ "$(elf_bits "$work/cmake32/$p")" = 32 ] || fail "$work/cmake32/$p is not a 32-bit program"
done
out=$(cd "$work/cmake32" && ./calc-parent)
echo "32-bit parent, 32-bit helper: $out"
[ "$out" = "2 + 40 = 42" ] || fail "unexpected output"
out=$("$work/cmake/calc-parent" "$work/cmake32/calc-helper")
echo "64-bit parent, 32-bit helper: $out"
[ "$out" = "2 + 40 = 42" ] || fail "unexpected output"

echo "== pkg-config + make, 32-bit"
libdir32=$(cd "$(dirname "$(find "$work/prefix32" -name pbpipe.pc)")/.." && pwd)
export PKG_CONFIG_PATH=$libdir32/pkgconfig
quiet make -s -f "$here/Makefile" SRC="$here" OUT="$work/make32" CC="gcc -m32"
[ "$(elf_bits "$work/make32/calc-helper")" = 32 ] || fail "make32/calc-helper is not 32-bit"
out=$("$work/make/calc-parent" "$work/make32/calc-helper")
echo "64-bit parent, 32-bit helper: $out"
[ "$out" = "2 + 40 = 42" ] || fail "unexpected output"
echo "consumer: all checks passed, 64-bit and 32-bit"
