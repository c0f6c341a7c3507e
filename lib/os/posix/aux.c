/*
 * aux.c: the POSIX platform's auxiliary input, a child's captured stderr:
 * the read end of its stderr pipe, read whenever a wait sees it readable,
 * from whichever thread waits.
 *
 * Only our end of the pipe is non-blocking (proc.c makes it so): the
 * child's is blocking, so what it writes is never dropped; it waits for us
 * instead while the pipe is full.  The transport (io.c) and
 * pbp__proc_wait() poll the fd and call pbp__os_aux_drain() when it is
 * readable, so the child can never block on a full stderr pipe while the
 * parent blocks waiting for the child.
 */
#define _GNU_SOURCE
#include "pbp_config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "posix.h"

/* Drained by whichever thread waits (both of a duplex channel, or one in
 * pbp_child_*), so reading and the sink calls are under lock.  fd stays
 * open until the aux is freed, even after end of stream (eof): another
 * thread may still be polling it. */
struct pbp__os_aux {
	int fd;
	int eof;          /* atomic: end of stream seen */
	uint32_t owner;   /* pbp__os_getpid() at open: see pbp__os_aux_free */
	pbp__mutex lock;
	pbp__aux_sink sink;
	void *arg;
};

int
pbp__os_aux_open(pbp__os_aux **out, pbp_os_handle h, pbp__aux_sink sink, void *arg,
                 pbp_error *err)
{
	pbp__os_aux *a = calloc(1, sizeof *a);

	if (a == NULL) {
		pbp__close(&h);
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	}
	if (pbp__mutex_init(&a->lock) != 0) {
		pbp__close(&h);
		free(a);
		return pbp__seterr(err, PBP_ESYS, 0, "cannot create a mutex");
	}
	a->fd = h;
	a->owner = pbp__os_getpid();
	a->sink = sink;
	a->arg = arg;
	*out = a;
	return 0;
}

int
pbp__os_aux_fd(const pbp__os_aux *a)
{
	if (a == NULL || __atomic_load_n(&a->eof, __ATOMIC_ACQUIRE))
		return -1;
	return a->fd;
}

int
pbp__os_aux_drain(pbp__os_aux *a)
{
	char buf[16384];
	int more;

	if (pbp__os_aux_fd(a) < 0)
		return 0;
	pbp__mutex_lock(&a->lock);
	while (!__atomic_load_n(&a->eof, __ATOMIC_ACQUIRE)) {
		ssize_t n = read(a->fd, buf, sizeof buf);

		if (n > 0) {
			a->sink(a->arg, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* End of stream, or an error that will not go away. */
		__atomic_store_n(&a->eof, 1, __ATOMIC_RELEASE);
		a->sink(a->arg, NULL, 0);
	}
	more = !__atomic_load_n(&a->eof, __ATOMIC_ACQUIRE);
	pbp__mutex_unlock(&a->lock);
	return more;
}

void
pbp__os_aux_drain_until(pbp__os_aux *a, int64_t deadline)
{
	while (pbp__os_aux_drain(a)) {
		struct pollfd p = { .fd = a->fd, .events = POLLIN };
		int timeout = -1;

		if (deadline >= 0) {
			int64_t left = deadline - pbp__now_ms();

			if (left <= 0)
				return;
			timeout = left > 1000000000 ? 1000000000 : (int)left;
		}
		if (poll(&p, 1, timeout) < 0 && errno != EINTR)
			return;
	}
}

void
pbp__os_aux_free(pbp__os_aux *a)
{
	if (a == NULL)
		return;
	pbp__close(&a->fd);
	/* In a forked copy the lock may have been held by a thread that the
	 * fork did not copy: leave it alone there. */
	if (pbp__os_getpid() == a->owner)
		pbp__mutex_destroy(&a->lock);
	free(a);
}

/* The transport's drain callback: 0 once the aux reached its end. */
static int
io_drain(void *arg)
{
	return pbp__os_aux_drain(arg);
}

void
pbp__os_io_set_aux(pbp__os_io *io, pbp__os_aux *a)
{
	pbp__os_io_set_aux_fd(io, pbp__os_aux_fd(a), io_drain, a);
}
