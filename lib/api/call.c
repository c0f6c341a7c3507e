/*
 * call.c: calls, the barrier and the serving loop, on top of the channel
 * (channel.c), its control protocol (session.c) and its inbox (inbox.c).
 *
 * While a call or a barrier waits, other frames keep arriving: replies to
 * other outstanding calls are filed with their call, and everything else
 * is held, in order, for pbp_channel_recv() (inbox.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_common.h>
#include <pb_decode.h>

#include "channel_impl.h"

/* Leaves a public call (all of them use the receive side's flag). */
#define CALL_LEAVE(ch, rc) (pbp__ch_leave((ch), 0), (rc))

/* Sends a request (encoded from req with t, or the len bytes at raw). */
static int
call_send(pbp_channel *ch, uint32_t req_type, const pbp_msgtype *t, const void *req,
          size_t len, uint64_t *id)
{
	pbp__call *c;
	int rc;

	c = pbp__inbox_slot(ch);
	if (c == NULL)
		return ch->error.code;
	if (ch->next_id == 0)
		ch->next_id = 1; /* 0 means "no id" on the wire */
	c->id = ch->next_id++;
	rc = pbp__ch_send(ch, req_type, c->id, NULL, t ? t->fields : NULL, req, t ? 0 : len);
	if (rc != 0)
		return rc; /* the slot stays free */
	c->state = CALL_WAITING;
	c->deadline = -1;
	ch->nwaiting++;
	*id = c->id;
	return 0;
}

static int
call_start(pbp_channel *ch, uint32_t req_type, const void *req, uint64_t *id)
{
	const pbp_msgtype *t;

	if (req == NULL || id == NULL)
		return pbp__ch_fail(ch, PBP_EINVAL, "call_start: NULL argument");
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return pbp__ch_fail(ch, PBP_EINVAL, "calls are not available on a duplex channel");
	t = pbp__ch_find_type(ch, req_type);
	if (t == NULL)
		return pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                   "call: no descriptor registered for message type %" PRIu32, req_type);
	return call_send(ch, req_type, t, req, 0, id);
}

int
pbp__channel_call_start_raw(pbp_channel *ch, uint32_t type, const void *payload, size_t len,
                            uint64_t *id)
{
	int rc;

	PBP__ENTER(ch, 0);
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "calls are not available on a duplex channel");
	else
		rc = call_send(ch, type, NULL, payload, len, id);
	return CALL_LEAVE(ch, rc);
}

int
pbp_channel_call_start(pbp_channel *ch, uint32_t req_type, const void *req, uint64_t *id)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return CALL_LEAVE(ch, call_start(ch, req_type, req, id));
}

int
pbp_channel_call_start_ex(pbp_channel *ch, uint32_t req_type, const void *req,
                          int timeout_ms, uint64_t *id)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (timeout_ms == 0)
		return CALL_LEAVE(ch, pbp__ch_fail(ch, PBP_EINVAL, "call_start_ex: timeout_ms 0 (no "
		                                   "answer comes in no time; < 0: none)"));
	rc = call_start(ch, req_type, req, id);
	if (rc == 0 && timeout_ms > 0) {
		pbp__call *c = pbp__inbox_call(ch, *id);

		c->timeout_ms = timeout_ms;
		c->deadline = pbp__deadline(timeout_ms);
	}
	return CALL_LEAVE(ch, rc);
}

int
pbp_channel_next_timeout(const pbp_channel *ch)
{
	int64_t next = -1, now;
	size_t i;

	if (ch == NULL)
		return -1;
	for (i = 0; i < ch->ncalls; i++) {
		const pbp__call *c = &ch->calls[i];

		if (c->state == CALL_WAITING && c->deadline >= 0 && (next < 0 || c->deadline < next))
			next = c->deadline;
	}
	/* A handshake under way (pbp_channel_handshake_start()) has one too. */
	if (ch->hs_deadline >= 0 && (next < 0 || ch->hs_deadline < next))
		next = ch->hs_deadline;
	if (next < 0)
		return -1;
	now = pbp__now_ms();
	return next <= now ? 0 : next - now > 1000000000 ? 1000000000 : (int)(next - now);
}

