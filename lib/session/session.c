/*
 * session.c: the control protocol of a channel, on top of the byte engine
 * (stream.c): the handshake, Goodbye and the half-close, the barrier's
 * Sync and SyncAck, and the bottom of every receive, which files replies
 * with their calls, holds what a waiting call does not want, and tells a
 * clean end from one that leaves calls unanswered.  Also the report of how
 * a channel ended.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "channel_impl.h"

/* ---- sending control frames ---------------------------------------------- */

int
pbp__ch_send_sync(pbp_channel *ch, uint64_t id, int64_t deadline)
{
	pbpipe_Envelope env;
	int rc;

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_sync_tag;
	env.body.sync.id = id;
	pbp__ch_tx_lock(ch);
	rc = pbp__ch_tx_ready(ch);
	if (rc == 0)
		rc = pbp__ch_queue_control(ch, &env, ch->txe);
	if (rc == 0)
		rc = pbp__ch_flush_by(ch, deadline, ch->txe);
	pbp__ch_tx_unlock(ch);
	return rc;
}

/* Closes the write side now, discarding what is still queued. */
static int
close_now(pbp_channel *ch)
{
	int e = pbp__ch_close_write_now(ch);

	if (e != 0)
		return pbp__seterr(ch->txe, PBP_ESYS, e, "closing the write side: %s", strerror(e));
	return 0;
}

static int
close_write_locked(pbp_channel *ch)
{
	int rc = 0, rc2;

	if (ch->wr_closed)
		return 0;
	/* Queued output goes first (after Goodbye, the Goodbye last: the
	 * write side then closes with its last byte); on a deadline the write
	 * side stays open so the caller can try again. */
	if (pbp__ch_out_queued(ch) && ch->tx_err == 0 && ch->state == ST_READY) {
		rc = pbp__ch_flush_by(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
		if (rc == PBP_ETIMEDOUT || ch->wr_closed)
			return rc;
	}
	rc2 = close_now(ch);
	return rc2 != 0 ? rc2 : rc;
}

int
pbp_channel_close_write(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 1);
	pbp__ch_tx_lock(ch);
	rc = close_write_locked(ch);
	pbp__ch_tx_unlock(ch);
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
pbp__channel_goodbye_by(pbp_channel *ch, int reason, const char *detail, int64_t deadline,
                        int discard)
{
	pbpipe_Envelope env;
	int rc, rc2 = 0, said;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 1);
	pbp__ch_tx_lock(ch);
	said = ch->wr_closing; /* a Goodbye is queued already */
	rc = pbp__ch_tx_ready(ch);
	if (rc == 0) {
		memset(&env, 0, sizeof env);
		env.which_body = pbpipe_Envelope_goodbye_tag;
		env.body.goodbye.reason = (pbpipe_Goodbye_Reason)reason;
		if (detail != NULL)
			copy_utf8(env.body.goodbye.detail, sizeof env.body.goodbye.detail, detail);
		/* Behind what sends queued: that goes out first. */
		rc = pbp__ch_queue_control(ch, &env, ch->txe);
		if (rc == 0) {
			ch->wr_closing = 1;
			rc = pbp__ch_flush_by(ch, deadline, ch->txe);
		}
	} else if (said && discard && ch->tx_err == 0) {
		/* The Goodbye queued before goes out first, within the deadline. */
		rc = pbp__ch_flush_by(ch, deadline, ch->txe);
	}
	/* On a deadline nothing is lost: the rest, the Goodbye last, goes
	 * out with the next write (a flush, a receive, a call's wait, the
	 * channel's close), and the write side closes after it.  Otherwise
	 * (nothing can be written: the peer is gone, an OS error; or a
	 * caller that will not wait) it closes now. */
	if (!ch->wr_closed && !((rc == PBP_ETIMEDOUT || said) && !discard))
		rc2 = close_now(ch);
	pbp__ch_tx_unlock(ch);
	pbp__ch_leave(ch, 1);
	return rc != 0 ? rc : rc2;
}

int
pbp_channel_goodbye(pbp_channel *ch, int reason, const char *detail)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	rc = pbp__channel_goodbye_by(ch, reason, detail,
	                             pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), 0);
	if (rc == PBP_ETIMEDOUT && ch->timeout[PBP_TIMEOUT_SEND] == 0)
		rc = pbp__seterr(ch->txe, PBP_EAGAIN, 0,
		                 "%zu bytes still queued, the Goodbye last: pbp_channel_flush() "
		                 "writes them", pbp__ch_queued(ch));
	return rc;
}
/* ---- the handshake ------------------------------------------------------- */

