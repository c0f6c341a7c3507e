/*
 * streams.c: the state of a channel's streams (protocol 1.2), below the
 * receive path: session.c hands every stream frame here, whichever call is
 * reading (a receive, a call, a barrier, a stream read or write), so
 * chunks are buffered with their stream, credit is noted for the writer
 * and cancels stop it, wherever they arrive.  The calls of pbp_stream.h
 * (api/streams.c) sit on top.
 *
 * Memory is bounded: at most PBP_MAX_STREAMS incoming streams are live,
 * each buffering at most our window (the peer may not send more than the
 * window beyond what we granted, and we grant only what the application
 * consumed), and the slots are a fixed table.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "channel_impl.h"

static int
ensure(pbp_channel *ch)
{
	if (ch->st != NULL)
		return 0;
	ch->st = calloc(1, sizeof *ch->st);
	if (ch->st == NULL)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory for stream state");
	return 0;
}

pbp__instream *
pbp__streams_in(pbp_channel *ch, uint64_t id)
{
	size_t i;

	if (ch->st == NULL || id == 0)
		return NULL;
	for (i = 0; i < STREAM_SLOTS; i++)
		if (ch->st->in[i].state != IN_FREE && ch->st->in[i].id == id)
			return &ch->st->in[i];
	return NULL;
}

pbp__outstream *
pbp__streams_out(pbp_channel *ch, uint64_t id)
{
	size_t i;

	if (ch->st == NULL || id == 0)
		return NULL;
	for (i = 0; i < STREAM_SLOTS; i++)
		if (ch->st->out[i].id == id)
			return &ch->st->out[i];
	return NULL;
}

static void
in_release(pbp_channel *ch, pbp__instream *s)
{
	if (s->state == IN_OPEN || s->state == IN_ENDED)
		ch->st->nlive_in--;
	free(s->buf);
	memset(s, 0, sizeof *s);
}

/* A free incoming slot; when there is none, the one that finished first
 * is reused (at most PBP_MAX_STREAMS are live, so there is one). */
static pbp__instream *
in_slot(pbp_channel *ch)
{
	pbp__instream *old = NULL;
	size_t i;

	for (i = 0; i < STREAM_SLOTS; i++) {
		pbp__instream *s = &ch->st->in[i];

		if (s->state == IN_FREE)
			return s;
		if (s->state == IN_DONE && (old == NULL || s->seq < old->seq))
			old = s;
	}
	in_release(ch, old);
	return old;
}

pbp__outstream *
pbp__streams_new_out(pbp_channel *ch, uint64_t id)
{
	pbp__outstream *slot = NULL;
	size_t i;

	if (ensure(ch) != 0)
		return NULL;
	if (ch->st->nlive_out >= PBP_MAX_STREAMS) {
		pbp__seterr(&ch->error, PBP_ELIMIT, 0,
		            "%d streams of this side are open already: end one first",
		            PBP_MAX_STREAMS);
		return NULL;
	}
	/* A free slot, else the one cancelled first. */
	for (i = 0; i < STREAM_SLOTS; i++) {
		pbp__outstream *o = &ch->st->out[i];

		if (o->id == 0) {
			slot = o;
			break;
		}
		if (o->cancelled && (slot == NULL || o->seq < slot->seq))
			slot = o;
	}
	memset(slot, 0, sizeof *slot);
	slot->id = id;
	slot->allowed = ch->peer.stream_window;
	ch->st->nlive_out++;
	return slot;
}

void
pbp__streams_drop_out(pbp_channel *ch, pbp__outstream *o)
{
	if (!o->cancelled)
		ch->st->nlive_out--;
	memset(o, 0, sizeof *o);
}

/* ---- frames out -------------------------------------------------------------- */

/* Queues a StreamEnd (tag 7) or StreamCancel (tag 9), or a StreamCredit
 * (tag 8, code the bytes).  Strings are sent as valid UTF-8 of at most
 * 127 bytes, like Message.error_message. */
static int
queue_frame(pbp_channel *ch, pb_size_t tag, uint64_t id, uint32_t code, const char *msg)
{
	pbpipe_Envelope env;
	char *dst = NULL;

	memset(&env, 0, sizeof env);
	env.which_body = tag;
	if (tag == pbpipe_Envelope_end_tag) {
		env.body.end.stream = id;
		env.body.end.error_code = code;
		dst = env.body.end.error_message;
	} else if (tag == pbpipe_Envelope_cancel_tag) {
		env.body.cancel.stream = id;
		env.body.cancel.error_code = code;
		dst = env.body.cancel.error_message;
	} else {
		env.body.credit.stream = id;
		env.body.credit.bytes = code;
	}
	if (dst != NULL && msg != NULL && code != 0)
		(void)pbp__utf8_copy(dst, PBP__ERRMSG_WIRE_MAX + 1, msg, strlen(msg));
	return pbp__ch_queue_control(ch, &env, ch->txe);
}

