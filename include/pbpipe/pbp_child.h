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

/** Options for pbp_child_spawn().  Start from PBP_SPAWN_OPTIONS_INIT. */
typedef struct pbp_spawn_options {
	unsigned int version;             /**< PBP_SPAWN_OPTIONS_VERSION */
	const pbp_channel_options *channel; /**< NULL: channel defaults */
	char *const *envp;                /**< child environment; NULL: ours */
	const char *cwd;                  /**< child working dir; NULL: ours */
	unsigned int flags;               /**< PBP_SPAWN_* flags */
} pbp_spawn_options;

/** Initializer for pbp_spawn_options: every field at its default. */
#define PBP_SPAWN_OPTIONS_INIT { PBP_SPAWN_OPTIONS_VERSION, NULL, NULL, NULL, 0 }

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
