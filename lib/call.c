/*
 * call.c: calls, the barrier, held messages and the serving loop, on top
 * of the channel's framing (channel.c).
 *
 * While a call or a barrier waits, other frames keep arriving: replies to
 * other outstanding calls are filed with their call, and everything else
 * is held, in order, for pbp_channel_recv().  Both stores are bounded
 * (PBP_MAX_CALLS, PBP_MAX_HELD) and keep their buffers for reuse.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>

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

/* ---- held messages --------------------------------------------------------- */

static int
held_push(pbp_channel *ch, const pbp__frame *f)
{
	pbp__held *h;

	if (ch->qlen == ch->qcap) {
		size_t ncap = ch->qcap ? ch->qcap * 2 : 16, i;
		pbp__held *nq;

		if (ch->qcap >= PBP_MAX_HELD)
			return pbp__seterr(&ch->error, PBP_EMSGSIZE, 0,
			                   "%d messages arrived while waiting for a reply or a barrier",
			                   PBP_MAX_HELD);
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
	}
	h = &ch->queue[(ch->qhead + ch->qlen) % ch->qcap];
	if (keep(&h->buf, &h->cap, &h->len, f->payload, f->payload_len) != 0)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory holding a message");
	h->type = f->type;
	h->id = f->id;
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
	ch->cur = ch->queue[ch->qhead];
	ch->queue[ch->qhead] = tmp;
	ch->qhead = (ch->qhead + 1) % ch->qcap;
	ch->qlen--;
	return 1;
}

/* ---- outstanding calls ------------------------------------------------------ */

static pbp__call *
call_find(pbp_channel *ch, uint64_t id)
{
	size_t i;

	for (i = 0; i < ch->ncalls; i++)
		if (ch->calls[i].state != CALL_FREE && ch->calls[i].id == id)
			return &ch->calls[i];
	return NULL;
}

