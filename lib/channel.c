/*
 * channel.c: the channel object.  It owns a transport (two fds by
 * default), a frame reader (the receive buffer) and a write buffer, and
 * keeps the error state.
 *
 * Receive errors and send errors are tracked apart, so a peer that stops
 * reading (EPIPE) can still be read to the end, and a peer that sends
 * garbage can still be told Goodbye.
 *
 * Every frame is encoded whole into the write buffer before any of it is
 * written.  So a send that hits its deadline halfway keeps the rest queued
 * and the next call finishes it (nothing is lost, nothing is sent twice),
 * and while a write would block, the channel keeps reading what the peer
 * sends into the receive buffer: two sides writing large frames at each
 * other both make progress instead of deadlocking.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "pbp_internal.h"

#include "channel_impl.h"

/* ---- construction -------------------------------------------------------- */

static int
check_options(const pbp_channel_options *o, pbp_error *err)
{
	size_t i, j;

	if (o->version != PBP_CHANNEL_OPTIONS_VERSION)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_channel_options.version is %u, expected %u "
		                   "(start from PBP_CHANNEL_OPTIONS_INIT)",
		                   o->version, PBP_CHANNEL_OPTIONS_VERSION);
	if (o->max_frame != 0 &&
	    (o->max_frame < PBP_MIN_MAX_FRAME || o->max_frame > PBP_MAX_MAX_FRAME))
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "max_frame %" PRIu32 " is outside [%u, %u]",
		                   o->max_frame, PBP_MIN_MAX_FRAME, PBP_MAX_MAX_FRAME);
	if (o->flags & ~PBP__CHANNEL_FLAGS)
		return pbp__seterr(err, PBP_EINVAL, 0, "unknown flags 0x%x in options",
		                   o->flags & ~PBP__CHANNEL_FLAGS);
	if (o->ntypes > 0 && o->types == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "ntypes is %zu but types is NULL",
		                   o->ntypes);
	for (i = 0; i < o->ntypes; i++) {
		if (o->types[i].id == 0 || o->types[i].fields == NULL)
			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "types[%zu]: type number 0 or no descriptor", i);
		for (j = 0; j < i; j++)
			if (o->types[j].id == o->types[i].id)
				return pbp__seterr(err, PBP_EINVAL, 0,
				                   "types[%zu] and types[%zu] share type number %" PRIu32,
				                   j, i, o->types[i].id);
	}
	return 0;
}

/* 0 means "do not wait" here as everywhere; < 0 means no deadline. */
static int
opt_timeout(int v)
{
	return v < 0 ? -1 : v;
}

int
pbp__channel_new_io(pbp_channel **out, const pbp__io_ops *io, void *ctx,
                    const pbp_channel_options *opts, pbp_error *err)
{
	static const pbp_channel_options defaults = PBP_CHANNEL_OPTIONS_INIT;
	pbp_channel *ch;
	int rc;

	if (out == NULL || io == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "NULL out or transport");
	if (opts == NULL)
		opts = &defaults;
	rc = check_options(opts, err);
	if (rc != 0)
		return rc;
	ch = calloc(1, sizeof *ch);
	if (ch == NULL)
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory allocating a channel");
	ch->io = io;
	ch->io_ctx = ctx;
	ch->fds.rfd = ch->fds.wfd = ch->fds.auxfd = -1;
	ch->trace_fd = -1;
	ch->types = opts->types;
	ch->ntypes = opts->ntypes;
	ch->fingerprint = opts->schema_fingerprint;
	ch->max_frame = opts->max_frame ? opts->max_frame : PBP_DEFAULT_MAX_FRAME;
	ch->timeout[PBP_TIMEOUT_HANDSHAKE] = opt_timeout(opts->handshake_timeout_ms);
	ch->timeout[PBP_TIMEOUT_SEND] = opt_timeout(opts->send_timeout_ms);
	ch->timeout[PBP_TIMEOUT_RECV] = opt_timeout(opts->recv_timeout_ms);
	ch->flags = opts->flags;
	ch->spin_us = opts->spin_us > 0 ? opts->spin_us : 0;
	ch->next_id = 1;
	ch->owner_pid = getpid();
	atomic_init(&ch->busy_rx, 0);
	atomic_init(&ch->busy_tx, 0);
	/* In duplex mode the send side keeps its own error record and a lock,
	 * so that one thread can send while another receives. */
	ch->txe = (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->error_tx : &ch->error;
	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		if (pthread_mutex_init(&ch->wlock, NULL) != 0) {
			ch->flags &= ~PBP_CHANNEL_DUPLEX;
			pbp_channel_free_keep_fds(ch);
			return pbp__seterr(err, PBP_ESYS, 0, "pthread_mutex_init failed");
		}
		if (pthread_mutex_init(&ch->ack_lock, NULL) != 0) {
			pthread_mutex_destroy(&ch->wlock);
			ch->flags &= ~PBP_CHANNEL_DUPLEX;
			pbp_channel_free_keep_fds(ch);
			return pbp__seterr(err, PBP_ESYS, 0, "pthread_mutex_init failed");
		}
	}
	ch->wbuf = malloc(BUF_INITIAL);
	ch->wcap = BUF_INITIAL;
	/* Before the handshake, accept one small frame: a Hello. */
	if (ch->wbuf == NULL ||
	    pbp__reader_init(&ch->rd, PBP__HANDSHAKE_MAX_FRAME, BUF_INITIAL) != 0) {
		pbp_channel_free_keep_fds(ch);
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory allocating channel buffers");
	}
	/* PBPIPE_TRACE=FILE traces every channel of the process (and of its
	 * children, which inherit the environment).  A debugging aid: a path
	 * that cannot be opened must not break the application, so it only
	 * earns one line on stderr. */
	if (getenv("PBPIPE_TRACE") != NULL && *getenv("PBPIPE_TRACE") != '\0') {
		pbp_error terr;

		if (pbp__trace_open(getenv("PBPIPE_TRACE"), &ch->trace_fd, &terr) != 0)
			fprintf(stderr, "pbpipe: PBPIPE_TRACE ignored: %s\n", terr.msg);
	}
	*out = ch;
	return 0;
}

