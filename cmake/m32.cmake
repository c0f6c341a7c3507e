# m32.cmake: CMake toolchain file for a 32-bit x86 (i686) build on an amd64
# Debian machine, with gcc -m32 from gcc-multilib.  Used for pbpipe's 32-bit
# tree (scripts/build-m32, or -DPBP_M32=ON in the 64-bit tree):
#
#   cmake -S . -B build-m32 -DCMAKE_TOOLCHAIN_FILE=cmake/m32.cmake ...
#
# gcc-multilib needs no i386 dpkg architecture.  Debian's i386 nanopb
# (libnanopb-dev:i386) does, and adding that architecture breaks
# `apt-get update` on our mirror (docs: TOOLCHAIN P9), so this toolchain
# turns PBP_NANOPB_FROM_SOURCE on: nanopb's three .c files are compiled from
# Debian's source package instead (cmake/PbpipeNanopb.cmake).  Pass
# -DPBP_NANOPB_FROM_SOURCE=OFF to link libnanopb-dev:i386 instead.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)

set(CMAKE_C_COMPILER gcc)
set(CMAKE_C_FLAGS_INIT -m32)
set(CMAKE_EXE_LINKER_FLAGS_INIT -m32)
set(CMAKE_SHARED_LINKER_FLAGS_INIT -m32)
set(CMAKE_MODULE_LINKER_FLAGS_INIT -m32)

# Where find_package()/find_library() look first: /usr/lib/i386-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE i386-linux-gnu)

set(PBP_NANOPB_FROM_SOURCE ON CACHE BOOL
    "Build nanopb from Debian's source package instead of find_package(nanopb)")
