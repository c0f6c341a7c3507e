/*
 * pool.c: supervised helpers behind one call API (pbp_pool.h), on top of
 * pbp_child_spawn() and the channel's calls and barrier.
 *
 * Each slot holds one helper and at most one call.  Calls are encoded when
 * they are made and wait in a FIFO queue until a helper is idle; a call
 * whose helper dies is retried from the head of the queue when that is
 * safe.  Nothing runs in the background: every pool call ends with
 * pool_work(), which reads what the helpers sent, handles deaths, expires
 * deadlines, pings, restarts and dispatches.  Helper channels never wait
 * (send and receive deadlines 0), so one slow helper cannot stall the
 * others; the pool waits for all of them at once (pbp__os_io_wait_any).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_encode.h>

#include "pool_impl.h"

/* ---- errors and small helpers ---------------------------------------------- */

/* For calls whose failure changes nothing here. */
static void
ignore(int rc)
{
	(void)rc;
}

static int
fail(pbp_pool *p, int code, const char *what)
{
	return pbp__seterr(&p->error, code, 0, "%s", what);
}

static const pbp_msgtype *
find_type(const pbp_pool *p, uint32_t type)
{
	size_t i;

	for (i = 0; i < p->ntypes; i++)
		if (p->types[i].id == type)
			return &p->types[i];
	return NULL;
}

static int
is_idempotent(const pbp_pool *p, uint32_t type)
{
	size_t i;

	for (i = 0; i < p->nidem; i++)
		if (p->idem[i] == type)
			return 1;
	return 0;
}

/* ---- deaths and restarts ------------------------------------------------------ */

/* The helper's call, if any, is retried or fails with PBP_ELOST. */
static void
orphan_call(pbp_pool *p, pbp__slot *s, int unsent, const char *why)
{
	pbp__pcall *c = s->cur;

	s->cur = NULL;
	if (c == NULL)
		return;
	p->ninflight--;
	/* A request the helper never read completely cannot have run: it is
	 * sent again whatever its type, and that was no attempt. */
	if (unsent)
		c->attempts--;
	if (c->deadline >= 0 && c->deadline <= pbp__now_ms()) {
		pbp__pool_end_call_msg(p, c, PBP_ETIMEDOUT, "call %" PRIu64 " passed its deadline of %d ms, "
		             "and then the helper in slot %zu died with it: %.150s", c->id,
		             c->timeout_ms, (size_t)(s - p->slots), why);
		return;
	}
	if ((unsent || c->idempotent) && c->attempts < p->max_attempts) {
		c->resend = 1; /* counted in retries when it goes out again */
		pbp__pool_queue_push(p, c, 1);
		return;
	}
	pbp__pool_end_call_msg(p, c, PBP_ELOST, "the helper in slot %zu died with call %" PRIu64
	             " in flight (%u attempt%s): %.150s", (size_t)(s - p->slots), c->id,
	             c->attempts, c->attempts == 1 ? "" : "s", why);
}

/* Whether slot s's helper, now dead, had not read all of its call's
 * request: part of it was still in the channel's buffer, or (Linux) in
 * the pipe.  The request is the last thing written to a helper, so one
 * unread byte means it was never read whole. */
static int
request_unread(pbp__slot *s)
{
	size_t n = 0;

	if (s->cur == NULL)
		return 0;
	if (pbp_channel_pending(s->ch) > 0)
		return 1;
	return pbp__os_io_unread(pbp__channel_os_io(s->ch), &n) == 0 && n > 0;
}

/* Slot s's helper is dead (hung: it is killed first): reaps it, tells the
 * application with its death report, and schedules the restart.  unsent:
 * its call's request is known not to have gone out whole. */