int
pbp_channel_from_fds(pbp_channel **out, int read_fd, int write_fd,
                     const pbp_channel_options *opts, pbp_error *err)
{
	pbp_channel *ch;
	int rc, rblock = 0;

	if (out == NULL || read_fd < 0 || write_fd < 0)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_channel_from_fds: NULL out or negative fd (%d, %d)",
		                   read_fd, write_fd);
	/* Options first: a bad option must not leave the fds modified. */
	rc = pbp__channel_new_io(&ch, &pbp__fd_io, NULL, opts, err);
	if (rc != 0)
		return rc;
	/* The write fd is non-blocking, for deadlines and so that a blocked
	 * send can keep reading.  A separate read fd keeps its mode: a
	 * receive without a deadline then sleeps in one read(), as a plain
	 * pipe reader does, and every other read looks first.  One socket for
	 * both directions is non-blocking. */
	rc = pbp__fd_prepare(read_fd, write_fd == read_fd, &rblock, err);
	if (rc == 0 && write_fd != read_fd)
		rc = pbp__fd_prepare(write_fd, 1, NULL, err);
	if (rc != 0) {
		pbp_channel_free_keep_fds(ch);
		return rc;
	}
	if (opts == NULL || opts->pipe_size >= 0) {
		int size = opts && opts->pipe_size ? opts->pipe_size : PBP_DEFAULT_PIPE_SIZE;

		pbp__fd_pipe_size(read_fd, size);
		pbp__fd_pipe_size(write_fd, size);
	}
	/* Only now, when nothing can fail any more, does the channel take
	 * the fds: ownership moves on success only. */
	ch->fds.rfd = read_fd;
	ch->fds.wfd = write_fd;
	ch->fds.rblock = rblock;
	ch->fds.sigpipe_handled = (ch->flags & PBP_CHANNEL_SIGPIPE_HANDLED) != 0;
	ch->io_ctx = &ch->fds;
	ch->owns_fds = 1;
	*out = ch;
	return 0;
}

void
pbp_channel_free_keep_fds(pbp_channel *ch)
{
	if (ch == NULL)
		return;
	pbp__close(&ch->trace_fd);
	pbp__calls_free(ch);
	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		pthread_mutex_destroy(&ch->wlock);
		pthread_mutex_destroy(&ch->ack_lock);
	}
	pbp__reader_free(&ch->rd);
	free(ch->wbuf);
	free(ch);
}

static int flush(pbp_channel *ch, int64_t deadline, pbp_error *e);
static int out_queued(pbp_channel *ch);

/* Writes what sends left queued, within the deadline.  Returns 0 when
 * nothing is left, or the error that stopped it with e saying how many
 * bytes were not written. */
static int
drain_output(pbp_channel *ch, int64_t deadline, pbp_error *e)
{
	int rc;

	if (!out_queued(ch))
		return 0;
	if (ch->tx_err != 0 || ch->wr_closed || ch->state != ST_READY)
		rc = pbp__seterr(e, ch->tx_err ? ch->tx_err : PBP_EPIPE, 0, "%s",
		                 ch->tx_err ? ch->tx_error.msg : "the write side is closed");
	else
		rc = flush(ch, deadline, e);
	if (rc != 0) {
		size_t lost = ch->wlen - ch->woff;
		char why[PBP_ERRMSG_SIZE];

		memcpy(why, e->msg, sizeof why);
		pbp__seterr(e, rc, e->sys_errno, "%zu bytes of queued output were not written: %.180s",
		            lost, why);
	}
	return rc;
}

static void
release_fds(pbp_channel *ch)
{
	if (ch->owns_fds) {
		if (ch->fds.wfd == ch->fds.rfd)
			ch->fds.wfd = -1; /* one socket for both directions */
		pbp__close(&ch->fds.wfd);
		pbp__close(&ch->fds.rfd);
	}
}

void
pbp_channel_free(pbp_channel *ch)
{
	pbp_error e;
	int linger;

	if (ch == NULL)
		return;
	linger = ch->timeout[PBP_TIMEOUT_SEND];
	if (linger < 0 || linger > PBP_FREE_LINGER_MS)
		linger = PBP_FREE_LINGER_MS;
	/* What sends queued (coalesced, or left by a deadline) goes out first,
	 * within the send deadline; pbp_channel_close() says if it could not.
	 * A copy inherited through fork() sends nothing: its bytes would be
	 * interleaved with the real owner's. */
	if (ch->owner_pid == getpid())
		(void)drain_output(ch, pbp__deadline(linger), &e);
	release_fds(ch);
	pbp_channel_free_keep_fds(ch);
}

int
pbp_channel_close(pbp_channel *ch, int timeout_ms, pbp_error *err)
{
	pbp_error local;
	int rc;

	if (err == NULL)
		err = &local;
	memset(err, 0, sizeof *err);
	if (ch == NULL)
		return 0;
	rc = ch->owner_pid == getpid() ? drain_output(ch, pbp__deadline(timeout_ms), err) : 0;
	release_fds(ch);
	pbp_channel_free_keep_fds(ch);
	return rc;
}

/* ---- error helpers ------------------------------------------------------- */

/* Records a failure of the current call only. */
static int
fail(pbp_channel *ch, int code, const char *msg)
{
	return pbp__seterr(&ch->error, code, 0, "%s", msg);
}

/* Makes the error now in ch->error sticky for receiving. */
static int
rx_fail(pbp_channel *ch, int code)
{
	ch->error.code = code;
	ch->rx_err = code;
	ch->rx_error = ch->error;
	return code;
}

/* Makes the error now in *ch->txe sticky for sending. */
static int
tx_fail(pbp_channel *ch, int code)
{
	ch->txe->code = code;
	ch->tx_err = code;
	ch->tx_error = *ch->txe;
	return code;
}

/* Records a send-side failure of the current call only. */
static int
tx_failmsg(pbp_channel *ch, int code, const char *msg)
{
	return pbp__seterr(ch->txe, code, 0, "%s", msg);
}

/* Duplex mode: the write side is used by one thread at a time. */
static void
tx_lock(pbp_channel *ch)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		pthread_mutex_lock(&ch->wlock);
}

static void ack_handoff(pbp_channel *ch);

static void
tx_unlock(pbp_channel *ch)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		pthread_mutex_unlock(&ch->wlock);
		ack_handoff(ch);
	}
}

