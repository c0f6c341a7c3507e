/*
 * streams.c (api): the calls of pbp_stream.h, on top of the channel
 * (channel.c: sends), the stream state (session/streams.c), the receive
 * path (session.c) and the inbox (inbox.c).
 *
 * A write waits for credit, and a read for a chunk, the way a call waits
 * for its reply (call.c): every frame that arrives meanwhile goes where it
 * belongs (messages held for pbp_channel_recv(), replies filed, chunks of
 * other streams buffered with them), so one thread can interleave any
 * number of streams with messages and calls.
 */
#include <inttypes.h>
#include <string.h>

#include "channel_impl.h"

/* Leaves a public call (all of them use the receive side's flag: streams
 * are not available on duplex channels). */
#define ST_LEAVE(ch, rc) (pbp__ch_leave((ch), 0), (rc))
/* A chunk's header and its frame's envelope bytes take at most this much
 * of the frame limit. */
#define CHUNK_OVERHEAD 32u
/* Frames a write handles between two chunks without waiting. */
#define DRAIN_MAX 64

static int
usable(pbp_channel *ch)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return pbp__ch_fail(ch, PBP_EINVAL,
		                    "streams are not available on a duplex channel (not in this version)");
	if (ch->state != ST_READY)
		return pbp__ch_fail(ch, PBP_EINVAL, "stream call before a successful handshake");
	return 0;
}

/* The channel's receive side ended: what a stream call waiting for the
 * peer says then.  A broken peer's error stays what it is. */
static int
rx_ended(pbp_channel *ch, const char *what, uint64_t id)
{
	char how[PBP_ERRMSG_SIZE];
	int c = ch->rx_err;

	if (c == PBP_EPROTO || c == PBP_EDECODE || c == PBP_EMSGSIZE || c == PBP_ENOMEM)
		return pbp__ch_rx_again(ch);
	memcpy(how, ch->rx_error.msg, sizeof how);
	return pbp__seterr(&ch->error, PBP_ETRUNC, 0, "the channel ended %s stream %" PRIu64 ": %.160s",
	                   what, id, how);
}

/* Reads one frame within the deadline and puts it where it belongs.  0 or
 * PBP__PROGRESS: go on; otherwise an error (PBP_ETIMEDOUT, PBP_ELIMIT:
 * the inbox is full, the frame stays unread). */
static int
step_in(pbp_channel *ch, int64_t deadline)
{
	pbp__frame f;
	int rc = pbp__ch_next(ch, &f, deadline);

	if (rc == 0 && (rc = pbp__held_push(ch, &f, 0)) == PBP_ELIMIT) {
		ch->st_redo = f.stream; /* a stream's header is read again */
		pbp__reader_unget(&ch->rd);
	}
	return rc;
}

static int
timed_out(pbp_channel *ch, int timeout_ms, const char *fmt, uint64_t id)
{
	if (timeout_ms == 0)
		return pbp__seterr(&ch->error, PBP_EAGAIN, 0, "stream %" PRIu64 ": nothing to do now", id);
	pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0, fmt, id, timeout_ms);
	pbp__ch_timed_out(ch, &ch->error);
	return PBP_ETIMEDOUT;
}

/* ---- the writer ------------------------------------------------------------------ */

static int
out_lookup(pbp_channel *ch, uint64_t id, pbp__outstream **out)
{
	pbp__outstream *o;
	int rc = usable(ch);

	if (rc != 0)
		return rc;
	o = pbp__streams_out(ch, id);
	if (o == NULL && pbp__streams_in(ch, id) != NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0,
		                   "stream %" PRIu64 " is one the peer opened: read it, or cancel it", id);
	if (o == NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0,
		                   "stream %" PRIu64 " is no open stream of this side (never opened, "
		                   "ended or aborted)", id);
	*out = o;
	if (o->cancelled) {
		pbp__seterr(&ch->error, PBP_ECANCELED, 0, "%s", o->msg);
		ch->error.remote_code = o->code;
		return PBP_ECANCELED;
	}
	return 0;
}

