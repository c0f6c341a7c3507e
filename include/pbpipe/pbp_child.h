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
 * The helper is started with posix_spawn and two new pipes.  Two decimal
 * handle strings are appended to its argv: first the fd the child writes
 * to, then the fd it reads from.  The child has exactly five fds open at
 * exec: stdin, stdout and stderr as the parent had them, and its two
 * handles.  Every fd pbpipe creates in the parent is close-on-exec from
 * birth, so no other process spawned by any thread inherits a pipe end,
 * and end of stream always arrives.
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
 * waitpid(-1) and reaps only the pids it spawned.  If the application
 * itself reaps children with waitpid(-1), it can steal the status of a
 * pbpipe child; pbp_child_wait() then reports PBP_ESYS (ECHILD).
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

/** Skip the handshake in pbp_child_spawn(); call pbp_channel_handshake()
 *  on pbp_child_channel() yourself. */
#define PBP_SPAWN_NO_HANDSHAKE 0x1u

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
 *         ended); PBP_EINVAL, PBP_ENOMEM, PBP_ESYS.
 *
 * On failure nothing is left behind: no fd, no process, no zombie (a child
 * that is still running after a failed handshake is killed and reaped).
 * Blocks for at most the handshake deadline.
 */
PBP_API PBP_WARN_UNUSED int pbp_child_spawn(pbp_child **out, const char *path,
                                            const char *const *argv,
                                            const pbp_spawn_options *opts,
                                            pbp_error *err);

/** The channel to the child.  Owned by the child object: do not free it. */
PBP_API pbp_channel *pbp_child_channel(const pbp_child *c);

/** The child's process id. */
PBP_API pid_t pbp_child_pid(const pbp_child *c);

/**
 * Waits for the child to exit, for at most timeout_ms (< 0: no limit;
 * 0: just check).  Reaps it; after that, further calls return the same
 * status at once.
 *
 * @param[out] out  how it ended (may be NULL)
 * @return 0; PBP_ETIMEDOUT (still running); PBP_ESYS (waitpid failed, e.g.
 *         ECHILD because someone else reaped it).
 */
PBP_API PBP_WARN_UNUSED int pbp_child_wait(pbp_child *c, int timeout_ms,
                                           pbp_exit_status *out);

/**
 * Sends signal sig to the child, unless it has already been reaped (then
 * it does nothing and returns 0: the pid may belong to someone else now).
 * @return 0, PBP_ESYS.
 */
PBP_API PBP_WARN_UNUSED int pbp_child_kill(pbp_child *c, int sig);

/**
 * Ends the conversation and the child: sends Goodbye (reason DONE) if the
 * channel is open for sending, closes the write side, then waits up to
 * grace_ms for the child to exit, reading and discarding anything it
 * still writes so it cannot block on a full pipe; then sends SIGTERM and
 * waits up to grace_ms more; then SIGKILL, and waits.
 *
 * @param[out] out  how the child ended (may be NULL)
 * @return 0 once the child is reaped; PBP_ESYS if waiting failed.
 *         Failures to send Goodbye do not matter here and are ignored.
 */
PBP_API PBP_WARN_UNUSED int pbp_child_close(pbp_child *c, int grace_ms,
                                            pbp_exit_status *out);

/** The error record of the most recent failure of a pbp_child_* call. */
PBP_API const pbp_error *pbp_child_error(const pbp_child *c);

/**
 * Frees the child object and its channel.  If the child has not been
 * reaped, it is killed with SIGKILL and reaped first, so no zombie is
 * left; call pbp_child_close() beforehand for a graceful end.  NULL is a
 * no-op.
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
	pid_t pid;                    /**< the child's pid, or 0 */
	size_t stderr_len;            /**< bytes in stderr_tail */
	size_t stderr_total;          /**< bytes the child wrote to stderr in all */
	char stderr_tail[PBP_STDERR_TAIL_MAX + 1]; /**< the last bytes it wrote,
	                                   NUL-terminated (with PBP_STDIO_CAPTURE) */
} pbp_report;

/**
 * Fills out with how the child's channel ended and what became of the
 * child (checked now, without blocking: a child that has exited is reaped),
 * including captured stderr.  Can be called at any time, as often as
 * needed.  @return 0, or PBP_EINVAL for a NULL argument.
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
 * @return 0; PBP_EINVAL (a bad handle: the message quotes the string and
 *         says what is wrong with it); PBP_ESYS; PBP_ENOMEM.
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