int
pbp__ch_enter(pbp_channel *ch, int tx)
{
	atomic_int *b = tx && (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->busy_tx : &ch->busy_rx;

	/* One atomic exchange per call: cheap, and it turns two threads
	 * tearing each other's frames into an error. */
	if (atomic_exchange_explicit(b, 1, memory_order_acquire) != 0)
		return PBP_EINVAL;
	return 0;
}

void
pbp__ch_leave(pbp_channel *ch, int tx)
{
	atomic_int *b = tx && (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->busy_tx : &ch->busy_rx;

	atomic_store_explicit(b, 0, memory_order_release);
}

/* Enters a public call, or returns from it with PBP_EINVAL. */
#define ENTER(ch, tx)                                                         \
	do {                                                                  \
		if (pbp__ch_enter((ch), (tx)) != 0)                           \
			return PBP_EINVAL;                                    \
	} while (0)

void
pbp__ch_timed_out(pbp_channel *ch, const pbp_error *e)
{
	ch->timed_out = 1;
	ch->timeout_error = *e;
}

void
pbp__ch_succeeded(pbp_channel *ch)
{
	ch->timed_out = 0;
}

/* Returns a sticky error again, re-describing it as the latest. */
static int
rx_again(pbp_channel *ch)
{
	ch->error = ch->rx_error;
	return ch->rx_err;
}

static int
tx_again(pbp_channel *ch)
{
	*ch->txe = ch->tx_error;
	return ch->tx_err;
}

static int
sys_error(pbp_error *e, long neg_errno, const char *what)
{
	int en = (int)-neg_errno;

	if (en == EPIPE)
		return pbp__seterr(e, PBP_EPIPE, EPIPE, "%s: the peer has closed its read side",
		                   what);
	return pbp__seterr(e, PBP_ESYS, en, "%s: %s", what, strerror(en));
}

void
pbp__channel_set_aux(pbp_channel *ch, int fd, int (*drain)(void *), void *arg)
{
	ch->fds.auxfd = fd;
	ch->fds.aux_drain = drain;
	ch->fds.aux_arg = arg;
}

const pbp_error *
pbp_channel_error(const pbp_channel *ch)
{
	return &ch->error;
}

const char *
pbp_channel_errmsg(const pbp_channel *ch)
{
	return ch->error.msg;
}

const pbp_error *
pbp_channel_send_error(const pbp_channel *ch)
{
	return ch->txe;
}

int
pbp_channel_read_fd(const pbp_channel *ch)
{
	return ch->fds.rfd;
}

int
pbp_channel_write_fd(const pbp_channel *ch)
{
	return ch->fds.wfd;
}

int
pbp_channel_peer(const pbp_channel *ch, pbp_peer_info *out)
{
	if (ch == NULL || out == NULL)
		return PBP_EINVAL;
	*out = ch->peer;
	return 0;
}

int
pbp_channel_set_trace(pbp_channel *ch, const char *path)
{
	int fd = -1, rc;

	if (ch == NULL)
		return PBP_EINVAL;
	if (path != NULL && (rc = pbp__trace_open(path, &fd, &ch->error)) != 0)
		return rc;
	pbp__close(&ch->trace_fd);
	ch->trace_fd = fd;
	return 0;
}

int
pbp_channel_set_timeout(pbp_channel *ch, int which, int timeout_ms)
{
	if (ch == NULL || which < PBP_TIMEOUT_SEND || which > PBP_TIMEOUT_HANDSHAKE)
		return ch ? fail(ch, PBP_EINVAL, "set_timeout: unknown timeout") : PBP_EINVAL;
	ch->timeout[which] = timeout_ms < 0 ? -1 : timeout_ms;
	return 0;
}

size_t
pbp_channel_pending(const pbp_channel *ch)
{
	return ch ? ch->wlen - ch->woff : 0;
}

/* ---- moving bytes -------------------------------------------------------- */

static int tx_reserve(pbp_channel *ch, size_t n);

/* Reads once into the receive buffer if it has room: with the
 * transport's read (never blocks) or, with wait set, its read_wait (a
 * receive without a deadline).  Returns 1 if bytes arrived or end of
 * stream was seen, 0 if nothing was ready or there was no room, or a
 * (sticky) receive error.  Moving the buffer releases the message handed
 * out last: pbp_channel_decode() then says so instead of reading freed
 * memory. */
static int
fill(pbp_channel *ch, int wait)
{
	uint8_t *p;
	size_t room;
	long n;

	if (ch->rx_eof || ch->rx_err != 0)
		return 0;
	ch->have_msg = 0;
	if (pbp__reader_space(&ch->rd, &p, &room) != 0)
		return rx_fail(ch, pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
		                               "out of memory growing the receive buffer"));
	if (room == 0)
		return 0;
	n = wait ? ch->io->read_wait(ch->io_ctx, p, room) : ch->io->read(ch->io_ctx, p, room);
	/* A short read emptied the pipe: the next one would likely say
	 * EAGAIN, so read_frame() waits first (one system call saved per
	 * message in request/response traffic). */
	ch->rx_drained = n < 0 || (size_t)n < room;
	if (n > 0) {
		pbp__reader_commit(&ch->rd, (size_t)n);
		return 1;
	}
	if (n == 0) {
		ch->rx_eof = 1;
		pbp__reader_set_eof(&ch->rd);
		return 1;
	}
	if (n == -EAGAIN)
		return 0;
	sys_error(&ch->error, n, "read");
	return rx_fail(ch, ch->error.code);
}

static int
fill_once(pbp_channel *ch)
{
	return fill(ch, 0);
}

/* True while the receive buffer can take more without a receive call. */
static int
rx_room(pbp_channel *ch)
{
	/* In duplex mode another thread owns the receive side. */
	return !(ch->flags & PBP_CHANNEL_DUPLEX) && !ch->rx_eof && ch->rx_err == 0 &&
	       pbp__reader_pending(&ch->rd) < ch->rd.max_cap;
}

/* Appends a control frame (Hello, Goodbye, Sync, SyncAck) to the queued
 * output.  0, PBP_ENOMEM or PBP_EENCODE (in e). */
static int
queue_control(pbp_channel *ch, const pbpipe_Envelope *env, pbp_error *e)
{
	size_t n;
	int rc = tx_reserve(ch, PBP__HANDSHAKE_MAX_FRAME);

	if (rc == 0)
		rc = pbp__control_encode(ch->wbuf + ch->wlen, PBP__HANDSHAKE_MAX_FRAME, env, &n, e);
	if (rc != 0)
		return rc;
	if (ch->trace_fd >= 0)
		pbp__trace_frame(ch->trace_fd, 'S', ch->wbuf + ch->wlen, n, NULL, 0);
	ch->wlen += n;
	return 0;
}

/* Takes the SyncAck owed, if any: 1 with *id set. */
static int
take_ack(pbp_channel *ch, uint64_t *id)
{
	int owed;

	if (ch->flags & PBP_CHANNEL_DUPLEX)
		pthread_mutex_lock(&ch->ack_lock);
	owed = ch->ack_pending;
	*id = ch->ack_id;
	ch->ack_pending = 0;
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		pthread_mutex_unlock(&ch->ack_lock);
	return owed;
}

/* Queues the SyncAck owed, if any, behind what is queued.  At most one is
 * ever owed (a later Sync replaces an earlier one, whose barrier the peer
 * has given up), so a peer that floods Syncs and reads nothing costs one
 * frame of memory. */
static int
queue_ack(pbp_channel *ch, pbp_error *e)
{
	pbpipe_Envelope env;
	uint64_t id;

	if (!take_ack(ch, &id) || ch->wr_closed)
		return 0;
	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_sync_ack_tag;
	env.body.sync_ack.id = id;
	return queue_control(ch, &env, e);
}

/* Output queued, or a SyncAck owed. */
static int
out_queued(pbp_channel *ch)
{
	int owed;

	if (ch->wlen > ch->woff)
		return 1;
	if (!(ch->flags & PBP_CHANNEL_DUPLEX))
		return ch->ack_pending;
	pthread_mutex_lock(&ch->ack_lock);
	owed = ch->ack_pending;
	pthread_mutex_unlock(&ch->ack_lock);
	return owed;
}

/* Writes queued output until the transport is full.  Returns 0 when all
 * of it is written, 1 when the rest would block, or a sticky send error
 * described in e.  A SyncAck owed is queued once everything before it is
 * written, so at most one is ever in the buffer. */
static int
write_some(pbp_channel *ch, pbp_error *e)
{
	int rc;

	for (;;) {
		long n;

		if (ch->woff == ch->wlen) {
			ch->woff = ch->wlen = 0;
			if ((rc = queue_ack(ch, e)) != 0)
				return rc;
			if (ch->wlen == 0)
				return 0;
		}
		n = ch->io->write(ch->io_ctx, ch->wbuf + ch->woff, ch->wlen - ch->woff);
		if (n > 0) {
			ch->woff += (size_t)n;
			continue;
		}
		if (n == -EAGAIN || n == 0)
			return 1;
		sys_error(e, n, "write");
		*ch->txe = *e;
		return tx_fail(ch, e->code);
	}
}

/* Writes the queued output.  While the transport is full, keeps reading
 * incoming data (up to the receive buffer's bound) so that a peer that is
 * itself blocked writing to us can finish and start reading.  On a
 * deadline, returns PBP_ETIMEDOUT with the rest still queued. */
static int
flush(pbp_channel *ch, int64_t deadline, pbp_error *e)
{
	int rc, ev;

	while ((rc = write_some(ch, e)) == 1) {
		ev = ch->io->wait(ch->io_ctx, PBP__IO_WRITE | (rx_room(ch) ? PBP__IO_READ : 0),
		                  deadline);
		if (ev == 0)
			return pbp__seterr(e, PBP_ETIMEDOUT, 0,
			                   "send deadline passed with %zu bytes still queued",
			                   ch->wlen - ch->woff);
		if (ev < 0) {
			sys_error(e, ev, "wait");
			*ch->txe = *e;
			return tx_fail(ch, e->code);
		}
		if (ev & PBP__IO_READ)
			(void)fill_once(ch); /* a receive error surfaces on recv */
	}
	return rc;
}

int
pbp__ch_flush(pbp_channel *ch, int64_t deadline)
{
	int rc;

	tx_lock(ch);
	rc = ch->tx_err != 0 ? tx_again(ch) : flush(ch, deadline, ch->txe);
	tx_unlock(ch);
	return rc;
}

/* Duplex mode: the receiving thread owes a SyncAck but the sending thread
 * held the write side.  Whichever of the two comes here after the other
 * has let go writes it (see pbp__ch_owe_ack). */
static void
ack_handoff(pbp_channel *ch)
{
	int owed;

	pthread_mutex_lock(&ch->ack_lock);
	owed = ch->ack_pending;
	pthread_mutex_unlock(&ch->ack_lock);
	/* Only an owed SyncAck: output a send left queued after its deadline
	 * waits for the next send, as without duplex. */
	if (!owed || pthread_mutex_trylock(&ch->wlock) != 0)
		return;
	if (ch->tx_err == 0 && !ch->wr_closed && ch->state == ST_READY) {
		pbp_error e;

		(void)flush(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), &e);
	}
	pthread_mutex_unlock(&ch->wlock);
}