static void
slot_died(pbp_pool *p, pbp__slot *s, int hung, int unsent, const char *why)
{
	size_t i = (size_t)(s - p->slots);
	pbp_pid pid = pbp_child_pid(s->child);
	unsigned int deaths;
	int delay;

	if (hung) {
		ignore(pbp_child_kill(s->child, pbp__os_sigkill()));
		p->st.hung++;
	}
	unsent = unsent || request_unread(s);
	/* A helper whose pipes closed is exiting: give it a moment, so the
	 * report says how it ended, then make sure. */
	if (pbp_child_wait(s->child, hung ? PBP__REAP_MS : PBP__EXIT_MS, NULL) == PBP_ETIMEDOUT) {
		ignore(pbp_child_kill(s->child, pbp__os_sigkill()));
		ignore(pbp_child_wait(s->child, PBP__REAP_MS, NULL));
	}
	(void)pbp_child_report(s->child, p->report);
	if (hung) {
		/* The channel may look open: say why the pool ended it. */
		p->report->end = PBP_END_TIMEOUT;
		p->report->error = PBP_ETIMEDOUT;
		snprintf(p->report->message, sizeof p->report->message, "%s", why);
	}
	orphan_call(p, s, unsent, why);
	pbp_child_free(s->child);
	s->child = NULL;
	s->ch = NULL;
	s->ping = 0;
	p->nlive--;
	p->st.deaths++;
	s->died_ns = pbp__now_ns();
	delay = pbp__pool_schedule_restart(p, s, pbp__now_ms(), &deaths);
	pbp__pool_emit(p, hung ? PBP_POOL_HUNG : PBP_POOL_DIED, i, pid, deaths, delay, 0, p->report);
	if (delay < 0) {
		pbp__pool_emit(p, PBP_POOL_GAVE_UP, i, pid, deaths, -1, 0, NULL);
		pbp__pool_fail_queue_if_down(p);
	}
}

/* ---- dispatching and reading ---------------------------------------------------- */

/* Sends queued calls to idle helpers.  quiet (from pbp_pool_call_async()):
 * nothing may end or be reported here, so a call whose send fails goes
 * back to the head of the queue, and the next pool_work() handles its
 * helper (whose channel failed) or ends it. */
static void
dispatch(pbp_pool *p, int quiet)
{
	size_t tried;

	if (p->in_cb)
		return; /* callbacks only queue; the work loop sends */
	for (tried = 0; p->qhead != NULL && tried < p->size; tried++) {
		pbp__slot *s = &p->slots[p->rr];
		pbp__pcall *c;
		int rc;

		p->rr = (p->rr + 1) % p->size;
		if (!pbp__slot_idle(s) || pbp__channel_failed(s->ch))
			continue;
		c = p->qhead;
		pbp__pool_queue_remove(p, c);
		c->attempts++;
		rc = pbp__channel_call_start_raw(s->ch, c->req_type, c->req, c->req_len, &c->cid);
		if (rc != 0 && quiet) {
			c->attempts--;
			pbp__pool_queue_push(p, c, 1);
			if (!pbp__channel_failed(s->ch))
				return;
			continue;
		}
		if (rc == 0) {
			if (c->resend)
				p->st.retries++;
			c->resend = 0;
			c->state = PCALL_FLIGHT;
			c->slot = (size_t)(s - p->slots);
			s->cur = c;
			p->ninflight++;
			tried = 0;
			continue;
		}
		if (pbp__channel_failed(s->ch)) {
			s->cur = c; /* not sent: retried whatever its type */
			p->ninflight++;
			slot_died(p, s, 0, 1, pbp_channel_errmsg(s->ch));
		} else {
			pbp__pool_end_call(p, c, rc, NULL, pbp_channel_error(s->ch));
		}
	}
}

/* Finishes slot s's call if its reply is there.  1 if something
 * happened (the call ended, a stray reply or held messages were dropped),
 * 0 if its reply has not come or the channel failed. */
