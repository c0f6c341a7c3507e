/*
 * io.c: the Windows byte transport of a channel (os.h: pbp__os_io_ops)
 * over pipe handles: overlapped ReadFile and WriteFile, waits with
 * WaitForMultipleObjects and the deadline.
 *
 * Windows has no readiness for pipes, only completions: an operation is
 * started and later finishes.  So each direction owns a buffer and an
 * OVERLAPPED with its own event.  A read goes into the read side's staging
 * buffer and is copied out to whatever buffer the caller offers (which may
 * move between calls); a write copies the bytes offered into the write
 * side's buffer and stays in flight across calls until it completes, and
 * only completed bytes are reported written, so the engine re-offers the
 * rest unchanged (the xfer contract, pbp_internal.h).  The two sides share
 * nothing but the aux pointer, so in duplex mode one thread may be in
 * xfer with only `in` while another has only `out`.
 *
 * Handles opened without FILE_FLAG_OVERLAPPED (CreatePipe's, as a foreign
 * parent such as .NET's AnonymousPipeServerStream makes them) cannot be
 * used that way: their ReadFile and WriteFile run to completion.  Such a
 * side is detected at open (FileModeInformation) and served synchronously:
 * a read first asks PeekNamedPipe what is there and blocks only when
 * nothing is and the caller is willing to wait; a write blocks until the
 * pipe took the bytes.  A deadline cannot interrupt either blocked call
 * (the public header says so: pbp_channel_from_os_handles).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#define STAGE_CAP (64u * 1024u) /* one read or write in flight: the pipe's size */

typedef struct side {
	HANDLE h;
	HANDLE ev;      /* ov.hEvent, manual reset */
	OVERLAPPED ov;
	int ovl;        /* h was opened for overlapped I/O */
	int pending;    /* an operation is in flight */
	uint8_t *buf;   /* STAGE_CAP bytes (overlapped sides only) */
	size_t len;     /* write: bytes in flight; read: bytes staged */
	size_t off;     /* read: first staged byte not yet handed out */
	int end;        /* read: end of stream seen */
	int err;        /* sticky errno of a failure, or 0 */
} side;

struct pbp__os_io {
	side r, w;
	int same;                 /* one handle for both directions */
	pbp__os_aux *volatile aux;
	volatile DWORD last_err;  /* for messages: the last Windows error */
};

/* ---- errors ------------------------------------------------------------------ */

/* The writer closed: end of stream, between reads as anywhere. */
static int
is_end(DWORD e)
{
	return e == ERROR_BROKEN_PIPE || e == ERROR_HANDLE_EOF || e == ERROR_PIPE_NOT_CONNECTED;
}

static void
read_failed(pbp__os_io *io, DWORD e)
{
	io->r.pending = 0;
	if (is_end(e)) {
		io->r.end = 1;
	} else if (e != ERROR_OPERATION_ABORTED) {
		/* Aborted: someone else cancelled our read (CancelIoEx,
		 * CancelSynchronousIo); nothing was lost, the next call starts
		 * another. */
		io->last_err = e;
		io->r.err = EIO;
	}
}

static void
write_failed(pbp__os_io *io, DWORD e)
{
	io->w.pending = 0;
	io->last_err = e;
	/* ERROR_NO_DATA is "the pipe is being closed": the reader is gone. */
	io->w.err = e == ERROR_NO_DATA || e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED
	                    ? EPIPE
	                    : EIO;
}

DWORD
pbp__win_io_last_error(const pbp__os_io *io, char *buf, size_t size)
{
	DWORD e = io->last_err;

	if (buf != NULL && size > 0)
		pbp__win_strerror(e, buf, size);
	return e;
}

/* ---- overlapped reads -------------------------------------------------------- */

static void
read_start(pbp__os_io *io)
{
	side *s = &io->r;

	memset(&s->ov, 0, sizeof s->ov);
	s->ov.hEvent = s->ev;
	s->len = s->off = 0;
	/* ReadFile resets the event.  TRUE means it completed at once; the
	 * result is then in the OVERLAPPED, where read_check finds it. */
	if (ReadFile(s->h, s->buf, STAGE_CAP, NULL, &s->ov) || GetLastError() == ERROR_IO_PENDING)
		s->pending = 1;
	else
		read_failed(io, GetLastError());
}