void
pbp__ch_owe_ack(pbp_channel *ch, uint64_t id)
{
	pbp_error e;

	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		pthread_mutex_lock(&ch->ack_lock);
		ch->ack_pending = 1;
		ch->ack_id = id;
		pthread_mutex_unlock(&ch->ack_lock);
		ack_handoff(ch);
		return;
	}
	ch->ack_pending = 1;
	ch->ack_id = id;
	/* Write now what the pipe takes; the rest goes out while this side
	 * next waits, sends or flushes, never past the caller's deadline. */
	if (ch->tx_err == 0 && !ch->wr_closed)
		(void)write_some(ch, &e);
}

/* The low-latency receive: keeps trying to read for up to spin_us before
 * the caller goes to sleep in poll().  A sleeping reader needs a wake-up
 * from the scheduler (tens of microseconds on a VM); a spinning one sees
 * the data as soon as it lands, at the price of a busy CPU. */
static int
spin_fill(pbp_channel *ch, int64_t deadline)
{
	int64_t end = pbp__now_ns() + (int64_t)ch->spin_us * 1000;
	int rc = 0;

	if (deadline >= 0 && end > deadline * 1000000)
		end = deadline * 1000000;
	while (rc == 0 && pbp__now_ns() < end)
		rc = fill_once(ch);
	return rc;
}

/* Output this side should push while it waits to receive: not in duplex
 * mode (the sending thread owns it), nor once sending has failed. */
static int
rx_pushes(pbp_channel *ch)
{
	return !(ch->flags & PBP_CHANNEL_DUPLEX) && ch->tx_err == 0 && !ch->wr_closed &&
	       out_queued(ch);
}

/* Waits until the transport is readable, or writable while output is
 * queued (which is then written: the peer may wait for it before it
 * answers).  0, PBP_ETIMEDOUT, or PBP_ESYS. */
static int
rx_wait(pbp_channel *ch, int64_t deadline)
{
	int push = rx_pushes(ch);
	int ev = ch->io->wait(ch->io_ctx, PBP__IO_READ | (push ? PBP__IO_WRITE : 0), deadline);

	if (ev == 0)
		return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                   "receive deadline passed (%zu bytes of a frame buffered)",
		                   pbp__reader_pending(&ch->rd));
	if (ev < 0)
		return sys_error(&ch->error, ev, "wait");
	if (ev & PBP__IO_WRITE) {
		pbp_error e;

		(void)write_some(ch, &e); /* a send error surfaces on send */
	}
	if (ev & PBP__IO_READ)
		ch->rx_drained = 0; /* ready: read next time round */
	return 0;
}

/* Reads until a whole frame is buffered, then decodes its envelope.
 * Returns 0 with *f filled, or an error for the caller to make sticky
 * (except PBP_ETIMEDOUT: a partial frame stays buffered). */