static pbp__call *
call_slot(pbp_channel *ch)
{
	pbp__call *nc;
	size_t i;

	for (i = 0; i < ch->ncalls; i++)
		if (ch->calls[i].state == CALL_FREE)
			return &ch->calls[i];
	if (ch->ncalls >= PBP_MAX_CALLS) {
		pbp__seterr(&ch->error, PBP_EMSGSIZE, 0, "%d calls are already outstanding",
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

int
pbp__calls_file_reply(pbp_channel *ch, const pbp__frame *f)
{
	pbp__call *c = call_find(ch, f->reply_to);
	size_t n;

	if (c == NULL)
		return pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                   "a reply to id %" PRIu64 ", which is no call of ours", f->reply_to);
	if (c->state == CALL_CANCELLED) {
		c->state = CALL_FREE;
		return 0;
	}
	if (keep(&c->buf, &c->cap, &c->len, f->payload, f->payload_len) != 0)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory keeping a reply");
	c->type = f->type;
	c->error_code = f->error_code;
	n = f->error_len < sizeof c->errmsg - 1 ? f->error_len : sizeof c->errmsg - 1;
	if (n > 0)
		memcpy(c->errmsg, f->error_msg, n);
	c->errmsg[n] = '\0';
	c->state = CALL_DONE;
	return 0;
}

void
pbp__calls_free(pbp_channel *ch)
{
	size_t i;

	for (i = 0; i < ch->ncalls; i++)
		free(ch->calls[i].buf);
	free(ch->calls);
	for (i = 0; i < ch->qcap; i++)
		free(ch->queue[i].buf);
	free(ch->queue);
	free(ch->cur.buf);
	ch->calls = NULL;
	ch->queue = NULL;
	ch->cur.buf = NULL;
	ch->ncalls = ch->qcap = ch->qlen = 0;
}

static int
fail(pbp_channel *ch, int code, const char *msg)
{
	return pbp__seterr(&ch->error, code, 0, "%s", msg);
}

int
pbp_channel_call_start(pbp_channel *ch, uint32_t req_type, const void *req, uint64_t *id)
{
	const pbp_msgtype *t;
	pbp__call *c;
	int rc;

	if (ch == NULL || req == NULL || id == NULL)
		return ch ? fail(ch, PBP_EINVAL, "call_start: NULL argument") : PBP_EINVAL;
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return fail(ch, PBP_EINVAL, "calls are not available on a duplex channel");
	t = pbp__ch_find_type(ch, req_type);
	if (t == NULL)
		return pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                   "call: no descriptor registered for message type %" PRIu32, req_type);
	c = call_slot(ch);
	if (c == NULL)
		return ch->error.code;
	if (ch->next_id == 0)
		ch->next_id = 1; /* 0 means "no id" on the wire */
	c->id = ch->next_id++;
	rc = pbp__ch_send(ch, req_type, c->id, NULL, t->fields, req, 0);
	if (rc != 0)
		return rc; /* the slot stays free */
	c->state = CALL_WAITING;
	*id = c->id;
	return 0;
}

/* Reads frames until `done` says the wait is over: replies are filed,
 * other messages held.  Returns 0, or an error (PBP_EAGAIN for a deadline
 * of 0). */
static int
wait_for(pbp_channel *ch, int timeout_ms, int (*done)(pbp_channel *, uint64_t), uint64_t arg)
{
	int64_t deadline = pbp__deadline(timeout_ms);
	pbp__frame f;
	int rc;

	/* Coalesced output (the request itself, maybe) must go out first. */
	if (pbp_channel_pending(ch) > 0 && (rc = pbp_channel_flush(ch)) != 0)
		return rc;
	while (!done(ch, arg)) {
		if ((rc = pbp__ch_rx_ready(ch)) != 0)
			return rc;
		rc = pbp__ch_next(ch, &f, deadline);
		if (rc == PBP__SYNCED)
			continue;
		if (rc == PBP_ETIMEDOUT && timeout_ms == 0)
			return pbp__seterr(&ch->error, PBP_EAGAIN, 0, "no answer yet");
		if (rc == PBP_ETIMEDOUT)
			return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0, "no answer within %d ms",
			                   timeout_ms);
		if (rc != 0)
			return rc;
		rc = f.reply_to != 0 ? pbp__calls_file_reply(ch, &f) : held_push(ch, &f);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
call_done(pbp_channel *ch, uint64_t id)
{
	pbp__call *c = call_find(ch, id);

	return c == NULL || c->state != CALL_WAITING;
}

/* The outcome of a call whose reply has come; frees its slot. */
static int
call_result(pbp_channel *ch, pbp__call *c, uint32_t resp_type, void *resp)
{
	const pbp_msgtype *t = pbp__ch_find_type(ch, resp_type);
	pb_istream_t is;
	int rc = 0;

	if (c->error_code != 0) {
		rc = pbp__seterr(&ch->error, PBP_EREMOTE, 0, "%s", c->errmsg);
		ch->error.remote_code = c->error_code;
	} else if (c->type != resp_type) {
		rc = pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                 "the reply to call %" PRIu64 " has type %" PRIu32 ", expected %" PRIu32,
		                 c->id, c->type, resp_type);
	} else if (t == NULL) {
		rc = pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                 "no descriptor registered for reply type %" PRIu32, resp_type);
	} else {
		is = pb_istream_from_buffer(c->buf, c->len);
		if (!pb_decode(&is, t->fields, resp))
			rc = pbp__seterr(&ch->error, PBP_EDECODE, 0, "decoding the reply to call %" PRIu64 ": %s",
			                 c->id, PB_GET_ERROR(&is));
	}
	c->state = CALL_FREE;
	return rc;
}

