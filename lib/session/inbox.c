/*
 * inbox.c: what a channel keeps for later, below both the receive path
 * (session.c) and calls (call.c): the table of outstanding calls with the
 * replies that came for them, and the messages held for
 * pbp_channel_recv() while a call or the barrier waited (with markers for
 * the Syncs among them).  Bounded in count (PBP_MAX_CALLS, PBP_MAX_HELD)
 * and in bytes (PBP_INBOX_MAX_BYTES); a frame it has no room for is
 * refused with PBP_ELIMIT before anything changes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "channel_impl.h"

/* Copies n bytes into a reusable buffer. */
static int
keep(uint8_t **buf, size_t *cap, size_t *len, const void *src, size_t n)
{
	if (n > *cap) {
		uint8_t *nb = realloc(*buf, n);

		if (nb == NULL)
			return PBP_ENOMEM;
		*buf = nb;
		*cap = n;
	}
	if (n > 0)
		memcpy(*buf, src, n);
	*len = n;
	return 0;
}

/* Frees a buffer handed back to the inbox if it is large, so that one
 * large message does not pin its memory for ever. */
static void
trim(uint8_t **buf, size_t *cap)
{
	if (*cap > KEEP_MAX) {
		free(*buf);
		*buf = NULL;
		*cap = 0;
	}
}

/* The inbox (held messages and kept replies) takes n more payload bytes:
 * always when it is empty, else up to INBOX_MAX in all. */
static int
inbox_room(pbp_channel *ch, size_t n)
{
	if (ch->inbox_bytes == 0 || ch->inbox_bytes + n <= INBOX_MAX)
		return 0;
	return pbp__seterr(&ch->error, PBP_ELIMIT, 0,
	                   "the inbox is full (%zu bytes held or kept as replies, at most %u): "
	                   "receive held messages or finish calls first; nothing was lost",
	                   ch->inbox_bytes, INBOX_MAX);
}

/* ---- held messages --------------------------------------------------------- */

static int
held_grow(pbp_channel *ch)
{
	size_t ncap = ch->qcap ? ch->qcap * 2 : 16, i;
	pbp__held *nq;

	if (ch->qcap >= PBP_MAX_HELD)
		return pbp__seterr(&ch->error, PBP_ELIMIT, 0,
		                   "%d messages are held for pbp_channel_recv() already: receive them "
		                   "first; nothing was lost", PBP_MAX_HELD);
	nq = calloc(ncap, sizeof *nq);
	if (nq == NULL)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory holding a message");
	/* Unroll the ring into the new array, buffers included. */
	for (i = 0; i < ch->qcap; i++)
		nq[i] = ch->queue[(ch->qhead + i) % ch->qcap];
	free(ch->queue);
	ch->queue = nq;
	ch->qhead = 0;
	ch->qcap = ncap;
	return 0;
}

int
pbp__held_push(pbp_channel *ch, const pbp__frame *f, uint64_t sync_id)
{
	size_t n = f ? f->payload_len : 0;
	pbp__held *h;
	int rc;

	if ((rc = inbox_room(ch, n)) != 0)
		return rc;
	if (ch->qlen == ch->qcap && (rc = held_grow(ch)) != 0)
		return rc;
	h = &ch->queue[(ch->qhead + ch->qlen) % ch->qcap];
	if (f != NULL && keep(&h->buf, &h->cap, &h->len, f->payload, n) != 0)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory holding a message");
	h->sync = f == NULL;
	h->type = f ? f->type : 0;
	h->id = f ? f->id : sync_id;
	h->stream = f ? f->stream : 0;
	h->len = n;
	ch->inbox_bytes += n;
	ch->qlen++;
	return 0;
}

int
pbp__held_pop(pbp_channel *ch)
{
	pbp__held tmp;

	if (ch->qlen == 0)
		return 0;
	/* Swap, so that both keep a buffer to reuse. */
	tmp = ch->cur;
	trim(&tmp.buf, &tmp.cap);
	ch->cur = ch->queue[ch->qhead];
	ch->queue[ch->qhead] = tmp;
	ch->qhead = (ch->qhead + 1) % ch->qcap;
	ch->qlen--;
	ch->inbox_bytes -= ch->cur.len;
	return 1;
}

/* ---- outstanding calls ------------------------------------------------------ */

pbp__call *
pbp__inbox_call(pbp_channel *ch, uint64_t id)
{
	size_t i;

	for (i = 0; i < ch->ncalls; i++)
		if (ch->calls[i].state != CALL_FREE && ch->calls[i].id == id)
			return &ch->calls[i];
	return NULL;
}

pbp__call *
pbp__inbox_slot(pbp_channel *ch)
{
	pbp__call *nc;
	size_t i;

	for (i = 0; i < ch->ncalls; i++)
		if (ch->calls[i].state == CALL_FREE)
			return &ch->calls[i];
	if (ch->ncalls >= PBP_MAX_CALLS) {
		pbp__seterr(&ch->error, PBP_ELIMIT, 0, "%d calls are already outstanding",
		            PBP_MAX_CALLS);
		return NULL;
	}
	nc = realloc(ch->calls, (ch->ncalls + 1) * sizeof *nc);
	if (nc == NULL) {
		pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory for a call");
		return NULL;
	}
	ch->calls = nc;
	memset(&nc[ch->ncalls], 0, sizeof *nc);
	return &nc[ch->ncalls++];
}

