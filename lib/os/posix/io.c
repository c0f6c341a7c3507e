/*
 * io.c: the POSIX byte transport of a channel: non-blocking read and
 * write, poll with a deadline, SIGPIPE kept away.
 */
#define _GNU_SOURCE
#include "pbp_config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#ifdef __linux__
#include <sys/ioctl.h>
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <stdlib.h>

#include "posix.h"

/* The fd transport's state.  While it waits, it also watches auxfd (when
 * >= 0) and calls aux_drain(aux_arg) whenever auxfd is readable: the
 * spawner uses this to collect a child's stderr during every blocking
 * channel call (receives without a deadline included), so the child can
 * never block on a full stderr pipe while the parent blocks waiting for
 * the child.  In duplex mode two threads wait at once, so aux_drain must
 * be thread-safe; once it returns 0 (end of stream) the transport stops
 * watching auxfd (it clears it atomically) but does not close it: the
 * owner closes it when the channel is gone. */
typedef struct pbp__fds {
	int rfd, wfd;
	int rblock;          /* rfd is in blocking mode: read_wait is one read() */
	int sigpipe_handled; /* PBP_CHANNEL_SIGPIPE_HANDLED: no guard per write */
	int auxfd;
	int (*aux_drain)(void *aux_arg); /* returns 0 once auxfd reached its end */
	void *aux_arg;
} pbp__fds;

/* What fd_wait waits for. */
#define PBP__IO_READ 1
#define PBP__IO_WRITE 2

struct pbp__os_io {
	pbp__fds f;
};

int
pbp__os_io_open(pbp__os_io **out, pbp_os_handle rd, pbp_os_handle wr, unsigned int flags,
                int pipe_size, pbp_error *err)
{
	pbp__os_io *io;
	int rc, rblock = 0;

	if (rd < 0 || wr < 0)
		return pbp__seterr(err, PBP_EINVAL, 0, "negative fd (%d, %d)", rd, wr);
	/* The write fd is non-blocking, for deadlines and so that a blocked
	 * send can keep reading.  A separate read fd keeps its mode: a
	 * receive without a deadline then sleeps in one read(), as a plain
	 * pipe reader does, and every other read looks first.  One socket for
	 * both directions is non-blocking. */
	rc = pbp__fd_prepare(rd, wr == rd, &rblock, err);
	if (rc == 0 && wr != rd)
		rc = pbp__fd_prepare(wr, 1, NULL, err);
	if (rc != 0)
		return rc;
	if ((io = calloc(1, sizeof *io)) == NULL)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	if (pipe_size > 0) {
		pbp__fd_pipe_size(rd, pipe_size);
		pbp__fd_pipe_size(wr, pipe_size);
	}
	io->f.rfd = rd;
	io->f.wfd = wr;
	io->f.rblock = rblock;
	io->f.sigpipe_handled = (flags & PBP__OS_IO_SIGPIPE_HANDLED) != 0;
	io->f.auxfd = -1;
	*out = io;
	return 0;
}

int
pbp__os_io_free(pbp__os_io *io, int close_handles)
{
	int rc = 0, rc2;

	if (io == NULL)
		return 0;
	if (close_handles) {
		if (io->f.wfd == io->f.rfd)
			io->f.wfd = -1; /* one socket for both directions */
		rc = pbp__close(&io->f.wfd);
		rc2 = pbp__close(&io->f.rfd);
		if (rc == 0)
			rc = rc2;
	}
	free(io);
	return rc;
}

pbp_os_handle
pbp__os_io_read_handle(const pbp__os_io *io)
{
	return io->f.rfd;
}

pbp_os_handle
pbp__os_io_write_handle(const pbp__os_io *io)
{
	return io->f.wfd;
}

int
pbp__os_io_unread(const pbp__os_io *io, size_t *n)
{
#ifdef __linux__
	struct stat st;
	int v;

	/* On a socket FIONREAD counts what there is to read: pipes only. */
	if (io->f.rfd == io->f.wfd || fstat(io->f.wfd, &st) != 0 || !S_ISFIFO(st.st_mode) ||
	    ioctl(io->f.wfd, FIONREAD, &v) != 0 || v < 0)
		return PBP_ENOTSUP;
	*n = (size_t)v;
	return 0;
#else
	(void)io;
	(void)n;
	return PBP_ENOTSUP;
#endif
}

int
pbp__os_io_read_nonblocking(pbp__os_io *io)
{
	int fl;

	if (!io->f.rblock)
		return 0;
	fl = fcntl(io->f.rfd, F_GETFL);
	if (fl < 0 || fcntl(io->f.rfd, F_SETFL, fl | O_NONBLOCK) < 0)
		return PBP_ESYS;
	io->f.rblock = 0;
	return 0;
}

void
pbp__os_io_set_aux_fd(pbp__os_io *io, int fd, int (*drain)(void *), void *arg)
{
	io->f.aux_drain = drain;
	io->f.aux_arg = arg;
	__atomic_store_n(&io->f.auxfd, fd, __ATOMIC_RELEASE);
}

/* ---- the fd transport ---------------------------------------------------- */

/* One read() of what is there.  On a blocking read fd, look first, so that
 * this never blocks. */