int
pbp__streams_queue_end(pbp_channel *ch, uint64_t id, uint32_t code, const char *msg)
{
	return queue_frame(ch, pbpipe_Envelope_end_tag, id, code, msg);
}

/* A frame the receive side sends on its own (credit, a refusal): queued
 * and written as far as the pipe takes it now, never waiting; the rest
 * goes out with the next write.  Dropped when sending has failed, and
 * after Goodbye. */
static int
send_now(pbp_channel *ch, pb_size_t tag, uint64_t id, uint32_t code, const char *msg)
{
	pbp_error e;
	int rc;

	if (ch->tx_err != 0 || ch->wr_closed || ch->wr_closing)
		return 0;
	rc = queue_frame(ch, tag, id, code, msg);
	if (rc == 0 && (rc = pbp__ch_write_some(ch, &e)) == 1)
		rc = 0;
	return rc;
}

void
pbp__streams_consumed(pbp_channel *ch, pbp__instream *s, size_t n)
{
	s->ungranted += n;
	if (s->state != IN_OPEN || s->ungranted < ch->st_window / 2)
		return;
	s->allowed += s->ungranted;
	(void)send_now(ch, pbpipe_Envelope_credit_tag, s->id, (uint32_t)s->ungranted, NULL);
	s->ungranted = 0;
}

void
pbp__streams_done(pbp_channel *ch, pbp__instream *s)
{
	if (s->state == IN_DONE)
		return;
	free(s->buf);
	s->buf = NULL;
	s->cap = s->off = s->len = 0;
	s->state = IN_DONE;
	s->seq = ++ch->st->seq;
	ch->st->nlive_in--;
}

int
pbp__streams_cancel(pbp_channel *ch, pbp__instream *s, uint32_t code, const char *msg)
{
	uint64_t id = s->id;
	int open = s->state == IN_OPEN;

	in_release(ch, s);
	return open ? send_now(ch, pbpipe_Envelope_cancel_tag, id, code, msg) : 0;
}

/* ---- frames in ---------------------------------------------------------------- */

static int
proto(pbp_channel *ch, const char *what, uint64_t id)
{
	return pbp__seterr(&ch->error, PBP_EPROTO, 0, "%s %" PRIu64, what, id);
}

/* A Message opening a stream. */
static int
got_open(pbp_channel *ch, const pbp__frame *f)
{
	pbp__instream *s;

	if (ch->st_redo != 0 && ch->st_redo == f->stream && pbp__streams_in(ch, f->stream)) {
		ch->st_redo = 0; /* read again after the inbox refused it */
		return 0;
	}
	if (ch->st_window == 0)
		return proto(ch, "the peer opened a stream, but this channel accepts none: stream",
		             f->stream);
	if (f->stream <= ch->st_peer_last)
		return pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                   "the peer opened stream %" PRIu64 ", not above its previous %" PRIu64,
		                   f->stream, ch->st_peer_last);
	ch->st_peer_last = f->stream;
	if (ch->st->nlive_in >= PBP_MAX_STREAMS) {
		/* Refused.  A peer that opens stream after stream and reads
		 * nothing must not grow our output without bound: past
		 * QUEUE_MAX queued, the refusal is not sent (its frames are
		 * dropped all the same, the id being over). */
		int rc = pbp__ch_queued(ch) > QUEUE_MAX
			? 0 : send_now(ch, pbpipe_Envelope_cancel_tag, f->stream,
			               PBP_REMOTE_TOO_MANY_STREAMS, "too many streams");

		return rc != 0 ? rc : PBP__SKIP;
	}
	s = in_slot(ch);
	s->id = f->stream;
	s->state = IN_OPEN;
	s->allowed = ch->st_window;
	ch->st->nlive_in++;
	return 0;
}

/* Appends a chunk to the stream's buffer, which never holds more than the
 * window (see the top of this file). */
static int
buffer_chunk(pbp_channel *ch, pbp__instream *s, const uint8_t *p, size_t n)
{
	if (s->off + s->len + n > s->cap && s->off > 0) {
		memmove(s->buf, s->buf + s->off, s->len);
		s->off = 0;
	}
	if (s->len + n > s->cap) {
		size_t ncap = s->cap * 2 > s->len + n ? s->cap * 2 : s->len + n;
		uint8_t *nb;

		if (ncap > ch->st_window && s->len + n <= ch->st_window)
			ncap = ch->st_window;
		nb = realloc(s->buf, ncap);
		if (nb == NULL)
			return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
			                   "out of memory buffering stream %" PRIu64, s->id);
		s->buf = nb;
		s->cap = ncap;
	}
	memcpy(s->buf + s->off + s->len, p, n);
	s->len += n;
	return 0;
}