/* Reads frames until `done` says the wait is over: replies are filed,
 * other messages held.  Returns 0, or an error (PBP_EAGAIN for a deadline
 * of 0).  A message the inbox has no room for is left unread (PBP_ELIMIT). */
static int
wait_for(pbp_channel *ch, int timeout_ms, int (*done)(pbp_channel *, uint64_t), uint64_t arg,
         int64_t cap)
{
	int64_t deadline = pbp__deadline(timeout_ms);
	pbp__frame f;
	int rc;

	/* A call's own deadline (cap) bounds the wait too. */
	if (cap >= 0 && (deadline < 0 || cap < deadline))
		deadline = cap;
	ch->have_msg = 0; /* reading may move the receive buffer */
	pbp__inbox_trim(ch); /* and the views into the last reply end */
	/* Coalesced output (the request itself, maybe) must go out first. */
	if (pbp_channel_pending(ch) > 0 && (rc = pbp__ch_flush(ch, deadline)) != 0) {
		if (rc == PBP_ETIMEDOUT && timeout_ms == 0)
			return pbp__seterr_str(&ch->error, PBP_EAGAIN, "the request is still queued");
		return rc;
	}
	while (!done(ch, arg)) {
		if ((rc = pbp__ch_rx_ready(ch)) != 0)
			return rc;
		rc = pbp__ch_next(ch, &f, deadline);
		if (rc == 0 && (rc = pbp__held_push(ch, &f, 0)) == PBP_ELIMIT) {
			ch->st_redo = f.stream; /* a stream's header is read again */
			pbp__reader_unget(&ch->rd); /* refused, not consumed */
		}
		if (rc == PBP__PROGRESS || rc == 0)
			continue;
		if (rc == PBP_ETIMEDOUT && timeout_ms == 0)
			return pbp__seterr_str(&ch->error, PBP_EAGAIN, "no answer yet");
		if (rc == PBP_ETIMEDOUT) {
			rc = pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0, "no answer within %d ms",
			                 timeout_ms);
			pbp__ch_timed_out(ch, &ch->error);
		}
		return rc;
	}
	pbp__ch_succeeded(ch);
	return 0;
}

static int
call_done(pbp_channel *ch, uint64_t id)
{
	pbp__call *c = pbp__inbox_call(ch, id);

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
	pbp__inbox_end(ch, c);
	return rc;
}

static int
call_finish(pbp_channel *ch, uint64_t id, uint32_t resp_type, void *resp, int timeout_ms)
{
	pbp__call *c;
	int rc;

	if (resp == NULL)
		return pbp__ch_fail(ch, PBP_EINVAL, "call_finish: NULL argument");
	c = pbp__inbox_call(ch, id);
	if (c == NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0, "no outstanding call with id %" PRIu64, id);
	rc = wait_for(ch, timeout_ms, call_done, id, c->deadline);
	c = pbp__inbox_call(ch, id);
	if ((rc == PBP_ETIMEDOUT || rc == PBP_EAGAIN) && c != NULL && c->deadline >= 0 &&
	    c->state == CALL_WAITING && pbp__now_ms() >= c->deadline) {
		int t = c->timeout_ms;

		/* Its own deadline passed: the call is over, a late reply dropped. */
		pbp__inbox_end(ch, c);
		rc = pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0, "call %" PRIu64 " had no answer "
		                 "within its deadline of %d ms: it is over", id, t);
		pbp__ch_timed_out(ch, &ch->error);
		return rc;
	}
	if (rc != 0)
		return rc;
	return call_result(ch, pbp__inbox_call(ch, id), resp_type, resp);
}

int
pbp_channel_call_finish(pbp_channel *ch, uint64_t id, uint32_t resp_type, void *resp,
                        int timeout_ms)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return CALL_LEAVE(ch, call_finish(ch, id, resp_type, resp, timeout_ms));
}