/* 1 when the read in flight has finished (bytes staged, end or error),
 * 0 while it runs.  Never waits. */
static int
read_check(pbp__os_io *io)
{
	side *s = &io->r;
	DWORD n = 0, e;

	if (GetOverlappedResult(s->h, &s->ov, &n, FALSE)) {
		s->pending = 0;
		s->len = n; /* 0: a zero-length write at the other end */
		return 1;
	}
	e = GetLastError();
	if (e == ERROR_IO_INCOMPLETE)
		return 0;
	if (e == ERROR_MORE_DATA) { /* a message-mode pipe: the rest follows */
		s->pending = 0;
		s->len = n;
		return 1;
	}
	read_failed(io, e);
	return 1;
}

static void
read_overlapped(pbp__os_io *io, pbp__xfer *x)
{
	side *s = &io->r;

	while (x->nread < x->in_cap) {
		if (s->off < s->len) {
			size_t n = s->len - s->off;

			if (n > x->in_cap - x->nread)
				n = x->in_cap - x->nread;
			memcpy(x->in + x->nread, s->buf + s->off, n);
			s->off += n;
			x->nread += n;
			continue;
		}
		if (s->end || s->err)
			break;
		if (!s->pending)
			read_start(io);
		if (s->pending && !read_check(io))
			break;
	}
	/* End and errors are said once the bytes before them are out. */
	if (x->nread == 0 && s->off == s->len) {
		x->eof = s->end;
		x->rerr = s->err;
	}
}

/* ---- synchronous sides ------------------------------------------------------- */

/* A synchronous read: what PeekNamedPipe says is there, or, when nothing
 * is and may_block, one ReadFile that waits for the writer, past any
 * deadline. */
static void
read_sync(pbp__os_io *io, pbp__xfer *x, int may_block)
{
	side *s = &io->r;
	DWORD avail = 0, n = 0, want;

	if (s->end || s->err)
		goto out;
	if (!PeekNamedPipe(s->h, NULL, 0, NULL, &avail, NULL)) {
		read_failed(io, GetLastError());
		goto out;
	}
	if (avail == 0 && !may_block)
		return;
	want = x->in_cap > 0x40000000u ? 0x40000000u : (DWORD)x->in_cap;
	if (avail > 0 && avail < want)
		want = avail;
	if (ReadFile(s->h, x->in, want, &n, NULL) || GetLastError() == ERROR_MORE_DATA)
		x->nread = n;
	else
		read_failed(io, GetLastError());
out:
	if (x->nread == 0) {
		x->eof = s->end;
		x->rerr = s->err;
	}
}

/* Windows has no gather write for pipes.  A synchronous side writes the
 * first piece of the xfer alone (it has no staging buffer to gather
 * into): the engine offers the rest again. */
static void
write_sync(pbp__os_io *io, pbp__xfer *x)
{
	DWORD n = 0, want = x->out[0].n > 0x40000000u ? 0x40000000u : (DWORD)x->out[0].n;

	if (WriteFile(io->w.h, x->out[0].p, want, &n, NULL))
		x->written = n;
	else
		write_failed(io, GetLastError());
}

/* ---- overlapped writes ------------------------------------------------------- */

static void
write_overlapped(pbp__os_io *io, pbp__xfer *x)
{
	side *s = &io->w;
	DWORD n = 0, e;

	if (!s->pending) {
		size_t len = 0;
		int i;

		/* The pieces are copied together into the staging buffer, as
		 * much of them as it holds: one WriteFile, as writev is one
		 * write on POSIX. */
		for (i = 0; i < x->nout && len < STAGE_CAP; i++) {
			size_t k = x->out[i].n < STAGE_CAP - len ? x->out[i].n : STAGE_CAP - len;

			memcpy(s->buf + len, x->out[i].p, k);
			len += k;
		}
		s->len = len;
		memset(&s->ov, 0, sizeof s->ov);
		s->ov.hEvent = s->ev;
		if (!WriteFile(s->h, s->buf, (DWORD)len, NULL, &s->ov) &&
		    GetLastError() != ERROR_IO_PENDING) {
			write_failed(io, GetLastError());
			return;
		}
		s->pending = 1;
	}
	/* The bytes in flight are the first s->len of out: the engine
	 * re-offers what was not reported written, unchanged. */
	if (GetOverlappedResult(s->h, &s->ov, &n, FALSE)) {
		s->pending = 0;
		x->written = n;
		return;
	}
	e = GetLastError();
	if (e != ERROR_IO_INCOMPLETE) {
		write_failed(io, e);
		x->written = n; /* what went before the failure */
	}
}

