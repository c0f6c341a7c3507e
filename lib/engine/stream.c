/*
 * stream.c: the byte engine under a channel.  One pump moves bytes
 * between the transport and the channel's two buffers, the frame reader
 * (receive) and the write buffer (send), in both directions at once, until
 * what its caller waits for holds (a whole frame buffered, or all output
 * written) or the deadline passes.  So a blocked write keeps reading into
 * the bounded receive buffer, and two peers writing large frames at each
 * other both make progress; a receive that waits keeps writing what sends
 * left queued, and the one SyncAck the session may owe.  The transport
 * does one thing, xfer (pbp_internal.h): move what can move, else wait.
 * Above, session.c speaks the control protocol and channel.c the API.
 *
 * Every frame is encoded whole before any of it is written.  So a send
 * that hits its deadline halfway keeps the rest queued and the next call
 * finishes it: nothing is lost, nothing is sent twice.  Encoded whole
 * means into the write buffer, except for large bytes fields of
 * pbp_bytes_out() (bytes.c): those are splices, written from the caller's
 * memory in their place between two pieces of the write buffer, and
 * copied into memory the channel owns if the send returns before they
 * are all written (channel.c, send_done).
 */
#include <errno.h>
#include <inttypes.h>
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

/* A deadline that has always passed: "only what is ready now". */
#define NOW_ONLY 0

/* True while the receive buffer can take more without a receive call. */
static int
rx_room(pbp_channel *ch)
{
	/* In duplex mode another thread owns the receive side. */
	return !(ch->flags & PBP_CHANNEL_DUPLEX) && !ch->rx_eof && ch->rx_err == 0 &&
	       pbp__reader_pending(&ch->rd) < ch->rd.max_cap;
}

static int queue_ack(pbp_channel *ch, pbp_error *e);

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

	if (!take_ack(ch, &id) || ch->wr_closed || ch->wr_closing)
		return 0; /* after Goodbye nothing more is sent */
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

/* What pump() runs until. */
#define UNTIL_FLUSHED 1 /* all queued output written (a SyncAck owed too) */
#define UNTIL_FRAME 2   /* a whole frame buffered, or the receive side ended */

/* The queued output as pieces, in order: the write buffer up to the next
 * splice, the spliced bytes, the buffer up to the one after, and so on, as
 * many as one xfer takes.  The transport may write them all at once
 * (POSIX: one writev), so a frame with spliced bytes reaches the reader
 * whole, as a frame encoded into the buffer does. */
static void
out_pieces(pbp_channel *ch, pbp__xfer *x)
{
	size_t off = ch->woff, i = ch->spl_head;

	while (x->nout < PBP__XFER_PIECES) {
		pbp__piece *pc = &x->out[x->nout];

		if (i < ch->nspl && off == ch->spl[i].at) {
			pc->p = ch->spl[i].data + ch->spl[i].done;
			pc->n = ch->spl[i].len - ch->spl[i].done;
			i++;
		} else {
			size_t end = i < ch->nspl ? ch->spl[i].at : ch->wlen;

			if (end == off)
				break;
			pc->p = ch->wbuf + off;
			pc->n = end - off;
			off = end;
		}
		x->out_len += pc->n;
		x->nout++;
	}
}

/* Books n bytes written from the pieces out_pieces() offered (a write may
 * end inside any of them): the write buffer's advance woff, spliced ones
 * their splice, which ends (its copy freed) once all of it is written. */
static void
out_written(pbp_channel *ch, size_t n)
{
	while (n > 0) {
		pbp__splice *sp = ch->spl_head < ch->nspl ? &ch->spl[ch->spl_head] : NULL;
		size_t k;

		if (sp != NULL && ch->woff == sp->at) {
			k = sp->len - sp->done < n ? sp->len - sp->done : n;
			if ((sp->done += k) == sp->len) {
				free(sp->own);
				sp->own = NULL;
				if (++ch->spl_head == ch->nspl)
					ch->spl_head = ch->nspl = 0;
			}
		} else {
			size_t end = sp != NULL ? sp->at : ch->wlen;

			k = end - ch->woff < n ? end - ch->woff : n;
			ch->woff += k;
		}
		if (k == 0)
			break; /* more than was offered: cannot happen */
		n -= k;
	}
}