/* A failed handshake fails the channel in both directions. */
static int
handshake_failed(pbp_channel *ch, int rc)
{
	ch->hs_deadline = -1;
	pbp__ch_rx_fail(ch, rc);
	ch->txe = &ch->error;
	pbp__ch_tx_fail(ch, rc);
	ch->txe = (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->error_tx : &ch->error;
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		ch->error_tx = ch->error;
	return rc;
}

/* Queues our Hello and writes what the pipe takes now. */
static int
handshake_start(pbp_channel *ch)
{
	pbpipe_Envelope env;
	int rc;

	if (ch->state == ST_READY)
		return pbp__ch_fail(ch, PBP_EINVAL, "handshake already done");
	if (ch->rx_err != 0)
		return pbp__ch_rx_again(ch);
	if (ch->state != ST_NEW)
		return pbp__ch_fail(ch, PBP_EINVAL, "handshake already started");
	ch->hs_timeout = ch->timeout[PBP_TIMEOUT_HANDSHAKE];
	ch->hs_deadline = ch->hs_timeout > 0 ? pbp__deadline(ch->hs_timeout) : -1;
	pbp__hello_make(&env, ch->max_frame, ch->fingerprint, ch->st_window);
	rc = pbp__ch_queue_control(ch, &env, &ch->error);
	if (rc == 0)
		rc = pbp__ch_write_some(ch, &ch->error);
	/* A peer that stopped reading may still have written (see
	 * handshake_finish): PBP_EPIPE stays sticky for sending only. */
	if (rc != 0 && rc != 1 && rc != PBP_EPIPE)
		return handshake_failed(ch, rc);
	ch->state = ST_HELLO;
	return 0;
}

/* The peer's Hello did not come (or ours did not go) by the deadline:
 * the end of the handshake once its own deadline has passed, else only
 * of this wait (PBP_EAGAIN when it was not to wait). */
static int
handshake_late(pbp_channel *ch, int timeout_ms, int64_t deadline, const char *what)
{
	int64_t hs = ch->hs_deadline;

	if (hs >= 0 && (deadline == hs || pbp__now_ms() >= hs))
		return handshake_failed(ch, pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                                        "%s within %d ms", what, ch->hs_timeout));
	if (timeout_ms == 0)
		return pbp__seterr(&ch->error, PBP_EAGAIN, 0,
		                   "%s yet (%zu bytes of the peer's Hello buffered)", what,
		                   pbp__reader_pending(&ch->rd));
	return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0, "%s within %d ms (the handshake goes on)",
	                   what, timeout_ms);
}

/* Checks the peer's first frame: 0 once it is a good Hello. */
static int
hello_check(pbp_channel *ch, const pbp__frame *f)
{
	int rc = 0;

	if (f->kind == PBP__FRAME_GOODBYE)
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                 "the peer said Goodbye (reason %d: %s) instead of Hello",
		                 (int)f->goodbye.reason, f->goodbye.detail);
	else if (f->kind != PBP__FRAME_HELLO)
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                 "the peer's first frame is an application message, not Hello");
	else
		rc = pbp__hello_check(&f->hello, ch->max_frame, ch->fingerprint, &ch->peer,
		                      &ch->error);
	/* The spawner named in the environment is not our parent: it died
	 * before the watch was armed, or a wrapper that forks stands between
	 * (sh -c 'helper; ...'), and then it is still there. */
	if (rc == 0 && ch->watch != NULL &&
	    pbp__parent_gone_early(getenv(PBP__PARENT_PID_ENV), ch->peer.pid,
	                           pbp__os_watch_ppid(ch->watch)) &&
	    pbp__os_pid_gone(ch->peer.pid))
		rc = pbp__seterr(&ch->error, PBP_EPIPE, 0,
		                 "the parent process is gone: pid %u spawned this helper but died "
		                 "before the helper could watch it (its parent is now pid %u)",
		                 (unsigned)ch->peer.pid, (unsigned)pbp__os_watch_ppid(ch->watch));
	return rc;
}

/* Writes the rest of our Hello, reads the peer's and checks it, waiting
 * up to timeout_ms (< 0: up to the handshake's deadline) and never past
 * that deadline. */