static int
call_cancel(pbp_channel *ch, uint64_t id)
{
	pbp__call *c = pbp__inbox_call(ch, id);

	if (c == NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0, "no outstanding call with id %" PRIu64, id);
	/* The slot is free at once; a reply that still comes is recognised
	 * as late by its id (ids only grow) and dropped. */
	pbp__inbox_end(ch, c);
	return 0;
}

int
pbp_channel_call_cancel(pbp_channel *ch, uint64_t id)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return CALL_LEAVE(ch, call_cancel(ch, id));
}

int
pbp_channel_call(pbp_channel *ch, uint32_t req_type, const void *req, uint32_t resp_type,
                 void *resp, int timeout_ms)
{
	uint64_t id = 0;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	rc = call_start(ch, req_type, req, &id);
	if (rc != 0)
		return CALL_LEAVE(ch, rc);
	rc = call_finish(ch, id, resp_type, resp, timeout_ms);
	if (rc != 0 && pbp__inbox_call(ch, id) != NULL) {
		pbp_error keep_err = ch->error;

		(void)call_cancel(ch, id);
		ch->error = keep_err;
	}
	return CALL_LEAVE(ch, rc);
}

int
pbp_channel_reply(pbp_channel *ch, uint64_t request_id, uint32_t type, const void *msg)
{
	const pbp_msgtype *t;
	pbp__reply r = { request_id, 0, NULL, 0 };
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	t = pbp__ch_find_type(ch, type);
	if (msg == NULL || request_id == 0)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "reply: NULL message or request id 0");
	else if (t == NULL)
		rc = pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                 "reply: no descriptor registered for message type %" PRIu32, type);
	else
		rc = pbp__ch_send(ch, type, 0, &r, t->fields, msg, 0);
	return CALL_LEAVE(ch, rc);
}

static int
reply_error(pbp_channel *ch, uint64_t request_id, uint32_t request_type, uint32_t code,
            const char *message)
{
	pbp__reply r = { request_id, code, message ? message : "", 0 };

	if (request_id == 0 || code == 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "reply_error: request id or code 0");
	/* A 1.0 peer would skip the error fields and take the reply for an
	 * empty result. */
	if (ch->peer.minor < 1)
		return pbp__ch_fail(ch, PBP_EINVAL, "reply_error: the peer speaks protocol 1.0, "
		                            "which has no error replies");
	return pbp__ch_send(ch, request_type, 0, &r, NULL, "", 0);
}

int
pbp_channel_reply_error(pbp_channel *ch, uint64_t request_id, uint32_t request_type,
                        uint32_t code, const char *message)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return CALL_LEAVE(ch, reply_error(ch, request_id, request_type, code, message));
}

/* ---- the barrier ------------------------------------------------------------- */

static int
sync_done(pbp_channel *ch, uint64_t unused)
{
	(void)unused;
	return ch->sync_acked;
}

/* Sends a new barrier; sync_id names it until it is answered or given up. */
static int
barrier_start(pbp_channel *ch, int timeout_ms)
{
	int rc;

	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return pbp__ch_fail(ch, PBP_EINVAL, "the barrier is not available on a duplex channel");
	if ((rc = pbp__ch_rx_ready(ch)) != 0)
		return rc;
	if (ch->peer.minor < 1)
		return pbp__ch_fail(ch, PBP_EINVAL, "the peer speaks protocol 1.0, which has no barrier");
	if (ch->next_id == 0)
		ch->next_id = 1;
	ch->sync_id = ch->next_id++;
	ch->sync_acked = 0;
	ch->have_msg = 0; /* a blocked send reads into the receive buffer */
	rc = pbp__ch_send_sync(ch, ch->sync_id, pbp__deadline(timeout_ms));
	if (rc == PBP_ETIMEDOUT && timeout_ms != 0)
		rc = pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                 "the barrier could not be sent within %d ms", timeout_ms);
	return rc;
}

