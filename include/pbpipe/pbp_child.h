/*
 * pbp_child.h: starting a helper process behind a channel, and attaching
 * to the parent from inside the helper.
 *
 * Parent side:
 *
 *     const char *argv[] = { "helper", "--verbose", NULL };
 *     pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
 *     so.channel = &channel_options;   // types, fingerprint, ...
 *     pbp_child *c;
 *     pbp_error err;
 *     if (pbp_child_spawn(&c, "/usr/lib/app/helper", argv, &so, &err) != 0)
 *         die(err.msg);                // exec failure, handshake failure...
 *     pbp_channel *ch = pbp_child_channel(c);
 *     ... pbp_channel_send(ch, ...) / pbp_channel_recv_msg(ch, ...) ...
 *     pbp_exit_status st;
 *     if (pbp_child_close(c, 2000, &st) == 0 && st.exited && st.code == 0)
 *         ok();
 *     pbp_child_free(c);
 *
 * POSIX: the helper is started with posix_spawn and two new pipes.  Two
 * decimal handle strings are appended to its argv: first the fd the child
 * writes to, then the fd it reads from.  The child has exactly five fds
 * open at exec: stdin, stdout and stderr as the parent had them, and its
 * two handles.  Every fd pbpipe creates in the parent is close-on-exec from
 * birth, so no other process spawned by any thread inherits a pipe end,
 * and end of stream always arrives.
 *
 * Windows: the helper is started with CreateProcessW and two new named
 * pipes (overlapped, so every call has its deadline); the two handle
 * values are appended as decimal strings in the same order, and the
 * child's two pipe ends (and its stdio) are the only handles it inherits
 * (PROC_THREAD_ATTRIBUTE_HANDLE_LIST).  It runs in a Job object that kills
 * it when the parent is gone.  There are no signals: pbp_child_kill(c,
 * sig) and the escalation of pbp_child_close() terminate it with exit
 * code 128 + sig (143, then 137), reported as exited with that code.
 * The rest of this file describes POSIX where it names fds, pids, pidfds
 * and signals; docs/windows.md has the Windows details.
 *
 * The environment: the child gets the application's (pbp_spawn_options.envp)
 * or ours, plus on POSIX PBPIPE_PARENT_PID=<the parent's pid> (replacing any such
 * entry; our own environment is not changed).  The child side uses it to
 * tell whether its parent died before it could watch it: see
 * PBP_CHANNEL_OUTLIVE_PARENT (pbp_channel.h) and pbp_channel_handshake().
 *
 * Child side:
 *
 *     int main(int argc, char **argv) {
 *         pbp_channel *ch;
 *         pbp_error err;
 *         if (pbp_channel_from_argv(&ch, argc, argv, &opts, &err) != 0) {
 *             fprintf(stderr, "%s\nusage: helper WRITE_FD READ_FD\n", err.msg);
 *             return 2;
 *         }
 *         if (pbp_channel_handshake(ch) != 0) ...
 *
 * Process-wide state: pbpipe installs no SIGCHLD handler, never calls
 * waitpid(-1) and reaps only the processes it spawned.  If the kernel
 * reaps them instead (SIGCHLD set to SIG_IGN, or SA_NOCLDWAIT) or the
 * application does (waitpid(-1) in a SIGCHLD handler), the child's exit
 * status is lost: pbpipe then reports it as unknown (pbp_exit_status.unknown,
 * PBP_FATE_UNKNOWN) and never signals that pid again, since it may
 * already name another process.  Signals go through a pidfd
 * (pidfd_send_signal), which names exactly the spawned process, and
 * waiting uses waitid(P_PIDFD).  Only without pidfds (kernels before
 * Linux 5.3, or valgrind) are the pid, waitpid and kill() used, after
 * checking through an fd of the child's /proc directory that the pid is
 * still the child's; an application that reaps children itself can
 * still win the race between that check and the kill there.
 *
 * Captured stderr (PBP_STDIO_CAPTURE): the child's fd 2 is a blocking
 * pipe, so nothing it writes is lost.  pbpipe reads the pipe during every
 * call that waits (channel sends and receives, with or without a deadline,
 * calls, pbp_child_wait, pbp_child_close, pbp_child_free) and in
 * pbp_child_report().  While the parent is in no pbpipe call, a child that
 * fills the pipe (64 KiB on Linux) waits in its write until the next one;
 * a parent that polls the channel's fds in its own loop should give the
 * channel a receive or pbp_child_report() from time to time.
 *
 * fork() in the application: the forked process inherits copies of the
 * child object and of the pipe ends, but the child process and the
 * conversation remain the spawner's.  In a process that is not the
 * spawner (checked with getpid()), pbp_child_free() only closes the
 * inherited fds and releases the memory: it sends no Goodbye, signals
 * nothing and waits for nothing, and the spawner's child goes on as
 * before.  Call it in the forked process early (or exec, which closes
 * every pbpipe fd, all being close-on-exec): while a copy of the parent's
 * write end stays open there, the child does not see end of stream when
 * the spawner closes its side or dies.  Every other pbp_child_* call
 * there returns PBP_EINVAL with a message in pbp_child_error(), and
 * pbp_child_channel() returns NULL; pbp_child_pid() and
 * pbp_child_error() work.
 */
