/*
 * call.c: calls, asynchronous calls and pbp_channel_process(), and the
 * barrier, on top of the channel (channel.c), its control protocol
 * (session.c), its inbox (inbox.c) and its handlers (serve.c).
 *
 * While a call or a barrier waits, other frames keep arriving: replies to
 * other outstanding calls are filed with their call, requests for a
 * registered handler are answered (serve.c), and everything else is held,
 * in order, for pbp_channel_recv() (inbox.c).
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
	c->done = NULL;
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

		if (c->state == CALL_DONE && c->done != NULL)
			return 0; /* pbp_channel_process() has a call to end */
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
		/* A request for a handler is answered now (a send error
		 * there is the next send's to report). */
		if (rc == 0 && ch->nhandlers > 0 && f.stream == 0 &&
		    pbp__dispatch(ch, f.type, f.id, f.payload, f.payload_len, deadline) != 0) {
			/* Requests count against the deadline, as control
			 * frames do: a peer that floods them cannot hold the
			 * wait past it. */
			if (done(ch, arg) || !pbp__ch_past(deadline))
				continue;
			rc = pbp__seterr_str(&ch->error, PBP_ETIMEDOUT,
			                     "deadline passed while answering the peer's requests");
		}
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

/* Call c's own deadline passed: the call is over (a late reply will be
 * dropped).  PBP_ETIMEDOUT, described. */
static int
own_deadline_passed(pbp_channel *ch, pbp__call *c)
{
	uint64_t id = c->id;
	int t = c->timeout_ms;

	pbp__inbox_end(ch, c);
	return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0, "call %" PRIu64 " had no answer "
	                   "within its deadline of %d ms: it is over", id, t);
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
	if (c->done != NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0, "call %" PRIu64 " is asynchronous: "
		                   "pbp_channel_process() ends it", id);
	rc = wait_for(ch, timeout_ms, call_done, id, c->deadline);
	c = pbp__inbox_call(ch, id);
	if (rc == 0 && c == NULL)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0, "call %" PRIu64 " was ended by a "
		                   "handler while it waited", id);
	if ((rc == PBP_ETIMEDOUT || rc == PBP_EAGAIN) && c != NULL && c->deadline >= 0 &&
	    c->state == CALL_WAITING && pbp__now_ms() >= c->deadline) {
		rc = own_deadline_passed(ch, c);
		pbp__ch_timed_out(ch, &ch->error);
		return rc;
	}
	if (rc != 0)
		return rc;
	return call_result(ch, c, resp_type, resp);
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

/* A handler may not give up the barrier the code it interrupted waits for. */
static int
barrier_waits(pbp_channel *ch)
{
	if (ch->depth > 0 && ch->sync_id != 0)
		return pbp__ch_fail(ch, PBP_EINVAL, "a handler may not start a barrier while one waits");
	return 0;
}

