/*
 * watch.c: the POSIX platform's watch on a helper's parent (issue 16: no
 * orphans).  A helper busy inside a call reads nothing, so it would not
 * notice its parent's death until its next read; a thread of its own
 * notices at once and ends the process.
 *
 * Not PR_SET_PDEATHSIG: it fires when the parent *thread* that spawned us
 * exits, so a helper spawned from a short-lived thread would be killed
 * while its parent lives on.  A watch thread instead waits on a pidfd of
 * the parent process (Linux >= 5.3), which becomes readable when that
 * process exits, or, where there is no pidfd (ENOSYS: older kernels,
 * valgrind, other systems, a musl without the syscall number), looks at
 * getppid() every 100 ms: a process whose parent exits is reparented to a
 * reaper, so getppid() changes.
 *
 * The race of the open: the parent may die between getppid() and
 * pidfd_open(), and its pid be reaped and reused, so the pidfd could name
 * a stranger.  getppid() changes at the parent's exit, before it can be
 * reaped; so if getppid() still names it after the open, the pidfd is our
 * parent's.  The thread looks once more before it waits.
 *
 * When the parent is gone the thread sends SIGKILL to its own process:
 * certainly ours.  It blocks every signal (so no application signal is
 * delivered to it), and a pipe, close-on-exec from birth, tells it to
 * stop (one byte).  No process-wide state changes: no handler, no disposition.
 */
#define _GNU_SOURCE
#include "pbp_config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if PBP_HAVE_SYS_PIDFD_H
#include <sys/pidfd.h>
#endif
#if PBP_HAVE_SYS_PIDFD_OPEN
#include <sys/syscall.h>
#endif

#include "posix.h"

/* How often getppid() is looked at without a pidfd. */
#define POLL_MS 100

struct pbp__os_watch {
	pid_t ppid;      /* the parent when the watch started */
	pid_t owner;     /* getpid() of the process that started it */
	int pidfd;       /* the parent's pidfd, or -1 */
	int stop[2];     /* a byte on it stops the thread */
	int running;     /* the thread was started */
	pthread_t thread;
};

int
pbp__pidfd_open(pid_t pid)
{
#if PBP_HAVE_PIDFD_OPEN
	return pidfd_open(pid, 0);
#elif PBP_HAVE_SYS_PIDFD_OPEN
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* The parent is gone: end this process, the only one certainly ours. */
static void
parent_gone(void)
{
	kill(getpid(), SIGKILL);
	for (;;)
		pause(); /* SIGKILL cannot be blocked: never returns */
}

static void *
watch_main(void *arg)
{
	pbp__os_watch *w = arg;
	struct pollfd pfd[2];
	nfds_t n = 0;
	int rc;

	pfd[n].fd = w->stop[0];
	pfd[n++].events = POLLIN;
	if (w->pidfd >= 0) {
		pfd[n].fd = w->pidfd;
		pfd[n++].events = POLLIN;
	}
	for (;;) {
		/* Checked first: closes the race of the pidfd's open (see the
		 * top of this file), and is the whole watch without one. */
		if (getppid() != w->ppid)
			parent_gone();
		rc = poll(pfd, n, w->pidfd >= 0 ? -1 : POLL_MS);
		if (rc < 0 && errno != EINTR)
			return NULL; /* cannot wait: stop watching rather than spin */
		if (rc > 0 && pfd[0].revents != 0)
			return NULL; /* pbp__os_watch_stop */
		if (rc > 0 && n > 1 && pfd[1].revents != 0)
			parent_gone();
	}
}

/* Starts the thread with every signal blocked (it inherits our mask,
 * which is restored at once) and a small stack: it only polls. */
static int
start_thread(pbp__os_watch *w)
{
	sigset_t all, old;
	pthread_attr_t attr;
	size_t stack = 64 * 1024;
	int rc;

	if ((rc = pthread_attr_init(&attr)) != 0)
		return rc;
#ifdef PTHREAD_STACK_MIN
	if (stack < (size_t)PTHREAD_STACK_MIN)
		stack = (size_t)PTHREAD_STACK_MIN;
#endif
	(void)pthread_attr_setstacksize(&attr, stack);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, &attr, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc;
}

int
pbp__os_watch_start(pbp__os_watch **out, pbp_error *err)
{
	pbp__os_watch *w = calloc(1, sizeof *w);
	int rc;

	if (w == NULL)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory watching the parent");
	w->stop[0] = w->stop[1] = w->pidfd = -1;
	w->owner = getpid();
	w->ppid = getppid();
	if ((rc = pbp__pipe_cloexec(w->stop, err)) != 0)
		goto fail;
	/* The kernel makes every pidfd close-on-exec.  ESRCH (the parent is
	 * already gone), ENOSYS, EPERM (seccomp): the thread polls
	 * getppid(), which then sees the change at once. */
	if (w->ppid > 0)
		w->pidfd = pbp__pidfd_open(w->ppid);
	if ((rc = start_thread(w)) != 0) {
		rc = pbp__seterr(err, PBP_ESYS, rc, "starting the thread that watches the parent: %s",
		                 strerror(rc));
		goto fail;
	}
	w->running = 1;
	*out = w;
	return 0;
fail:
	pbp__close(&w->pidfd);
	pbp__close(&w->stop[0]);
	pbp__close(&w->stop[1]);
	free(w);
	return rc;
}

int
pbp__os_pid_gone(uint32_t pid)
{
	struct pollfd pfd;
	int fd, gone;

	if (pid == 0 || pid > (uint32_t)INT_MAX)
		return 0;
	fd = pbp__pidfd_open((pid_t)pid);
	if (fd >= 0) {
		/* A pidfd is readable once its process has exited (a zombie
		 * not yet reaped has a pid, but is gone). */
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		gone = poll(&pfd, 1, 0) == 1;
		pbp__close(&fd);
		return gone;
	}
	if (errno == ESRCH)
		return 1;
	/* No pidfd: signal 0 delivers nothing; it only asks whether the pid
	 * exists (a zombie then counts as alive: no verdict). */
	return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

uint32_t
pbp__os_watch_ppid(const pbp__os_watch *w)
{
	return w != NULL && w->ppid > 0 ? (uint32_t)w->ppid : 0;
}

void
pbp__os_watch_stop(pbp__os_watch *w)
{
	int saved = errno;

	if (w == NULL)
		return;
	/* One byte makes the read end readable: the thread returns.  A byte,
	 * not just the close: a process forked from this one holds a copy of
	 * the write end, so closing ours would never reach end of stream.
	 * In a forked copy there is no thread (fork copies only the calling
	 * one) and its pthread_t means nothing: close and free only. */
	if (w->running && w->owner == getpid()) {
		ssize_t n;

		do
			n = write(w->stop[1], "x", 1);
		while (n < 0 && errno == EINTR);
		if (n != 1) {
			/* Cannot happen (one byte into an empty pipe); the
			 * thread still uses w then, so w stays. */
			pthread_detach(w->thread);
			errno = saved;
			return;
		}
		pthread_join(w->thread, NULL);
	}
	pbp__close(&w->stop[1]);
	pbp__close(&w->stop[0]);
	pbp__close(&w->pidfd);
	free(w);
	errno = saved;
}