static int
finish_call(pbp_pool *p, pbp__slot *s)
{
	pbp__pcall *c = s->cur;
	const pbp_msgtype *t = find_type(p, c->resp_type);
	void *resp = c->blocking != NULL ? c->blocking->resp : p->scratch;
	pbp_msginfo mi;
	int rc;

	if (t != NULL && resp == p->scratch)
		memset(p->scratch, 0, t->size);
	rc = pbp_channel_call_finish(s->ch, c->cid, c->resp_type, resp, 0);
	if (rc == PBP_ELIMIT) {
		/* Held one-way messages fill the inbox: drop them. */
		while (pbp_channel_recv(s->ch, &mi) == 0)
			p->st.dropped++;
		return 1;
	}
	if (rc == PBP_EPROTO && !pbp__channel_failed(s->ch))
		return 1; /* a stray reply: skipped */
	if (rc == PBP_EAGAIN || pbp__channel_failed(s->ch))
		return 0;
	s->cur = NULL;
	p->ninflight--;
	s->alive_at = pbp__now_ms();
	pbp__pool_end_call(p, c, rc, resp, pbp_channel_error(s->ch));
	return 1;
}

/* Reads what slot s's helper sent: the reply to its call first (the
 * finish reads the fd and stops at the reply), then one-way messages
 * (dropped) already buffered, or, when no call read the fd, what the fd
 * holds; replies and a ping's answer met on the way are filed by the
 * channel.  Anything left in the pipe keeps its fd readable for the next
 * wait.  Handles the helper's death. */
static void
pump(pbp_pool *p, pbp__slot *s)
{
	pbp_msginfo mi;
	int read = 0, progress;

	if (s->state != SLOT_LIVE)
		return;
	if (pbp_channel_pending(s->ch) > 0)
		ignore(pbp_channel_flush(s->ch));
	do {
		progress = 0;
		if (s->cur != NULL && !pbp__channel_failed(s->ch)) {
			progress = finish_call(p, s);
			read = 1;
		}
		while (!pbp__channel_failed(s->ch) && (!read || pbp__channel_recv_ready(s->ch))) {
			read = 1;
			if (pbp_channel_recv(s->ch, &mi) != 0)
				break;
			p->st.dropped++;
			progress = 1;
		}
	} while (progress && s->cur != NULL && !pbp__channel_failed(s->ch));
	if (s->ping && !pbp__channel_failed(s->ch) && pbp_channel_sync_finish(s->ch, 0) == 0) {
		s->ping = 0;
		s->alive_at = pbp__now_ms();
		p->st.pings++;
	}
	if (pbp__channel_failed(s->ch))
		slot_died(p, s, 0, 0, pbp_channel_errmsg(s->ch));
}

/* Deadlines, pings and restarts that are due.  Returns the milliseconds
 * until the next one (-1: none). */
