/*
 * proc.c: the POSIX platform's processes: two pipes and posix_spawn, the
 * handles on the spawned process (a pidfd, or an fd of its /proc
 * directory), waiting with a deadline, signals, and exit status strings.
 *
 * posix_spawn rather than fork+exec: glibc implements it with a
 * CLONE_VM|CLONE_VFORK child that blocks all signals around the clone,
 * resets dispositions as asked, and reports exec failure through the return
 * value, synchronously (libuv and libgit2 build the same guarantees by hand
 * with an exec-status pipe).  It also costs the same whatever the size of
 * the parent, where fork copies page tables.  musl's posix_spawn gives the
 * same guarantees (CLONE_VM|CLONE_VFORK, exec failure through a pipe).
 *
 * What the platform lacks is found at configure time (pbp_config.h, from
 * cmake/PbpipeFeatures.cmake), and each gap has a fallback here: pidfds
 * through the raw system calls or not at all (open_handles), the fds the
 * child inherits closed one by one (add_closefrom), and a table of signal
 * names (signal_abbrev).
 */
#define _GNU_SOURCE
#include "pbp_config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#if PBP_HAVE_SYS_PIDFD_H
#include <sys/pidfd.h>
#endif
#if PBP_HAVE_SYS_PIDFD_OPEN || PBP_HAVE_SYS_PIDFD_SEND_SIGNAL
#include <sys/syscall.h>
#endif
#if !PBP_HAVE_ADDCLOSEFROM_NP
#include <dirent.h>
#include <limits.h>
#endif

#include "posix.h"

/* The fds the child gets: fixed, so its argv is predictable, and just
 * above stdin/stdout/stderr. */
#define CHILD_WRITE_FD 3
#define CHILD_READ_FD 4
#define CHILD_FIRST_FREE_FD 5

struct pbp__proc {
	pid_t pid;
	pid_t owner;      /* getpid() of the spawner: see pbp__proc_owned() */
	int pidfd;        /* -1 where pidfd_open is unavailable */
	int procfd;       /* without a pidfd: /proc/<pid>, see still_ours() */
	int waitid_pidfd; /* waitid(P_PIDFD) works (Linux >= 5.4) */
	int group;        /* leads a process group of its own (pgid == pid) */
	int reaped;       /* gone: reaped by us, or found reaped elsewhere
	                     (then status.unknown); never signalled again */
	pbp_exit_status status;
};

/* ---- platform -------------------------------------------------------------- */

/* pidfds (Linux >= 5.3): libc's wrappers (glibc >= 2.36), else the system
 * calls by number (musl 1.2.3 has the numbers but no wrappers), else none.
 * Both calls or neither: a pidfd that cannot carry signals would leave
 * kill() on a pid that may be a stranger's.  Without them pidfd_open says
 * ENOSYS and the child is watched through /proc/<pid> and waitpid polling
 * instead (open_handles).  The kernel makes every pidfd close-on-exec. */
#define HAVE_PIDFDS                                              \
	((PBP_HAVE_PIDFD_OPEN || PBP_HAVE_SYS_PIDFD_OPEN) &&          \
	 (PBP_HAVE_PIDFD_SEND_SIGNAL || PBP_HAVE_SYS_PIDFD_SEND_SIGNAL))

