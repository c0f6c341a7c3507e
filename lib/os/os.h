/*
 * os.h: the platform layer.  The only code in lib/ that calls the operating
 * system is behind this header, one implementation per platform:
 *
 *   lib/os/posix/   Linux, other POSIX systems, musl (Linux extras such as
 *                   pidfds, pipe2 and F_SETPIPE_SZ chosen by the feature
 *                   checks of cmake/PbpipeFeatures.cmake, in pbp_config.h)
 *   lib/os/win32/   Windows (Vista and later API; cross-built with mingw-w64)
 *
 * Everything above (the codecs, the byte engine, the session, the channel
 * API, calls, the child object) is portable C11 and includes no system
 * header beyond the C library's.  Conventions: functions return 0 or a
 * negative PBP_E* code and describe failures in a pbp_error; the byte
 * transport returns -errno values (EAGAIN, EPIPE, ...; the Windows layer
 * maps its errors onto the same few).
 */
#ifndef PBP_OS_H
#define PBP_OS_H

#include <stddef.h>
#include <stdint.h>

#include <pbpipe/pbp_child.h> /* pbp_exit_status, pbp_os_handle, pbp_pid */
#include <pbpipe/pbp_errors.h>

#include "pbp_internal.h" /* pbp__io_ops */

/* ---- clock, identity ------------------------------------------------------ */

/* Monotonic clock in milliseconds and in nanoseconds. */
int64_t pbp__now_ms(void);
int64_t pbp__now_ns(void);
/* Wall clock, nanoseconds since the Unix epoch (trace records). */
uint64_t pbp__os_realtime_ns(void);
/* The calling process's id (getpid(), GetCurrentProcessId()). */
uint32_t pbp__os_getpid(void);

/* ---- mutexes -------------------------------------------------------------- */

/* A plain non-recursive mutex; storage is the platform's (pthread_mutex_t,
 * an SRWLOCK).  init returns 0 or PBP_ESYS. */
#ifdef _WIN32
typedef struct pbp__mutex { void *opaque; } pbp__mutex;
#else
#include <pthread.h>
typedef struct pbp__mutex { pthread_mutex_t m; } pbp__mutex;
#endif
int pbp__mutex_init(pbp__mutex *m);
void pbp__mutex_destroy(pbp__mutex *m);
void pbp__mutex_lock(pbp__mutex *m);
/* 1 if taken, 0 if another thread holds it. */
int pbp__mutex_trylock(pbp__mutex *m);
void pbp__mutex_unlock(pbp__mutex *m);

/* ---- handles ---------------------------------------------------------------- */

/* Closes *h unless it is PBP_OS_HANDLE_INVALID, then sets it so.  Never
 * retries a close that was interrupted.  Returns 0 or the errno (POSIX) /
 * GetLastError() value the close reported. */
int pbp__os_close(pbp_os_handle *h);

/* What a handle is called in messages: "fd" on POSIX, "handle" on Windows. */
#ifdef _WIN32
#define PBP__OS_HANDLE_NOUN "handle"
#define PBP__OS_A_HANDLE "a handle"
#else
#define PBP__OS_HANDLE_NOUN "fd"
#define PBP__OS_A_HANDLE "an fd"
#endif

/* The largest handle value a handle string may name (INT_MAX for fds; on
 * Windows handle values fit 32 bits so that 32- and 64-bit processes can
 * pass them to each other). */
uint64_t pbp__os_handle_max(void);
/* The handle a parsed handle string names (no check). */
pbp_os_handle pbp__os_handle_from_u64(uint64_t v);

/* What a checked handle is, for the pairing checks of handles.c. */
typedef struct pbp__handle_info {
	uint64_t id[2]; /* identifies the pipe or FIFO (st_dev, st_ino; on
	                   Windows the pipe's file id), both 0 if unknown */
	int duplex;     /* a stream socket: one handle may carry both directions */
} pbp__handle_info;

/* Child side: checks that h, named by the handle string quoted (already
 * quoted for messages) in role ("write" or "read"), is open and can carry
 * a byte stream in that direction (for_write: the child writes to it).
 * 0 with *info, or PBP_EINVAL / PBP_ESYS with a message that quotes the
 * string and says what is wrong. */