int
pbp_channel_call_finish(pbp_channel *ch, uint64_t id, uint32_t resp_type, void *resp,
                        int timeout_ms)
{
	pbp__call *c;
	int rc;

	if (ch == NULL || resp == NULL)
		return ch ? fail(ch, PBP_EINVAL, "call_finish: NULL argument") : PBP_EINVAL;
	c = call_find(ch, id);
	if (c == NULL || c->state == CALL_CANCELLED)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0, "no outstanding call with id %" PRIu64, id);
	rc = wait_for(ch, timeout_ms, call_done, id);
	if (rc != 0)
		return rc;
	return call_result(ch, call_find(ch, id), resp_type, resp);
}

int
pbp_channel_call_cancel(pbp_channel *ch, uint64_t id)
{
	pbp__call *c;

	if (ch == NULL)
		return PBP_EINVAL;
	c = call_find(ch, id);
	if (c == NULL || c->state == CALL_CANCELLED)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0, "no outstanding call with id %" PRIu64, id);
	/* A reply already here is dropped now; one still to come, later. */
	c->state = c->state == CALL_DONE ? CALL_FREE : CALL_CANCELLED;
	return 0;
}

int
pbp_channel_call(pbp_channel *ch, uint32_t req_type, const void *req, uint32_t resp_type,
                 void *resp, int timeout_ms)
{
	uint64_t id;
	int rc = pbp_channel_call_start(ch, req_type, req, &id);

	if (rc != 0)
		return rc;
	rc = pbp_channel_call_finish(ch, id, resp_type, resp, timeout_ms);
	if (rc == PBP_ETIMEDOUT || rc == PBP_EAGAIN || (rc != 0 && call_find(ch, id) != NULL)) {
		pbp_error keep_err = ch->error;

		(void)pbp_channel_call_cancel(ch, id);
		ch->error = keep_err;
	}
	return rc;
}

int
pbp_channel_reply(pbp_channel *ch, uint64_t request_id, uint32_t type, const void *msg)
{
	const pbp_msgtype *t;
	pbp__reply r = { request_id, 0, NULL };

	if (ch == NULL || msg == NULL || request_id == 0)
		return ch ? fail(ch, PBP_EINVAL, "reply: NULL message or request id 0") : PBP_EINVAL;
	t = pbp__ch_find_type(ch, type);
	if (t == NULL)
		return pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                   "reply: no descriptor registered for message type %" PRIu32, type);
	return pbp__ch_send(ch, type, 0, &r, t->fields, msg, 0);
}

int
pbp_channel_reply_error(pbp_channel *ch, uint64_t request_id, uint32_t request_type,
                        uint32_t code, const char *message)
{
	pbp__reply r = { request_id, code, message ? message : "" };
	pbp_peer_info peer;

	if (ch == NULL || request_id == 0 || code == 0)
		return ch ? fail(ch, PBP_EINVAL, "reply_error: request id or code 0") : PBP_EINVAL;
	/* A 1.0 peer would skip the error fields and take the reply for an
	 * empty result. */
	(void)pbp_channel_peer(ch, &peer);
	if (peer.minor < 1)
		return fail(ch, PBP_EINVAL, "reply_error: the peer speaks protocol 1.0, "
		                            "which has no error replies");
	return pbp__ch_send(ch, request_type, 0, &r, NULL, "", 0);
}

/* ---- the barrier ------------------------------------------------------------- */

static int
sync_done(pbp_channel *ch, uint64_t unused)
{
	(void)unused;
	return ch->sync_acked;
}

int
pbp_channel_sync(pbp_channel *ch, int timeout_ms)
{
	pbp_peer_info peer;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return fail(ch, PBP_EINVAL, "the barrier is not available on a duplex channel");
	if ((rc = pbp__ch_rx_ready(ch)) != 0)
		return rc;
	(void)pbp_channel_peer(ch, &peer);
	if (peer.minor < 1)
		return fail(ch, PBP_EINVAL, "the peer speaks protocol 1.0, which has no barrier");
	if (ch->next_id == 0)
		ch->next_id = 1;
	ch->sync_id = ch->next_id++;
	ch->sync_acked = 0;
	rc = pbp__ch_send_sync(ch, PBP__FRAME_SYNC, ch->sync_id, pbp__deadline(timeout_ms));
	if (rc == 0)
		rc = wait_for(ch, timeout_ms, sync_done, 0);
	ch->sync_id = 0;
	return rc;
}