static int
stream_open(pbp_channel *ch, uint32_t type, const void *msg, uint64_t *stream)
{
	pbp__reply r = { 0, 0, NULL, 0 };
	const pbp_msgtype *t;
	pbp__outstream *o;
	int rc;

	if (stream == NULL)
		return pbp__ch_fail(ch, PBP_EINVAL, "stream_open: NULL stream");
	if ((rc = usable(ch)) != 0 || (rc = pbp__ch_tx_ready(ch)) != 0)
		return rc;
	if (ch->peer.minor < 2 || ch->peer.stream_window == 0)
		return pbp__seterr(&ch->error, PBP_ENOTSUP, 0,
		                   "the peer does not accept streams (protocol 1.%" PRIu32
		                   ", stream window %" PRIu32 ")",
		                   ch->peer.minor, ch->peer.stream_window);
	t = pbp__ch_find_type(ch, type);
	if (t == NULL)
		return pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                   "stream_open: no descriptor registered for message type %" PRIu32, type);
	if ((o = pbp__streams_new_out(ch, ch->st_next)) == NULL)
		return ch->error.code;
	/* Ids are never reused, even when the header could not be sent. */
	r.stream = ch->st_next++;
	rc = pbp__ch_send(ch, type, 0, &r, msg ? t->fields : NULL, msg ? msg : "", 0);
	if (rc != 0 && rc != PBP_ETIMEDOUT) {
		pbp__streams_drop_out(ch, o);
		return rc;
	}
	*stream = r.stream; /* on a deadline the header stays queued */
	return rc;
}

int
pbp_stream_open(pbp_channel *ch, uint32_t type, const void *msg, uint64_t *stream)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return ST_LEAVE(ch, stream_open(ch, type, msg, stream));
}

/* Whether a whole frame is in the receive buffer. */
static int
frame_buffered(const pbp_channel *ch)
{
	const pbp__reader *r = &ch->rd;
	uint32_t len;
	size_t hdr;

	return pbp__frame_length(r->buf + r->start, r->end - r->start, &len, &hdr) == 1 &&
	       r->end - r->start - hdr >= len;
}

/* Waits until stream id may send (credit) or is cancelled, handling what
 * arrives; with credit already there, only handles the frames that are
 * ready now, so the receive buffer has room while the next chunk is
 * written (two peers writing streams at each other both make progress). */
static int
await_credit(pbp_channel *ch, uint64_t id, int64_t deadline)
{
	int drained = 0;

	for (;;) {
		pbp__outstream *o = pbp__streams_out(ch, id);
		int ready = o->cancelled || o->allowed > o->sent, rc;

		if (ready && drained++ >= DRAIN_MAX)
			return 0;
		if (ch->rx_err != 0)
			return ready ? 0 : rx_ended(ch, "before the reader granted credit for", id);
		ch->st_wait_out = id;
		rc = step_in(ch, ready ? 0 : deadline);
		ch->st_wait_out = 0;
		if (rc == 0 || rc == PBP__PROGRESS) {
			if (!ready && pbp__ch_past(deadline))
				return timed_out(ch, ch->timeout[PBP_TIMEOUT_SEND],
				                 "stream %" PRIu64 ": no credit from the reader within %d ms",
				                 id);
			continue;
		}
		if (ready && rc == PBP_ETIMEDOUT && frame_buffered(ch))
			continue; /* more to handle before the next chunk */
		if (ready && (rc == PBP_ETIMEDOUT || rc == PBP_ELIMIT || ch->rx_err != 0))
			return 0;
		if (rc == PBP_ETIMEDOUT)
			return timed_out(ch, ch->timeout[PBP_TIMEOUT_SEND],
			                 "stream %" PRIu64 ": no credit from the reader within %d ms", id);
		if (ch->rx_err != 0)
			continue; /* said above */
		return rc;
	}
}

static size_t
chunk_max(const pbp_channel *ch)
{
	size_t m = PBP_STREAM_CHUNK_MAX;

	if (ch->limit - CHUNK_OVERHEAD < m)
		m = ch->limit - CHUNK_OVERHEAD;
	if (ch->peer.stream_window < m)
		m = ch->peer.stream_window;
	return m;
}

/* Queues one chunk of at most n bytes from data: 0 with *n what went,
 * PBP_EAGAIN (non-blocking, the output queue is full), or an error. */
static int
queue_chunk(pbp_channel *ch, pbp__outstream *o, const uint8_t *data, size_t *n)
{
	uint8_t hdr[PBP__DATA_HEADER_MAX];
	uint64_t avail = o->allowed - o->sent, body;
	size_t hlen;
	int rc;

	if (*n > avail)
		*n = (size_t)avail;
	if (ch->timeout[PBP_TIMEOUT_SEND] == 0 && pbp__ch_queued(ch) + *n > QUEUE_MAX) {
		rc = pbp__ch_write_some(ch, ch->txe);
		if (rc < 0)
			return rc;
		if (pbp__ch_queued(ch) + *n > QUEUE_MAX)
			return pbp__seterr(&ch->error, PBP_EAGAIN, 0,
			                   "%zu bytes already queued: poll for writing, then write again",
			                   pbp__ch_queued(ch));
	}
	hlen = pbp__stream_data_header(hdr, o->id, *n, &body);
	if ((rc = pbp__ch_queue_data(ch, hdr, hlen, data, *n)) != 0)
		return rc;
	o->sent += *n;
	return 0;
}