static int
barrier(pbp_channel *ch, int timeout_ms)
{
	int rc = barrier_start(ch, timeout_ms);

	if (rc == PBP_ETIMEDOUT && timeout_ms == 0)
		rc = pbp__seterr(&ch->error, PBP_EAGAIN, 0, "the barrier could not be sent at once");
	if (rc == 0)
		rc = wait_for(ch, timeout_ms, sync_done, 0, -1);
	ch->sync_id = 0;
	return rc;
}

int
pbp_channel_sync(pbp_channel *ch, int timeout_ms)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return CALL_LEAVE(ch, barrier(ch, timeout_ms));
}

int
pbp_channel_sync_start(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	/* Sent without waiting: what the pipe does not take stays queued and
	 * goes out with the next flush, send or receive. */
	rc = barrier_start(ch, 0);
	if (rc == PBP_ETIMEDOUT)
		rc = 0;
	if (rc != 0)
		ch->sync_id = 0;
	return CALL_LEAVE(ch, rc);
}

int
pbp_channel_sync_finish(pbp_channel *ch, int timeout_ms)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (ch->sync_id == 0)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "sync_finish: no barrier is pending");
	else if ((rc = wait_for(ch, timeout_ms, sync_done, 0, -1)) == 0)
		ch->sync_id = 0;
	return CALL_LEAVE(ch, rc);
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

/* Requests are decoded before their handler runs.  Each bytes or string
 * field that nanopb leaves to a callback (no max_size) gets a view decoder
 * (pbp_bytes.h) whose pbp_bytes lives here, for the handler to read with
 * pbp_bytes_of(); a repeated one gets a list view (pbp_bytes_list_of()),
 * the lists sharing SERVE_MAX_ITEMS views equally.  Other callback fields
 * (submessages, more than SERVE_MAX_VIEWS or SERVE_MAX_LISTS) would be
 * skipped without a word: each gets a decoder that refuses it, naming it,
 * so the peer gets an error reply instead of a request that silently lost
 * data. */
#define SERVE_MAX_VIEWS 32
#define SERVE_MAX_LISTS 8
#define SERVE_MAX_ITEMS 256

typedef struct req_fields {
	const char *msg_name;
	uint32_t tag;        /* a field refused, 0: none */
	size_t nviews, nlists;
	pbp_bytes views[SERVE_MAX_VIEWS];
	pbp_bytes_list lists[SERVE_MAX_LISTS];
	pbp_bytes items[SERVE_MAX_ITEMS];
} req_fields;

static bool
refuse_field(pb_istream_t *stream, const pb_field_t *field, void **arg)
{
	req_fields *r = *arg;

	(void)stream;
	r->tag = field->tag;
	return false;
}

static int
bytes_like(pb_type_t type)
{
	return PB_LTYPE(type) == PB_LTYPE_BYTES || PB_LTYPE(type) == PB_LTYPE_STRING;
}

static void
prepare_callbacks(const pb_msgdesc_t *fields, void *msg, req_fields *r, int depth)
{
	pb_field_iter_t it;

	if (depth > 8 || !pb_field_iter_begin(&it, fields, msg))
		return;
	do {
		if (PB_ATYPE(it.type) == PB_ATYPE_CALLBACK && it.pData != NULL &&
		    fields->field_callback == &pb_default_field_callback) {
			pb_callback_t *cb = it.pData;

			if (bytes_like(it.type) && PB_HTYPE(it.type) == PB_HTYPE_REPEATED &&
			    r->nlists < SERVE_MAX_LISTS) {
				/* Its share of items is set once all are counted. */
				pbp_bytes_list_view(cb, &r->lists[r->nlists++], r->items, 0);
			} else if (bytes_like(it.type) && PB_HTYPE(it.type) != PB_HTYPE_REPEATED &&
			           r->nviews < SERVE_MAX_VIEWS) {
				pbp_bytes_view(cb, &r->views[r->nviews++]);
			} else {
				cb->funcs.decode = refuse_field;
				cb->arg = r;
			}
		} else if (PB_ATYPE(it.type) == PB_ATYPE_STATIC &&
		           PB_LTYPE_IS_SUBMSG(it.type) && PB_HTYPE(it.type) != PB_HTYPE_ONEOF &&
		           PB_HTYPE(it.type) != PB_HTYPE_REPEATED && it.submsg_desc != NULL) {
			prepare_callbacks(it.submsg_desc, it.pData, r, depth + 1);
		}
	} while (pb_field_iter_next(&it));
}