static int
open_pidfd(pid_t pid)
{
#if HAVE_PIDFDS
	return pbp__pidfd_open(pid);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

static int
pidfd_signal(int pidfd, int sig)
{
#if HAVE_PIDFDS && PBP_HAVE_PIDFD_SEND_SIGNAL
	return pidfd_send_signal(pidfd, sig, NULL, 0);
#elif HAVE_PIDFDS
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
	(void)pidfd;
	(void)sig;
	errno = ENOSYS;
	return -1;
#endif
}

/* "KILL" for SIGKILL, or NULL: sigabbrev_np where libc has it (glibc >=
 * 2.32), else a table of the signals POSIX and Linux name, which gives
 * the same answers for them (real-time signals have no name either way). */
static const char *
signal_abbrev(int sig)
{
#if PBP_HAVE_SIGABBREV_NP
	return sigabbrev_np(sig);
#else
	static const struct {
		int sig;
		const char *name;
	} names[] = {
		{ SIGHUP, "HUP" },   { SIGINT, "INT" },       { SIGQUIT, "QUIT" },
		{ SIGILL, "ILL" },   { SIGTRAP, "TRAP" },     { SIGABRT, "ABRT" },
		{ SIGBUS, "BUS" },   { SIGFPE, "FPE" },       { SIGKILL, "KILL" },
		{ SIGUSR1, "USR1" }, { SIGSEGV, "SEGV" },     { SIGUSR2, "USR2" },
		{ SIGPIPE, "PIPE" }, { SIGALRM, "ALRM" },     { SIGTERM, "TERM" },
		{ SIGCHLD, "CHLD" }, { SIGCONT, "CONT" },     { SIGSTOP, "STOP" },
		{ SIGTSTP, "TSTP" }, { SIGTTIN, "TTIN" },     { SIGTTOU, "TTOU" },
		{ SIGURG, "URG" },   { SIGXCPU, "XCPU" },     { SIGXFSZ, "XFSZ" },
		{ SIGVTALRM, "VTALRM" }, { SIGPROF, "PROF" }, { SIGSYS, "SYS" },
#ifdef SIGSTKFLT
		{ SIGSTKFLT, "STKFLT" },
#endif
#ifdef SIGWINCH
		{ SIGWINCH, "WINCH" },
#endif
#ifdef SIGPOLL
		{ SIGPOLL, "POLL" }, /* before SIGIO, its alias on Linux, as glibc */
#endif
#ifdef SIGIO
		{ SIGIO, "IO" },
#endif
#ifdef SIGPWR
		{ SIGPWR, "PWR" },
#endif
	};
	size_t i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].sig == sig)
			return names[i].name;
	return NULL;
#endif
}

/* ---- exit status ---------------------------------------------------------- */

static void
decode_status(int raw, pbp_exit_status *st)
{
	memset(st, 0, sizeof *st);
	if (WIFEXITED(raw)) {
		st->exited = 1;
		st->code = WEXITSTATUS(raw);
	} else if (WIFSIGNALED(raw)) {
		st->signal = WTERMSIG(raw);
		st->core_dumped = WCOREDUMP(raw) ? 1 : 0;
	}
}

/* ---- waiting -------------------------------------------------------------- */

/* The child is gone and we know it: its status is in p->status.  Its
 * handles go at once: a pidfd or /proc fd kept open would only pin a
 * process that no longer exists. */
static void
gone(pbp__proc *p)
{
	p->reaped = 1;
	pbp__close(&p->pidfd);
	pbp__close(&p->procfd);
}

/* Someone else reaped the child: the kernel (SIGCHLD ignored,
 * SA_NOCLDWAIT) or the application (waitpid(-1)).  Its status is lost;
 * say so rather than invent one, and never signal its pid again: it may
 * name another process by now. */
static void
reaped_elsewhere(pbp__proc *p)
{
	memset(&p->status, 0, sizeof p->status);
	p->status.unknown = 1;
	gone(p);
}

#if PBP_HAVE_WAITID_P_PIDFD
static void
status_from_siginfo(const siginfo_t *si, pbp_exit_status *st)
{
	memset(st, 0, sizeof *st);
	if (si->si_code == CLD_EXITED) {
		st->exited = 1;
		st->code = si->si_status;
	} else {
		st->signal = si->si_status;
		st->core_dumped = si->si_code == CLD_DUMPED;
	}
}
#endif

/* Without a pidfd: is p->pid still our process, running or a zombie?  An
 * fd of the /proc/<pid> directory opened at spawn stays tied to that
 * process: once it has been reaped, lookups under it fail with ESRCH,
 * even when the pid names another process by now (the way to tell before
 * pidfds existed).  Unknown (no /proc) counts as ours. */