int pbp__os_handle_check(pbp_os_handle h, int for_write, const char *role,
                         const char *quoted, pbp__handle_info *info, pbp_error *err);

/* ---- the byte transport over two handles --------------------------------- */

/* A transport over the platform's handles (pbp__io_ops below is its
 * vtable; ctx is the pbp__os_io).  Opaque; the platform's own struct. */
typedef struct pbp__os_io pbp__os_io;

#define PBP__OS_IO_SIGPIPE_HANDLED 0x1u /* POSIX: no SIGPIPE guard per write */

/* Makes a transport that reads rd and writes wr (rd == wr for a stream
 * socket).  Prepares the handles as the channel needs them (close-on-exec /
 * non-inheritable; on POSIX the write fd O_NONBLOCK, the read fd's mode
 * kept), and asks for pipe_size bytes of pipe capacity where the platform
 * can (Linux: F_SETPIPE_SZ; elsewhere ignored; 0: leave it).  Does not take
 * ownership on failure: the handles are then as they were, or only their
 * close-on-exec flag set.  0, PBP_ENOMEM, PBP_ESYS, PBP_EINVAL. */
int pbp__os_io_open(pbp__os_io **out, pbp_os_handle rd, pbp_os_handle wr,
                    unsigned int flags, int pipe_size, pbp_error *err);
/* Frees the transport; closes its handles if close_handles (one close when
 * rd == wr), else leaves them open.  Cancels any operation in flight.
 * Returns 0 or the first close error (an errno / GetLastError value).
 * NULL is a no-op. */
int pbp__os_io_free(pbp__os_io *io, int close_handles);
pbp_os_handle pbp__os_io_read_handle(const pbp__os_io *io);
pbp_os_handle pbp__os_io_write_handle(const pbp__os_io *io);
extern const pbp__io_ops pbp__os_io_ops;
/* Bytes written to the transport that its reader has not read yet (still
 * in the pipe), also after the reader is gone: whether a peer that died
 * had read a whole request.  0 and *n, or PBP_ENOTSUP where the platform
 * cannot tell (only Linux pipes can: elsewhere the count on a pipe's
 * write end is of the other direction, or not available). */
int pbp__os_io_unread(const pbp__os_io *io, size_t *n);
/* For a transport that is only ever used without blocking (a pool's
 * helpers): POSIX makes its read fd non-blocking (its own open file; the
 * peer's end is another), so that a read needs no poll() before it.  0 or
 * PBP_ESYS; a no-op elsewhere. */
int pbp__os_io_read_nonblocking(pbp__os_io *io);
/* Waits until one of the n transports can make progress: ios[i] has input
 * (or its end, or an error) to read, or, where want_write[i], room to
 * write; or until timeout_ms passes (< 0: none).  NULL entries are
 * skipped.  Drains their aux inputs meanwhile.  Sets ready[i] nonzero
 * for each one ready, 0 for the others.  Returns how many are ready (0 at
 * the timeout), or -errno (a system error number). */
int pbp__os_io_wait_any(struct pbp__os_io *const *ios, const int *want_write, size_t n,
                        int timeout_ms, int *ready);

/* ---- an auxiliary input: a child's captured stderr ------------------------ */

/* Reads a handle in the background of every wait: whenever the transport
 * or pbp__proc_wait() waits, it also watches the aux handle and passes what
 * arrives to sink (sink(arg, NULL, 0) once, at its end).  Thread-safe: two
 * threads of a duplex channel may drain it at once; sink calls never
 * overlap and come in stream order. */
typedef struct pbp__os_aux pbp__os_aux;
typedef void (*pbp__aux_sink)(void *arg, const char *data, size_t n);

/* Takes ownership of h (on success and on failure). */
int pbp__os_aux_open(pbp__os_aux **out, pbp_os_handle h, pbp__aux_sink sink, void *arg,
                     pbp_error *err);
/* Reads what is there now, without waiting, until the pipe is empty or at
 * its end.  Returns 1 while it is open, 0 once its end was seen. */