static int
stream_write(pbp_channel *ch, uint64_t id, const uint8_t *data, size_t len, size_t *done)
{
	int tmo = ch->timeout[PBP_TIMEOUT_SEND], rc;
	size_t max = chunk_max(ch);
	pbp__outstream *o;

	if ((rc = out_lookup(ch, id, &o)) != 0 || (rc = pbp__ch_tx_ready(ch)) != 0)
		return rc;
	if (data == NULL && len > 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "stream_write: NULL data");
	ch->have_msg = 0; /* reading may move the receive buffer */
	while (*done < len) {
		size_t n = len - *done < max ? len - *done : max;

		/* Each chunk has its own deadline: a live reader that is
		 * merely slow never times out a long write. */
		if ((rc = await_credit(ch, id, pbp__deadline(tmo))) != 0)
			break;
		if ((rc = out_lookup(ch, id, &o)) != 0 || (rc = queue_chunk(ch, o, data + *done, &n)) != 0)
			break;
		*done += n;
		if (tmo == 0)
			rc = pbp__ch_write_some(ch, ch->txe) == 1 ? 0 : ch->tx_err;
		else if ((rc = pbp__ch_flush_by(ch, pbp__deadline(tmo), ch->txe)) == PBP_ETIMEDOUT)
			pbp__ch_timed_out(ch, ch->txe);
		if (rc != 0)
			break;
	}
	/* The caller may reuse its memory once this returns. */
	if (pbp__ch_spliced(ch) && pbp__ch_own_splices(ch) != 0)
		rc = PBP_ENOMEM;
	if (tmo == 0 && rc == PBP_EAGAIN && *done > 0)
		rc = 0; /* non-blocking: what could go went */
	if (rc == 0)
		pbp__ch_succeeded(ch);
	return rc;
}

int
pbp_stream_write(pbp_channel *ch, uint64_t stream, const void *data, size_t len, size_t *done)
{
	size_t local = 0;

	if (done == NULL)
		done = &local;
	*done = 0;
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return ST_LEAVE(ch, stream_write(ch, stream, data, len, done));
}

static int
stream_finish(pbp_channel *ch, uint64_t id, uint32_t code, const char *msg)
{
	pbp__outstream *o = NULL;
	int rc = out_lookup(ch, id, &o);

	if (rc == PBP_ECANCELED) {
		pbp__streams_drop_out(ch, o); /* the reader knows; nothing to send */
		return rc;
	}
	if (rc != 0)
		return rc;
	if ((rc = pbp__ch_tx_ready(ch)) != 0) {
		pbp__streams_drop_out(ch, o); /* it can never be sent */
		return rc;
	}
	ch->have_msg = 0;
	if ((rc = pbp__streams_queue_end(ch, id, code, msg)) != 0)
		return rc;
	pbp__streams_drop_out(ch, o);
	if (ch->timeout[PBP_TIMEOUT_SEND] == 0)
		return pbp__ch_write_some(ch, ch->txe) == 1 ? 0 : ch->tx_err;
	rc = pbp__ch_flush_by(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
	if (rc == PBP_ETIMEDOUT)
		pbp__ch_timed_out(ch, ch->txe);
	return rc;
}

int
pbp_stream_end(pbp_channel *ch, uint64_t stream)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return ST_LEAVE(ch, stream_finish(ch, stream, 0, NULL));
}

int
pbp_stream_abort(pbp_channel *ch, uint64_t stream, uint32_t code, const char *message)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (code == 0)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "stream_abort: code 0 (a clean end is pbp_stream_end)");
	else
		rc = stream_finish(ch, stream, code, message ? message : "");
	return ST_LEAVE(ch, rc);
}

/* ---- the reader ------------------------------------------------------------------ */

static int
in_lookup(pbp_channel *ch, uint64_t id, pbp__instream **out)
{
	int rc = usable(ch);

	if (rc != 0)
		return rc;
	*out = pbp__streams_in(ch, id);
	if (*out != NULL)
		return 0;
	if (pbp__streams_out(ch, id) != NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0,
		                   "stream %" PRIu64 " is one this side opened: write it, or end it", id);
	return pbp__seterr(&ch->error, PBP_EINVAL, 0,
	                   "stream %" PRIu64 " is no incoming stream of this channel (never opened, "
	                   "cancelled, or finished long ago)", id);
}

/* The end of s, once its data is all read: repeatable. */
static int
end_of(pbp_channel *ch, pbp__instream *s)
{
	pbp__streams_done(ch, s);
	if (s->end_code == 0)
		return pbp__seterr(&ch->error, PBP_EOF, 0, "stream %" PRIu64 " ended", s->id);
	pbp__seterr(&ch->error, PBP_EREMOTE, 0, "%s", s->end_msg);
	ch->error.remote_code = s->end_code;
	return PBP_EREMOTE;
}

