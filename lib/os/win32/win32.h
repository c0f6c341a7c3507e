/*
 * win32.h: helpers shared by the files of the Windows platform layer
 * (lib/os/win32/).  Nothing outside lib/os/win32/ includes it.
 *
 * Windows 7 and later: TryAcquireSRWLockExclusive (pbp__mutex_trylock) is
 * the newest call linked directly; newer ones (GetSystemTimePreciseAsFileTime)
 * and the two ntdll queries are looked up with GetProcAddress, so nothing
 * beyond kernel32 needs to be linked.
 */
#ifndef PBP_OS_WIN32_H
#define PBP_OS_WIN32_H

#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "os/os.h"

/* FormatMessageW's text for a GetLastError() value, as UTF-8 on one line
 * (no trailing newline or period run), into buf; "error N" if Windows has
 * no text for it.  Returns buf. */
const char *pbp__win_strerror(DWORD e, char *buf, size_t size);

/* UTF-8 to a newly allocated UTF-16 string (free()), or NULL: out of
 * memory or not UTF-8 (then *bad is set if bad is not NULL). */
wchar_t *pbp__win_wide(const char *s, int *bad);

/* 1 if h was opened for overlapped I/O (no FILE_SYNCHRONOUS_IO_* mode,
 * from NtQueryInformationFile FileModeInformation), 0 if synchronous, -1
 * if that cannot be asked (the caller then assumes synchronous, which is
 * always safe: it only loses deadlines). */
int pbp__win_is_overlapped(HANDLE h);

/* NtQueryObject: the access the handle was granted (0 with *ok = 0 when
 * unknown); a hash of its NT object name ("\Device\NamedPipe\...", the
 * same for both ends of a pipe) into id[2], returning 1, or both 0 and
 * returning 0 when it has no name, or 2 for a socket (named \Device\Afd:
 * sockets say FILE_TYPE_PIPE too); the object's type name ("Event",
 * "File", ...) into buf, "" if unknown. */
ACCESS_MASK pbp__win_granted_access(HANDLE h, int *ok);
int pbp__win_object_id(HANDLE h, uint64_t id[2]);
void pbp__win_object_type(HANDLE h, char *buf, size_t size);

/* Milliseconds to pass WaitForMultipleObjects for an absolute deadline
 * (pbp__now_ms clock; -1: INFINITE); 0 once it has passed. */
DWORD pbp__win_timeout(int64_t deadline);

/* ---- aux.c, for io.c and proc.c ------------------------------------------ */

/* The event to wait on while aux's read is in flight, or NULL once its
 * end was seen (or for a handle without overlapped I/O, which is only
 * drained when a wait wakes for another reason). */
HANDLE pbp__win_aux_event(pbp__os_aux *a);
/* Passes what completed to the sink and starts the next read; never
 * waits.  1 while open, 0 once its end was seen.  Thread-safe. */
int pbp__win_aux_pump(pbp__os_aux *a);

/* ---- io.c, for proc.c ------------------------------------------------------- */

/* The aux the transport watches (pbp__os_io_set_aux), or NULL. */
pbp__os_aux *pbp__win_io_aux(pbp__os_io *io);
/* For pbp__proc_wait: reads and discards what has arrived on the read
 * side, starting the next read, and returns the event to wait on for more,
 * or NULL when there is none to wait on (end of stream, an error, or a
 * synchronous handle, which is drained with PeekNamedPipe instead). */
HANDLE pbp__win_io_discard(pbp__os_io *io);
/* The last Windows error the transport saw (GetLastError value, 0 if
 * none), with its text in buf. */
DWORD pbp__win_io_last_error(const pbp__os_io *io, char *buf, size_t size);

/* ---- cmdline.c, for proc.c ---------------------------------------------------- */

/* The command line for argv (NULL or empty: just path) plus the two handle
 * values in decimal, the one the child writes to first, quoted for the
 * child's C runtime; malloc'd.  0, PBP_EINVAL (not UTF-8, a quote in
 * argv[0], over 32766 characters), PBP_ENOMEM. */
int pbp__win_cmdline(wchar_t **out, const char *path, const char *const *argv,
                     HANDLE child_w, HANDLE child_r, pbp_error *err);
/* The program CreateProcessW should run: path searched (SearchPathW) when
 * it names no folder, ".exe" appended when it has no extension.  0,
 * PBP_EEXEC (not found), PBP_EINVAL, PBP_ENOMEM. */
int pbp__win_program(wchar_t **out, const char *path, pbp_error *err);
/* A UTF-16 environment block for envp (sorted by name, ignoring case), or
 * *out = NULL for envp NULL (the child gets ours).  0, PBP_EINVAL,
 * PBP_ENOMEM. */
int pbp__win_envblock(wchar_t **out, char *const *envp, pbp_error *err);

#endif /* PBP_OS_WIN32_H */