int pbp__os_aux_drain(pbp__os_aux *a);
/* Reads to the end, waiting up to deadline (-1: none).  Used once the
 * child is gone (its stderr may still hold bytes, or a grandchild may hold
 * the write end: hence the deadline). */
void pbp__os_aux_drain_until(pbp__os_aux *a, int64_t deadline);
/* Closes and frees.  Also what a forked copy of the spawner may do: it
 * closes its copy of the handle and leaves the lock alone (a thread the
 * fork did not copy may have held it).  NULL is a no-op. */
void pbp__os_aux_free(pbp__os_aux *a);
/* Watch a while the transport waits (NULL: stop). The transport does not own it. */
void pbp__os_io_set_aux(pbp__os_io *io, pbp__os_aux *a);

/* ---- files ---------------------------------------------------------------- */

/* Opens path for appending (created 0644 if missing), close-on-exec. */
int pbp__os_file_append_open(const char *path, pbp_os_handle *h, pbp_error *err);
/* Appends the n pieces as one record with one write, best effort (errors
 * ignored).  Appends from several processes sharing the file do not
 * interleave within a record. */
void pbp__os_file_append(pbp_os_handle h, const pbp__piece *pieces, int n);

/* ---- the helper's watch on its parent --------------------------------------- */

/* A helper's watch on the process that started it (issue 16): a thread
 * that ends this process with SIGKILL once its parent is gone, armed by
 * pbp_channel_from_handles()/_from_argv().  Opaque; the platform's own. */
typedef struct pbp__os_watch pbp__os_watch;

/* Starts watching the parent: records its pid now (getppid()) and starts
 * the watch thread, all fds close-on-exec and every signal blocked in the
 * thread.  POSIX: a pidfd of the parent waited on with poll() (Linux >=
 * 5.3), else getppid() looked at every 100 ms; Windows: nothing to start,
 * the Job object of pbp_child_spawn() ends the helper (win32/watch.c).
 * 0 with *out; PBP_ESYS, PBP_ENOMEM with err. */
int pbp__os_watch_start(pbp__os_watch **out, pbp_error *err);
/* 1 if no process has this pid any more (or it has exited and is not yet
 * reaped), 0 if one does or nothing can be told.  Sends no signal: a
 * pidfd where there is one, else kill(pid, 0); Windows: 0. */
int pbp__os_pid_gone(uint32_t pid);
/* The parent's pid recorded when the watch started; 0 if unknown (no
 * parent visible, or Windows). */
uint32_t pbp__os_watch_ppid(const pbp__os_watch *w);
/* Stops the thread and joins it, closes its fds and frees.  In a process
 * forked from the one that started it (where the thread does not exist)
 * only closes and frees.  NULL is a no-op; preserves errno. */
void pbp__os_watch_stop(pbp__os_watch *w);

/* The name of the environment variable by which pbp_child_spawn() tells
 * the child its parent's pid (see wire/handshake.c). */
#define PBP__PARENT_PID_ENV "PBPIPE_PARENT_PID"

/* ---- processes ------------------------------------------------------------ */

/* A spawned child process: its pid and handle (pidfd, process handle,
 * Job object).  Opaque; the platform's own struct. */
typedef struct pbp__proc pbp__proc;

typedef struct pbp__spawn_req {
	const char *path;         /* the executable (POSIX: searched in PATH
	                             without '/'; Windows: as CreateProcessW
	                             finds it, ".exe" appended if missing) */
	const char *const *argv;  /* argv[0] first, NULL-terminated, or NULL */
	char *const *envp;        /* NULL: ours */
	const char *cwd;          /* NULL: ours */
	int stdout_mode;          /* enum pbp_stdio */
	int stderr_mode;          /* enum pbp_stdio */
	int pipe_size;            /* as for pbp__os_io_open (POSIX: unused
	                             here; the channel's io_open asks) */
	int new_group;            /* PBP_SPAWN_PROCESS_GROUP: POSIX, a new
	                             process group led by the child, which
	                             pbp__proc_kill then signals whole;
	                             Windows, kill terminates the Job */
} pbp__spawn_req;

