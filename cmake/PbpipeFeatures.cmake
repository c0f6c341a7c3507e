# PbpipeFeatures.cmake: what the platform offers lib/, found by feature
# checks rather than assumed from the distribution, and written to the
# internal header <build>/lib/pbp_config.h (from cmake/pbp_config.h.in;
# never installed).  Included once from the top-level CMakeLists.txt.
#
# Each PBP_HAVE_* is 1 or 0; at 0, lib/ compiles its fallback (each
# fallback is described where it is implemented):
#
#   feature        PBP_HAVE_*                          fallback
#   pidfd_wrappers SYS_PIDFD_H PIDFD_OPEN              the raw syscalls
#                  PIDFD_SEND_SIGNAL                   (SYS_pidfd_open, ...)
#   pidfd          the above, SYS_PIDFD_OPEN           no pidfd: a /proc/<pid>
#                  SYS_PIDFD_SEND_SIGNAL               fd and waitpid polling
#                  WAITID_P_PIDFD                      (lib/os/posix/proc.c)
#   addclosefrom   ADDCLOSEFROM_NP                     one close action per
#                                                      open fd >= 5 (proc.c)
#   pipe2          PIPE2                               pipe() + FD_CLOEXEC (sys.c)
#   pipe_size      F_SETPIPE_SZ                        pipes keep their size
#   sigabbrev      SIGABBREV_NP                        a table of signal names
#
# Checked but not forcible, because without it one option cannot work:
#   PBP_HAVE_ADDCHDIR_NP   pbp_spawn_options.cwd; without it a spawn that
#                          asks for a cwd fails with PBP_ESYS (ENOSYS).
#
# PBP_DISABLE_FEATURES (a list of the feature names above, or "all") and
# PBP_FORCE_FALLBACKS=ON (the same as "all") pretend features are missing,
# so that every fallback is compiled and tested on a machine that has
# everything (scripts/test-fallbacks).  PBP_FORCED_FALLBACKS (a list) and
# PBP_CONFIG_FALLBACKS (in pbp_config.h) then name the features turned off.

set(PBP_FEATURES pidfd_wrappers pidfd addclosefrom pipe2 pipe_size sigabbrev)
set(PBP_CONFIG_DIR "${PROJECT_BINARY_DIR}/lib")

# Windows: none of the checks below apply (lib/os/win32/ uses the Windows
# API only), so every PBP_HAVE_* is 0 and none is "forced".
if(WIN32)
  foreach(_v SYS_PIDFD_H PIDFD_OPEN PIDFD_SEND_SIGNAL SYS_PIDFD_OPEN SYS_PIDFD_SEND_SIGNAL
             WAITID_P_PIDFD ADDCLOSEFROM_NP ADDCHDIR_NP PIPE2 F_SETPIPE_SZ SIGABBREV_NP)
    set(PBP_HAVE_${_v} 0)
  endforeach()
  set(PBP_FORCED_FALLBACKS "")
  set(PBP_CONFIG_FALLBACKS "")
  message(STATUS "pbpipe platform features: Windows (no POSIX feature checks)")
  configure_file("${CMAKE_CURRENT_LIST_DIR}/pbp_config.h.in" "${PBP_CONFIG_DIR}/pbp_config.h" @ONLY)
  return()
endif()

include(CheckIncludeFile)
include(CheckSymbolExists)
include(CheckCSourceCompiles)

set(PBP_DISABLE_FEATURES "" CACHE STRING
    "Platform features to treat as missing, to test lib/'s fallbacks: any of ${PBP_FEATURES}, or all")
option(PBP_FORCE_FALLBACKS "Treat every optional platform feature as missing (PBP_DISABLE_FEATURES=all)" OFF)

set(_pbp_off ${PBP_DISABLE_FEATURES})
if(PBP_FORCE_FALLBACKS OR "all" IN_LIST _pbp_off)
  set(_pbp_off ${PBP_FEATURES})
endif()
foreach(_f IN LISTS _pbp_off)
  if(NOT _f IN_LIST PBP_FEATURES)
    message(FATAL_ERROR "PBP_DISABLE_FEATURES: unknown feature '${_f}' (known: ${PBP_FEATURES}, all)")
  endif()
endforeach()
if("pidfd" IN_LIST _pbp_off AND NOT "pidfd_wrappers" IN_LIST _pbp_off)
  list(APPEND _pbp_off pidfd_wrappers)
endif()

# The checks see what lib/ sees: every lib/ file that needs them defines
# _GNU_SOURCE before its first include.
set(CMAKE_REQUIRED_DEFINITIONS -D_GNU_SOURCE)
set(CMAKE_REQUIRED_QUIET ON)
check_include_file(sys/pidfd.h _PBP_C_SYS_PIDFD_H)
if(_PBP_C_SYS_PIDFD_H)
  check_symbol_exists(pidfd_open sys/pidfd.h _PBP_C_PIDFD_OPEN)
  check_symbol_exists(pidfd_send_signal sys/pidfd.h _PBP_C_PIDFD_SEND_SIGNAL)
