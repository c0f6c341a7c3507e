/*
 * io.c: the thin OS layer.  The fd transport of a channel (non-blocking
 * read and write, poll with a deadline, SIGPIPE kept away), the clock, and
 * fd helpers.
 */
#define _GNU_SOURCE
#include "pbp_config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pbp_internal.h"

int64_t
pbp__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
pbp__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
pbp__deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : pbp__now_ms() + timeout_ms;
}

int
pbp__fd_prepare(int fd, int nonblock, int *was_blocking, pbp_error *err)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (nonblock && !(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return pbp__seterr(err, PBP_ESYS, errno, "fcntl(%d, O_NONBLOCK): %s",
		                   fd, strerror(errno));
	if (was_blocking != NULL)
		*was_blocking = !(fl & O_NONBLOCK);
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0))
		return pbp__seterr(err, PBP_ESYS, errno, "fcntl(%d, FD_CLOEXEC): %s",
		                   fd, strerror(errno));
	return 0;
}

void
pbp__fd_pipe_size(int fd, int size)
{
#if PBP_HAVE_F_SETPIPE_SZ
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && fcntl(fd, F_GETPIPE_SZ) != size)
		(void)fcntl(fd, F_SETPIPE_SZ, size);
#else
	/* No way to ask here (F_SETPIPE_SZ is Linux's): the pipe keeps the
	 * capacity the system gave it.  Nothing depends on the size but
	 * throughput: every write loop handles short writes and EAGAIN. */
	(void)fd;
	(void)size;
#endif
}

int
pbp__pipe_cloexec(int fds[2], pbp_error *err)
{
#if PBP_HAVE_PIPE2
	if (pipe2(fds, O_CLOEXEC) != 0)
		return pbp__seterr(err, PBP_ESYS, errno, "pipe2: %s", strerror(errno));
	return 0;
#else
	/* Without pipe2: the ends are born inheritable and get FD_CLOEXEC a
	 * moment later (STYLE.md section 5, item 1).  A process that another
	 * thread spawns in that window without closing its fds inherits
	 * them, and while it holds a write end our reader never sees end of
	 * stream.  pbpipe's own children are not exposed (spawn closes every
	 * fd >= 5 in the child), only children that other code spawns with
	 * fork+exec or a plain posix_spawn, as with any pipe() in a threaded
	 * program on such a system.  glibc and musl both have pipe2; this is
	 * for systems without it, and for the forced-fallback tree. */
	int pair[2], i;

	if (pipe(pair) != 0)
		return pbp__seterr(err, PBP_ESYS, errno, "pipe: %s", strerror(errno));
	for (i = 0; i < 2; i++) {
		int fl = fcntl(pair[i], F_GETFD);

		if (fl < 0 || fcntl(pair[i], F_SETFD, fl | FD_CLOEXEC) < 0) {
			int e = errno;

			pbp__close(&pair[0]);
			pbp__close(&pair[1]);
			return pbp__seterr(err, PBP_ESYS, e, "fcntl(FD_CLOEXEC) on a new pipe: %s",
			                   strerror(e));
		}
	}
	fds[0] = pair[0];
	fds[1] = pair[1];
	return 0;
#endif
}

int
pbp__close(int *fd)
{
	int saved = errno, rc = 0;

	if (*fd >= 0) {
		/* On Linux the fd is released even when close() fails with
		 * EINTR, so retrying could close an fd another thread just
		 * opened (libuv's uv__close_nocheckstdio). */
		if (close(*fd) != 0 && errno != EINTR)
			rc = errno;
		*fd = -1;
	}
	errno = saved;
	return rc;
}

/* ---- the fd transport ---------------------------------------------------- */

/* One read() of what is there.  On a blocking read fd, look first, so that
 * this never blocks. */