/* ---- the serving loop --------------------------------------------------------- */

static const pbp_handler *
find_handler(const pbp_handler *h, size_t n, uint32_t type)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (h[i].request_type == type)
			return &h[i];
	return NULL;
}

/* The largest struct among the handlers' types, or 0 if one is not
 * registered. */
static size_t
largest(pbp_channel *ch, const pbp_handler *h, size_t n)
{
	size_t i, most = 1;

	for (i = 0; i < n; i++) {
		const pbp_msgtype *a = pbp__ch_find_type(ch, h[i].request_type);
		const pbp_msgtype *b = pbp__ch_find_type(ch, h[i].response_type);

		if (a == NULL || b == NULL || h[i].fn == NULL)
			return 0;
		most = a->size > most ? a->size : most;
		most = b->size > most ? b->size : most;
	}
	return most;
}

/* Error replies exist from protocol 1.1 on. */
static int
can_fail(const pbp_channel *ch)
{
	pbp_peer_info peer;

	return pbp_channel_peer(ch, &peer) == 0 && peer.minor >= 1;
}

/* Handles one request; returns a send error, else 0. */
static int
serve_one(pbp_channel *ch, const pbp_handler *h, const pbp_msginfo *mi, void *req, void *resp,
          size_t size)
{
	pbp_reply_error e;
	char why[PBP_ERRMSG_SIZE];
	int r;

	if (h == NULL) {
		snprintf(why, sizeof why, "no handler for message type %" PRIu32, mi->type);
		return mi->id && can_fail(ch)
			? pbp_channel_reply_error(ch, mi->id, mi->type, PBP_REMOTE_NO_HANDLER, why) : 0;
	}
	memset(req, 0, size);
	if (pbp_channel_decode(ch, pbp__ch_find_type(ch, h->request_type)->fields, req) != 0) {
		snprintf(why, sizeof why, "%s", pbp_channel_errmsg(ch));
		return mi->id && can_fail(ch)
			? pbp_channel_reply_error(ch, mi->id, mi->type, PBP_REMOTE_BAD_REQUEST, why) : 0;
	}
	memset(resp, 0, size);
	memset(&e, 0, sizeof e);
	r = h->fn(req, resp, &e, h->payload);
	if (mi->id == 0)
		return 0;
	if (r == 0)
		return pbp_channel_reply(ch, mi->id, h->response_type, resp);
	if (!can_fail(ch))
		return 0; /* a 1.0 peer cannot receive an error reply */
	return pbp_channel_reply_error(ch, mi->id, mi->type,
	                               e.code ? e.code : r > 0 ? (uint32_t)r : PBP_REMOTE_FAILED,
	                               e.message);
}

int
pbp_channel_serve(pbp_channel *ch, const pbp_handler *handlers, size_t nhandlers)
{
	size_t size;
	pbp_msginfo mi;
	void *req, *resp;
	int rc;

	if (ch == NULL || (handlers == NULL && nhandlers > 0))
		return ch ? fail(ch, PBP_EINVAL, "serve: NULL handlers") : PBP_EINVAL;
	size = largest(ch, handlers, nhandlers);
	if (size == 0)
		return fail(ch, PBP_EINVAL, "serve: a handler's types are not registered, or it has no fn");
	req = malloc(size);
	resp = malloc(size);
	if (req == NULL || resp == NULL) {
		rc = pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory for serve buffers");
		goto out;
	}
	while ((rc = pbp_channel_recv(ch, &mi)) == 0) {
		rc = serve_one(ch, find_handler(handlers, nhandlers, mi.type), &mi, req, resp, size);
		if (rc != 0)
			break;
	}
	if (rc == PBP_EOF)
		rc = 0;
out:
	free(req);
	free(resp);
	return rc;
}