static long
fd_read(pbp__fds *f, void *buf, size_t n)
{

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

/* Writes the pieces with one writev(): a frame whose payload is not in
 * the write buffer (spliced) still reaches the reader in one write, as
 * the header and payload of a copied frame do, and wakes it once. */
static long
fd_write(pbp__fds *f, const pbp__piece *pieces, int n)
{
	struct iovec iov[PBP__XFER_PIECES];
	sigset_t pipe_set, old;
	ssize_t w;
	int e = 0, guard = !f->sigpipe_handled, i;

	for (i = 0; i < n && i < PBP__XFER_PIECES; i++) {
		iov[i].iov_base = (void *)pieces[i].p;
		iov[i].iov_len = pieces[i].n;
	}

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
		w = i == 1 ? write(f->wfd, iov[0].iov_base, iov[0].iov_len) : writev(f->wfd, iov, i);
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
fd_wait(pbp__fds *f, int events, int64_t deadline)
{
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
fd_close_write(pbp__fds *f)
{
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

/* Books the outcome of one read into x: 1 if it has something to say. */
static int
got_read(pbp__xfer *x, long r)
{
	if (r > 0)
		x->nread = (size_t)r;
	else if (r == 0)
		x->eof = 1;
	else if (r != -EAGAIN)
		x->rerr = (int)-r;
	else
		return 0;
	return 1;
}

/* The transport's one operation (pbp_internal.h).  Tries the write, then
 * the read (unless the last read emptied the pipe), each once and without
 * blocking; if neither had anything to say, waits in poll() for either
 * (and for the aux fd) and tries again what became ready.  A receive with
 * no deadline and nothing to write, on a blocking read fd, sleeps in one
 * read() instead, as a plain pipe reader does: one system call, not two. */
static int
fd_xfer(void *ctx, pbp__xfer *x, int64_t deadline)
{
	pbp__fds *f = &((pbp__os_io *)ctx)->f;
	int try_read = x->in_cap > 0 && !x->in_drained, try_write = x->out_len > 0;

	for (;;) {
		int ev;

		if (try_write) {
			long w = fd_write(f, x->out, x->nout);

			if (w > 0)
				x->written = (size_t)w;
			else if (w != -EAGAIN && w != 0)
				x->werr = (int)-w;
		}
		if (try_read && got_read(x, fd_read(f, x->in, x->in_cap)))
			return 1;
		if (x->written > 0 || x->werr != 0)
			return 1;
		if (x->in_cap > 0 && x->out_len == 0 && deadline < 0 && f->rblock &&
		    __atomic_load_n(&f->auxfd, __ATOMIC_ACQUIRE) < 0) {
			ssize_t r;

			do
				r = read(f->rfd, x->in, x->in_cap);
			while (r < 0 && errno == EINTR);
			if (got_read(x, r < 0 ? (errno == EWOULDBLOCK ? -EAGAIN : -errno) : (long)r))
				return 1;
		}
		ev = fd_wait(f, (x->in_cap > 0 ? PBP__IO_READ : 0) | (x->out_len > 0 ? PBP__IO_WRITE : 0),
		             deadline);
		if (ev <= 0)
			return ev;
		try_read = (ev & PBP__IO_READ) != 0;
		try_write = (ev & PBP__IO_WRITE) != 0;
	}
}

static int
fd_close_write_op(void *ctx)
{
	return fd_close_write(&((pbp__os_io *)ctx)->f);
}

const pbp__io_ops pbp__os_io_ops = { fd_xfer, fd_close_write_op };

/* Most transports one wait_any watches: a pool's helpers. */
#define WAIT_ANY_MAX 256

int
pbp__os_io_wait_any(pbp__os_io *const *ios, const int *want_write, size_t n, int timeout_ms,
                    int *ready)
{
	struct pollfd pfd[3 * WAIT_ANY_MAX];
	size_t owner[3 * WAIT_ANY_MAX];
	int64_t deadline = timeout_ms < 0 ? -1 : pbp__now_ms() + timeout_ms;
	nfds_t k = 0, j;
	size_t i;
	int nready;

	if (n > WAIT_ANY_MAX)
		return -EINVAL;
	for (;;) {
		int timeout = -1, rc;

		k = 0;
		for (i = 0; i < n; i++) {
			int auxfd;

			ready[i] = 0;
			if (ios[i] == NULL)
				continue;
			pfd[k].fd = ios[i]->f.rfd;
			pfd[k].events = POLLIN;
			owner[k++] = i;
			if (want_write[i]) {
				pfd[k].fd = ios[i]->f.wfd;
				pfd[k].events = POLLOUT;
				owner[k++] = i;
			}
			auxfd = __atomic_load_n(&ios[i]->f.auxfd, __ATOMIC_ACQUIRE);
			if (auxfd >= 0) {
				pfd[k].fd = auxfd;
				pfd[k].events = POLLIN | POLLPRI; /* marks an aux entry */
				owner[k++] = i;
			}
		}
		if (deadline >= 0) {
			int64_t left = deadline - pbp__now_ms();

			timeout = left <= 0 ? 0 : left > 1000000000 ? 1000000000 : (int)left;
		}
		rc = poll(pfd, k, timeout);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc == 0 && timeout == 0)
			return 0;
		if (rc <= 0)
			continue;
		nready = 0;
		for (j = 0; j < k; j++) {
			pbp__fds *f = &ios[owner[j]]->f;

			if (pfd[j].revents == 0)
				continue;
			if (pfd[j].events == (POLLIN | POLLPRI)) {
				if (!f->aux_drain(f->aux_arg))
					__atomic_store_n(&f->auxfd, -1, __ATOMIC_RELEASE);
				continue;
			}
			if (!ready[owner[j]])
				nready++;
			ready[owner[j]] = 1;
		}
		if (nready > 0)
			return nready;
	}
}