static long
fd_read(void *ctx, void *buf, size_t n)
{
	pbp__fds *f = ctx;

	if (f->rblock) {
		struct pollfd p = { .fd = f->rfd, .events = POLLIN };
		int rc;

		while ((rc = poll(&p, 1, 0)) < 0 && errno == EINTR)
			;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -EAGAIN;
	}
	for (;;) {
		ssize_t r = read(f->rfd, buf, n);

		if (r >= 0)
			return (long)r;
		if (errno != EINTR)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int fd_wait(void *ctx, int events, int64_t deadline);

/* A read that waits as long as it takes: on a blocking fd, one read()
 * that the kernel wakes when data lands, like a plain pipe reader; on a
 * non-blocking one, poll() and then read().  With an aux fd, the wait
 * must watch it too (a child blocked writing a full stderr pipe would
 * otherwise never send what this read waits for), so it always goes
 * through fd_wait. */
static long
fd_read_wait(void *ctx, void *buf, size_t n)
{
	pbp__fds *f = ctx;
	struct pollfd p = { .fd = f->rfd, .events = POLLIN };

	for (;;) {
		int aux = __atomic_load_n(&f->auxfd, __ATOMIC_ACQUIRE) >= 0;
		ssize_t r;

		if (aux) {
			int ev = fd_wait(ctx, PBP__IO_READ, -1);

			if (ev < 0)
				return ev;
			if (!(ev & PBP__IO_READ))
				continue;
		}
		r = read(f->rfd, buf, n);
		if (r >= 0)
			return (long)r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if (!aux && poll(&p, 1, -1) < 0 && errno != EINTR)
			return -errno;
	}
}

static long
fd_write(void *ctx, const void *buf, size_t n)
{
	pbp__fds *f = ctx;
	sigset_t pipe_set, old;
	ssize_t w;
	int e = 0, guard = !f->sigpipe_handled;

	/* A write to a pipe with no reader raises SIGPIPE, whose default
	 * action kills the process.  Block it in this thread only, for this
	 * write only, so the write fails with EPIPE instead; never touch the
	 * process-wide disposition (libgit2's disable_signals does the same).
	 * If the caller had it blocked already, leave everything alone.  With
	 * PBP_CHANNEL_SIGPIPE_HANDLED the application took care of it. */
	if (guard) {
		sigemptyset(&pipe_set);
		sigaddset(&pipe_set, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
		guard = !sigismember(&old, SIGPIPE);
	}
	do
		w = write(f->wfd, buf, n);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		e = errno;
	if (guard) {
		if (e == EPIPE) {
			/* Consume the SIGPIPE this write raised before
			 * unblocking, or it would be delivered. */
			struct timespec zero = { 0, 0 };

			while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
				;
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (w >= 0)
		return (long)w;
	return e == EWOULDBLOCK ? -EAGAIN : -e;
}

/* The aux fd is read here and cleared once it reached its end; in duplex
 * mode two threads wait at once, hence the atomics.  The drain callback
 * does its own locking, and the aux fd stays open until its owner frees
 * it, so a wait that still polls it after another cleared it only sees
 * the end again. */
static int
fd_wait(void *ctx, int events, int64_t deadline)
{
	pbp__fds *f = ctx;
	struct pollfd pfd[3];
	nfds_t n = 0, aux = 0;
	int ready = 0, auxfd = __atomic_load_n(&f->auxfd, __ATOMIC_ACQUIRE), i;

	if ((events & PBP__IO_READ) && f->rfd >= 0) {
		pfd[n].fd = f->rfd;
		pfd[n++].events = POLLIN;
	}
	if ((events & PBP__IO_WRITE) && f->wfd >= 0) {
		pfd[n].fd = f->wfd;
		pfd[n++].events = POLLOUT;
	}
	if (auxfd >= 0) {
		aux = n;
		pfd[n].fd = auxfd;
		pfd[n++].events = POLLIN;
	}
	for (;;) {
		int timeout = -1, rc;

		if (deadline >= 0) {
			int64_t left = deadline - pbp__now_ms();

			/* Past the deadline, still look once without waiting:
			 * a deadline of 0 means "only what is ready now". */
			timeout = left <= 0 ? 0 : left > 1000000000 ? 1000000000 : (int)left;
		}
		rc = poll(pfd, n, timeout);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc == 0 && timeout == 0)
			return 0;
		if (rc <= 0)
			continue;
		if (auxfd >= 0 && pfd[aux].revents != 0) {
			if (!f->aux_drain(f->aux_arg)) {
				/* The aux fd reached its end; its owner closes it. */
				__atomic_store_n(&f->auxfd, -1, __ATOMIC_RELEASE);
				auxfd = -1;
				n = aux;
			}
			if (rc == 1)
				continue;
		}
		break;
	}
	for (i = 0; i < (int)n; i++) {
		if (pfd[i].revents == 0 || (auxfd >= 0 && i == (int)aux))
			continue;
		/* POLLHUP and POLLERR mean the next read or write will say
		 * what happened, so they count as ready. */
		ready |= pfd[i].events == POLLIN ? PBP__IO_READ : PBP__IO_WRITE;
	}
	return ready;
}

static int
fd_close_write(void *ctx)
{
	pbp__fds *f = ctx;
	int e = 0;

	if (f->wfd < 0)
		return 0;
	if (f->wfd == f->rfd) {
		/* One socket carries both directions: keep it for reading. */
		if (shutdown(f->wfd, SHUT_WR) != 0 && errno != ENOTCONN)
			e = errno;
		f->wfd = -1;
		return e;
	}
	return pbp__close(&f->wfd);
}

const pbp__io_ops pbp__fd_io = { fd_read, fd_write, fd_wait, fd_close_write, fd_read_wait };