#ifndef PBPIPE_PBP_CHILD_H
#define PBPIPE_PBP_CHILD_H

#include <stddef.h>
#include <sys/types.h>

#include <pbpipe/pbp_channel.h>
#include <pbpipe/pbp_common.h>
#include <pbpipe/pbp_errors.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A spawned helper process and its channel.  Opaque. */
typedef struct pbp_child pbp_child;

/** Current version of pbp_spawn_options. */
#define PBP_SPAWN_OPTIONS_VERSION 1

/**
 * Skip the handshake in pbp_child_spawn(); call pbp_channel_handshake()
 * on pbp_child_channel() yourself, or, from an event loop that drives
 * many helpers, its two steps, which never wait:
 *
 *     so.flags = PBP_SPAWN_NO_HANDSHAKE;
 *     if (pbp_child_spawn(&c, path, argv, &so, &err) != 0) ...
 *     ch = pbp_child_channel(c);
 *     if (pbp_channel_handshake_start(ch) != 0) ...
 *     // in the loop: poll pbp_channel_read_fd(ch) for POLLIN, and
 *     // pbp_channel_write_fd(ch) for POLLOUT while pbp_channel_pending(ch)
 *     // is not 0, with a timeout of at most pbp_channel_next_timeout(ch);
 *     // then:
 *     rc = pbp_channel_handshake_finish(ch, 0);
 *     // PBP_EAGAIN: not yet, poll again; 0: ready; else it failed
 *
 * With this flag pbp_child_spawn() waits for no word from the child: it
 * returns once the program has been started: on POSIX once posix_spawn()
 * has returned, that is once the exec has succeeded (a failed exec is
 * still reported at once, PBP_EEXEC); on Windows once CreateProcessW()
 * has created it and its thread runs.  Whatever the child then does
 * (exits, says nothing, answers garbage) surfaces in the handshake.
 * After a failed handshake, pbp_child_report() says why and what became
 * of the child (one that has exited is reaped and its status given;
 * PBP_FATE_RUNNING while it runs: pbp_child_close() ends it), and
 * pbp_child_free() or
 * pbp_child_close() of a child whose handshake is still under way or
 * failed leaves nothing behind: no process, no zombie, no fd.
 */
#define PBP_SPAWN_NO_HANDSHAKE 0x1u

/**
 * Take the helper's whole process tree when killing it.  POSIX: the
 * child starts in a new process group that it leads (pgid == its pid;
 * posix_spawnattr_setpgroup), and pbp_child_kill(), the SIGTERM and
 * SIGKILL of pbp_child_close()'s escalation and pbp_child_free()'s
 * SIGKILL go to the whole group (kill(-pgid, sig)), then to the child
 * itself through its pidfd.  The group is signalled only while the child
 * is certainly not reaped (waitid with WNOWAIT; a zombie counts): until
 * then no process can take its pid, nor therefore the group's id.  Once
 * it is reaped nothing is signalled, and what it left running in the
 * group stays.  Processes that leave the group (setsid, setpgid, a
 * daemon's double fork) are not reached; a child in its own group no
 * longer gets the terminal's Ctrl-C (SIGINT goes to the foreground group
 * only).  Windows: pbp_child_kill() and the escalation terminate the
 * Job object the child runs in (TerminateJobObject, exit code 128 +
 * sig), which holds everything it started; without a job (see
 * docs/windows.md) only the child.
 */
#define PBP_SPAWN_PROCESS_GROUP 0x2u

/** What the child's stdout or stderr is connected to. */
enum pbp_stdio {
	PBP_STDIO_INHERIT = 0, /**< the parent's own (the default) */
	PBP_STDIO_DEVNULL = 1, /**< /dev/null */
	PBP_STDIO_CAPTURE = 2, /**< stderr only: a pipe read by pbpipe, whose
	                            last bytes go into the pbp_report */
};