static int
timers(pbp_pool *p, int act)
{
	int64_t now = pbp__now_ms(), next = -1;
	pbp__pcall *c, *nx;
	size_t i;

#define DUE(t) do { if (next < 0 || (t) < next) next = (t); } while (0)
	/* The queue's earliest deadline is kept (q_deadline): its calls are
	 * looked at only when that one is due or has left the queue. */
	if (p->q_deadline_stale || (act && p->q_deadline >= 0 && p->q_deadline <= now)) {
		p->q_deadline = -1;
		for (c = p->qhead; c != NULL; c = nx) {
			nx = c->next;
			if (c->deadline < 0)
				continue;
			if (act && c->deadline <= now) {
				pbp__pool_queue_remove(p, c);
				pbp__pool_end_call_msg(p, c, PBP_ETIMEDOUT, "no helper answered call %" PRIu64
				             " within %d ms (it waited in the queue)", c->id,
				             c->timeout_ms);
			} else if (p->q_deadline < 0 || c->deadline < p->q_deadline) {
				p->q_deadline = c->deadline;
			}
		}
		p->q_deadline_stale = 0;
	}
	if (p->q_deadline >= 0)
		DUE(p->q_deadline);
	for (i = 0; i < p->size; i++) {
		pbp__slot *s = &p->slots[i];

		if (s->state == SLOT_RESTARTING) {
			if (act && s->restart_at <= now)
				pbp__slot_restart(p, s);
			if (s->state == SLOT_RESTARTING)
				DUE(s->restart_at);
		}
		if (s->state == SLOT_STARTING) {
			int t = pbp_channel_next_timeout(s->ch);

			if (act && t == 0)
				pbp__slot_handshake(p, s); /* its deadline: it fails */
			else if (t >= 0)
				DUE(now + t);
		}
		if (s->state != SLOT_LIVE)
			continue;
		if (s->cur != NULL && s->cur->deadline >= 0) {
			if (act && s->cur->deadline <= now) {
				char why[160];
				pbp__pcall *cc = s->cur;

				snprintf(why, sizeof why, "call %" PRIu64 " passed its deadline of %d ms "
				         "on the helper in slot %zu", cc->id, cc->timeout_ms, i);
				s->cur = NULL;
				p->ninflight--;
				pbp__pool_end_call_msg(p, cc, PBP_ETIMEDOUT, "%s: it was declared hung and "
				             "killed", why);
				slot_died(p, s, 1, 0, why);
				continue;
			}
			DUE(s->cur->deadline);
		}
		if (s->ping) {
			if (act && s->ping_deadline <= now) {
				char why[128];

				snprintf(why, sizeof why, "the helper in slot %zu did not answer its "
				         "ping within %d ms", i, p->ping_timeout_ms);
				slot_died(p, s, 1, 0, why);
				continue;
			}
			DUE(s->ping_deadline);
		} else if (p->ping_interval_ms >= 0 && s->cur == NULL && s->pingable) {
			int64_t at = s->alive_at + p->ping_interval_ms;

			if (act && at <= now) {
				if (pbp_channel_sync_start(s->ch) == 0) {
					s->ping = 1;
					s->ping_deadline = now + p->ping_timeout_ms;
					DUE(s->ping_deadline);
				} else if (pbp__channel_failed(s->ch)) {
					slot_died(p, s, 0, 0, pbp_channel_errmsg(s->ch));
				} else {
					s->alive_at = now; /* try again an interval later */
					DUE(now + p->ping_interval_ms);
				}
			} else {
				DUE(at);
			}
		}
	}
#undef DUE
	if (next < 0)
		return -1;
	return next <= now ? 0 : next - now > 1000000000 ? 1000000000 : (int)(next - now);
}

/* One round of the pool's work: waits up to timeout_ms (capped by what
 * is due) for any helper, reads what is ready, then deadlines, pings,
 * restarts and dispatch. */
static int
pool_work(pbp_pool *p, int timeout_ms)
{
	int due, wait, rc;
	size_t i, n = 0;

	/* Helpers whose channel failed while nothing waited on them (a send
	 * from pbp_pool_call_async()). */
	for (i = 0; i < p->size; i++)
		if (p->slots[i].state == SLOT_LIVE && pbp__channel_failed(p->slots[i].ch))
			slot_died(p, &p->slots[i], 0, 0, pbp_channel_errmsg(p->slots[i].ch));
	dispatch(p, 0);
	due = timers(p, 0);
	wait = timeout_ms < 0 ? due : due < 0 || due > timeout_ms ? timeout_ms : due;
	for (i = 0; i < p->size; i++) {
		pbp__slot *s = &p->slots[i];

		int on = s->state == SLOT_LIVE || s->state == SLOT_STARTING;

		p->ios[i] = on ? pbp__channel_os_io(s->ch) : NULL;
		p->want_write[i] = on && pbp_channel_pending(s->ch) > 0;
		p->ready[i] = 0;
	}
	rc = pbp__os_io_wait_any(p->ios, p->want_write, p->size, wait, p->ready);
	if (rc < 0)
		return pbp__seterr(&p->error, PBP_ESYS, -rc, "waiting for the helpers failed");
	for (i = 0; i < p->size; i++)
		if (p->ready[i] != 0) {
			if (p->slots[i].state == SLOT_STARTING)
				pbp__slot_handshake(p, &p->slots[i]);
			else
				pump(p, &p->slots[i]);
			n++;
		}
	(void)timers(p, 1);
	dispatch(p, 0);
	return 0;
}

/* ---- public calls ------------------------------------------------------------------- */

