# PbpipeLoopLibs.cmake: the libraries of the event-loop examples
# (pbpipe-uv on libuv, pbpipe-event on libevent; docs/event-loops.md).
#
# Finds libuv and libevent_core with pkg-config and links a test program
# against both with this tree's compiler, since the installed libraries
# serve only their own ABI: Debian's are 64-bit glibc ones, so the 32-bit
# tree (cmake/m32.cmake) and musl-gcc cannot link them.  Not on Windows.
# Sets PBP_HAVE_LOOP_LIBS, and the imported targets PkgConfig::PBP_LIBUV
# and PkgConfig::PBP_LIBEVENT when it is ON.
#
# Without them the examples are skipped with a message; with
# PBP_REQUIRE_LOOP_EXAMPLES=ON (scripts/test) the configure fails instead.

include_guard(GLOBAL)
set(PBP_HAVE_LOOP_LIBS OFF)
set(_pbp_loop_why "")
set(_pbp_loop_hint "")
if(WIN32)
  set(_pbp_loop_why "not on Windows")
else()
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(PBP_LIBUV QUIET IMPORTED_TARGET libuv)
    pkg_check_modules(PBP_LIBEVENT QUIET IMPORTED_TARGET libevent_core)
  endif()
  if(NOT PkgConfig_FOUND)
    set(_pbp_loop_why "pkg-config not found")
  elseif(NOT PBP_LIBUV_FOUND OR NOT PBP_LIBEVENT_FOUND)
    set(_pbp_loop_why "pkg-config finds no")
    if(NOT PBP_LIBUV_FOUND)
      string(APPEND _pbp_loop_why " libuv")
    endif()
    if(NOT PBP_LIBEVENT_FOUND)
      string(APPEND _pbp_loop_why " libevent_core")
    endif()
    set(_pbp_loop_hint " (Debian: libuv1-dev, libevent-dev; scripts/install-deps)")
  else()
    include(CheckCSourceCompiles)
    set(CMAKE_REQUIRED_LIBRARIES PkgConfig::PBP_LIBUV PkgConfig::PBP_LIBEVENT)
    set(CMAKE_REQUIRED_QUIET ON)
    # With -std=c11 (CMAKE_C_EXTENSIONS OFF) uv.h needs POSIX declared.
    check_c_source_compiles("
#define _POSIX_C_SOURCE 200809L
#include <uv.h>
#include <event2/event.h>
int main(void) { return uv_version() == 0 || event_get_version() == 0; }"
      _PBP_LOOP_LIBS_LINK)
    unset(CMAKE_REQUIRED_LIBRARIES)
    unset(CMAKE_REQUIRED_QUIET)
    if(_PBP_LOOP_LIBS_LINK)
      set(PBP_HAVE_LOOP_LIBS ON)
    else()
      string(STRIP "${CMAKE_C_COMPILER} ${CMAKE_C_FLAGS}" _pbp_cc)
      string(CONCAT _pbp_loop_why "libuv ${PBP_LIBUV_VERSION} and libevent "
             "${PBP_LIBEVENT_VERSION} are installed, but a program of this tree "
             "(${_pbp_cc}) cannot link them: they are of "
             "another ABI (a 32-bit or musl tree?)")
    endif()
  endif()
endif()

if(PBP_HAVE_LOOP_LIBS)
  message(STATUS "pbpipe-uv, pbpipe-event: libuv ${PBP_LIBUV_VERSION}, libevent ${PBP_LIBEVENT_VERSION}")
elseif(PBP_REQUIRE_LOOP_EXAMPLES)
  message(FATAL_ERROR "PBP_REQUIRE_LOOP_EXAMPLES=ON, but pbpipe-uv and pbpipe-event cannot be "
                      "built: ${_pbp_loop_why}.  They need the Debian packages libuv1-dev and "
                      "libevent-dev (scripts/install-deps installs them); or configure with "
                      "-DPBP_REQUIRE_LOOP_EXAMPLES=OFF to skip them.")
else()
  message(STATUS "pbpipe-uv, pbpipe-event: not built: ${_pbp_loop_why}${_pbp_loop_hint}")
endif()