/** Default and largest number of stderr bytes kept with PBP_STDIO_CAPTURE. */
#define PBP_STDERR_TAIL_DEFAULT 4096u
#define PBP_STDERR_TAIL_MAX 65536u

struct pbp_report;

/** Options for pbp_child_spawn().  Start from PBP_SPAWN_OPTIONS_INIT. */
typedef struct pbp_spawn_options {
	unsigned int version;             /**< PBP_SPAWN_OPTIONS_VERSION */
	const pbp_channel_options *channel; /**< NULL: channel defaults */
	char *const *envp;                /**< child environment; NULL: ours */
	const char *cwd;                  /**< child working dir; NULL: ours */
	unsigned int flags;               /**< PBP_SPAWN_* flags */
	int stdout_mode;                  /**< PBP_STDIO_INHERIT or _DEVNULL */
	int stderr_mode;                  /**< PBP_STDIO_INHERIT, _DEVNULL or _CAPTURE */
	size_t stderr_tail;               /**< bytes of stderr kept with CAPTURE;
	                                       0: PBP_STDERR_TAIL_DEFAULT */
	struct pbp_report *report;        /**< if not NULL, filled when the spawn
	                                       fails: how, the child's fate, and
	                                       its captured stderr */
} pbp_spawn_options;

/** Initializer for pbp_spawn_options: every field at its default. */
#define PBP_SPAWN_OPTIONS_INIT { PBP_SPAWN_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, 0, 0, NULL }

/** How a child process ended. */
typedef struct pbp_exit_status {
	int exited;      /**< 1 if it called exit: see code */
	int code;        /**< its exit code, when exited */
	int signal;      /**< the signal that killed it, or 0 */
	int core_dumped; /**< 1 if it dumped core */
	int unknown;     /**< 1 if it is gone but was reaped elsewhere (SIGCHLD
	                      ignored, SA_NOCLDWAIT, the application's own
	                      waitpid), so how it ended is not known: then
	                      exited, code, signal and core_dumped are all 0 */
} pbp_exit_status;

/**
 * Starts `path` as a helper process connected by two new pipes and, unless
 * PBP_SPAWN_NO_HANDSHAKE is set, completes the handshake with it.
 *
 * @param[out] out  the child, set only on success
 * @param path      the executable; a name without '/' is searched in PATH
 * @param argv      its argv, NULL-terminated, argv[0] first; may be NULL
 *                  (then argv[0] is path).  The two handle strings are
 *                  appended after the last element.
 * @param opts      options, or NULL for defaults
 * @param[out] err  filled on failure if not NULL
 * @return 0; PBP_EEXEC (the program could not be executed: no such file,
 *         not executable, ...; errno in err->sys_errno; reported at once,
 *         never as a child exiting 127); PBP_ETRUNC, PBP_EPROTO,
 *         PBP_ETIMEDOUT, PBP_EMSGSIZE, PBP_EPIPE (the handshake failed:
 *         the child exited, answered garbage or said nothing within the
 *         handshake deadline; the message says which and how the child
 *         ended); PBP_EAGAIN (a handshake deadline of 0, and the child's
 *         Hello was not there at once: to handshake without waiting, use
 *         PBP_SPAWN_NO_HANDSHAKE); PBP_EINVAL, PBP_ENOMEM, PBP_ESYS.
 *
 * On failure nothing is left behind: no fd, no process, no zombie (a child
 * that is still running after a failed handshake is killed and reaped).
 * Blocks for at most the handshake deadline.
 */
PBP_API PBP_WARN_UNUSED int pbp_child_spawn(pbp_child **out, const char *path,
                                            const char *const *argv,
                                            const pbp_spawn_options *opts,
                                            pbp_error *err);

/** The channel to the child.  Owned by the child object: do not free it.
 *  NULL in a forked copy (see the top of this file). */
PBP_API pbp_channel *pbp_child_channel(const pbp_child *c);

/** The child's process id.  Use it for logging: to signal the child, use
 *  pbp_child_kill(), which cannot hit a recycled pid. */
PBP_API pbp_pid pbp_child_pid(const pbp_child *c);