endif()
check_symbol_exists(SYS_pidfd_open sys/syscall.h _PBP_C_SYS_PIDFD_OPEN)
check_symbol_exists(SYS_pidfd_send_signal sys/syscall.h _PBP_C_SYS_PIDFD_SEND_SIGNAL)
# P_PIDFD is an enumerator (of idtype_t) in both glibc and musl, which
# check_symbol_exists cannot see.
check_c_source_compiles("
#include <sys/wait.h>
int main(void) { siginfo_t si; return waitid(P_PIDFD, 0, &si, WEXITED | WNOHANG); }"
  _PBP_C_WAITID_P_PIDFD)
check_symbol_exists(pipe2 unistd.h _PBP_C_PIPE2)
check_symbol_exists(posix_spawn_file_actions_addclosefrom_np spawn.h _PBP_C_ADDCLOSEFROM_NP)
check_symbol_exists(posix_spawn_file_actions_addchdir_np spawn.h _PBP_C_ADDCHDIR_NP)
check_symbol_exists(F_SETPIPE_SZ fcntl.h _PBP_C_F_SETPIPE_SZ)
check_symbol_exists(F_GETPIPE_SZ fcntl.h _PBP_C_F_GETPIPE_SZ)
check_symbol_exists(sigabbrev_np string.h _PBP_C_SIGABBREV_NP)
unset(CMAKE_REQUIRED_DEFINITIONS)
unset(CMAKE_REQUIRED_QUIET)

# pbp_feature(<PBP_HAVE_ name> <check result> <feature>): 1 if found and
# not disabled, else 0.
function(pbp_feature name found feature)
  if(${found} AND NOT feature IN_LIST _pbp_off)
    set(${name} 1 PARENT_SCOPE)
  else()
    set(${name} 0 PARENT_SCOPE)
  endif()
endfunction()
pbp_feature(PBP_HAVE_SYS_PIDFD_H _PBP_C_SYS_PIDFD_H pidfd_wrappers)
pbp_feature(PBP_HAVE_PIDFD_OPEN _PBP_C_PIDFD_OPEN pidfd_wrappers)
pbp_feature(PBP_HAVE_PIDFD_SEND_SIGNAL _PBP_C_PIDFD_SEND_SIGNAL pidfd_wrappers)
pbp_feature(PBP_HAVE_SYS_PIDFD_OPEN _PBP_C_SYS_PIDFD_OPEN pidfd)
pbp_feature(PBP_HAVE_SYS_PIDFD_SEND_SIGNAL _PBP_C_SYS_PIDFD_SEND_SIGNAL pidfd)
pbp_feature(PBP_HAVE_WAITID_P_PIDFD _PBP_C_WAITID_P_PIDFD pidfd)
pbp_feature(PBP_HAVE_ADDCLOSEFROM_NP _PBP_C_ADDCLOSEFROM_NP addclosefrom)
pbp_feature(PBP_HAVE_ADDCHDIR_NP _PBP_C_ADDCHDIR_NP "")
pbp_feature(PBP_HAVE_PIPE2 _PBP_C_PIPE2 pipe2)
if(_PBP_C_F_SETPIPE_SZ AND _PBP_C_F_GETPIPE_SZ)
  set(_PBP_C_PIPE_SZ 1)
endif()
pbp_feature(PBP_HAVE_F_SETPIPE_SZ _PBP_C_PIPE_SZ pipe_size)
pbp_feature(PBP_HAVE_SIGABBREV_NP _PBP_C_SIGABBREV_NP sigabbrev)
list(REMOVE_DUPLICATES _pbp_off)
# The forced features, as a list, for tests/CMakeLists.txt.
set(PBP_FORCED_FALLBACKS ${_pbp_off})
list(JOIN _pbp_off " " PBP_CONFIG_FALLBACKS)

set(_pbp_summary "")
foreach(_v SYS_PIDFD_H PIDFD_OPEN PIDFD_SEND_SIGNAL SYS_PIDFD_OPEN SYS_PIDFD_SEND_SIGNAL
           WAITID_P_PIDFD ADDCLOSEFROM_NP ADDCHDIR_NP PIPE2 F_SETPIPE_SZ SIGABBREV_NP)
  string(APPEND _pbp_summary " ${_v}=${PBP_HAVE_${_v}}")
endforeach()
message(STATUS "pbpipe platform features:${_pbp_summary}")
if(_pbp_off)
  message(STATUS "pbpipe: fallbacks forced for: ${PBP_CONFIG_FALLBACKS}")
endif()

configure_file("${CMAKE_CURRENT_LIST_DIR}/pbp_config.h.in" "${PBP_CONFIG_DIR}/pbp_config.h" @ONLY)
