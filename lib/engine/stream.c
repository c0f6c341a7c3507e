/*
 * stream.c: the byte engine under a channel.  It moves bytes between the
 * transport and the channel's two buffers: the frame reader (receive) and
 * the write buffer (send), with deadlines.  A blocked write keeps reading
 * into the bounded receive buffer, so two peers writing large frames at
 * each other both make progress; a receive that waits keeps writing what
 * sends left queued, and the one SyncAck the session may owe.  Above it,
 * session.c speaks the control protocol and channel.c the typed API.
 *
 * Every frame is encoded whole into the write buffer before any of it is
 * written.  So a send that hits its deadline halfway keeps the rest queued
 * and the next call finishes it: nothing is lost, nothing is sent twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <pb_encode.h>

#include "channel_impl.h"

/* Duplex mode: the write side is used by one thread at a time.  (The
 * inline wrappers in channel_impl.h skip these without PBP_CHANNEL_DUPLEX.) */
void
pbp__ch_tx_lock_duplex(pbp_channel *ch)
{
	pbp__mutex_lock(&ch->wlock);
}

static void ack_handoff(pbp_channel *ch);

void
pbp__ch_tx_unlock_duplex(pbp_channel *ch)
{
	pbp__mutex_unlock(&ch->wlock);
	ack_handoff(ch);
}

/* ---- moving bytes -------------------------------------------------------- */

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
		return pbp__ch_rx_fail(ch, pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
		                               "out of memory growing the receive buffer"));
	if (room == 0)
		return 0;
	n = wait ? ch->io->read_wait(ch->io_ctx, p, room) : ch->io->read(ch->io_ctx, p, room);
	/* A short read emptied the pipe: the next one would likely say
	 * EAGAIN, so pbp__ch_read_frame() waits first (one system call saved per
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
	pbp__ch_sys_error(&ch->error, n, "read");
	return pbp__ch_rx_fail(ch, ch->error.code);
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
int
pbp__ch_queue_control(pbp_channel *ch, const pbpipe_Envelope *env, pbp_error *e)
{
	size_t n;
	int rc = pbp__ch_tx_reserve(ch, PBP__HANDSHAKE_MAX_FRAME);

	if (rc == 0)
		rc = pbp__control_encode(ch->wbuf + ch->wlen, PBP__HANDSHAKE_MAX_FRAME, env, &n, e);
	if (rc != 0)
		return rc;
	if (ch->trace_fd != PBP_OS_HANDLE_INVALID)
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
		pbp__mutex_lock(&ch->ack_lock);
	owed = ch->ack_pending;
	*id = ch->ack_id;
	ch->ack_pending = 0;
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		pbp__mutex_unlock(&ch->ack_lock);
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
	return pbp__ch_queue_control(ch, &env, e);
}

/* Duplex mode: whether a SyncAck is owed (under its lock). */
int
pbp__ch_ack_owed_duplex(pbp_channel *ch)
{
	int owed;

	pbp__mutex_lock(&ch->ack_lock);
	owed = ch->ack_pending;
	pbp__mutex_unlock(&ch->ack_lock);
	return owed;
}

/* Writes queued output until the transport is full.  Returns 0 when all
 * of it is written, 1 when the rest would block, or a sticky send error
 * described in e.  A SyncAck owed is queued once everything before it is
 * written, so at most one is ever in the buffer. */
int
pbp__ch_write_some(pbp_channel *ch, pbp_error *e)
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
		pbp__ch_sys_error(e, n, "write");
		*ch->txe = *e;
		return pbp__ch_tx_fail(ch, e->code);
	}
}

/* Writes the queued output.  While the transport is full, keeps reading
 * incoming data (up to the receive buffer's bound) so that a peer that is
 * itself blocked writing to us can finish and start reading.  On a
 * deadline, returns PBP_ETIMEDOUT with the rest still queued. */
