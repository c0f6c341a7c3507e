/*
 * serve.c: handlers, the library's side of a call: replies, the serving
 * loop (pbp_channel_serve()), the handler table of a channel
 * (pbp_channel_set_handlers()), and the dispatch that runs a handler for
 * a request wherever the channel reads one (the serving loop, a call's
 * wait in call.c, pbp_channel_process()), nested up to PBP_MAX_NESTING.
 *
 * A handler's request is decoded in place, its views pointing into the
 * receive path's memory.  The handler may use the channel (a nested call
 * reads more), so that memory is pinned: the first call the handler makes
 * on the channel takes it over (pbp__ch_unpin), and the receive path goes
 * on in new memory; it is freed once the handler has returned.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_common.h>
#include <pb_decode.h>

#include "channel_impl.h"

/* Leaves a public call (all of them use the receive side's flag). */
#define CALL_LEAVE(ch, rc) (pbp__ch_leave((ch), 0), (rc))

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


/* What one running handler uses: its request and response structs and
 * the views of its request, in one block (ch->hs->s[depth]; freed by
 * pbp__calls_free()). */
typedef struct pbp__scratch {
	size_t size;         /* of req and resp */
	void *req, *resp;
	req_fields ref;
} pbp__scratch;

static pbp__scratch *
scratch(pbp_channel *ch, int depth)
{
	size_t size = ch->hs->hsize, head = sizeof(pbp__scratch);
	pbp__scratch *s = ch->hs->s[depth];

	if (s != NULL && s->size >= size)
		return s;
	/* Structs after the header, each aligned as malloc() aligns. */
	head = (head + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	free(s);
	ch->hs->s[depth] = s = malloc(head + 2 * size);
	if (s == NULL)
		return NULL;
	s->size = size;
	s->req = (uint8_t *)s + head;
	s->resp = (uint8_t *)s->req + size;
	return s;
}

/* Installs a table (answer_all: every request is answered, as by the
 * serving loop).  0 or an error in ch->error. */
static int
install(pbp_channel *ch, const pbp_handler *handlers, size_t n, int answer_all)
{
	size_t size = n > 0 ? largest(ch, handlers, n) : 1;

	if (size == 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "handlers: a handler's types are not registered, "
		                    "or it has no fn");
	if (n > 0 && ch->hs == NULL && (ch->hs = calloc(1, sizeof *ch->hs)) == NULL)
		return pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM, "out of memory for handlers");
	ch->handlers = n > 0 ? handlers : NULL;
	ch->nhandlers = n;
	ch->answer_all = answer_all;
	if (ch->hs != NULL)
		ch->hs->hsize = size;
	return 0;
}

int
pbp_channel_set_handlers(pbp_channel *ch, const pbp_handler *handlers, size_t n)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (handlers == NULL && n > 0)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "set_handlers: NULL handlers");
	else if (ch->flags & PBP_CHANNEL_DUPLEX)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "handlers are not available on a duplex channel");
	else if (ch->depth > 0)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "set_handlers: called from a handler");
	else
		rc = install(ch, handlers, n, 0);
	pbp__ch_leave(ch, 0);
	return rc;
}

/* Decodes a request into s (views set up); 0, or the reason it cannot be
 * handled in why. */