static int
read_frame(pbp_channel *ch, pbp__frame *f, int64_t deadline)
{
	const uint8_t *body;
	size_t len;
	int rc;

	for (;;) {
		rc = pbp__reader_next(&ch->rd, &body, &len);
		if (rc == 1) {
			if (ch->trace_fd >= 0) {
				uint8_t prefix[PBP__VARINT32_MAX];

				pbp__trace_frame(ch->trace_fd, 'R', prefix,
				                 (size_t)(pbp__put_varint(prefix, len) - prefix), body, len);
			}
			return pbp__frame_decode(body, len, f, &ch->error);
		}
		if (rc < 0) {
			if (rc != PBP_EOF)
				ch->error = ch->rd.error;
			return rc;
		}
		if (ch->rx_err != 0)
			return rx_again(ch);
		if (deadline < 0 && ch->spin_us == 0 && ch->io->read_wait != NULL && !rx_pushes(ch)) {
			rc = fill(ch, 1);
			if (rc != 0)
				continue; /* bytes, end of stream, or an error */
		}
		rc = ch->rx_drained && ch->spin_us == 0 ? 0 : fill_once(ch);
		if (rc == 0 && ch->spin_us > 0 && ch->state == ST_READY)
			rc = spin_fill(ch, deadline);
		if (rc < 0)
			return rc;
		if (rc == 0 && (rc = rx_wait(ch, deadline)) != 0)
			return rc;
	}
}

/* ---- sending ------------------------------------------------------------- */

/* Checks that sending is possible now. */
static int
tx_ready(pbp_channel *ch)
{
	if (ch->tx_err != 0)
		return tx_again(ch);
	if (ch->state != ST_READY)
		return tx_failmsg(ch, PBP_EINVAL, "send before a successful handshake");
	if (ch->wr_closed)
		return tx_failmsg(ch, PBP_EINVAL, "send after the write side was closed");
	return 0;
}

/* Makes room for n more bytes of output after what is queued. */
static int
tx_reserve(pbp_channel *ch, size_t n)
{
	size_t queued = ch->wlen - ch->woff, ncap;
	uint8_t *nb;

	if (ch->woff > 0 && ch->wcap - ch->wlen < n) {
		memmove(ch->wbuf, ch->wbuf + ch->woff, queued);
		ch->woff = 0;
		ch->wlen = queued;
	}
	if (ch->wcap - ch->wlen >= n)
		return 0;
	/* Bounded: n is at most one frame within the limit, and what is
	 * queued is at most QUEUE_MAX (see make_room). */
	ncap = ch->wcap * 2 > queued + n ? ch->wcap * 2 : queued + n;
	nb = realloc(ch->wbuf, ncap);
	if (nb == NULL)
		return pbp__seterr(ch->txe, PBP_ENOMEM, ENOMEM,
		                   "out of memory for a frame of %zu bytes", n);
	ch->wbuf = nb;
	ch->wcap = ncap;
	return 0;
}

/* Before queueing a frame of n bytes: output already queued goes first
 * when it must.  Blocking sends keep at most one earlier frame queued (a
 * send that timed out), coalescing ones up to COALESCE_MAX, non-blocking
 * ones (deadline 0) up to QUEUE_MAX, after which they say PBP_EAGAIN. */
static int
make_room(pbp_channel *ch, size_t n)
{
	size_t queued = ch->wlen - ch->woff;
	int nonblock = ch->timeout[PBP_TIMEOUT_SEND] == 0, rc;

	if (queued == 0)
		return 0;
	if (nonblock) {
		if (queued + n <= QUEUE_MAX)
			return 0;
		rc = write_some(ch, ch->txe);
		if (rc == 1 && ch->wlen - ch->woff + n > QUEUE_MAX)
			return pbp__seterr(ch->txe, PBP_EAGAIN, 0,
			                   "%zu bytes already queued: poll for writing, then flush",
			                   ch->wlen - ch->woff);
		return rc == 1 ? 0 : rc;
	}
	if ((ch->flags & PBP_CHANNEL_COALESCE) && queued + n <= COALESCE_MAX)
		return 0;
	return flush(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
}

/* Queues one application frame: payload encoded by nanopb from (fields,
 * msg), or copied from msg (size bytes) when fields is NULL. */
static int
queue_message(pbp_channel *ch, uint32_t type, uint64_t id, const pbp__reply *r,
              const pb_msgdesc_t *fields, const void *msg, size_t psize)
{
	uint8_t hdr[PBP__MSG_HEADER_MAX];
	uint64_t body;
	size_t hlen;
	int rc;

	if (type == 0)
		return tx_failmsg(ch, PBP_EINVAL, "message type 0 is reserved");
	hlen = pbp__message_header_ex(hdr, type, id, r, psize, &body);
	if (hlen == 0 || body > ch->limit)
		return pbp__seterr(ch->txe, PBP_EMSGSIZE, 0,
		                   "a message of %zu bytes does not fit the frame limit of %" PRIu32
		                   " bytes", psize, ch->limit);
	if ((rc = make_room(ch, hlen + psize)) != 0 || (rc = tx_reserve(ch, hlen + psize)) != 0)
		return rc;
	memcpy(ch->wbuf + ch->wlen, hdr, hlen);
	if (fields != NULL) {
		pb_ostream_t os = pb_ostream_from_buffer(ch->wbuf + ch->wlen + hlen, psize);

		if (!pb_encode(&os, fields, msg) || os.bytes_written != psize)
			/* Nothing was queued: the stream is intact. */
			return pbp__seterr(ch->txe, PBP_EENCODE, 0, "encoding message type %" PRIu32 ": %s",
			                   type, os.errmsg ? os.errmsg
			                                   : "callbacks wrote a different size the second time");
	} else if (psize > 0) {
		memcpy(ch->wbuf + ch->wlen + hlen, msg, psize);
	}
	if (ch->trace_fd >= 0)
		pbp__trace_frame(ch->trace_fd, 'S', ch->wbuf + ch->wlen, hlen + psize, NULL, 0);
	ch->wlen += hlen + psize;
	return 0;
}

/* Records the outcome of a blocking send for the report (the receiving
 * thread owns that record in duplex mode). */
static int
tx_outcome(pbp_channel *ch, int rc)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return rc;
	if (rc == 0)
		pbp__ch_succeeded(ch);
	else if (rc == PBP_ETIMEDOUT)
		pbp__ch_timed_out(ch, ch->txe);
	return rc;
}

/* After a frame is queued: write it now, unless coalescing and there is
 * room for more.  A non-blocking send succeeds once the frame is queued. */
