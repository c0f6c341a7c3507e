#!/usr/bin/env bash
# Installs pbpipe from a build tree into a scratch prefix, then builds the
# consumer project against it twice (find_package; pkg-config + make) and
# runs it.  Usage: run.sh <pbpipe build dir> <scratch dir>
set -euo pipefail
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }
libdir=$(dirname "$(find "$work/prefix" -name pbpipe.pc)")/..

echo "== find_package"
log=$work/build.log
quiet() { "$@" >>"$log" 2>&1 || { cat "$log"; echo "FAIL: $*"; exit 1; }; }
quiet cmake -S "$here" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix"
quiet cmake --build "$work/cmake"
out=$(cd "$work/cmake" && ./calc-parent)
echo "$out"
[ "$out" = "2 + 40 = 42" ] || { echo "FAIL: unexpected output"; exit 1; }
# (ldd's output in a variable: grep -q closing the pipe early would make
# ldd die of SIGPIPE, which pipefail turns into a failure.)
libs=$(ldd "$work/cmake/calc-helper")
grep -q "libpbpipe.so.0 => $work/prefix" <<<"$libs" ||
  { echo "FAIL: calc-helper does not use the installed libpbpipe.so"; echo "$libs"; exit 1; }

echo "== pkg-config + make"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pkg-config --modversion pbpipe
quiet make -s -f "$here/Makefile" SRC="$here" OUT="$work/make"
out=$(cd "$work/make" && ./calc-parent)
echo "$out"
[ "$out" = "2 + 40 = 42" ] || { echo "FAIL: unexpected output"; exit 1; }
echo "consumer: all checks passed"