/* One xfer: offers the transport the queued output (out) and the free room
 * of the receive buffer (in), and books what moved.  A write error is made
 * sticky on the send side (described in e and *ch->txe), a read error or
 * end of stream on the receive side (in ch->error), each to surface on the
 * next call of its side.  Returns 1 if something happened, 0 at the
 * deadline, or PBP_ESYS (in e) when waiting itself failed. */
static int
step(pbp_channel *ch, int out, int in, int64_t deadline, pbp_error *e)
{
	pbp__xfer x;
	uint8_t *p = NULL;
	size_t room = 0;
	int rc;

	/* All but the pieces, which out_pieces() fills as far as nout says. */
	memset((char *)&x + offsetof(pbp__xfer, nout), 0, sizeof x - offsetof(pbp__xfer, nout));
	if (out)
		out_pieces(ch, &x);
	if (in) {
		/* Moving the buffer releases the message handed out last:
		 * pbp_channel_decode() then says so instead of reading freed
		 * memory. */
		ch->have_msg = 0;
		if (pbp__reader_space(&ch->rd, &p, &room) != 0)
			(void)pbp__ch_rx_fail(ch, pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
			                                  "out of memory growing the receive buffer"));
		x.in = p;
		x.in_cap = room;
		x.in_drained = ch->rx_drained;
	}
	if (x.out_len == 0 && x.in_cap == 0)
		return ch->rx_err != 0; /* nothing to move (or the buffer failed) */
	rc = ch->io->xfer(ch->io_ctx, &x, deadline);
	if (rc < 0)
		return pbp__ch_sys_error(e, rc, "wait");
	/* Only the side that offered touches its fields: in duplex mode the
	 * other thread owns them. */
	if (out)
		out_written(ch, x.written);
	if (x.werr != 0) {
		pbp__ch_sys_error(e, -x.werr, "write");
		*ch->txe = *e;
		(void)pbp__ch_tx_fail(ch, e->code);
	}
	/* After Goodbye (session.c), the write side closes with its last
	 * byte, or at once when writing failed: nothing more can go out.  A
	 * failed close has closed the handle all the same. */
	if (out && ch->wr_closing &&
	    (ch->tx_err != 0 || (ch->woff == ch->wlen && ch->spl_head == ch->nspl)))
		(void)pbp__ch_close_write_now(ch);
	if (x.in_cap > 0) {
		/* A short read emptied the pipe: the next one would likely
		 * find nothing, so the transport may wait first (one system
		 * call saved per message in request/response traffic). */
		ch->rx_drained = x.nread < room;
		if (x.nread > 0)
			pbp__reader_commit(&ch->rd, x.nread);
		if (x.eof) {
			ch->rx_eof = 1;
			pbp__reader_set_eof(&ch->rd);
		}
		if (x.rerr != 0) {
			pbp__ch_sys_error(&ch->error, -x.rerr, "read");
			(void)pbp__ch_rx_fail(ch, ch->error.code);
		}
	}
	return rc;
}

/* An empty write buffer that grew large goes back to its initial size
 * (PBP__BUF_SHRINK_ABOVE; realloc, not free and malloc, for the reason
 * given at pbp__reader_shrink in frame.c).  One that grew by up to 1 MiB
 * is kept, so frames up to 1 MiB reuse it without allocating. */
static void
wbuf_shrink(pbp_channel *ch)
{
	uint8_t *nb;

	if (ch->wcap <= BUF_INITIAL + PBP__BUF_SHRINK_ABOVE)
		return;
	nb = realloc(ch->wbuf, BUF_INITIAL);
	if (nb == NULL)
		return; /* keep the large one */
	ch->wbuf = nb;
	ch->wcap = BUF_INITIAL;
}

/* Whether all output is written.  Once it is, queues the SyncAck owed if
 * any (so at most one is ever in the buffer, behind everything before it)
 * and says no; an error queueing it goes to *rc. */
static int
flushed(pbp_channel *ch, pbp_error *e, int *rc)
{
	if (ch->woff < ch->wlen || ch->spl_head < ch->nspl)
		return 0;
	ch->woff = ch->wlen = 0;
	wbuf_shrink(ch);
	if ((*rc = queue_ack(ch, e)) != 0)
		return 1;
	return ch->wlen == 0;
}