static int
send_done(pbp_channel *ch)
{
	int rc;

	if ((ch->flags & PBP_CHANNEL_COALESCE) && ch->wlen - ch->woff < COALESCE_MAX)
		return 0;
	if (ch->timeout[PBP_TIMEOUT_SEND] == 0) {
		rc = write_some(ch, ch->txe);
		return rc == 1 ? 0 : rc;
	}
	return flush(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
}

int
pbp__ch_send(pbp_channel *ch, uint32_t type, uint64_t id, const pbp__reply *r,
             const pb_msgdesc_t *fields, const void *msg, size_t size)
{
	int rc;

	tx_lock(ch);
	rc = tx_ready(ch);
	if (rc == 0 && fields != NULL && !pb_get_encoded_size(&size, fields, msg))
		rc = pbp__seterr(ch->txe, PBP_EENCODE, 0,
		                 "sizing message type %" PRIu32 ": a callback failed or a field is invalid",
		                 type);
	if (rc == 0) {
		if (!(ch->flags & PBP_CHANNEL_DUPLEX))
			ch->have_msg = 0; /* the send may move the receive buffer */
		rc = queue_message(ch, type, id, r, fields, msg, size);
	}
	if (rc == 0)
		rc = send_done(ch);
	rc = tx_outcome(ch, rc);
	tx_unlock(ch);
	return rc;
}

int
pbp_channel_send_ex(pbp_channel *ch, uint32_t type, uint64_t id,
                    const pb_msgdesc_t *fields, const void *msg)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 1);
	if (fields == NULL || msg == NULL)
		rc = tx_failmsg(ch, PBP_EINVAL, "send: NULL descriptor or message");
	else
		rc = pbp__ch_send(ch, type, id, NULL, fields, msg, 0);
	pbp__ch_leave(ch, 1);
	return rc;
}

const pbp_msgtype *
pbp__ch_find_type(const pbp_channel *ch, uint32_t type)
{
	size_t i;

	for (i = 0; i < ch->ntypes; i++)
		if (ch->types[i].id == type)
			return &ch->types[i];
	return NULL;
}

int
pbp_channel_send(pbp_channel *ch, uint32_t type, const void *msg)
{
	const pbp_msgtype *t;

	if (ch == NULL)
		return PBP_EINVAL;
	t = pbp__ch_find_type(ch, type);
	if (t == NULL) {
		int rc;

		ENTER(ch, 1);
		rc = pbp__seterr(ch->txe, PBP_ETYPE, 0,
		                 "send: no descriptor registered for message type %" PRIu32, type);
		pbp__ch_leave(ch, 1);
		return rc;
	}
	return pbp_channel_send_ex(ch, type, 0, t->fields, msg);
}

int
pbp_channel_send_raw(pbp_channel *ch, uint32_t type, uint64_t id,
                     const void *payload, size_t size)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 1);
	if (payload == NULL && size > 0)
		rc = tx_failmsg(ch, PBP_EINVAL, "send_raw: NULL payload");
	else
		rc = pbp__ch_send(ch, type, id, NULL, NULL, payload, size);
	pbp__ch_leave(ch, 1);
	return rc;
}

int
pbp_channel_flush(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 1);
	if (!(ch->flags & PBP_CHANNEL_DUPLEX))
		ch->have_msg = 0; /* a blocked flush reads into the receive buffer */
	rc = pbp__ch_flush(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]));
	if (rc == PBP_ETIMEDOUT && ch->timeout[PBP_TIMEOUT_SEND] == 0)
		rc = pbp__seterr(ch->txe, PBP_EAGAIN, 0, "%zu bytes still queued",
		                 ch->wlen - ch->woff);
	pbp__ch_leave(ch, 1);
	return rc;
}

int
pbp__ch_send_sync(pbp_channel *ch, uint64_t id, int64_t deadline)
{
	pbpipe_Envelope env;
	int rc;

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_sync_tag;
	env.body.sync.id = id;
	tx_lock(ch);
	rc = tx_ready(ch);
	if (rc == 0)
		rc = queue_control(ch, &env, ch->txe);
	if (rc == 0)
		rc = flush(ch, deadline, ch->txe);
	tx_unlock(ch);
	return rc;
}

static int
close_write_locked(pbp_channel *ch)
{
	int rc = 0, e;

	if (ch->wr_closed)
		return 0;
	/* Queued output goes first; on a deadline the write side stays open
	 * so the caller can try again. */
	if (out_queued(ch) && ch->tx_err == 0 && ch->state == ST_READY) {
		rc = flush(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
		if (rc == PBP_ETIMEDOUT)
			return rc;
	}
	ch->wr_closed = 1;
	ch->woff = ch->wlen = 0;
	e = ch->io->close_write(ch->io_ctx);
	if (e != 0)
		return pbp__seterr(ch->txe, PBP_ESYS, e, "closing the write side: %s", strerror(e));
	return rc;
}

int
pbp_channel_close_write(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 1);
	tx_lock(ch);
	rc = close_write_locked(ch);
	tx_unlock(ch);
	pbp__ch_leave(ch, 1);
	return rc;
}

/* Goodbye.detail is a protobuf string: stock protobuf libraries reject a
 * frame whose strings are not valid UTF-8, so it is cleaned and cut at a
 * character boundary (pbp__control_encode() checks again). */
static void
copy_utf8(char *dst, size_t size, const char *src)
{
	(void)pbp__utf8_copy(dst, size, src, strlen(src));
}

int
pbp__channel_goodbye_by(pbp_channel *ch, int reason, const char *detail,
                        int64_t deadline)
{
	pbpipe_Envelope env;
	int rc, rc2;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 1);
	tx_lock(ch);
	rc = tx_ready(ch);
	if (rc == 0 && out_queued(ch))
		rc = flush(ch, deadline, ch->txe);
	if (rc == 0) {
		memset(&env, 0, sizeof env);
		env.which_body = pbpipe_Envelope_goodbye_tag;
		env.body.goodbye.reason = (pbpipe_Goodbye_Reason)reason;
		if (detail != NULL)
			copy_utf8(env.body.goodbye.detail, sizeof env.body.goodbye.detail, detail);
		rc = queue_control(ch, &env, ch->txe);
		if (rc == 0)
			rc = flush(ch, deadline, ch->txe);
	}
	/* Whatever happened, the write side is done. */
	ch->woff = ch->wlen = 0;
	rc2 = close_write_locked(ch);
	tx_unlock(ch);
	pbp__ch_leave(ch, 1);
	return rc != 0 ? rc : rc2;
}

int
pbp_channel_goodbye(pbp_channel *ch, int reason, const char *detail)
{
	if (ch == NULL)
		return PBP_EINVAL;
	return pbp__channel_goodbye_by(ch, reason, detail,
	                               pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]));
}

/* ---- the handshake ------------------------------------------------------- */