/**
 * A handle an event loop waits on to learn that the child has exited,
 * without blocking: POSIX the child's pidfd, readable (POLLIN) once it
 * has exited; Windows its process handle, signalled then.  Then
 * pbp_child_wait(c, 0, &st) reaps it and says how it ended.  Owned by
 * the child object: do not close it; valid until the child is reaped or
 * freed.  PBP_OS_HANDLE_INVALID once reaped, in a forked copy, and on
 * POSIX systems without pidfds (before Linux 5.3, or under valgrind):
 * there, poll pbp_child_wait(c, 0, ...) from a timer.
 *
 * Ending a helper from a loop: pbp_channel_goodbye() with a send deadline
 * of 0 (the Goodbye is queued and goes out with the next flush or
 * pbp_channel_process()), then wait for this handle (or for end of
 * stream on the read fd) and call pbp_child_wait(c, 0, &st); escalate
 * with pbp_child_kill() from a timer if it does not exit.
 */
PBP_API pbp_os_handle pbp_child_exit_handle(const pbp_child *c);

/**
 * Waits for the child to exit, for at most timeout_ms (< 0: no limit;
 * 0: just check).  Reaps it; after that, further calls return the same
 * status at once.
 *
 * @param[out] out  how it ended (may be NULL); out->unknown is 1 if it
 *                  was reaped elsewhere (see the top of this file)
 * @return 0 (it is gone); PBP_ETIMEDOUT (still running); PBP_ESYS (waiting
 *         failed); PBP_EINVAL (in a forked copy: see the top of this file).
 */
PBP_API PBP_WARN_UNUSED int pbp_child_wait(pbp_child *c, int timeout_ms,
                                           pbp_exit_status *out);

/**
 * Sends signal sig to the child, unless it is gone (reaped, by pbpipe or
 * elsewhere: then it does nothing and returns 0, since the pid may belong
 * to someone else now).  Through the child's pidfd where the kernel has
 * them, so a recycled pid is never signalled.  With PBP_SPAWN_PROCESS_GROUP,
 * to the child's whole process group (Windows: its Job), only while the
 * child is not reaped.
 * @return 0, PBP_ESYS, PBP_EINVAL (in a forked copy).
 */
PBP_API PBP_WARN_UNUSED int pbp_child_kill(pbp_child *c, int sig);

/**
 * Ends the conversation and the child: sends Goodbye (reason DONE) if the
 * channel is open for sending, closes the write side, then waits up to
 * grace_ms for the child to exit, reading and discarding anything it
 * still writes so it cannot block on a full pipe; then sends SIGTERM and
 * waits up to grace_ms more; then SIGKILL, and waits.  With
 * PBP_SPAWN_PROCESS_GROUP the two signals go to the child's whole group
 * (Windows: the Job is terminated); a child that exits within the grace
 * period is reaped and its group is not signalled.
 *
 * @param[out] out  how the child ended (may be NULL; unknown if it was
 *                  reaped elsewhere, and then it is not signalled)
 * @return 0 once the child is gone; PBP_ESYS if waiting failed;
 *         PBP_EINVAL in a forked copy.  Failures to send Goodbye do not
 *         matter here and are ignored.
 */
PBP_API PBP_WARN_UNUSED int pbp_child_close(pbp_child *c, int grace_ms,
                                            pbp_exit_status *out);

/** The error record of the most recent failure of a pbp_child_* call. */
PBP_API const pbp_error *pbp_child_error(const pbp_child *c);

/**
 * Frees the child object and its channel.  If the child has not been
 * reaped, it is killed with SIGKILL and reaped first, so no zombie is
 * left; call pbp_child_close() beforehand for a graceful end.  A child
 * reaped elsewhere is not signalled.  In a forked copy, only closes the
 * inherited fds and frees (see the top of this file).  NULL is a no-op.
 */
PBP_API void pbp_child_free(pbp_child *c);

/** How a channel ended (pbp_report.end). */
enum pbp_end {
	PBP_END_OPEN = 0,      /**< nothing has ended it yet */
	PBP_END_EOF = 1,       /**< the peer closed between frames: a clean end */
	PBP_END_GOODBYE = 2,   /**< the peer said Goodbye (see goodbye_reason) */
	PBP_END_TRUNCATED = 3, /**< the stream stopped inside a frame */
	PBP_END_MALFORMED = 4, /**< the peer sent bytes that are not a valid frame */
	PBP_END_OVERSIZE = 5,  /**< the peer declared a frame over the limit */
	PBP_END_HANDSHAKE = 6, /**< the handshake failed (error says why) */
	PBP_END_TIMEOUT = 7,   /**< a deadline passed (handshake, or the last call) */
	PBP_END_PEER_GONE = 8, /**< a write found nobody reading */
	PBP_END_IO = 9,        /**< an OS call failed */
	PBP_END_EXEC = 10,     /**< the child could not be executed */
	PBP_END_UNANSWERED = 11, /**< the stream ended while calls or a barrier
	                              waited (PBP_EUNANSWERED: the message says
	                              how many) */
};