/* How long a receive waits with a large, empty receive buffer before it
 * gives the buffer back (pbp__reader_shrink) and waits on.  Large
 * messages that follow each other closely keep it, with its pages mapped:
 * growing it again costs a page fault per 4 KiB, which halves the speed
 * of back-to-back 4 to 16 MiB messages (docs/performance.md).  A receive
 * that returns with nothing (a deadline of 0, or one that passed) gives it
 * back at once. */
#define RX_GRACE_MS 100

static int64_t
rx_grace(pbp_channel *ch, int64_t deadline)
{
	int64_t g;

	if (!pbp__reader_idle_large(&ch->rd))
		return deadline;
	g = pbp__now_ms() + RX_GRACE_MS;
	return deadline >= 0 && deadline <= g ? deadline : g;
}

/*
 * The pump: moves bytes in both directions until `until` holds or the
 * deadline passes.
 *
 * UNTIL_FLUSHED (a send, a flush): writes the queued output; first alone
 * and without waiting, then, while the transport is full, also reads what
 * the peer sends (up to the receive buffer's bound: a peer blocked writing
 * to us can then finish and read).  0 once all is written, PBP_ETIMEDOUT
 * (the rest stays queued), or a sticky send error (in e).
 *
 * UNTIL_FRAME (a receive): reads until the frame reader has something to
 * say, writing meanwhile what sends left queued (the peer may wait for it
 * before it answers).  1 with *body and *len a whole frame; PBP_EOF,
 * PBP_ETRUNC, PBP_EPROTO, PBP_EMSGSIZE from the reader (in ch->rd.error),
 * a sticky receive error (in ch->error), PBP_ETIMEDOUT (a partial frame
 * stays buffered), or PBP_ESYS (in e).  A send error met on the way
 * surfaces on the next send.  While nothing comes, a large and empty
 * receive buffer is given back (rx_grace).
 */
static int
pump(pbp_channel *ch, int until, int64_t deadline, pbp_error *e, const uint8_t **body,
     size_t *len)
{
	int first = until == UNTIL_FLUSHED, rc = 0;

	for (;;) {
		int64_t wait = deadline;
		int out, in;

		if (until == UNTIL_FLUSHED) {
			if (ch->tx_err != 0)
				return pbp__ch_tx_again(ch);
			if (flushed(ch, e, &rc))
				return rc;
			out = 1;
			in = !first && rx_room(ch);
		} else {
			if ((rc = pbp__reader_next(&ch->rd, body, len)) != 0)
				return rc;
			if (ch->rx_err != 0)
				return pbp__ch_rx_again(ch);
			out = pbp__ch_rx_pushes(ch) && !flushed(ch, e, &rc);
			in = 1;
			wait = rx_grace(ch, deadline);
		}
		rc = step(ch, out, in, first ? NOW_ONLY : wait, e);
		if (rc < 0)
			return rc;
		if (rc == 0 && until == UNTIL_FRAME && deadline != NOW_ONLY) {
			/* Nothing came: a large receive buffer goes back (not
			 * for the look before a spin, which waits on). */
			(void)pbp__reader_shrink(&ch->rd);
			if (wait != deadline)
				continue;
		}
		if (rc == 0 && !first)
			return PBP_ETIMEDOUT;
		first = 0;
	}
}

/* Writes queued output until the transport is full, without waiting.
 * Returns 0 when all of it is written, 1 when the rest would block, or a
 * sticky send error described in e. */
int
pbp__ch_write_some(pbp_channel *ch, pbp_error *e)
{
	int rc;

	for (;;) {
		if (ch->tx_err != 0)
			return pbp__ch_tx_again(ch);
		if (flushed(ch, e, &rc))
			return rc;
		rc = step(ch, 1, 0, NOW_ONLY, e);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return 1;
	}
}