static int
handshake(pbp_channel *ch)
{
	int64_t deadline;
	pbpipe_Envelope env;
	pbp__frame f;
	int rc, sent;

	if (ch->state != ST_NEW)
		return fail(ch, PBP_EINVAL, "handshake already done");
	if (ch->rx_err != 0)
		return rx_again(ch);
	deadline = pbp__deadline(ch->timeout[PBP_TIMEOUT_HANDSHAKE]);
	pbp__hello_make(&env, ch->max_frame, ch->fingerprint);
	rc = queue_control(ch, &env, &ch->error);
	if (rc == 0)
		rc = flush(ch, deadline, &ch->error);
	if (rc == PBP_ETIMEDOUT)
		rc = pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                 "the peer did not take our Hello within %d ms",
		                 ch->timeout[PBP_TIMEOUT_HANDSHAKE]);
	if (rc != 0 && rc != PBP_EPIPE)
		goto failed;
	/* A peer that stopped reading may still have written: a peer that
	 * died before its Hello is then reported the same way whichever
	 * end of the pipes the kernel closed first. */
	sent = rc;
	rc = read_frame(ch, &f, deadline);
	if (rc == 0 && sent != 0)
		rc = sent;
	else if (rc == PBP_EOF)
		rc = pbp__seterr(&ch->error, PBP_ETRUNC, 0,
		                 "the peer closed the stream before sending its Hello");
	else if (rc == PBP_ETIMEDOUT)
		rc = pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                 "no Hello from the peer within %d ms",
		                 ch->timeout[PBP_TIMEOUT_HANDSHAKE]);
	else if (rc == 0 && f.kind == PBP__FRAME_GOODBYE)
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                 "the peer said Goodbye (reason %d: %s) instead of Hello",
		                 (int)f.goodbye.reason, f.goodbye.detail);
	else if (rc == 0 && f.kind != PBP__FRAME_HELLO)
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                 "the peer's first frame is an application message, not Hello");
	else if (rc == 0)
		rc = pbp__hello_check(&f.hello, ch->max_frame, ch->fingerprint, &ch->peer,
		                      &ch->error);
	if (rc != 0)
		goto failed;
	/* Both sides compute the same minimum and hold each other to it.
	 * The receive buffer holds one largest frame plus some slack for
	 * data drained while a send is blocked. */
	ch->limit = ch->peer.effective_max_frame;
	ch->rd.limit = ch->limit;
	ch->rd.max_cap = (size_t)ch->limit + PBP__VARINT32_MAX + RX_SLACK;
	ch->state = ST_READY;
	return 0;
failed:
	/* A failed handshake fails the channel in both directions. */
	rx_fail(ch, rc);
	ch->txe = &ch->error;
	tx_fail(ch, rc);
	ch->txe = (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->error_tx : &ch->error;
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		ch->error_tx = ch->error;
	return rc;
}

int
pbp_channel_handshake(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 0);
	rc = handshake(ch);
	pbp__ch_leave(ch, 0);
	return rc;
}

/* ---- receiving ----------------------------------------------------------- */

int
pbp__ch_rx_ready(pbp_channel *ch)
{
	if (ch->rx_err != 0)
		return rx_again(ch);
	if (ch->state != ST_READY)
		return fail(ch, PBP_EINVAL, "receive before a successful handshake");
	return 0;
}

/* The stream has ended (code PBP_EOF, its message in ch->error): while
 * calls or a barrier still wait, that is an error of its own. */
static int
stream_ended(pbp_channel *ch)
{
	size_t n = ch->nwaiting;
	char how[PBP_ERRMSG_SIZE];

	if (n == 0 && ch->sync_id == 0)
		return rx_fail(ch, PBP_EOF);
	memcpy(how, ch->error.msg, sizeof how);
	if (n == 0)
		pbp__seterr(&ch->error, PBP_EUNANSWERED, 0,
		            "the barrier went unanswered: %.200s", how);
	else
		pbp__seterr(&ch->error, PBP_EUNANSWERED, 0,
		            "%zu call%s went unanswered%s: %.200s", n, n == 1 ? "" : "s",
		            ch->sync_id ? " (and the barrier)" : "", how);
	return rx_fail(ch, PBP_EUNANSWERED);
}

/* Notes a Goodbye: the peer's last frame. */
static int
got_goodbye(pbp_channel *ch, const pbp__frame *f)
{
	ch->peer.goodbye_received = 1;
	ch->peer.goodbye_reason = (int)f->goodbye.reason;
	memcpy(ch->peer.goodbye_detail, f->goodbye.detail, sizeof ch->peer.goodbye_detail);
	ch->peer.goodbye_detail[sizeof ch->peer.goodbye_detail - 1] = '\0';
	pbp__seterr(&ch->error, PBP_EOF, 0, "end of stream: the peer said Goodbye (reason %d%s%s)",
	            (int)f->goodbye.reason, f->goodbye.detail[0] ? ": " : "", f->goodbye.detail);
	return stream_ended(ch);
}

/* A Sync: everything the peer sent before it must have been handed to our
 * application, which then asks for more.  With nothing held that is now;
 * otherwise a marker behind the held messages answers it when
 * pbp_channel_recv() reaches it.  If we can no longer send, the peer's
 * deadline tells it. */
static int
got_sync(pbp_channel *ch, uint64_t id)
{
	if (ch->qlen > 0)
		return pbp__held_push(ch, NULL, id);
	pbp__ch_owe_ack(ch, id);
	return 0;
}

/* Past the deadline?  Frames the caller does not wait for count against
 * it, so a peer that floods them cannot hold a call past its deadline. */
static int
past(int64_t deadline)
{
	return deadline >= 0 && pbp__now_ms() > deadline;
}

int
pbp__ch_next(pbp_channel *ch, pbp__frame *f, int64_t deadline)
{
	int rc;

	for (;;) {
		rc = read_frame(ch, f, deadline);
		if (rc == PBP_ETIMEDOUT)
			return rc; /* not sticky: a partial frame stays buffered */
		if (rc == PBP_EOF) {
			pbp__seterr(&ch->error, PBP_EOF, 0, "end of stream: the peer closed between frames");
			return stream_ended(ch);
		}
		if (rc == 0 && f->kind == PBP__FRAME_GOODBYE)
			return got_goodbye(ch, f);
		if (rc == 0 && f->kind == PBP__FRAME_HELLO)
			rc = pbp__seterr(&ch->error, PBP_EPROTO, 0, "a second Hello after the handshake");
		if (rc != 0)
			return rx_fail(ch, rc);
		if (f->kind == PBP__FRAME_MESSAGE && f->reply_to == 0)
			return 0;
		if (f->kind == PBP__FRAME_MESSAGE)
			rc = pbp__calls_file_reply(ch, f);
		else if (f->kind == PBP__FRAME_SYNC)
			rc = got_sync(ch, f->sync_id);
		else if (ch->sync_id != 0 && f->sync_id == ch->sync_id)
			rc = (ch->sync_acked = 1, PBP__PROGRESS);
		else
			rc = 0; /* a late answer to a barrier that gave up */
		if (rc == PBP_ELIMIT)
			pbp__reader_unget(&ch->rd); /* refused, not consumed */
		if (rc != 0)
			return rc;
		if (past(deadline))
			return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
			                   "receive deadline passed while the peer sent control frames");
	}
}

/* Hands out held entries in order; a Sync marker among them is answered
 * as it is reached.  Returns 1 with ch->cur a held message. */
