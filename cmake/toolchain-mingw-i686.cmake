# toolchain-mingw-i686.cmake: CMake toolchain file for a 32-bit Windows (i686)
# build, cross-compiled with Debian's mingw-w64 (gcc-mingw-w64-i686), built
# by scripts/test-windows (its tests cannot run here: see the end):
#
#   cmake -S . -B build-win32 -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-i686.cmake
#   cmake --build build-win32 && ctest --test-dir build-win32
#
# The win32 thread model compilers (…-gcc-win32): the library uses the
# Windows API itself (lib/os/win32/) and needs no winpthreads.  Programs
# link -static, so no mingw runtime DLL (libgcc_s, libwinpthread) has to
# be found next to them.  nanopb is compiled from Debian's source package
# (PBP_NANOPB_FROM_SOURCE; cmake/PbpipeNanopb.cmake): Debian ships no
# Windows build of it.  ctest runs every test program through
# scripts/wine-run (CMAKE_CROSSCOMPILING_EMULATOR), which keeps a wine
# prefix in the build tree and refuses what this wine cannot run.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(PBP_MINGW_TRIPLET i686-w64-mingw32)
include("${CMAKE_CURRENT_LIST_DIR}/mingw-common.cmake")
# Debian 12's wine runs no 32-bit Windows program (it has no 32-bit
# Windows DLLs without the i386 dpkg architecture, and a 32-bit .exe then
# exits 0 without running anything): scripts/wine-run reports every test
# of this tree SKIPPED (exit 77), never passed.