static int
decode_request(pbp_channel *ch, const pbp_handler *h, const uint8_t *payload, size_t len,
               pbp__scratch *s, char *why, size_t whysize)
{
	const pbp_msgtype *t = pbp__ch_find_type(ch, h->request_type);
	req_fields *ref = &s->ref;
	pb_istream_t is;
	size_t i;

	memset(s->req, 0, s->size);
	ref->msg_name = t->name ? t->name : "the request";
	ref->tag = 0;
	ref->nviews = 0;
	ref->nlists = 0;
	prepare_callbacks(t->fields, s->req, ref, 0);
	for (i = 0; i < ref->nlists; i++) {
		size_t share = SERVE_MAX_ITEMS / ref->nlists;

		ref->lists[i].items = ref->items + i * share;
		ref->lists[i].cap = share;
	}
	is = pb_istream_from_buffer(payload, len);
	if (pb_decode(&is, t->fields, s->req))
		return 0;
	if (ref->tag != 0)
		snprintf(why, whysize,
		         "field %" PRIu32 " of %s has no size bound (a nanopb callback "
		         "submessage, or past %d bytes or %d repeated fields), which "
		         "pbp_channel_serve() cannot receive: bound it in the .options file, or "
		         "use pbp_channel_recv()",
		         ref->tag, ref->msg_name, SERVE_MAX_VIEWS, SERVE_MAX_LISTS);
	else
		snprintf(why, whysize, "decoding message type %" PRIu32 " (%zu bytes): %s",
		         h->request_type, len, PB_GET_ERROR(&is));
	return -1;
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

/* An error reply, if the request has an id and the peer can take one. */
static int
answer_error(pbp_channel *ch, uint32_t type, uint64_t id, uint32_t code, const char *why)
{
	return id && can_fail(ch) ? pbp_channel_reply_error(ch, id, type, code, why) : 0;
}

/* The answer to a request goes out within `deadline` (< 0: the send
 * deadline alone), so that a peer that sends requests and reads nothing
 * cannot hold the wait that answers them past its own deadline. */
static int
answer(pbp_channel *ch, uint64_t id, uint32_t type, int r, const pbp_handler *h,
       const void *resp, const pbp_reply_error *e, const char *why, int64_t deadline)
{
	int saved = ch->timeout[PBP_TIMEOUT_SEND], rc;

	if (deadline >= 0) {
		int64_t left = deadline - pbp__now_ms();
		int cap = left < 0 ? 0 : left > 1000000000 ? 1000000000 : (int)left;

		if (saved < 0 || saved > cap)
			ch->timeout[PBP_TIMEOUT_SEND] = cap;
	}
	if (h == NULL)
		rc = answer_error(ch, type, id, (uint32_t)r, why);
	else if (r == 0)
		rc = pbp_channel_reply(ch, id, h->response_type, resp);
	else
		rc = can_fail(ch) ? pbp_channel_reply_error(ch, id, type,
		                                            e->code ? e->code
		                                            : r > 0 ? (uint32_t)r : PBP_REMOTE_FAILED,
		                                            e->message)
		                  : 0; /* a 1.0 peer cannot receive an error reply */
	ch->timeout[PBP_TIMEOUT_SEND] = saved;
	return rc;
}

int
pbp__dispatch(pbp_channel *ch, uint32_t type, uint64_t id, const uint8_t *payload, size_t len,
              int64_t deadline)
{
	const pbp_handler *h = find_handler(ch->handlers, ch->nhandlers, type);
	char why[PBP_ERRMSG_SIZE];
	pbp__pin pin = { payload, len, NULL }, *outer = ch->pin;
	pbp_reply_error e;
	pbp__scratch *s;
	int was, r, rc;

	if (h == NULL && !ch->answer_all)
		return 0; /* the application's: held */
	if (h == NULL || ch->depth >= PBP_MAX_NESTING) {
		if (h != NULL && id == 0)
			return 0; /* a one-way message too deep: held */
		/* Public calls from here on: this thread's flag is lowered. */
		was = atomic_exchange_explicit(&ch->busy_rx, 0, memory_order_acq_rel);
		if (h == NULL)
			snprintf(why, sizeof why, "no handler for message type %" PRIu32, type);
		else
			snprintf(why, sizeof why, "%d handlers were running already",
			         PBP_MAX_NESTING);
		rc = answer(ch, id, type,
		            (int)(h == NULL ? PBP_REMOTE_NO_HANDLER : PBP_REMOTE_TOO_DEEP), NULL,
		            NULL, NULL, why, deadline);
		atomic_store_explicit(&ch->busy_rx, was, memory_order_release);
		return rc < 0 ? rc : 1;
	}
	if ((s = scratch(ch, ch->depth)) == NULL)
		return 0; /* out of memory: held, for pbp_channel_recv() */
	was = atomic_exchange_explicit(&ch->busy_rx, 0, memory_order_acq_rel);
	if (decode_request(ch, h, payload, len, s, why, sizeof why) != 0) {
		rc = answer(ch, id, type, (int)PBP_REMOTE_BAD_REQUEST, NULL, NULL, NULL, why, deadline);
		atomic_store_explicit(&ch->busy_rx, was, memory_order_release);
		return rc < 0 ? rc : 1;
	}
	memset(s->resp, 0, s->size);
	memset(&e, 0, sizeof e);
	ch->pin = &pin;
	ch->depth++;
	r = h->fn(s->req, s->resp, &e, h->payload);
	ch->pin = outer;
	rc = id == 0 ? 0 : answer(ch, id, type, r, h, s->resp, &e, NULL, deadline);
	ch->depth--;
	ch->have_msg = 0; /* what the handler received is gone with it */
	free(pin.taken);
	atomic_store_explicit(&ch->busy_rx, was, memory_order_release);
	return rc < 0 ? rc : 1;
}

int
pbp_channel_serve(pbp_channel *ch, const pbp_handler *handlers, size_t nhandlers)
{
	const pbp_handler *old = NULL;
	size_t nold = 0, oldsize = 1;
	int old_all = 0, rc;
	pbp_msginfo mi;

	if (ch == NULL || (handlers == NULL && nhandlers > 0))
		return ch ? pbp__ch_fail(ch, PBP_EINVAL, "serve: NULL handlers") : PBP_EINVAL;
	if (ch->depth > 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "serve: called from a handler");
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return pbp__ch_fail(ch, PBP_EINVAL, "serve: not available on a duplex channel");
	if (largest(ch, handlers, nhandlers) == 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "serve: a handler's types are not registered, or it has no fn");
	old = ch->handlers;
	nold = ch->nhandlers;
	old_all = ch->answer_all;
	if (ch->hs != NULL)
		oldsize = ch->hs->hsize;
	if ((rc = install(ch, handlers, nhandlers, 1)) != 0)
		return rc;
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
			pbp__instream *st = pbp__streams_in(ch, mi.stream);

			rc = st ? pbp__streams_cancel(ch, st, PBP_REMOTE_STREAM_NOT_ACCEPTED,
			                              "stream not accepted") : 0;
			/* A peer that opens streams and reads nothing is
			 * waited for, as replies are. */
			if (rc == 0 && pbp_channel_pending(ch) > QUEUE_MAX)
				rc = pbp_channel_flush(ch);
			if (rc != 0)
				break;
			continue;
		}
		rc = pbp__dispatch(ch, mi.type, mi.id, mi.payload, mi.size, -1);
		if (rc == 0)
			rc = pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
			                 "out of memory for serve buffers");
		if (rc < 0)
			break;
	}
	if (rc == PBP_EOF)
		rc = 0;
	ch->handlers = old;
	ch->nhandlers = nold;
	ch->answer_all = old_all;
	if (ch->hs != NULL)
		ch->hs->hsize = oldsize;
	return rc;
}