/* Takes up to cap bytes of s: from the chunk in the receive buffer, or
 * from s's buffer.  1 with *data and *n set, 0 if there are none, or
 * PBP_ENOMEM. */
static int
take(pbp_channel *ch, pbp__instream *s, size_t cap, const uint8_t **data, size_t *n)
{
	if (s->view_len > 0) {
		*data = s->view;
		*n = s->view_len < cap ? s->view_len : cap;
		s->view += *n;
		s->view_len -= *n;
		/* The rest of the chunk would not outlive this call where it
		 * is. */
		if (s->view_len > 0 && pbp__streams_keep_view(ch, s) != 0)
			return PBP_ENOMEM;
	} else if (s->len > 0) {
		*data = s->buf + s->off;
		*n = s->len < cap ? s->len : cap;
		s->off += *n;
		s->len -= *n;
	} else {
		return 0;
	}
	pbp__streams_consumed(ch, s, *n);
	return 1;
}

static int
stream_read(pbp_channel *ch, uint64_t id, size_t cap, const uint8_t **data, size_t *n)
{
	int tmo = ch->timeout[PBP_TIMEOUT_RECV];
	int64_t deadline = pbp__deadline(tmo);
	pbp__instream *s;
	int rc;

	ch->have_msg = 0; /* reading may move the receive buffer */
	for (;;) {
		if ((rc = in_lookup(ch, id, &s)) != 0)
			return rc;
		if ((rc = take(ch, s, cap, data, n)) != 0)
			return rc == 1 ? (pbp__ch_succeeded(ch), 0) : rc;
		if (s->state == IN_ENDED || s->state == IN_DONE)
			return end_of(ch, s);
		if (ch->rx_err != 0)
			return rx_ended(ch, "before the end of", id);
		ch->st_wait = id;
		rc = step_in(ch, deadline);
		ch->st_wait = 0;
		if ((rc == 0 || rc == PBP__PROGRESS) && !pbp__ch_past(deadline))
			continue;
		if (rc == 0 || rc == PBP__PROGRESS || rc == PBP_ETIMEDOUT) {
			/* What the last frame brought is still handed out. */
			if ((rc = take(ch, s, cap, data, n)) != 0)
				return rc == 1 ? 0 : rc;
			if (s->state == IN_ENDED)
				return end_of(ch, s);
			return timed_out(ch, tmo, "stream %" PRIu64 ": no data within %d ms", id);
		}
		if (ch->rx_err == 0)
			return rc;
	}
}

int
pbp_stream_read(pbp_channel *ch, uint64_t stream, void *buf, size_t cap, size_t *n)
{
	const uint8_t *p;
	size_t local;
	int rc;

	if (n == NULL)
		n = &local;
	*n = 0;
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (buf == NULL || cap == 0)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "stream_read: NULL buffer or cap 0");
	else
		rc = stream_read(ch, stream, cap, &p, n);
	if (rc == 0)
		memcpy(buf, p, *n);
	else
		*n = 0;
	return ST_LEAVE(ch, rc);
}

int
pbp_stream_read_view(pbp_channel *ch, uint64_t stream, const void **data, size_t *n)
{
	const uint8_t *p = NULL;
	size_t local;
	int rc;

	if (n == NULL)
		n = &local;
	*n = 0;
	if (ch == NULL || data == NULL)
		return PBP_EINVAL;
	*data = NULL;
	PBP__ENTER(ch, 0);
	rc = stream_read(ch, stream, SIZE_MAX, &p, n);
	if (rc == 0)
		*data = p;
	else
		*n = 0;
	return ST_LEAVE(ch, rc);
}

static int
stream_cancel(pbp_channel *ch, uint64_t id, uint32_t code, const char *msg)
{
	pbp__instream *s;
	int rc;

	if (code == 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "stream_cancel: code 0");
	if ((rc = in_lookup(ch, id, &s)) != 0)
		return rc;
	ch->have_msg = 0;
	rc = pbp__streams_cancel(ch, s, code, msg ? msg : "");
	if (rc == 0 && ch->timeout[PBP_TIMEOUT_SEND] != 0 && pbp__ch_out_queued(ch) &&
	    ch->tx_err == 0 && !ch->wr_closed)
		rc = pbp__ch_flush_by(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
	return rc;
}

int
pbp_stream_cancel(pbp_channel *ch, uint64_t stream, uint32_t code, const char *message)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return ST_LEAVE(ch, stream_cancel(ch, stream, code, message));
}

uint64_t
pbp_channel_last_stream(const pbp_channel *ch)
{
	return ch != NULL ? ch->last_stream : 0;
}