/*
 * Creates two pipes (and a stderr pipe with PBP_STDIO_CAPTURE), starts the
 * child with the two handle strings appended to its argv (the handle it
 * writes to, then the one it reads from), its two pipe ends the only
 * handles it inherits beyond its stdio, and closes the parent's copies of
 * the child's ends on every path.  Windows: the child is put in a Job
 * object that kills it when the parent is gone.  POSIX: the child's
 * environment (rq->envp, or ours) gets PBP__PARENT_PID_ENV=<our pid>,
 * replacing any it had; our own environment is never changed (Windows
 * needs no such variable: see win32/watch.c).
 *
 * 0 with *out, and the parent's ends *rd (the child's output), *wr and
 * *errrd (PBP_OS_HANDLE_INVALID without capture), all close-on-exec /
 * non-inheritable, ready for pbp__os_io_open and pbp__os_aux_open.
 * PBP_EEXEC (the program cannot be executed: the message names it and the
 * cause, sys_errno the errno / GetLastError value), PBP_EINVAL, PBP_ENOMEM,
 * PBP_ESYS.  On failure nothing is left: no handle, no process.
 */
int pbp__proc_spawn(pbp__proc **out, const pbp__spawn_req *rq, pbp_os_handle *rd,
                    pbp_os_handle *wr, pbp_os_handle *errrd, pbp_error *err);

/* The child's process id. */
pbp_pid pbp__proc_pid(const pbp__proc *p);
/* 0 if the calling process is a fork() of the spawner (POSIX), else 1. */
int pbp__proc_owned(const pbp__proc *p);
/* A handle that becomes ready once the child has exited, for an event
 * loop: POSIX its pidfd (readable), or PBP_OS_HANDLE_INVALID without
 * pidfds or once it is reaped; Windows its process handle (signalled).
 * Owned by p. */
pbp_os_handle pbp__proc_exit_handle(const pbp__proc *p);

/*
 * Waits until the child is gone or the deadline passes (-1: none; a past
 * deadline: just check).  Meanwhile drains aux (if not NULL) and reads and
 * discards whatever arrives on discard's read side (if not NULL), so the
 * child can never block writing to a full pipe.  Reaps it: 0 with *st
 * (st->unknown set if it was reaped elsewhere), PBP_ETIMEDOUT (still
 * running; err is left alone, the caller words it), PBP_ESYS (err).  After
 * 0, later calls return the same status.
 */
int pbp__proc_wait(pbp__proc *p, pbp__os_aux *aux, pbp__os_io *discard, int64_t deadline,
                   pbp_exit_status *st, pbp_error *err);

/*
 * POSIX: sends signal sig to the child, any number kill() takes (0 only
 * checks; one the kernel refuses is PBP_ESYS with EINVAL, as
 * pbp_child_kill() documents); Windows: terminates it with exit code
 * 128 + sig (there are no signals there).  Does nothing and returns 0 if
 * the child is already known to be gone (a pid that may name another
 * process now is never signalled).  With rq->new_group, POSIX signals
 * the child's whole process group, but only while the child (its leader)
 * is certainly not reaped, a zombie included, so its pgid cannot have
 * been reused; Windows terminates the Job, which holds the tree.  0,
 * PBP_EINVAL (bad sig), PBP_ESYS, with the message in err ("signal 9 to
 * child pid 123: ...").
 */
int pbp__proc_kill(pbp__proc *p, int sig, pbp_error *err);
/* The signals pbp_child_close() escalates with: SIGTERM and SIGKILL, or
 * on Windows 15 and 9 (exit codes 143 and 137). */
int pbp__os_sigterm(void);
int pbp__os_sigkill(void);

/* Releases the process's handles.  Does not wait.  POSIX: does not kill
 * either.  Windows: closing the Job handle kills a child still running
 * (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE); child.c calls it only once the
 * child is gone or is being killed anyway.  NULL is a no-op. */
void pbp__proc_free(pbp__proc *p);

/* "exited with status 0", "killed by signal 9 (SIGKILL)", ... into buf. */
const char *pbp__os_exit_status_str(const pbp_exit_status *st, char *buf, size_t size);

#endif /* PBP_OS_H */