/** What became of the child process (pbp_report.fate). */
enum pbp_fate {
	PBP_FATE_NONE = 0,        /**< no child (a channel over plain fds) */
	PBP_FATE_RUNNING = 1,     /**< still running when the report was made */
	PBP_FATE_EXITED = 2,      /**< exited: status.code */
	PBP_FATE_SIGNALED = 3,    /**< killed by status.signal */
	PBP_FATE_EXEC_FAILED = 4, /**< never started: see error */
	PBP_FATE_UNKNOWN = 5,     /**< gone, but reaped elsewhere: status.unknown */
};

/**
 * A death report: how a channel ended and what became of its child, in
 * one place.  Filled by pbp_child_report(), pbp_channel_report(), or by a
 * failed pbp_child_spawn() through pbp_spawn_options.report.
 */
typedef struct pbp_report {
	int end;                      /**< enum pbp_end */
	int error;                    /**< the PBP_E* code behind it, 0 for a clean end */
	char message[PBP_ERRMSG_SIZE];/**< that error's message */
	int goodbye_reason;           /**< with PBP_END_GOODBYE */
	char goodbye_detail[128];     /**< with PBP_END_GOODBYE */
	int fate;                     /**< enum pbp_fate */
	pbp_exit_status status;       /**< with EXITED or SIGNALED */
	pbp_pid pid;                  /**< the child's pid, or 0 */
	size_t stderr_len;            /**< bytes in stderr_tail */
	size_t stderr_total;          /**< bytes the child wrote to stderr in all */
	char stderr_tail[PBP_STDERR_TAIL_MAX + 1]; /**< the last bytes it wrote,
	                                   NUL-terminated (with PBP_STDIO_CAPTURE) */
} pbp_report;

/**
 * Fills out with how the child's channel ended and what became of the
 * child (checked now, without blocking: a child that has exited is reaped),
 * including captured stderr.  Can be called at any time, as often as
 * needed.  Once the child is gone, the stderr tail ends with the last
 * bytes it wrote.  @return 0, or PBP_EINVAL for a NULL argument or in a
 * forked copy.
 */
PBP_API int pbp_child_report(pbp_child *c, pbp_report *out);

/** Like pbp_child_report() for a channel without a child (fate NONE). */
PBP_API int pbp_channel_report(const pbp_channel *ch, pbp_report *out);

/** A one-line summary of a report, such as "truncated frame (end of
 *  stream inside a frame body (3 of 100 bytes)); child pid 42 killed by
 *  signal 9 (SIGKILL)".  Returns buf. */
PBP_API const char *pbp_report_str(const pbp_report *r, char *buf, size_t size);

/**
 * Writes a one-line description of st, such as "exited with status 0" or
 * "killed by signal 9 (Killed)", into buf.  Returns buf.
 */
PBP_API const char *pbp_exit_status_str(const pbp_exit_status *st, char *buf,
                                        size_t size);

/**
 * Child side: creates a channel from the two handle strings the parent
 * passed: first the fd to write to, then the fd to read from.  Each must be
 * a decimal number of an open fd that is a pipe, a FIFO or a socket, open
 * in the right direction.  The same number twice is accepted for a socket
 * only.  No I/O happens; call pbp_channel_handshake() next.
 *
 * Unless opts->flags has PBP_CHANNEL_OUTLIVE_PARENT, also starts the
 * thread that watches this process's parent and ends this process with
 * SIGKILL once the parent is gone (pbp_channel.h); pbp_channel_free() or
 * pbp_channel_close() stops it.  POSIX only: on Windows the Job object
 * does it.
 *
 * @return 0; PBP_EINVAL (a bad handle: the message quotes the string and
 *         says what is wrong with it); PBP_ESYS (also: the watch thread
 *         could not start); PBP_ENOMEM.
 * Ownership: as pbp_channel_from_fds().
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_from_handles(pbp_channel **out,
                                                     const char *write_handle,
                                                     const char *read_handle,
                                                     const pbp_channel_options *opts,
                                                     pbp_error *err);

/**
 * Child side: pbp_channel_from_handles() with the last two elements of
 * argv.  PBP_EINVAL if argc < 3.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_from_argv(pbp_channel **out, int argc,
                                                  char *const *argv,
                                                  const pbp_channel_options *opts,
                                                  pbp_error *err);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_CHILD_H */