/* Handles one request; returns a send error, else 0. */
static int
serve_one(pbp_channel *ch, const pbp_handler *h, const pbp_msginfo *mi, void *req, void *resp,
          size_t size, req_fields *ref)
{
	const pbp_msgtype *t;
	pbp_reply_error e;
	char why[PBP_ERRMSG_SIZE];
	size_t i;
	int r;

	if (h == NULL) {
		snprintf(why, sizeof why, "no handler for message type %" PRIu32, mi->type);
		return mi->id && can_fail(ch)
			? pbp_channel_reply_error(ch, mi->id, mi->type, PBP_REMOTE_NO_HANDLER, why) : 0;
	}
	t = pbp__ch_find_type(ch, h->request_type);
	memset(req, 0, size);
	ref->msg_name = t->name ? t->name : "the request";
	ref->tag = 0;
	ref->nviews = 0;
	ref->nlists = 0;
	prepare_callbacks(t->fields, req, ref, 0);
	for (i = 0; i < ref->nlists; i++) {
		size_t share = SERVE_MAX_ITEMS / ref->nlists;

		ref->lists[i].items = ref->items + i * share;
		ref->lists[i].cap = share;
	}
	if (pbp_channel_decode(ch, t->fields, req) != 0) {
		if (ref->tag != 0)
			snprintf(why, sizeof why,
			         "field %" PRIu32 " of %s has no size bound (a nanopb callback "
			         "submessage, or past %d bytes or %d repeated fields), which "
			         "pbp_channel_serve() cannot receive: bound it in the .options file, or "
			         "use pbp_channel_recv()",
			         ref->tag, ref->msg_name, SERVE_MAX_VIEWS, SERVE_MAX_LISTS);
		else
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
	req_fields *ref;
	int rc;

	if (ch == NULL || (handlers == NULL && nhandlers > 0))
		return ch ? pbp__ch_fail(ch, PBP_EINVAL, "serve: NULL handlers") : PBP_EINVAL;
	size = largest(ch, handlers, nhandlers);
	if (size == 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "serve: a handler's types are not registered, or it has no fn");
	req = malloc(size);
	resp = malloc(size);
	ref = malloc(sizeof *ref);
	if (req == NULL || resp == NULL || ref == NULL) {
		rc = pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory for serve buffers");
		goto out;
	}
	for (;;) {
		rc = pbp_channel_recv(ch, &mi);
		/* A stray reply (to an id that is no call of ours) is the peer's
		 * mistake, not the end of the conversation: skip it. */
		if (rc == PBP_EPROTO && ch->rx_err == 0)
			continue;
		if (rc != 0)
			break;
		if (mi.stream != 0) {
			/* serve() reads no streams: the writer is told at once. */
			pbp__instream *s = pbp__streams_in(ch, mi.stream);

			rc = s ? pbp__streams_cancel(ch, s, PBP_REMOTE_STREAM_NOT_ACCEPTED,
			                             "stream not accepted") : 0;
			/* A peer that opens streams and reads nothing is
			 * waited for, as replies are. */
			if (rc == 0 && pbp_channel_pending(ch) > QUEUE_MAX)
				rc = pbp_channel_flush(ch);
			if (rc != 0)
				break;
			continue;
		}
		rc = serve_one(ch, find_handler(handlers, nhandlers, mi.type), &mi, req, resp, size, ref);
		if (rc != 0)
			break;
	}
	if (rc == PBP_EOF)
		rc = 0;
out:
	free(req);
	free(resp);
	free(ref);
	return rc;
}
