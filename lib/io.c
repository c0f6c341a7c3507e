/*
 * io.c: the thin OS layer.  Every fd a channel uses is non-blocking; these
 * loops turn that into "wait until done or until the deadline" with
 * poll(), and handle EINTR, EAGAIN, short reads and writes, and SIGPIPE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
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
pbp__deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : pbp__now_ms() + timeout_ms;
}

int
pbp__fd_prepare(int fd, pbp_error *err)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return pbp__seterr(err, PBP_ESYS, errno, "fcntl(%d, O_NONBLOCK): %s",
		                   fd, strerror(errno));
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0))
		return pbp__seterr(err, PBP_ESYS, errno, "fcntl(%d, FD_CLOEXEC): %s",
		                   fd, strerror(errno));
	return 0;
}

/* Waits until fd is ready for events or the deadline passes. */
static int
wait_fd(int fd, short events, int64_t deadline, pbp_error *err)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int timeout = -1, rc;

		if (deadline >= 0) {
			int64_t left = deadline - pbp__now_ms();

			if (left <= 0)
				return pbp__seterr(err, PBP_ETIMEDOUT, 0,
				                   "deadline passed waiting for fd %d", fd);
			timeout = left > 1000000000 ? 1000000000 : (int)left;
		}
		rc = poll(&pfd, 1, timeout);
		if (rc > 0)
			return 0; /* ready, or POLLHUP/POLLERR: the next call tells */
		if (rc < 0 && errno != EINTR)
			return pbp__seterr(err, PBP_ESYS, errno, "poll: %s", strerror(errno));
	}
}

int
pbp__read_some(int fd, void *buf, size_t n, int64_t deadline, size_t *got,
               pbp_error *err)
{
	*got = 0;
	for (;;) {
		ssize_t r = read(fd, buf, n);
		int rc;

		if (r > 0) {
			*got = (size_t)r;
			return 0;
		}
		if (r == 0)
			return PBP_EOF;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return pbp__seterr(err, PBP_ESYS, errno, "read: %s", strerror(errno));
		rc = wait_fd(fd, POLLIN, deadline, err);
		if (rc != 0)
			return rc;
	}
}

int
pbp__write_all(int fd, const void *buf, size_t n, int64_t deadline,
               size_t *done, pbp_error *err)
{
	const char *p = buf;
	sigset_t pipe_set, old;
	int rc = 0, blocked;

	/* A write to a pipe with no reader raises SIGPIPE, whose default
	 * action kills the process.  Block it in this thread only, for this
	 * call only, so the write fails with EPIPE instead; never touch the
	 * process-wide disposition (libgit2's disable_signals does the same).
	 * If the caller had it blocked already, leave everything as it is. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	blocked = sigismember(&old, SIGPIPE);

	*done = 0;
	while (*done < n) {
		ssize_t w = write(fd, p + *done, n - *done);

		if (w >= 0) {
			*done += (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			rc = wait_fd(fd, POLLOUT, deadline, err);
			if (rc != 0)
				break;
			continue;
		}
		if (errno == EPIPE) {
			if (!blocked) {
				/* Consume the SIGPIPE this write raised before
				 * unblocking, or it would be delivered. */
				struct timespec zero = { 0, 0 };

				while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
					;
			}
			rc = pbp__seterr(err, PBP_EPIPE, EPIPE,
			                 "write: the peer has closed its read side");
			break;
		}
		rc = pbp__seterr(err, PBP_ESYS, errno, "write: %s", strerror(errno));
		break;
	}
	if (!blocked)
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
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