static int
handshake_finish(pbp_channel *ch, int timeout_ms)
{
	int64_t deadline;
	pbp__frame f;
	int rc, sent;

	if (ch->state == ST_READY)
		return pbp__ch_fail(ch, PBP_EINVAL, "handshake already done");
	if (ch->rx_err != 0)
		return pbp__ch_rx_again(ch);
	if (ch->state != ST_HELLO)
		return pbp__ch_fail(ch, PBP_EINVAL, "handshake_finish before handshake_start");
	if (timeout_ms < 0 && ch->hs_timeout == 0)
		timeout_ms = 0; /* a handshake deadline of 0: do not wait */
	deadline = pbp__deadline(timeout_ms);
	if (ch->hs_deadline >= 0 && (deadline < 0 || ch->hs_deadline < deadline))
		deadline = ch->hs_deadline;
	if ((rc = ch->tx_err) != 0)
		ch->error = ch->tx_error; /* PBP_EPIPE (handshake_start), and below */
	if (rc == 0 && pbp__ch_out_queued(ch))
		rc = pbp__ch_flush_by(ch, deadline, &ch->error);
	if (rc == PBP_ETIMEDOUT)
		return handshake_late(ch, timeout_ms, deadline, "the peer did not take our Hello");
	if (rc != 0 && rc != PBP_EPIPE)
		return handshake_failed(ch, rc);
	/* A peer that stopped reading may still have written: a peer that
	 * died before its Hello is then reported the same way whichever
	 * end of the pipes the kernel closed first. */
	sent = rc;
	rc = pbp__ch_read_frame(ch, &f, deadline);
	if (rc == PBP_ETIMEDOUT)
		return handshake_late(ch, timeout_ms, deadline, "no Hello from the peer");
	if (rc == 0 && sent != 0)
		rc = (ch->error = ch->tx_error, sent);
	else if (rc == PBP_EOF)
		rc = pbp__seterr(&ch->error, PBP_ETRUNC, 0,
		                 "the peer closed the stream before sending its Hello");
	else if (rc == 0)
		rc = hello_check(ch, &f);
	if (rc != 0)
		return handshake_failed(ch, rc);
	/* Both sides compute the same minimum and hold each other to it.
	 * The receive buffer holds one largest frame plus some slack for
	 * data drained while a send is blocked. */
	ch->limit = ch->peer.effective_max_frame;
	ch->rd.limit = ch->limit;
	ch->rd.max_cap = (size_t)ch->limit + PBP__VARINT32_MAX + RX_SLACK;
	ch->hs_deadline = -1;
	ch->state = ST_READY;
	return 0;
}

int
pbp_channel_handshake_start(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	rc = handshake_start(ch);
	pbp__ch_leave(ch, 0);
	return rc;
}

int
pbp_channel_handshake_finish(pbp_channel *ch, int timeout_ms)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	rc = handshake_finish(ch, timeout_ms);
	pbp__ch_leave(ch, 0);
	return rc;
}

int
pbp_channel_handshake(pbp_channel *ch)
{
	int rc = 0;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (ch->state == ST_NEW)
		rc = handshake_start(ch);
	if (rc == 0)
		rc = handshake_finish(ch, -1);
	pbp__ch_leave(ch, 0);
	return rc;
}
/* ---- receiving ----------------------------------------------------------- */

int
pbp__ch_rx_ready(pbp_channel *ch)
{
	if (ch->rx_err != 0)
		return pbp__ch_rx_again(ch);
	if (ch->state != ST_READY)
		return pbp__ch_fail(ch, PBP_EINVAL, "receive before a successful handshake");
	return 0;
}

/* The stream has ended (code PBP_EOF, its message in ch->error): while
 * calls or a barrier still wait, that is an error of its own. */
static int
stream_ended(pbp_channel *ch)
{
	size_t n = ch->nwaiting;
	int barrier = ch->sync_id != 0 && !ch->sync_acked;
	char how[PBP_ERRMSG_SIZE];

	if (n == 0 && !barrier)
		return pbp__ch_rx_fail(ch, PBP_EOF);
	memcpy(how, ch->error.msg, sizeof how);
	if (n == 0)
		pbp__seterr(&ch->error, PBP_EUNANSWERED, 0,
		            "the barrier went unanswered: %.200s", how);
	else
		pbp__seterr(&ch->error, PBP_EUNANSWERED, 0,
		            "%zu call%s went unanswered%s: %.200s", n, n == 1 ? "" : "s",
		            barrier ? " (and the barrier)" : "", how);
	return pbp__ch_rx_fail(ch, PBP_EUNANSWERED);
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

int
pbp__ch_next(pbp_channel *ch, pbp__frame *f, int64_t deadline)
{
	int rc;

	for (;;) {
		rc = pbp__ch_read_frame(ch, f, deadline);
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
			return pbp__ch_rx_fail(ch, rc);
		if (f->kind == PBP__FRAME_MESSAGE && f->reply_to == 0 && f->stream == 0)
			return 0;
		if (f->kind >= PBP__FRAME_STREAM_DATA ||
		    (f->kind == PBP__FRAME_MESSAGE && f->stream != 0)) {
			/* Streams (streams.c): a stream's header goes to the
			 * application; chunks, ends, credit and cancels are
			 * noted where they belong. */
			rc = pbp__streams_frame(ch, f);
			if (rc == 0)
				return 0;
			if (rc < 0)
				return pbp__ch_rx_fail(ch, rc);
			if (rc == PBP__SKIP)
				rc = 0;
		} else if (f->kind == PBP__FRAME_MESSAGE)
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
		if (pbp__ch_past(deadline))
			return pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
			                   "receive deadline passed while the peer sent control frames");
	}
}/* ---- the report ---------------------------------------------------------- */

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
	if (ch->state != ST_READY && ch->rx_err != 0) {
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