int
pbp__ch_flush_by(pbp_channel *ch, int64_t deadline, pbp_error *e)
{
	int rc, ev;

	while ((rc = pbp__ch_write_some(ch, e)) == 1) {
		ev = ch->io->wait(ch->io_ctx, PBP__IO_WRITE | (rx_room(ch) ? PBP__IO_READ : 0),
		                  deadline);
		if (ev == 0)
			return pbp__seterr(e, PBP_ETIMEDOUT, 0,
			                   "send deadline passed with %zu bytes still queued",
			                   ch->wlen - ch->woff);
		if (ev < 0) {
			pbp__ch_sys_error(e, ev, "wait");
			*ch->txe = *e;
			return pbp__ch_tx_fail(ch, e->code);
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

	pbp__ch_tx_lock(ch);
	rc = ch->tx_err != 0 ? pbp__ch_tx_again(ch) : pbp__ch_flush_by(ch, deadline, ch->txe);
	pbp__ch_tx_unlock(ch);
	return rc;
}

/* Duplex mode: the receiving thread owes a SyncAck but the sending thread
 * held the write side.  Whichever of the two comes here after the other
 * has let go writes it (see pbp__ch_owe_ack). */
static void
ack_handoff(pbp_channel *ch)
{
	int owed;

	pbp__mutex_lock(&ch->ack_lock);
	owed = ch->ack_pending;
	pbp__mutex_unlock(&ch->ack_lock);
	/* Only an owed SyncAck: output a send left queued after its deadline
	 * waits for the next send, as without duplex. */
	if (!owed || !pbp__mutex_trylock(&ch->wlock))
		return;
	if (ch->tx_err == 0 && !ch->wr_closed && ch->state == ST_READY) {
		pbp_error e;

		(void)pbp__ch_flush_by(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), &e);
	}
	pbp__mutex_unlock(&ch->wlock);
}

void
pbp__ch_owe_ack(pbp_channel *ch, uint64_t id)
{
	pbp_error e;

	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		pbp__mutex_lock(&ch->ack_lock);
		ch->ack_pending = 1;
		ch->ack_id = id;
		pbp__mutex_unlock(&ch->ack_lock);
		ack_handoff(ch);
		return;
	}
	ch->ack_pending = 1;
	ch->ack_id = id;
	/* Write now what the pipe takes; the rest goes out while this side
	 * next waits, sends or flushes, never past the caller's deadline. */
	if (ch->tx_err == 0 && !ch->wr_closed)
		(void)pbp__ch_write_some(ch, &e);
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

/* Waits until the transport is readable, or writable while output is
 * queued (which is then written: the peer may wait for it before it
 * answers).  0, PBP_ETIMEDOUT, or PBP_ESYS. */
static int
rx_wait(pbp_channel *ch, int64_t deadline)
{
	int push = pbp__ch_rx_pushes(ch);
	int ev = ch->io->wait(ch->io_ctx, PBP__IO_READ | (push ? PBP__IO_WRITE : 0), deadline);

	if (ev == 0)
		return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                   "receive deadline passed (%zu bytes of a frame buffered)",
		                   pbp__reader_pending(&ch->rd));
	if (ev < 0)
		return pbp__ch_sys_error(&ch->error, ev, "wait");
	if (ev & PBP__IO_WRITE) {
		pbp_error e;

		(void)pbp__ch_write_some(ch, &e); /* a send error surfaces on send */
	}
	if (ev & PBP__IO_READ)
		ch->rx_drained = 0; /* ready: read next time round */
	return 0;
}

/* Reads until a whole frame is buffered, then decodes its envelope.
 * Returns 0 with *f filled, or an error for the caller to make sticky
 * (except PBP_ETIMEDOUT: a partial frame stays buffered). */
int
pbp__ch_read_frame(pbp_channel *ch, pbp__frame *f, int64_t deadline)
{
	const uint8_t *body;
	size_t len;
	int rc;

	for (;;) {
		rc = pbp__reader_next(&ch->rd, &body, &len);
		if (rc == 1) {
			if (ch->trace_fd != PBP_OS_HANDLE_INVALID) {
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
			return pbp__ch_rx_again(ch);
		if (deadline < 0 && ch->spin_us == 0 && ch->io->read_wait != NULL && !pbp__ch_rx_pushes(ch)) {
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

/* Makes room for n more bytes of output after what is queued. */
int
pbp__ch_tx_reserve(pbp_channel *ch, size_t n)
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