/* ---- xfer ---------------------------------------------------------------------- */

static int
io_xfer(void *ctx, pbp__xfer *x, int64_t deadline)
{
	pbp__os_io *io = ctx;

	for (;;) {
		pbp__os_aux *aux = io->aux;
		int do_w = x->out_len > 0, do_r = x->in_cap > 0;
		HANDLE evs[3], ae;
		DWORD n = 0, timeout, rc;

		if (do_w) {
			if (io->w.h == INVALID_HANDLE_VALUE)
				x->werr = EBADF; /* after close_write */
			else if (!io->w.err)
				io->w.ovl ? write_overlapped(io, x) : write_sync(io, x);
			if (io->w.err && !io->w.pending)
				x->werr = io->w.err;
		}
		timeout = pbp__win_timeout(deadline);
		if (do_r) {
			if (io->r.ovl)
				read_overlapped(io, x);
			else
				read_sync(io, x, timeout != 0 && x->written == 0 && !x->werr &&
				                     !(do_w && io->w.pending));
		}
		if (x->written || x->nread || x->eof || x->rerr || x->werr)
			return 1;
		if (aux != NULL)
			(void)pbp__win_aux_pump(aux);
		if (timeout == 0)
			return 0;
		if (do_w && io->w.pending)
			evs[n++] = io->w.ev;
		if (do_r && io->r.pending)
			evs[n++] = io->r.ev;
		if (aux != NULL && (ae = pbp__win_aux_event(aux)) != NULL)
			evs[n++] = ae;
		if (do_r && !io->r.ovl && timeout > 10) {
			/* A synchronous read side behind a write in flight:
			 * look at the pipe again every 10 ms. */
			timeout = 10;
		}
		if (n == 0) {
			if (deadline < 0)
				return -EINVAL; /* nothing offered, nothing to wait for */
			Sleep(timeout);
			continue;
		}
		rc = WaitForMultipleObjects(n, evs, FALSE, timeout);
		if (rc == WAIT_FAILED) {
			io->last_err = GetLastError();
			return -EIO;
		}
		/* Completed, aux data, or the timeout: look again (the next
		 * round returns 0 once the deadline has passed). */
	}
}

/* Waits for an operation in flight to end after cancelling it: whatever
 * it did is then done, and its buffer and OVERLAPPED are free. */
static void
cancel(side *s)
{
	DWORD n;

	if (!s->pending || !s->ovl)
		return;
	(void)CancelIoEx(s->h, &s->ov);
	(void)GetOverlappedResult(s->h, &s->ov, &n, TRUE);
	s->pending = 0;
}

static int
io_close_write(void *ctx)
{
	pbp__os_io *io = ctx;
	int rc = 0;

	if (io->w.h == INVALID_HANDLE_VALUE)
		return 0;
	/* A write still in flight was never reported written (written
	 * means completed), so cancelling it loses nothing the engine
	 * counts on; its buffer must not be freed while the system may
	 * still read it. */
	cancel(&io->w);
	if (io->same) /* one handle for both: keep it for reading */
		io->w.h = INVALID_HANDLE_VALUE;
	else
		rc = pbp__os_close(&io->w.h);
	return rc;
}

const pbp__io_ops pbp__os_io_ops = { io_xfer, io_close_write };

/* ---- open, free ---------------------------------------------------------------- */