static int
still_ours(pbp__proc *p)
{
	int fd;

	if (p->procfd < 0)
		return 1;
	fd = openat(p->procfd, "stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ESRCH && errno != ENOENT;
	pbp__close(&fd);
	return 1;
}

/* Reaps the child if it has exited, never blocking.  With a pidfd,
 * waitid(P_PIDFD) waits for exactly that process, even if its pid has
 * been recycled for another child of ours; otherwise waitpid on our own
 * pid.  Returns 1 when gone (reaped by us, or already reaped elsewhere:
 * ECHILD), 0 when still running, or PBP_ESYS. */
static int
try_reap(pbp__proc *p, pbp_error *err)
{
	int raw;
	pid_t r;

	if (p->reaped)
		return 1;
#if PBP_HAVE_WAITID_P_PIDFD
	if (p->pidfd >= 0 && p->waitid_pidfd) {
		siginfo_t si;
		int rc;

		memset(&si, 0, sizeof si);
		do
			rc = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG);
		while (rc < 0 && errno == EINTR);
		if (rc == 0 && si.si_pid == 0)
			return 0;
		if (rc == 0) {
			status_from_siginfo(&si, &p->status);
			gone(p);
			return 1;
		}
		if (errno != EINVAL)
			goto failed;
		p->waitid_pidfd = 0; /* a kernel before 5.4: use the pid */
	}
#endif
	/* Where waitpid could reap a stranger that took a recycled pid. */
	if (!still_ours(p)) {
		reaped_elsewhere(p);
		return 1;
	}
	do
		r = waitpid(p->pid, &raw, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	if (r < 0)
		goto failed;
	decode_status(raw, &p->status);
	gone(p);
	return 1;
failed:
	if (errno == ECHILD) {
		reaped_elsewhere(p);
		return 1;
	}
	return pbp__seterr(err, PBP_ESYS, errno, "waiting for child pid %d: %s",
	                   (int)p->pid, strerror(errno));
}

/* Sends sig to the child, if it still exists.  Through the pidfd where
 * there is one: it names exactly our process, and says ESRCH once that
 * is gone, whatever now has its pid.  Without a pidfd, kill() is safe
 * only while the pid is surely still ours (a zombie keeps it): look
 * first (still_ours, then waitpid).  A reaper elsewhere in the
 * application can still take the child between that look and the kill;
 * only a pidfd closes that window.  Returns 0 or an errno. */
static int
signal_child(pbp__proc *p, int sig)
{
	int rc;

	if (p->reaped)
		return 0;
	if (p->pidfd >= 0) {
		rc = pidfd_signal(p->pidfd, sig);
		if (rc == 0)
			return 0;
		if (errno != ESRCH)
			return errno;
		/* A zombie can still be signalled: gone entirely means
		 * reaped, and not by us. */
		reaped_elsewhere(p);
		return 0;
	}
	if (try_reap(p, NULL) != 0)
		return 0;
	return kill(p->pid, sig) == 0 || errno == ESRCH ? 0 : errno;
}

/* PBP_SPAWN_PROCESS_GROUP: sig to the child's whole group, pgid == its
 * pid.  A pid cannot be reused while its process exists, a zombie
 * included, and neither then can the group id: so kill(-pid) only while
 * the child is certainly not reaped.  waitid with WNOWAIT looks without
 * reaping (through the pidfd where there is one, so it cannot mistake
 * another child of ours that took a recycled pid); a zombie is still
 * there.  Then the child itself through signal_child (its pidfd), in case
 * it left the group.  A reaper elsewhere in the application (waitpid(-1))
 * can still take the child between the look and the kill, as for kill()
 * without a pidfd (pbp_child.h). */
static int
signal_group(pbp__proc *p, int sig)
{
	siginfo_t si;
	int rc;

	if (p->reaped)
		return 0;
	memset(&si, 0, sizeof si);
	rc = -1;
	errno = EINVAL;
#if PBP_HAVE_WAITID_P_PIDFD
	if (p->pidfd >= 0 && p->waitid_pidfd)
		rc = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG | WNOWAIT);
#endif
	if (rc != 0 && errno == EINVAL) /* no pidfd, or a kernel before 5.4 */
		rc = still_ours(p) ? waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT)
		                   : (errno = ECHILD, -1);
	if (rc != 0 && errno != EINTR) {
		if (errno != ECHILD)
			return errno;
		reaped_elsewhere(p);
		return 0;
	}
	if (rc == 0 && kill(-p->pid, sig) != 0 && errno != ESRCH && errno != EPERM)
		return errno;
	return signal_child(p, sig);
}

