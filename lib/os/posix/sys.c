/*
 * sys.c: the POSIX platform's clock, process id, mutexes, handle values,
 * fd helpers and append-only files (the frame trace).
 */
#define _GNU_SOURCE
#include "pbp_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"

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

uint64_t
pbp__os_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t
pbp__os_getpid(void)
{
	return (uint32_t)getpid();
}

/* ---- mutexes ----------------------------------------------------------------- */

int
pbp__mutex_init(pbp__mutex *m)
{
	return pthread_mutex_init(&m->m, NULL) == 0 ? 0 : PBP_ESYS;
}

void
pbp__mutex_destroy(pbp__mutex *m)
{
	pthread_mutex_destroy(&m->m);
}

void
pbp__mutex_lock(pbp__mutex *m)
{
	pthread_mutex_lock(&m->m);
}

int
pbp__mutex_trylock(pbp__mutex *m)
{
	return pthread_mutex_trylock(&m->m) == 0;
}

void
pbp__mutex_unlock(pbp__mutex *m)
{
	pthread_mutex_unlock(&m->m);
}

/* ---- handles ----------------------------------------------------------------- */

int
pbp__os_close(pbp_os_handle *h)
{
	return pbp__close(h);
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

uint64_t
pbp__os_handle_max(void)
{
	return INT_MAX;
}

pbp_os_handle
pbp__os_handle_from_u64(uint64_t v)
{
	return v > INT_MAX ? -1 : (int)v;
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

/* ---- files ------------------------------------------------------------------- */

int
pbp__os_file_append_open(const char *path, pbp_os_handle *h, pbp_error *err)
{
	int t = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (t < 0)
		return pbp__seterr(err, PBP_ESYS, errno, "trace file '%s': %s", path,
		                   strerror(errno));
	*h = t;
	return 0;
}

void
pbp__os_file_append(pbp_os_handle h, const pbp__piece *pieces, int n)
{
	struct iovec iov[8];
	ssize_t w;
	int i;

	if (n > 8)
		n = 8;
	for (i = 0; i < n; i++)
		iov[i] = (struct iovec){ (void *)pieces[i].p, pieces[i].n };
	/* One writev on an O_APPEND fd: the record lands whole, after
	 * whatever another process appended. */
	do
		w = writev(h, iov, n);
	while (w < 0 && errno == EINTR);
}