static int
prepare(HANDLE h, const char *role, int *ovl, pbp_error *err)
{
	char msg[160];
	DWORD type, e;

	if (h == INVALID_HANDLE_VALUE || h == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "the %s handle is not valid", role);
	type = GetFileType(h);
	e = GetLastError();
	if (type != FILE_TYPE_PIPE) {
		if (type == FILE_TYPE_UNKNOWN && e != NO_ERROR)
			return pbp__seterr(err, PBP_EINVAL, (int)e, "%s handle %p: %s", role, h,
			                   pbp__win_strerror(e, msg, sizeof msg));
		return pbp__seterr(err, PBP_EINVAL, 0, "%s handle %p is not a pipe (file type %lu)",
		                   role, h, (unsigned long)type);
	}
	/* Not inheritable: a process another thread spawns with
	 * bInheritHandles and no handle list would otherwise hold a copy, and
	 * our peer would never see end of stream. */
	if (!SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0)) {
		e = GetLastError();
		return pbp__seterr(err, PBP_ESYS, (int)e, "SetHandleInformation(%s handle %p): %s",
		                   role, h, pbp__win_strerror(e, msg, sizeof msg));
	}
	*ovl = pbp__win_is_overlapped(h) == 1;
	return 0;
}

static int
side_init(side *s, HANDLE h, int ovl)
{
	s->h = h;
	s->ovl = ovl;
	if (!ovl)
		return 1;
	s->ev = CreateEventW(NULL, TRUE, FALSE, NULL); /* not inheritable */
	s->buf = malloc(STAGE_CAP);
	return s->ev != NULL && s->buf != NULL;
}

static void
side_free(side *s)
{
	cancel(s);
	if (s->ev != NULL)
		CloseHandle(s->ev);
	free(s->buf);
}

int
pbp__os_io_open(pbp__os_io **out, pbp_os_handle rd, pbp_os_handle wr, unsigned int flags,
                int pipe_size, pbp_error *err)
{
	pbp__os_io *io;
	int rc, rovl = 0, wovl = 0;

	/* Pipe sizes are fixed when a pipe is created (spawn makes 64 KiB
	 * ones); SIGPIPE does not exist. */
	(void)flags;
	(void)pipe_size;
	if ((rc = prepare(rd, "read", &rovl, err)) != 0 ||
	    (wr != rd && (rc = prepare(wr, "write", &wovl, err)) != 0))
		return rc;
	if (wr == rd)
		wovl = rovl;
	if ((io = calloc(1, sizeof *io)) == NULL)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	io->same = wr == rd;
	if (!side_init(&io->r, rd, rovl) || !side_init(&io->w, wr, wovl)) {
		side_free(&io->r);
		side_free(&io->w);
		free(io);
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory (transport buffers)");
	}
	*out = io;
	return 0;
}

int
pbp__os_io_free(pbp__os_io *io, int close_handles)
{
	int rc = 0, rc2;

	if (io == NULL)
		return 0;
	/* Bytes a read already staged and the caller never took are lost
	 * with the transport, as they would be in a user-space buffer. */
	side_free(&io->w);
	side_free(&io->r);
	if (close_handles) {
		if (io->same)
			io->w.h = INVALID_HANDLE_VALUE;
		rc = pbp__os_close(&io->w.h);
		rc2 = pbp__os_close(&io->r.h);
		if (rc == 0)
			rc = rc2;
	}
	free(io);
	return rc;
}

pbp_os_handle
pbp__os_io_read_handle(const pbp__os_io *io)
{
	return io->r.h;
}

pbp_os_handle
pbp__os_io_write_handle(const pbp__os_io *io)
{
	return io->w.h;
}

/* A pipe's write handle cannot be peeked (PeekNamedPipe needs read
 * access). */
int
pbp__os_io_unread(const pbp__os_io *io, size_t *n)
{
	(void)io;
	(void)n;
	return PBP_ENOTSUP;
}

int
pbp__os_io_read_nonblocking(pbp__os_io *io)
{
	(void)io;
	return 0; /* reads look first (PeekNamedPipe) already */
}

void
pbp__os_io_set_aux(pbp__os_io *io, pbp__os_aux *a)
{
	InterlockedExchangePointer((PVOID volatile *)&io->aux, a);
}

pbp__os_aux *
pbp__win_io_aux(pbp__os_io *io)
{
	return io->aux;
}