/* Ends a call: its slot is free again, and a reply it kept leaves the
 * inbox. */
void
pbp__inbox_end(pbp_channel *ch, pbp__call *c)
{
	if (c->state == CALL_WAITING)
		ch->nwaiting--;
	if (c->state == CALL_DONE)
		ch->inbox_bytes -= c->len;
	/* A large reply's buffer is not freed yet: the views of pbp_bytes.h
	 * decoded from it stay valid until the next call waits. */
	if (c->cap > KEEP_MAX) {
		free(ch->last_reply);
		ch->last_reply = c->buf;
		c->buf = NULL;
		c->cap = 0;
	}
	c->len = 0;
	c->state = CALL_FREE;
}

int
pbp__calls_file_reply(pbp_channel *ch, const pbp__frame *f)
{
	pbp__call *c = pbp__inbox_call(ch, f->reply_to);
	size_t n;

	if (c == NULL && f->reply_to < ch->next_id)
		return 0; /* a late reply to a call that was cancelled or timed out */
	if (c == NULL)
		return pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                   "a reply to id %" PRIu64 ", which is no call of ours", f->reply_to);
	if (c->state != CALL_WAITING)
		return 0; /* a second reply: the first one stands */
	if (inbox_room(ch, f->payload_len) != 0)
		return PBP_ELIMIT;
	if (keep(&c->buf, &c->cap, &c->len, f->payload, f->payload_len) != 0)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory keeping a reply");
	c->type = f->type;
	c->error_code = f->error_code;
	n = f->error_len < sizeof c->errmsg - 1 ? f->error_len : sizeof c->errmsg - 1;
	if (n > 0)
		memcpy(c->errmsg, f->error_msg, n);
	c->errmsg[n] = '\0';
	c->state = CALL_DONE;
	ch->nwaiting--;
	ch->inbox_bytes += c->len;
	return PBP__PROGRESS;
}

void
pbp__inbox_release(pbp_channel *ch)
{
	free(ch->last_reply);
	ch->last_reply = NULL;
}

void
pbp__inbox_trim(pbp_channel *ch)
{
	trim(&ch->cur.buf, &ch->cur.cap);
	ch->cur.len = 0;
	pbp__inbox_release(ch);
}

int
pbp__ch_unpin(pbp_channel *ch)
{
	pbp__pin *p = ch->pin;
	const uint8_t *d = p->data;
	size_t i;

	if (p->len > 0 && ch->rd.buf != NULL && d >= ch->rd.buf && d < ch->rd.buf + ch->rd.cap) {
		/* Chunks of streams that still point into it move first. */
		for (i = 0; ch->st != NULL && i < STREAM_SLOTS; i++)
			if (ch->st->in[i].view != NULL && pbp__streams_keep_view(ch, &ch->st->in[i]) != 0)
				return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
				                   "out of memory keeping a handler's request");
		if ((p->taken = pbp__reader_detach(&ch->rd)) == NULL)
			return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
			                   "out of memory keeping a handler's request");
	} else if (p->len > 0 && ch->cur.buf != NULL && d >= ch->cur.buf &&
	           d < ch->cur.buf + ch->cur.cap) {
		p->taken = ch->cur.buf;
		ch->cur.buf = NULL;
		ch->cur.cap = ch->cur.len = 0;
	}
	ch->pin = NULL;
	ch->have_msg = 0; /* the message handed out last is the handler's now */
	return 0;
}

void
pbp__calls_cancel_async(pbp_channel *ch)
{
	size_t i;

	for (i = 0; i < ch->ncalls; i++) {
		pbp__call *c = &ch->calls[i];
		pbp_call_done done = c->done;
		uint64_t id = c->id;

		if (done == NULL || c->state == CALL_FREE)
			continue;
		pbp__inbox_end(ch, c);
		pbp__seterr(&ch->error, PBP_ECANCELED, 0, "call %" PRIu64 " ended unanswered: the "
		            "channel is being freed", id);
		done(ch, id, PBP_ECANCELED, NULL, c->user);
	}
}

void
pbp__calls_free(pbp_channel *ch)
{
	size_t i;

	if (ch->hs != NULL) {
		for (i = 0; i < PBP_MAX_NESTING; i++)
			free(ch->hs->s[i]);
		free(ch->hs);
		ch->hs = NULL;
	}

	for (i = 0; i < ch->ncalls; i++)
		free(ch->calls[i].buf);
	free(ch->calls);
	for (i = 0; i < ch->qcap; i++)
		free(ch->queue[i].buf);
	free(ch->queue);
	free(ch->cur.buf);
	pbp__inbox_release(ch);
	ch->calls = NULL;
	ch->queue = NULL;
	ch->cur.buf = NULL;
	ch->ncalls = ch->qcap = ch->qlen = ch->nwaiting = ch->inbox_bytes = 0;
}