static int
next_held(pbp_channel *ch)
{
	while (pbp__held_pop(ch)) {
		if (!ch->cur.sync)
			return 1;
		pbp__ch_owe_ack(ch, ch->cur.id);
	}
	return 0;
}

static int
recv_timed_out(pbp_channel *ch)
{
	if (ch->timeout[PBP_TIMEOUT_RECV] == 0)
		return pbp__seterr(&ch->error, PBP_EAGAIN, 0, "no whole message yet (%zu bytes buffered)",
		                   pbp__reader_pending(&ch->rd));
	pbp__ch_timed_out(ch, &ch->error);
	return PBP_ETIMEDOUT;
}

static int
recv_raw(pbp_channel *ch, pbp_msginfo *out)
{
	int64_t deadline;
	pbp__frame f;
	int rc;

	ch->have_msg = 0;
	/* Messages held while a call or a barrier waited come first. */
	if (next_held(ch)) {
		ch->msg = (pbp_msginfo){ ch->cur.type, ch->cur.id, ch->cur.buf, ch->cur.len };
		ch->have_msg = 1;
		*out = ch->msg;
		return 0;
	}
	rc = pbp__ch_rx_ready(ch);
	if (rc != 0)
		return rc;
	deadline = pbp__deadline(ch->timeout[PBP_TIMEOUT_RECV]);
	/* Output still queued (coalesced, or a send that timed out) goes out
	 * now as far as the pipe takes it, and the rest while we wait: the
	 * peer may be waiting for it before it answers.  A send error does
	 * not stop receiving what the peer sent before it left.  In duplex
	 * mode the sending thread owns the output. */
	if (rx_pushes(ch)) {
		pbp_error e;

		(void)write_some(ch, &e);
	}
	while ((rc = pbp__ch_next(ch, &f, deadline)) == PBP__PROGRESS)
		if (past(deadline))
			return recv_timed_out(ch);
	if (rc == PBP_ETIMEDOUT)
		return recv_timed_out(ch);
	if (rc != 0)
		return rc;
	pbp__ch_succeeded(ch);
	ch->msg = (pbp_msginfo){ f.type, f.id, f.payload, f.payload_len };
	ch->have_msg = 1;
	*out = ch->msg;
	return 0;
}

int
pbp_channel_recv(pbp_channel *ch, pbp_msginfo *out)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 0);
	rc = out == NULL ? fail(ch, PBP_EINVAL, "recv: NULL out") : recv_raw(ch, out);
	pbp__ch_leave(ch, 0);
	return rc;
}

static int
decode(pbp_channel *ch, const pb_msgdesc_t *fields, void *msg)
{
	pb_istream_t is;

	if (fields == NULL || msg == NULL)
		return fail(ch, PBP_EINVAL, "decode: NULL descriptor or message");
	if (!ch->have_msg)
		return fail(ch, PBP_EINVAL,
		            "decode: no message received, or a later call on the channel released it");
	is = pb_istream_from_buffer(ch->msg.payload, ch->msg.size);
	if (!pb_decode(&is, fields, msg))
		return pbp__seterr(&ch->error, PBP_EDECODE, 0,
		                   "decoding message type %" PRIu32 " (%zu bytes): %s",
		                   ch->msg.type, ch->msg.size, PB_GET_ERROR(&is));
	return 0;
}

int
pbp_channel_decode(pbp_channel *ch, const pb_msgdesc_t *fields, void *msg)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 0);
	rc = decode(ch, fields, msg);
	pbp__ch_leave(ch, 0);
	return rc;
}

int
pbp_channel_recv_msg(pbp_channel *ch, uint32_t *type, void *msg, size_t msg_size)
{
	const pbp_msgtype *t;
	pbp_msginfo info;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	ENTER(ch, 0);
	if (type == NULL || msg == NULL)
		rc = fail(ch, PBP_EINVAL, "recv_msg: NULL argument");
	else
		rc = recv_raw(ch, &info);
	if (rc != 0)
		goto out;
	*type = info.type;
	t = pbp__ch_find_type(ch, info.type);
	if (t == NULL)
		rc = pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                 "received message type %" PRIu32
		                 " (%zu bytes), which has no registered descriptor",
		                 info.type, info.size);
	else if (msg_size < t->size)
		rc = pbp__seterr(&ch->error, PBP_EINVAL, 0,
		                 "recv_msg: buffer of %zu bytes is smaller than %s (%zu bytes)",
		                 msg_size, t->name ? t->name : "the message", t->size);
	else
		rc = decode(ch, t->fields, msg);
out:
	pbp__ch_leave(ch, 0);
	return rc;
}

/* ---- the report ---------------------------------------------------------- */

static int
end_of(int code)
{
	switch (code) {
	case PBP_ETRUNC: return PBP_END_TRUNCATED;
	case PBP_EPROTO:
	case PBP_EDECODE:
	case PBP_EENCODE: return PBP_END_MALFORMED;
	case PBP_EMSGSIZE: return PBP_END_OVERSIZE;
	case PBP_ETIMEDOUT: return PBP_END_TIMEOUT;
	case PBP_EPIPE: return PBP_END_PEER_GONE;
	case PBP_EUNANSWERED: return PBP_END_UNANSWERED;
	default: return PBP_END_IO;
	}
}

int
pbp_channel_report(const pbp_channel *ch, pbp_report *out)
{
	const pbp_error *e = NULL;

	if (ch == NULL || out == NULL)
		return PBP_EINVAL;
	memset(out, 0, sizeof *out);
	if (ch->state == ST_NEW && ch->rx_err != 0) {
		e = &ch->rx_error;
		out->end = e->code == PBP_ETIMEDOUT ? PBP_END_TIMEOUT : PBP_END_HANDSHAKE;
	} else if (ch->rx_err == PBP_EOF) {
		out->end = ch->peer.goodbye_received ? PBP_END_GOODBYE : PBP_END_EOF;
	} else if (ch->rx_err != 0) {
		e = &ch->rx_error;
		out->end = end_of(e->code);
	} else if (ch->tx_err != 0) {
		e = &ch->tx_error;
		out->end = end_of(e->code);
	} else if (ch->timed_out) {
		/* Only while no call has succeeded since the deadline passed. */
		e = &ch->timeout_error;
		out->end = PBP_END_TIMEOUT;
	}
	if (e != NULL) {
		out->error = e->code;
		memcpy(out->message, e->msg, sizeof out->message);
	} else if (out->end != PBP_END_OPEN) {
		memcpy(out->message, ch->rx_error.msg, sizeof out->message);
	}
	out->goodbye_reason = ch->peer.goodbye_reason;
	memcpy(out->goodbye_detail, ch->peer.goodbye_detail, sizeof out->goodbye_detail);
	out->fate = PBP_FATE_NONE;
	return 0;
}