/* ---- waiting, signals -------------------------------------------------------- */

/* Reads and discards one bufferful from fd, which poll() said is readable
 * (the channel's read fd may be in blocking mode, so read only once).
 * Returns 0 at end of stream or on error, so the caller stops watching. */
static int
drain(int fd)
{
	char scratch[4096];
	ssize_t n;

	do
		n = read(fd, scratch, sizeof scratch);
	while (n < 0 && errno == EINTR);
	return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* ---- spawning ------------------------------------------------------------- */

/* Moves *fd to a number >= CHILD_FIRST_FREE_FD, so that the dup2 file
 * actions onto 3 and 4 can never overwrite a source fd (libuv's "move low
 * fds out of the way"). */
static int
lift_fd(int *fd, pbp_error *err)
{
	int nfd;

	if (*fd >= CHILD_FIRST_FREE_FD)
		return 0;
	nfd = fcntl(*fd, F_DUPFD_CLOEXEC, CHILD_FIRST_FREE_FD);
	if (nfd < 0)
		return pbp__seterr(err, PBP_ESYS, errno, "fcntl(F_DUPFD_CLOEXEC): %s",
		                   strerror(errno));
	pbp__close(fd);
	*fd = nfd;
	return 0;
}

/* argv plus the two handle strings and the terminating NULL. */
static char **
build_argv(const char *path, const char *const *argv)
{
	static char wname[] = "3", rname[] = "4";
	size_t n = 0;
	char **v;

	while (argv != NULL && argv[n] != NULL)
		n++;
	v = calloc(n + (n == 0) + 3, sizeof *v);
	if (v == NULL)
		return NULL;
	if (n == 0)
		v[n++] = (char *)path;
	else
		memcpy(v, argv, n * sizeof *v);
	v[n++] = wname;
	v[n++] = rname;
	v[n] = NULL;
	return v;
}

/* Closes, in the child, every fd >= CHILD_FIRST_FREE_FD it would inherit:
 * fds of the caller (or a test runner) that lack FD_CLOEXEC.  Runs after
 * the dup2 actions onto 3 and 4, whose sources it may close too.
 *
 * Where libc has posix_spawn_file_actions_addclosefrom_np (glibc >= 2.34)
 * that is one action, done in the child.  Without it (musl 1.2.3, older
 * glibc) there is one close action per fd open in this process now, listed
 * from /proc/self/fd, or /dev/fd; without either, every number below the
 * open-file limit is probed with fcntl(F_GETFD) (slow with a high limit,
 * but only where nothing lists fds).  Closing an fd that was closed
 * meanwhile fails in the child, and glibc and musl both ignore that.  What
 * a list cannot cover is an fd another thread opens without O_CLOEXEC
 * between the listing and posix_spawn; such an fd reaches whatever process
 * is spawned at that moment, by pbpipe or anyone else, and opening with
 * O_CLOEXEC is how threaded programs avoid that on every system.
 *
 * Not chosen: fork, then close in the child.  posix_spawn already blocks
 * signals around the clone, resets dispositions and reports exec failure
 * synchronously (see the top of this file); a fork path would rebuild all
 * of that with an exec-status pipe, and the child of a fork may call only
 * async-signal-safe functions (STYLE.md section 5, item 4), so it could not
 * list /proc/self/fd with opendir, only close every number up to the limit
 * (or call close_range, which musl has no wrapper for). */
static int
add_closefrom(posix_spawn_file_actions_t *fa)
{
#if PBP_HAVE_ADDCLOSEFROM_NP
	return posix_spawn_file_actions_addclosefrom_np(fa, CHILD_FIRST_FREE_FD);
#else
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long fd, max;
	int rc = 0, self;

	if (d == NULL)
		d = opendir("/dev/fd");
	if (d == NULL) {
		max = sysconf(_SC_OPEN_MAX);
		if (max < 0 || max > INT_MAX)
			max = INT_MAX;
		for (fd = CHILD_FIRST_FREE_FD; rc == 0 && fd < max; fd++)
			if (fcntl((int)fd, F_GETFD) >= 0 || errno != EBADF)
				rc = posix_spawn_file_actions_addclose(fa, (int)fd);
		return rc;
	}
	self = dirfd(d);
	for (;;) {
		char *end;

		errno = 0;
		if ((e = readdir(d)) == NULL) {
			rc = errno; /* 0 at the end of the list */
			break;
		}
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		fd = strtol(e->d_name, &end, 10);
		if (*end != '\0' || fd < CHILD_FIRST_FREE_FD || fd > INT_MAX || fd == self)
			continue;
		if ((rc = posix_spawn_file_actions_addclose(fa, (int)fd)) != 0)
			break;
	}
	closedir(d);
	return rc;
#endif
}

/* The child's stdout and stderr, as file actions. */
static int
add_stdio(posix_spawn_file_actions_t *fa, const pbp__spawn_req *o, int errw)
{
	int rc = 0;

	if (o->stdout_mode == PBP_STDIO_DEVNULL)
		rc = posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
	if (rc == 0 && o->stderr_mode == PBP_STDIO_DEVNULL)
		rc = posix_spawn_file_actions_addopen(fa, 2, "/dev/null", O_WRONLY, 0);
	if (rc == 0 && o->stderr_mode == PBP_STDIO_CAPTURE)
		rc = posix_spawn_file_actions_adddup2(fa, errw, 2);
	return rc;
}

/* Starts the process.  child_w / child_r are the child's pipe ends, errw
 * the write end of its stderr pipe (or -1). */
static int
start(pbp__proc *p, const char *path, char *const *argv, int child_w, int child_r,
      int errw, const pbp__spawn_req *o, pbp_error *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int rc;

#if !PBP_HAVE_ADDCHDIR_NP
	if (o->cwd != NULL)
		return pbp__seterr(err, PBP_ESYS, ENOSYS,
		                   "pbp_spawn_options.cwd needs posix_spawn_file_actions_addchdir_np, "
		                   "which this platform lacks");
#endif
	if (posix_spawn_file_actions_init(&fa) != 0)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "posix_spawn_file_actions_init failed");
	if (posix_spawnattr_init(&attr) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "posix_spawnattr_init failed");
	}
	/* dup2 leaves 3 and 4 without FD_CLOEXEC; add_closefrom then closes
	 * everything else the child would have inherited, including fds of
	 * the caller (or a test runner) that lack FD_CLOEXEC. */
	rc = posix_spawn_file_actions_adddup2(&fa, child_w, CHILD_WRITE_FD);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, child_r, CHILD_READ_FD);
	if (rc == 0)
		rc = add_stdio(&fa, o, errw);
	if (rc == 0)
		rc = add_closefrom(&fa);