HANDLE
pbp__win_io_discard(pbp__os_io *io)
{
	side *s = &io->r;

	if (!s->ovl) {
		char scratch[4096];
		DWORD avail = 0, n;

		while (!s->end && !s->err && PeekNamedPipe(s->h, NULL, 0, NULL, &avail, NULL) &&
		       avail > 0 && ReadFile(s->h, scratch, sizeof scratch, &n, NULL))
			;
		return NULL;
	}
	for (;;) {
		s->off = s->len; /* discarded */
		if (s->end || s->err)
			return NULL;
		if (!s->pending)
			read_start(io);
		if (s->pending && !read_check(io))
			return s->ev;
	}
}

/* ---- waiting for any of several transports ----------------------------------- */

/* Ready to read: staged bytes, an end or error already seen, a read in
 * flight that completed, or bytes in the pipe (PeekNamedPipe; its failure
 * means the end or an error, which the next read reports). */
static int
read_ready(pbp__os_io *io)
{
	side *s = &io->r;
	DWORD avail = 0;

	if (s->len > s->off || s->end || s->err)
		return 1;
	if (s->pending)
		return WaitForSingleObject(s->ev, 0) == WAIT_OBJECT_0;
	return !PeekNamedPipe(s->h, NULL, 0, NULL, &avail, NULL) || avail > 0;
}

static int
write_ready(pbp__os_io *io)
{
	side *s = &io->w;

	return !s->pending || s->err || WaitForSingleObject(s->ev, 0) == WAIT_OBJECT_0;
}

/* Overlapped read sides (the pipes of a spawned child) get a read in
 * flight and are waited on through its event, as are writes in flight and
 * stderr pumps, with WaitForMultipleObjects: the wait ends as soon as one
 * is ready, without the latency of Sleep(), which on Windows lasts a timer
 * tick (15.6 ms by default) however small its argument.  Synchronous
 * sides (anonymous pipes, which have no readiness event) and events beyond
 * MAXIMUM_WAIT_OBJECTS are looked at again every millisecond. */
int
pbp__os_io_wait_any(pbp__os_io *const *ios, const int *want_write, size_t n, int timeout_ms,
                    int *ready)
{
	int64_t deadline = timeout_ms < 0 ? -1 : pbp__now_ms() + timeout_ms;
	size_t i;

	for (;;) {
		HANDLE evs[MAXIMUM_WAIT_OBJECTS];
		DWORD nev = 0, wait;
		int nready = 0, poll = 0;
		int64_t left;

		for (i = 0; i < n; i++) {
			pbp__os_io *io = ios[i];
			side *r;

			ready[i] = 0;
			if (io == NULL)
				continue;
			r = &io->r;
			if (io->aux != NULL)
				(void)pbp__win_aux_pump(io->aux);
			if (r->ovl && !r->pending && r->off == r->len && !r->end && !r->err)
				read_start(io);
			if (read_ready(io) || (want_write[i] && write_ready(io))) {
				ready[i] = 1;
				nready++;
				continue;
			}
			if (!r->ovl || !r->pending || nev == MAXIMUM_WAIT_OBJECTS)
				poll = 1;
			else
				evs[nev++] = r->ev;
			if (want_write[i] && io->w.pending) {
				if (nev < MAXIMUM_WAIT_OBJECTS)
					evs[nev++] = io->w.ev;
				else
					poll = 1;
			}
			if (io->aux != NULL) {
				HANDLE ae = pbp__win_aux_event(io->aux);

				if (ae == NULL || nev == MAXIMUM_WAIT_OBJECTS)
					poll = 1;
				else
					evs[nev++] = ae;
			}
		}
		if (nready > 0)
			return nready;
		left = deadline < 0 ? -1 : deadline - pbp__now_ms();
		if (deadline >= 0 && left <= 0)
			return 0;
		wait = left < 0 ? INFINITE : (DWORD)left;
		if (poll && wait > 1)
			wait = 1;
		if (nev == 0) {
			Sleep(wait == INFINITE ? 1 : wait);
		} else if (WaitForMultipleObjects(nev, evs, FALSE, wait) == WAIT_FAILED) {
			Sleep(1);
		}
	}
}