/* Writes the queued output within the deadline (pump, UNTIL_FLUSHED). */
int
pbp__ch_flush_by(pbp_channel *ch, int64_t deadline, pbp_error *e)
{
	int rc = pump(ch, UNTIL_FLUSHED, deadline, e, NULL, NULL);

	if (rc == PBP_ETIMEDOUT)
		return pbp__seterr(e, PBP_ETIMEDOUT, 0,
		                   "send deadline passed with %zu bytes still queued",
		                   pbp__ch_queued(ch));
	if (rc == PBP_ESYS && ch->tx_err == 0) {
		*ch->txe = *e;
		return pbp__ch_tx_fail(ch, e->code);
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

/* The low-latency receive: keeps looking for data for up to spin_us
 * before the caller goes to sleep.  A sleeping reader needs a wake-up from
 * the scheduler (tens of microseconds on a VM); a spinning one sees the
 * data as soon as it lands, at the price of a busy CPU. */
static void
spin(pbp_channel *ch, int64_t deadline)
{
	int64_t end = pbp__now_ns() + (int64_t)ch->spin_us * 1000;
	pbp_error e;
	int rc = 0;

	if (deadline >= 0 && end > deadline * 1000000)
		end = deadline * 1000000;
	while (rc == 0 && ch->rx_err == 0 && pbp__now_ns() < end)
		rc = step(ch, 0, 1, NOW_ONLY, &e);
}

/* Reads until a whole frame is buffered (pump, UNTIL_FRAME), then decodes
 * its envelope.  Returns 0 with *f filled, or an error for the caller to
 * make sticky (except PBP_ETIMEDOUT: a partial frame stays buffered). */
int
pbp__ch_read_frame(pbp_channel *ch, pbp__frame *f, int64_t deadline)
{
	const uint8_t *body;
	size_t len;
	pbp_error e;
	int rc;

	rc = pump(ch, UNTIL_FRAME, ch->spin_us > 0 && ch->state == ST_READY ? NOW_ONLY : deadline,
	          &e, &body, &len);
	if (rc == PBP_ETIMEDOUT && ch->spin_us > 0 && ch->state == ST_READY) {
		spin(ch, deadline);
		rc = pump(ch, UNTIL_FRAME, deadline, &e, &body, &len);
	}
	if (rc == 1) {
		if (ch->trace_fd != PBP_OS_HANDLE_INVALID) {
			uint8_t prefix[PBP__VARINT32_MAX];

			pbp__trace_frame(ch->trace_fd, 'R', prefix,
			                 (size_t)(pbp__put_varint(prefix, len) - prefix), body, len);
		}
		return pbp__frame_decode(body, len, f, &ch->error);
	}
	if (rc == PBP_ETIMEDOUT && pbp__reader_pending(&ch->rd) == 0)
		return pbp__seterr_str(&ch->error, PBP_ETIMEDOUT,
		                       "receive deadline passed (0 bytes of a frame buffered)");
	if (rc == PBP_ETIMEDOUT)
		return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                   "receive deadline passed (%zu bytes of a frame buffered)",
		                   pbp__reader_pending(&ch->rd));
	if (rc == PBP_ESYS && ch->rx_err == 0)
		ch->error = e;
	else if (rc != PBP_EOF && ch->rx_err == 0)
		ch->error = ch->rd.error;
	return rc;
}

/* Makes room for n more bytes of output after what is queued. */
int
pbp__ch_tx_reserve(pbp_channel *ch, size_t n)
{
	size_t queued = ch->wlen - ch->woff, ncap;
	uint8_t *nb;

	if (ch->woff > 0 && ch->wcap - ch->wlen < n) {
		size_t i;

		for (i = ch->spl_head; i < ch->nspl; i++)
			ch->spl[i].at -= ch->woff;
		memmove(ch->wbuf, ch->wbuf + ch->woff, queued);
		ch->woff = 0;
		ch->wlen = queued;
	}
	if (ch->wcap - ch->wlen >= n)
		return 0;
	/* Bounded: n is at most one frame within the limit, and what is
	 * queued is at most QUEUE_MAX (see make_room). */
	ncap = ch->wcap * 2 > queued + n ? ch->wcap * 2 : queued + n;
	if (n > PBP__BUF_SHRINK_ABOVE)
		ncap = queued + n; /* a large frame: exactly what it needs */
	nb = realloc(ch->wbuf, ncap);
	if (nb == NULL)
		return pbp__seterr(ch->txe, PBP_ENOMEM, ENOMEM,
		                   "out of memory for a frame of %zu bytes", n);
	ch->wbuf = nb;
	ch->wcap = ncap;
	return 0;
}

/* ---- frames with spliced bytes -------------------------------------------- */

/* The frame being encoded: cur is the next byte's offset in wbuf. */
typedef struct frame_out {
	pbp_channel *ch;
	size_t cur;
	size_t first_spl;    /* the frame's first splice */
} frame_out;

/* Grows the write buffer to hold need bytes, keeping everything in it
 * (the frame being encoded sits past wlen, so no memmove here). */
static int
grow_to(pbp_channel *ch, size_t need)
{
	size_t ncap = ch->wcap * 2 > need ? ch->wcap * 2 : need;
	uint8_t *nb;

	if (need <= ch->wcap)
		return 0;
	nb = realloc(ch->wbuf, ncap);
	if (nb == NULL)
		return -1;
	ch->wbuf = nb;
	ch->wcap = ncap;
	return 0;
}

static bool
frame_write(pb_ostream_t *stream, const pb_byte_t *buf, size_t n)
{
	frame_out *o = stream->state;

	if (grow_to(o->ch, o->cur + n) != 0)
		PB_RETURN_ERROR(stream, "out of memory growing the write buffer");
	memcpy(o->ch->wbuf + o->cur, buf, n);
	o->cur += n;
	return true;
}

/* Whether d lies in the receive buffer, which a blocked write may move
 * while it reads (not in duplex mode: there the send never reads, and the
 * receiving thread owns that buffer). */
static int
in_rx_buffer(const pbp_channel *ch, const uint8_t *d)
{
	return !(ch->flags & PBP_CHANNEL_DUPLEX) && ch->rd.buf != NULL && d >= ch->rd.buf &&
	       d < ch->rd.buf + ch->rd.cap;
}

int
pbp__ch_splice(pb_ostream_t *stream, const void *data, size_t n)
{
	frame_out *o = stream->state;
	pbp_channel *ch;
	const uint8_t *d = data;
	pbp__splice *sp;

	/* Sizing passes (callback NULL) and other streams write themselves.
	 * So do bytes in the receive buffer (a view sent back), which a
	 * blocked write may move while it reads (not in duplex mode: there
	 * the send never reads, and the receiving thread owns that buffer),
	 * and the frames a trace records with more pieces than it takes
	 * (os.h's append writes at most 8, its header included). */
	if (stream->callback != frame_write || n < SPLICE_MIN || stream->bytes_written + n >
	    stream->max_size)
		return 0;
	ch = o->ch;
	if (ch->nspl - o->first_spl >= (ch->trace_fd != PBP_OS_HANDLE_INVALID
	                                ? (PBP__TRACE_MAX_PIECES - 1) / 2 : SPLICE_MAX_PER_FRAME) ||
	    in_rx_buffer(ch, d))
		return 0;
	if (ch->nspl == ch->spl_cap) {
		size_t ncap = ch->spl_cap ? ch->spl_cap * 2 : 4;
		pbp__splice *ns = realloc(ch->spl, ncap * sizeof *ns);

		if (ns == NULL)
			return -1;
		ch->spl = ns;
		ch->spl_cap = ncap;
	}
	sp = &ch->spl[ch->nspl++];
	*sp = (pbp__splice){ o->cur, d, n, 0, NULL };
	stream->bytes_written += n;
	return 1;
}

int
pbp__ch_queue_data(pbp_channel *ch, const uint8_t *hdr, size_t hlen, const void *data,
                   size_t n)
{
	const uint8_t *d = data;
	/* As in pbp__ch_splice: bytes in the receive buffer (a view written
	 * back) are copied, since a blocked write may move that buffer. */
	int splice = n >= SPLICE_MIN && !in_rx_buffer(ch, d);
	int rc = pbp__ch_tx_reserve(ch, hlen + (splice ? 0 : n));

	if (rc != 0)
		return rc;
	if (splice && ch->nspl == ch->spl_cap) {
		size_t ncap = ch->spl_cap ? ch->spl_cap * 2 : 4;
		pbp__splice *ns = realloc(ch->spl, ncap * sizeof *ns);

		if (ns == NULL)
			return pbp__seterr(ch->txe, PBP_ENOMEM, ENOMEM, "out of memory for a chunk");
		ch->spl = ns;
		ch->spl_cap = ncap;
	}
	memcpy(ch->wbuf + ch->wlen, hdr, hlen);
	if (ch->trace_fd != PBP_OS_HANDLE_INVALID) {
		pbp__piece pieces[2] = { { ch->wbuf + ch->wlen, hlen }, { d, n } };

		pbp__trace_pieces(ch->trace_fd, 'S', pieces, 2);
	}
	ch->wlen += hlen;
	if (splice) {
		ch->spl[ch->nspl++] = (pbp__splice){ ch->wlen, d, n, 0, NULL };
	} else {
		if (n > 0)
			memcpy(ch->wbuf + ch->wlen, d, n);
		ch->wlen += n;
	}
	return 0;
}

/* Appends the frame to the trace: the write buffer's part of it with the
 * spliced bytes in their places, as one record. */
static void
trace_frame(pbp_channel *ch, size_t start, const frame_out *o)
{
	pbp__piece pieces[2 * SPLICE_MAX_PER_FRAME + 1];
	size_t at = start, i;
	int n = 0;

	for (i = o->first_spl; i < ch->nspl; i++) {
		pieces[n++] = (pbp__piece){ ch->wbuf + at, ch->spl[i].at - at };
		pieces[n++] = (pbp__piece){ ch->spl[i].data, ch->spl[i].len };
		at = ch->spl[i].at;
	}
	pieces[n++] = (pbp__piece){ ch->wbuf + at, o->cur - at };
	pbp__trace_pieces(ch->trace_fd, 'S', pieces, n);
}

int
pbp__ch_encode_frame(pbp_channel *ch, uint32_t type, const uint8_t *hdr, size_t hlen,
                     const pb_msgdesc_t *fields, const void *msg, size_t psize)
{
	frame_out o = { ch, ch->wlen + hlen, ch->nspl };
	pb_ostream_t os = { frame_write, &o, psize, 0, NULL };
	size_t start = ch->wlen;

	if (grow_to(ch, ch->wlen + hlen) != 0)
		return pbp__seterr(ch->txe, PBP_ENOMEM, ENOMEM, "out of memory for a frame");
	memcpy(ch->wbuf + ch->wlen, hdr, hlen);
	if (!pb_encode(&os, fields, msg) || os.bytes_written != psize) {
		/* Nothing was queued: the stream is intact. */
		ch->nspl = o.first_spl;
		if (ch->spl_head == ch->nspl)
			ch->spl_head = ch->nspl = 0;
		return pbp__seterr(ch->txe, PBP_EENCODE, 0, "encoding message type %" PRIu32 ": %s",
		                   type, os.errmsg ? os.errmsg
		                                   : "callbacks wrote a different size the second time");
	}
	if (ch->trace_fd != PBP_OS_HANDLE_INVALID)
		trace_frame(ch, start, &o);
	ch->wlen = o.cur;
	return 0;
}

int
pbp__ch_spliced(const pbp_channel *ch)
{
	size_t i;

	for (i = ch->spl_head; i < ch->nspl; i++)
		if (ch->spl[i].own == NULL)
			return 1;
	return 0;
}

int
pbp__ch_own_splices(pbp_channel *ch)
{
	size_t i;

	for (i = ch->spl_head; i < ch->nspl; i++) {
		pbp__splice *sp = &ch->spl[i];
		size_t rest = sp->len - sp->done;

		if (sp->own != NULL)
			continue;
		sp->own = malloc(rest);
		if (sp->own == NULL) {
			pbp__seterr(ch->txe, PBP_ENOMEM, ENOMEM,
			            "out of memory keeping %zu bytes of a send that did not finish: "
			            "the stream cannot be completed", rest);
			pbp__ch_splices_free(ch);
			return pbp__ch_tx_fail(ch, PBP_ENOMEM);
		}
		memcpy(sp->own, sp->data + sp->done, rest);
		sp->data = sp->own;
		sp->len = rest;
		sp->done = 0;
	}
	return 0;
}

void
pbp__ch_splices_free(pbp_channel *ch)
{
	size_t i;

	for (i = ch->spl_head; i < ch->nspl; i++)
		free(ch->spl[i].own);
	ch->spl_head = ch->nspl = 0;
}

int
pbp__ch_close_write_now(pbp_channel *ch)
{
	ch->wr_closed = 1;
	ch->wr_closing = 0;
	ch->woff = ch->wlen = 0;
	pbp__ch_splices_free(ch);
	return ch->io->close_write(ch->io_ctx);
}

size_t
pbp__channel_wbuf_cap(const pbp_channel *ch)
{
	return ch->wcap;
}

size_t
pbp__channel_rbuf_cap(const pbp_channel *ch)
{
	return ch->rd.cap;
}