int
pbp_pool_start(pbp_pool **out, const pbp_pool_options *opts, pbp_error *err)
{
	pbp_pool *p;
	pbp_error e;
	size_t i;
	int rc;

	if (err != NULL)
		memset(err, 0, sizeof *err);
	if (out == NULL || opts == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "pool_start: NULL argument");
	p = calloc(1, sizeof *p);
	if (p == NULL)
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory");
	rc = pbp__pool_setup(p, opts);
	for (i = 0; rc == 0 && i < p->size; i++) {
		pbp__slot *s = &p->slots[i];

		if ((rc = pbp__slot_spawn(p, s, 0, &e)) != 0) {
			pbp__seterr(&p->error, rc, e.sys_errno, "helper %zu of %zu (%.60s): %.160s",
			            i, p->size, s->path, e.msg);
			break;
		}
	}
	if (rc != 0) {
		if (err != NULL)
			*err = p->error;
		p->close_grace_ms = 0;
		pbp_pool_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static int
submit(pbp_pool *p, uint32_t req_type, const void *req, uint32_t resp_type, int timeout_ms,
       pbp__pcall **out)
{
	const pbp_msgtype *t = find_type(p, req_type);
	pb_ostream_t os;
	pbp__pcall *c;
	size_t size;

	if (req == NULL)
		return fail(p, PBP_EINVAL, "pool call: NULL request");
	if (timeout_ms == 0)
		return fail(p, PBP_EINVAL, "pool call: timeout_ms 0 (no helper answers in no "
		            "time, and one still running a call at its deadline is killed): "
		            "give a deadline > 0, or < 0 for none");
	if (p->closing)
		return fail(p, PBP_EINVAL, "pool call while the pool is being freed");
	if (t == NULL)
		return pbp__seterr(&p->error, PBP_ETYPE, 0, "pool call: no descriptor registered "
		                   "for request type %" PRIu32, req_type);
	if (find_type(p, resp_type) == NULL)
		return pbp__seterr(&p->error, PBP_ETYPE, 0, "pool call: no descriptor registered "
		                   "for reply type %" PRIu32, resp_type);
	if (p->ndown == p->size)
		return pbp__seterr(&p->error, PBP_EDOWN, 0, "every helper of the pool is down "
		                   "(crash-loop cap: %u deaths within %d ms)", p->max_crashes,
		                   p->crash_window_ms);
	if (p->nqueued >= p->max_queued)
		return pbp__seterr(&p->error, PBP_ELIMIT, 0, "pool call: %zu calls are already "
		                   "queued (max_queued)", p->nqueued);
	if (!pb_get_encoded_size(&size, t->fields, req))
		return pbp__seterr(&p->error, PBP_EENCODE, 0, "pool call: sizing request type %"
		                   PRIu32 " failed", req_type);
	if (size > p->chopt.max_frame && p->chopt.max_frame != 0)
		return pbp__seterr(&p->error, PBP_EMSGSIZE, 0, "pool call: a request of %zu bytes "
		                   "is over the frame limit", size);
	c = calloc(1, sizeof *c);
	if (c == NULL || (c->req = malloc(size ? size : 1)) == NULL) {
		free(c);
		return fail(p, PBP_ENOMEM, "out of memory");
	}
	os = pb_ostream_from_buffer(c->req, size);
	if (!pb_encode(&os, t->fields, req)) {
		free(c->req);
		free(c);
		return pbp__seterr(&p->error, PBP_EENCODE, 0, "pool call: encoding request type %"
		                   PRIu32 ": %s", req_type, PB_GET_ERROR(&os));
	}
	c->req_len = os.bytes_written;
	c->id = ++p->next_id;
	c->req_type = req_type;
	c->resp_type = resp_type;
	c->timeout_ms = timeout_ms;
	c->deadline = pbp__deadline(timeout_ms);
	c->idempotent = is_idempotent(p, req_type);
	pbp__pool_queue_push(p, c, 0);
	*out = c;
	return 0;
}

int
pbp_pool_call_async(pbp_pool *p, uint32_t req_type, const void *req, uint32_t resp_type,
                    int timeout_ms, pbp_pool_done_fn done, void *payload, uint64_t *id)
{
	pbp__pcall *c;
	int rc;

	if (p == NULL)
		return PBP_EINVAL;
	if (done == NULL)
		return fail(p, PBP_EINVAL, "pool_call_async: NULL done callback");
	if ((rc = submit(p, req_type, req, resp_type, timeout_ms, &c)) != 0)
		return rc;
	c->done = done;
	c->payload = payload;
	if (id != NULL)
		*id = c->id;
	dispatch(p, 1);
	return 0;
}

int
pbp_pool_call(pbp_pool *p, uint32_t req_type, const void *req, uint32_t resp_type,
              void *resp, int timeout_ms)
{
	pbp__blocking b;
	pbp__pcall *c;
	int rc;

	if (p == NULL)
		return PBP_EINVAL;
	if (p->in_cb)
		return fail(p, PBP_EINVAL, "pool_call from a pool callback");
	if (resp == NULL)
		return fail(p, PBP_EINVAL, "pool_call: NULL response");
	if ((rc = submit(p, req_type, req, resp_type, timeout_ms, &c)) != 0)
		return rc;
	memset(&b, 0, sizeof b);
	b.resp = resp;
	c->blocking = &b;
	while (!b.done)
		if ((rc = pool_work(p, -1)) != 0) {
			/* The wait itself failed: the call stays, but nobody waits. */
			c->blocking = NULL;
			c->done = NULL;
			return rc;
		}
	if (b.rc != 0)
		p->error = b.error;
	return b.rc;
}

int
pbp_pool_run(pbp_pool *p, int timeout_ms)
{
	uint64_t before, events;
	int64_t deadline;
	int rc;

	if (p == NULL)
		return PBP_EINVAL;
	if (p->in_cb)
		return fail(p, PBP_EINVAL, "pool_run from a pool callback");
	before = p->ncompleted;
	events = p->nevents;
	deadline = pbp__deadline(timeout_ms);
	/* Until a call ends or an event (a death, a restart...) happens. */
	do {
		int left = deadline < 0 ? -1 : (int)(deadline - pbp__now_ms());

		if ((rc = pool_work(p, left < 0 && deadline >= 0 ? 0 : left)) != 0)
			return rc;
	} while (p->ncompleted == before && p->nevents == events &&
	         (deadline < 0 || pbp__now_ms() < deadline) &&
	         (p->nqueued + p->ninflight > 0 || deadline >= 0));
	return (int)(p->ncompleted - before);
}

int
pbp_pool_next_timeout(const pbp_pool *p)
{
	size_t i;

	if (p == NULL)
		return -1;
	for (i = 0; i < p->size; i++)
		if ((p->qhead != NULL && pbp__slot_idle(&p->slots[i])) ||
		    (p->slots[i].state == SLOT_LIVE && pbp__channel_failed(p->slots[i].ch)))
			return 0;
	return timers((pbp_pool *)p, 0);
}

void
pbp_pool_free(pbp_pool *p)
{
	pbp__pcall *c;
	size_t i;

	if (p == NULL)
		return;
	p->closing = 1; /* done callbacks below may not start calls */
	while ((c = p->qhead) != NULL) {
		pbp__pool_queue_remove(p, c);
		pbp__pool_end_call_msg(p, c, PBP_ECANCELED, "the pool was freed before call %" PRIu64
		             " ended", c->id);
	}
	for (i = 0; p->slots != NULL && i < p->size; i++) {
		pbp__slot *s = &p->slots[i];

		if ((c = s->cur) != NULL) {
			s->cur = NULL;
			pbp__pool_end_call_msg(p, c, PBP_ECANCELED, "the pool was freed before call %" PRIu64
			             " ended", c->id);
		}
		/* Goodbye to all first, so they end together. */
		if (s->child != NULL)
			ignore(pbp_channel_goodbye(s->ch, PBP_GOODBYE_DONE, NULL));
	}
	for (i = 0; p->slots != NULL && i < p->size; i++) {
		if (p->slots[i].child != NULL) {
			ignore(pbp_child_close(p->slots[i].child, p->close_grace_ms, NULL));
			pbp_child_free(p->slots[i].child);
		}
	}
	free(p->slots);
	free(p->ios);
	free(p->want_write);
	free(p->ready);
	free(p->report);
	free(p->scratch);
	free(p->idem);
	free(p);
}
