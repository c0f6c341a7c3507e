# toolchain-mingw-x86_64.cmake: CMake toolchain file for a Windows x86-64
# build, cross-compiled with Debian's mingw-w64 (gcc-mingw-w64-x86-64) and
# tested under wine (scripts/test-windows):
#
#   cmake -S . -B build-win64 -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-x86_64.cmake
#   cmake --build build-win64 && ctest --test-dir build-win64
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
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(PBP_MINGW_TRIPLET x86_64-w64-mingw32)
include("${CMAKE_CURRENT_LIST_DIR}/mingw-common.cmake")
