# mingw-common.cmake: the part of cmake/toolchain-mingw-*.cmake common to
# both widths.  Input: PBP_MINGW_TRIPLET (x86_64-w64-mingw32, i686-w64-mingw32).
find_program(_pbp_mingw_cc NAMES ${PBP_MINGW_TRIPLET}-gcc-win32 ${PBP_MINGW_TRIPLET}-gcc
             NO_CACHE)
if(NOT _pbp_mingw_cc)
  message(FATAL_ERROR "${PBP_MINGW_TRIPLET}-gcc not found: install gcc-mingw-w64 "
                      "(scripts/install-deps)")
endif()
set(CMAKE_C_COMPILER "${_pbp_mingw_cc}")
find_program(CMAKE_RC_COMPILER NAMES ${PBP_MINGW_TRIPLET}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${PBP_MINGW_TRIPLET})
# Programs (the nanopb generator, protoc) from the build machine; headers,
# libraries and packages only from the mingw tree.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# No mingw runtime DLL next to the programs.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# Tests run through wine (64-bit only; the runner refuses 32-bit programs
# loudly).  The top-level CMakeLists.txt appends the prefix it keeps in
# the build tree.
get_filename_component(_pbp_src "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(CMAKE_CROSSCOMPILING_EMULATOR "${_pbp_src}/scripts/wine-run")

set(PBP_NANOPB_FROM_SOURCE ON CACHE BOOL
    "Build nanopb from Debian's source package instead of find_package(nanopb)")