int
pbp__streams_keep_view(pbp_channel *ch, pbp__instream *s)
{
	int rc = s->view_len > 0 ? buffer_chunk(ch, s, s->view, s->view_len) : 0;

	s->view = NULL;
	s->view_len = 0;
	return rc;
}

/* StreamData and StreamEnd, from the writer. */
static int
got_data(pbp_channel *ch, const pbp__frame *f)
{
	int data = f->kind == PBP__FRAME_STREAM_DATA, rc;
	pbp__instream *s;

	if (f->stream == 0)
		return proto(ch, data ? "StreamData for stream" : "StreamEnd for stream", 0);
	if (f->stream > ch->st_peer_last)
		return pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                   "%s for stream %" PRIu64 ", which the peer never opened",
		                   data ? "StreamData" : "StreamEnd", f->stream);
	s = pbp__streams_in(ch, f->stream);
	if (s == NULL || s->state != IN_OPEN)
		return PBP__SKIP; /* over: ended, cancelled or refused */
	if (!data) {
		s->state = IN_ENDED;
		s->end_code = f->error_code;
		(void)pbp__utf8_copy(s->end_msg, sizeof s->end_msg, f->error_msg, f->error_len);
		return ch->st_wait == s->id ? PBP__PROGRESS : PBP__SKIP;
	}
	if (f->chunk_len > s->allowed - s->received)
		return pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                   "stream %" PRIu64 ": a chunk of %zu bytes exceeds the window "
		                   "(%" PRIu64 " of %" PRIu64 " bytes allowed so far were sent)",
		                   s->id, f->chunk_len, s->received, s->allowed);
	s->received += f->chunk_len;
	if (f->chunk_len == 0)
		return PBP__SKIP;
	if (ch->st_wait == s->id && s->len == 0 && s->view_len == 0) {
		/* The stream being read, and nothing before it: hand out the
		 * chunk where it lies in the receive buffer. */
		s->view = f->chunk;
		s->view_len = f->chunk_len;
		return PBP__PROGRESS;
	}
	if ((rc = buffer_chunk(ch, s, f->chunk, f->chunk_len)) != 0)
		return rc;
	return ch->st_wait == s->id ? PBP__PROGRESS : PBP__SKIP;
}

/* StreamCredit and StreamCancel, from the reader of a stream of ours. */
static int
got_control(pbp_channel *ch, const pbp__frame *f)
{
	int credit = f->kind == PBP__FRAME_STREAM_CREDIT;
	pbp__outstream *o;

	if (f->stream == 0 || f->stream >= ch->st_next)
		return pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                   "%s for stream %" PRIu64 ", which this side never opened",
		                   credit ? "StreamCredit" : "StreamCancel", f->stream);
	o = pbp__streams_out(ch, f->stream);
	if (o == NULL || o->cancelled)
		return PBP__SKIP; /* over: ended, aborted or cancelled */
	if (credit) {
		if (o->allowed - o->sent + f->credit > UINT32_MAX)
			return pbp__seterr(&ch->error, PBP_EPROTO, 0,
			                   "StreamCredit of %" PRIu32 " bytes for stream %" PRIu64
			                   " raises its credit past 2^32 - 1",
			                   f->credit, f->stream);
		o->allowed += f->credit;
		return ch->st_wait_out == o->id ? PBP__PROGRESS : PBP__SKIP;
	}
	o->cancelled = 1;
	o->code = f->error_code;
	(void)pbp__utf8_copy(o->msg, sizeof o->msg, f->error_msg, f->error_len);
	o->seq = ++ch->st->seq;
	ch->st->nlive_out--;
	return ch->st_wait_out == o->id ? PBP__PROGRESS : PBP__SKIP;
}

int
pbp__streams_frame(pbp_channel *ch, const pbp__frame *f)
{
	int rc = ensure(ch);

	if (rc != 0)
		return rc;
	switch (f->kind) {
	case PBP__FRAME_MESSAGE: return got_open(ch, f);
	case PBP__FRAME_STREAM_DATA:
	case PBP__FRAME_STREAM_END: return got_data(ch, f);
	default: return got_control(ch, f);
	}
}

void
pbp__streams_free(pbp_channel *ch)
{
	size_t i;

	if (ch->st == NULL)
		return;
	for (i = 0; i < STREAM_SLOTS; i++)
		free(ch->st->in[i].buf);
	free(ch->st);
	ch->st = NULL;
}