#if PBP_HAVE_ADDCHDIR_NP
	if (rc == 0 && o->cwd != NULL)
		rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
#endif
	/* The child starts with an empty signal mask and default handlers,
	 * whatever this thread blocks or this process ignores (a SIG_IGN for
	 * SIGPIPE would otherwise reach the child). */
	sigemptyset(&none);
	sigfillset(&all);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&attr, &all);
	/* PBP_SPAWN_PROCESS_GROUP: a new group, led by the child (pgid 0:
	 * its own pid), that pbp__proc_kill can signal whole. */
	if (rc == 0 && o->new_group)
		rc = posix_spawnattr_setpgroup(&attr, 0);
	if (rc == 0)
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
		                                         (o->new_group ? POSIX_SPAWN_SETPGROUP : 0));
	if (rc != 0) {
		rc = pbp__seterr(err, PBP_ESYS, rc, "preparing posix_spawn: %s", strerror(rc));
	} else {
		char entry[48], **envp = pbp__env_with_parent(o->envp, entry, sizeof entry);

		if (envp == NULL) {
			rc = pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory spawning '%s'", path);
			goto done;
		}
		rc = strchr(path, '/') != NULL
			? posix_spawn(&p->pid, path, &fa, &attr, argv, envp)
			: posix_spawnp(&p->pid, path, &fa, &attr, argv, envp);
		free(envp);
		if (rc != 0)
			rc = pbp__seterr(err, PBP_EEXEC, rc, "cannot execute '%s': %s", path,
			                 strerror(rc));
	}
done:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

/* Creates the pipes.  Born close-on-exec: no process spawned by another
 * thread between here and our posix_spawn can inherit an end (pipe() then
 * fcntl() would leave that window open; only where there is no pipe2, see
 * pbp__pipe_cloexec).  Only our end of the stderr pipe
 * is non-blocking: O_NONBLOCK belongs to the open file, which the child's
 * fd 2 would share, and a child whose stderr says EAGAIN loses what it
 * logs.  Its writes block instead while the pipe is full, until we next
 * drain it.  The child's ends are moved to
 * numbers >= CHILD_FIRST_FREE_FD, so that the dup2 file actions onto 2, 3
 * and 4 can never overwrite a source fd (libuv's "move low fds out of the
 * way"). */
static int
make_pipes(int to_child[2], int from_child[2], int errp[2], int capture, pbp_error *err)
{
	int rc;

	if ((rc = pbp__pipe_cloexec(to_child, err)) != 0 ||
	    (rc = pbp__pipe_cloexec(from_child, err)) != 0 ||
	    (capture && (rc = pbp__pipe_cloexec(errp, err)) != 0))
		return rc;
	if (capture && (rc = pbp__fd_prepare(errp[0], 1, NULL, err)) != 0)
		return rc;
	if ((rc = lift_fd(&from_child[1], err)) != 0 || (rc = lift_fd(&to_child[0], err)) != 0 ||
	    (capture && (rc = lift_fd(&errp[1], err)) != 0))
		return rc;
	return 0;
}

static void
close_all(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		pbp__close(&fds[i]);
}

/* Handles on the process itself, taken at once, while its pid is surely
 * its own.  A pidfd names exactly this process for signals and waits, and
 * lets waits sleep in poll() with a deadline instead of polling waitpid.
 * Where there is none (kernels before 5.3; valgrind 3.19), an fd of its
 * /proc directory tells whether the pid is still ours (still_ours). */
static void
open_handles(pbp__proc *p)
{
	char proc[32];

	p->pidfd = open_pidfd(p->pid);
	if (p->pidfd >= 0)
		return;
	snprintf(proc, sizeof proc, "/proc/%d", (int)p->pid);
	p->procfd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}
int
pbp__proc_spawn(pbp__proc **out, const pbp__spawn_req *rq, pbp_os_handle *rd,
                pbp_os_handle *wr, pbp_os_handle *errrd, pbp_error *err)
{
	/* to_child[2], from_child[2], errp[2] */
	int fds[6] = { -1, -1, -1, -1, -1, -1 }, *to_child = fds, *from_child = fds + 2,
	    *errp = fds + 4, capture = rq->stderr_mode == PBP_STDIO_CAPTURE, rc;
	pbp__proc *p = calloc(1, sizeof *p);
	char **av = build_argv(rq->path, rq->argv);

	if (p == NULL || av == NULL) {
		rc = pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory spawning '%s'", rq->path);
		goto fail;
	}
	p->pidfd = p->procfd = -1;
	p->pid = -1;
	p->owner = getpid();
	p->waitid_pidfd = PBP_HAVE_WAITID_P_PIDFD;
	p->group = rq->new_group != 0;
	if ((rc = make_pipes(to_child, from_child, errp, capture, err)) != 0)
		goto fail;
	rc = start(p, rq->path, av, from_child[1], to_child[0], errp[1], rq, err);
	/* Close our copies of the child's ends on every path: while one stays
	 * open here, the parent never sees end of stream from the child. */
	pbp__close(&from_child[1]);
	pbp__close(&to_child[0]);
	pbp__close(&errp[1]);
	if (rc != 0)
		goto fail;
	open_handles(p);
	free(av);
	*rd = from_child[0];
	*wr = to_child[1];
	*errrd = errp[0];
	*out = p;
	return 0;
fail:
	close_all(fds, 6);
	free(av);
	free(p);
	return rc;
}