static int
barrier(pbp_channel *ch, int timeout_ms)
{
	int rc = barrier_waits(ch);

	if (rc != 0)
		return rc;
	rc = barrier_start(ch, timeout_ms);

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
	if ((rc = barrier_waits(ch)) != 0)
		return CALL_LEAVE(ch, rc);
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

/* ---- asynchronous calls and pbp_channel_process() ------------------------------ */

int
pbp_channel_call_async(pbp_channel *ch, uint32_t req_type, const void *req, uint32_t resp_type,
                       int timeout_ms, pbp_call_done done, void *user, uint64_t *id)
{
	uint64_t cid = 0;
	pbp__call *c;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (done == NULL || timeout_ms == 0)
		return CALL_LEAVE(ch, pbp__ch_fail(ch, PBP_EINVAL, "call_async: NULL done, or "
		                                   "timeout_ms 0 (< 0: none)"));
	if (pbp__ch_find_type(ch, resp_type) == NULL)
		return CALL_LEAVE(ch, pbp__seterr(&ch->error, PBP_EINVAL, 0, "call_async: no descriptor "
		                                  "registered for reply type %" PRIu32, resp_type));
	rc = call_start(ch, req_type, req, &cid);
	if (rc == 0) {
		c = pbp__inbox_call(ch, cid);
		c->done = done;
		c->user = user;
		c->resp_type = resp_type;
		c->timeout_ms = timeout_ms;
		c->deadline = pbp__deadline(timeout_ms);
		if (id != NULL)
			*id = cid;
	}
	return CALL_LEAVE(ch, rc);
}

/* Ends asynchronous call c (its reply came: rc 0; its deadline passed:
 * PBP_ETIMEDOUT; or the stream ended: its error) and runs its done, with this thread's flag lowered
 * so that done may use the channel. */
static void
end_async(pbp_channel *ch, pbp__call *c, int rc)
{
	pbp_call_done done = c->done;
	void *user = c->user, *resp = NULL;
	uint64_t id = c->id;
	int was;

	if (rc == 0) {
		const pbp_msgtype *t = pbp__ch_find_type(ch, c->resp_type);

		resp = calloc(1, t->size > 0 ? t->size : 1);
		rc = resp == NULL ? (pbp__inbox_end(ch, c),
		                     pbp__seterr(&ch->error, PBP_ENOMEM, ENOMEM,
		                                 "out of memory decoding the reply to call %" PRIu64, id))
		                  : call_result(ch, c, c->resp_type, resp);
	} else if (rc == PBP_ETIMEDOUT) {
		(void)own_deadline_passed(ch, c);
	} else {
		pbp__inbox_end(ch, c); /* the stream ended: rc is its error */
		ch->error = ch->rx_error;
	}
	was = atomic_exchange_explicit(&ch->busy_rx, 0, memory_order_acq_rel);
	done(ch, id, rc, rc == 0 ? resp : NULL, user);
	atomic_store_explicit(&ch->busy_rx, was, memory_order_release);
	free(resp);
}

/* Ends the asynchronous calls that are over. */
static void
end_async_calls(pbp_channel *ch)
{
	int64_t now = pbp__now_ms();
	size_t i;

	/* By index: a done may start calls, which may move the table. */
	for (i = 0; i < ch->ncalls; i++) {
		pbp__call *c = &ch->calls[i];

		if (c->done == NULL || c->state == CALL_FREE)
			continue;
		if (c->state == CALL_DONE)
			end_async(ch, c, 0);
		else if (c->state == CALL_WAITING && ch->rx_err != 0)
			end_async(ch, c, ch->rx_err);
		else if (c->state == CALL_WAITING && c->deadline >= 0 && now >= c->deadline)
			end_async(ch, c, PBP_ETIMEDOUT);
	}
}

/* Reads the frames there are, up to PROCESS_MAX_FRAMES: requests for
 * handlers are answered, replies filed, the rest held.  0, or PBP_ELIMIT
 * (the inbox is full). */
#define PROCESS_MAX_FRAMES 1024

static int
read_all(pbp_channel *ch)
{
	int64_t now = pbp__deadline(0);
	pbp__frame f;
	int rc, n;

	/* Bounded, so that a peer that floods frames cannot keep the loop
	 * here: what is left is buffered (pbp_channel_buffered()). */
	for (n = 0; ch->rx_err == 0 && n < PROCESS_MAX_FRAMES; n++) {
		rc = pbp__ch_next(ch, &f, now);
		if (rc == 0 && f.stream == 0 && ch->nhandlers > 0 &&
		    pbp__dispatch(ch, f.type, f.id, f.payload, f.payload_len, now) != 0)
			continue;
		if (rc == 0 && (rc = pbp__held_push(ch, &f, 0)) != 0) {
			ch->st_redo = f.stream; /* a stream's header is read again */
			pbp__reader_unget(&ch->rd); /* refused, not consumed */
			return rc;
		}
		if (rc == 0 || rc == PBP__PROGRESS || (rc == PBP_EPROTO && ch->rx_err == 0))
			continue; /* a stray reply is the peer's mistake: skipped */
		/* Control frames alone may outlast "now": go on while whole
		 * frames are buffered. */
		if (rc == PBP_ETIMEDOUT && pbp__reader_ready(&ch->rd) && ch->rd.err == 0)
			continue;
		return rc == PBP_ELIMIT ? rc : 0;
	}
	return 0;
}

static int
process(pbp_channel *ch)
{
	size_t i, held = 0;
	int rc;

	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return pbp__ch_fail(ch, PBP_EINVAL, "process: not available on a duplex channel");
	if (ch->depth > 0 || ch->in_process)
		return pbp__ch_fail(ch, PBP_EINVAL, "process: called from a handler or a done callback");
	if (ch->state != ST_READY)
		return pbp__ch_fail(ch, PBP_EINVAL, "process before a successful handshake");
	ch->have_msg = 0; /* reading may move the receive buffer */
	pbp__inbox_trim(ch);
	if (pbp__ch_rx_pushes(ch)) {
		pbp_error e;

		(void)pbp__ch_write_some(ch, &e);
	}
	ch->in_process = 1;
	rc = read_all(ch);
	end_async_calls(ch);
	ch->in_process = 0;
	/* Answers owed (handlers' replies, SyncAcks) go out now. */
	if (pbp__ch_rx_pushes(ch)) {
		pbp_error e;

		(void)pbp__ch_write_some(ch, &e);
	}
	for (i = 0; i < ch->qlen; i++)
		held += !ch->queue[(ch->qhead + i) % ch->qcap].sync;
	if (held > 0)
		return held > 0x7fffffff ? 0x7fffffff : (int)held;
	if (rc != 0)
		return rc;
	return ch->rx_err != 0 ? pbp__ch_rx_again(ch) : 0;
}

int
pbp_channel_process(pbp_channel *ch)
{
	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	return CALL_LEAVE(ch, process(ch));
}
