/*
 * pbp_common.h: export macro and attributes shared by every pbpipe header.
 * Include <pbpipe/pbpipe.h> rather than this file.
 */
#ifndef PBPIPE_PBP_COMMON_H
#define PBPIPE_PBP_COMMON_H

#if defined(__GNUC__) || defined(__clang__)
#define PBP_API __attribute__((visibility("default")))
#define PBP_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define PBP_API
#define PBP_WARN_UNUSED
#endif

/*
 * Portable types for what the operating system names: a pipe end or other
 * I/O handle, and a process id.
 *
 *   pbp_os_handle  POSIX: an fd (int).  Windows: a HANDLE (void *).
 *   pbp_pid        POSIX: pid_t.  Windows: a process id (DWORD).
 */
#ifdef _WIN32
#include <stdint.h>
typedef void *pbp_os_handle;
/** No handle (INVALID_HANDLE_VALUE). */
#define PBP_OS_HANDLE_INVALID ((pbp_os_handle)(intptr_t)-1)
typedef unsigned long pbp_pid;
#else
#include <sys/types.h>
typedef int pbp_os_handle;
/** No handle. */
#define PBP_OS_HANDLE_INVALID (-1)
typedef pid_t pbp_pid;
#endif

#endif /* PBPIPE_PBP_COMMON_H */