pbp_pid
pbp__proc_pid(const pbp__proc *p)
{
	return p->pid;
}

int
pbp__proc_owned(const pbp__proc *p)
{
	return getpid() == p->owner;
}

pbp_os_handle
pbp__proc_exit_handle(const pbp__proc *p)
{
	return p->reaped ? -1 : p->pidfd;
}

int
pbp__proc_wait(pbp__proc *p, pbp__os_aux *aux, pbp__os_io *discard, int64_t deadline,
               pbp_exit_status *st, pbp_error *err)
{
	int drain_fd = discard != NULL ? pbp__os_io_read_handle(discard) : -1;

	for (;;) {
		struct pollfd pfd[3];
		int rc = try_reap(p, err), timeout = -1, idrain = -1, iaux = -1, auxfd;
		nfds_t n = 0;

		if (rc < 0)
			return rc;
		if (rc > 0) {
			*st = p->status;
			return 0;
		}
		if (deadline >= 0) {
			int64_t left = deadline - pbp__now_ms();

			if (left <= 0)
				return PBP_ETIMEDOUT;
			timeout = left > 1000000000 ? 1000000000 : (int)left;
		}
		if (p->pidfd >= 0) {
			pfd[n].fd = p->pidfd;
			pfd[n++].events = POLLIN;
		} else if (timeout < 0 || timeout > 10) {
			/* No pidfd: poll the process every 10 ms. */
			timeout = 10;
		}
		if (drain_fd >= 0) {
			idrain = (int)n;
			pfd[n].fd = drain_fd;
			pfd[n++].events = POLLIN;
		}
		if ((auxfd = pbp__os_aux_fd(aux)) >= 0) {
			iaux = (int)n;
			pfd[n].fd = auxfd;
			pfd[n++].events = POLLIN;
		}
		if (poll(pfd, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			return pbp__seterr(err, PBP_ESYS, errno, "poll: %s", strerror(errno));
		}
		if (iaux >= 0 && pfd[iaux].revents != 0)
			(void)pbp__os_aux_drain(aux);
		if (idrain >= 0 && pfd[idrain].revents != 0 && !drain(drain_fd))
			drain_fd = -1;
	}
}

int
pbp__proc_kill(pbp__proc *p, int sig, pbp_error *err)
{
	int rc = p->group ? signal_group(p, sig) : signal_child(p, sig);

	if (rc != 0)
		return pbp__seterr(err, PBP_ESYS, rc, "signal %d to child pid %d: %s", sig,
		                   (int)p->pid, strerror(rc));
	return 0;
}

int
pbp__os_sigterm(void)
{
	return SIGTERM;
}

int
pbp__os_sigkill(void)
{
	return SIGKILL;
}

void
pbp__proc_free(pbp__proc *p)
{
	if (p == NULL)
		return;
	pbp__close(&p->pidfd);
	pbp__close(&p->procfd);
	free(p);
}

const char *
pbp__os_exit_status_str(const pbp_exit_status *st, char *buf, size_t size)
{
	const char *abbrev;

	if (buf == NULL || size == 0)
		return buf;
	if (st == NULL) {
		snprintf(buf, size, "unknown");
	} else if (st->unknown) {
		snprintf(buf, size, "exit status unknown (reaped elsewhere)");
	} else if (st->exited) {
		snprintf(buf, size, "exited with status %d", st->code);
	} else if (st->signal != 0) {
		abbrev = signal_abbrev(st->signal);
		snprintf(buf, size, "killed by signal %d (SIG%s)%s", st->signal,
		         abbrev ? abbrev : "?", st->core_dumped ? ", core dumped" : "");
	} else {
		snprintf(buf, size, "still running");
	}
	return buf;
}
