/*
 * test_call.c: calls (request/response with ids, out of order, errors,
 * deadlines), the barrier, the serving loop, non-blocking use and duplex
 * threads, over real pipes with the peer on a thread.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define T(name) Test(call, name, .timeout = 60)

/* ---- a server on a thread --------------------------------------------------- */

static int
upper(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	const pbptest_Text *in = req;
	pbptest_Text *out = resp;
	size_t i;

	(void)payload;
	if (strcmp(in->text, "fail") == 0) {
		snprintf(e->message, sizeof e->message, "asked to fail");
		return 42;
	}
	for (i = 0; in->text[i] != '\0'; i++)
		out->text[i] = (char)toupper((unsigned char)in->text[i]);
	return 0;
}

static int
twice(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	(void)e;
	if (payload != NULL)
		atomic_fetch_add((atomic_int *)payload, 1);
	((pbptest_Numbers *)resp)->i64 = ((const pbptest_Numbers *)req)->i64 * 2;
	return 0;
}

static atomic_int one_way_seen;

static const pbp_handler handlers[] = {
	{ pbptest_Type_TEXT, pbptest_Type_TEXT, upper, NULL },
	{ pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, twice, &one_way_seen },
};

struct server {
	pbp_channel *ch;
	int rc;
};

static void *
serve_thread(void *arg)
{
	struct server *s = arg;

	s->rc = pbp_channel_serve(s->ch, handlers, 2);
	return NULL;
}

T(call_round_trip_and_remote_error)
{
	pbp_channel *a, *b;
	struct server s;
	pbptest_Text req = { "hello" }, resp;
	pbptest_Numbers n = { .i64 = 21 }, m;
	pthread_t t;

	pbt_pair(&a, &b, NULL, NULL);
	s = (struct server){ b, -100 };
	t = pbt_spawn_thread(serve_thread, &s);
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp, 5000), 0,
	             "%s", pbp_channel_errmsg(a));
	cr_assert_str_eq(resp.text, "HELLO");
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &n, pbptest_Type_NUMBERS, &m, 5000), 0);
	cr_assert_eq(m.i64, 42);
	/* An application error comes back as PBP_EREMOTE with code and text. */
	strcpy(req.text, "fail");
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp, 5000),
	             PBP_EREMOTE);
	cr_assert_eq(pbp_channel_error(a)->remote_code, 42);
	cr_assert_str_eq(pbp_channel_errmsg(a), "asked to fail");
	/* A reply of another type than expected. */
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &n, pbptest_Type_TEXT, &resp, 5000),
	             PBP_ETYPE);
	/* A type the server has no handler for. */
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_EMPTY, &(pbptest_Empty){ 0 },
	                              pbptest_Type_EMPTY, &(pbptest_Empty){ 0 }, 5000),
	             PBP_EREMOTE);
	cr_assert_eq(pbp_channel_error(a)->remote_code, PBP_REMOTE_NO_HANDLER);
	/* A one-way message (no id) is handled without a reply. */
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_NUMBERS, &n), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "serve ends cleanly at end of stream");
	cr_assert_eq(atomic_load(&one_way_seen), 3);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Answers the first n requests it gets in reverse order, with a
 * one-way message and a reply to an unknown id mixed in. */
struct reverser {
	pbp_channel *ch;
	int n;
	int rc;
};

static void *
reverse_thread(void *arg)
{
	struct reverser *r = arg;
	pbp_msginfo mi;
	uint64_t ids[64];
	int64_t vals[64];
	int i;

	for (i = 0; i < r->n; i++) {
		pbptest_Numbers q;

		if ((r->rc = pbp_channel_recv(r->ch, &mi)) != 0 ||
		    (r->rc = pbp_channel_decode(r->ch, pbptest_Numbers_fields, &q)) != 0)
			return NULL;
		ids[i] = mi.id;
		vals[i] = q.i64;
	}
	r->rc = pbp_channel_send(r->ch, pbptest_Type_TEXT, &(pbptest_Text){ "by the way" });
	if (r->rc == 0)
		r->rc = pbp_channel_reply(r->ch, 999999, pbptest_Type_NUMBERS, &(pbptest_Numbers){ 0 });
	for (i = r->n - 1; i >= 0 && r->rc == 0; i--) {
		pbptest_Numbers ans = { .i64 = vals[i] + 1000 };

		r->rc = pbp_channel_reply(r->ch, ids[i], pbptest_Type_NUMBERS, &ans);
	}
	return NULL;
}

T(outstanding_calls_answered_out_of_order)
{
	struct reverser r;
	pbp_channel *a, *b;
	pbptest_Numbers q, ans;
	uint64_t ids[16];
	pbp_msginfo mi;
	uint32_t type;
	pbt_any u;
	pthread_t t;
	int i, rc;

	pbt_pair(&a, &b, NULL, NULL);
	r = (struct reverser){ b, 16, -100 };
	t = pbt_spawn_thread(reverse_thread, &r);
	for (i = 0; i < 16; i++) {
		q = (pbptest_Numbers){ .i64 = i };
		cr_assert_eq(pbp_channel_call_start(a, pbptest_Type_NUMBERS, &q, &ids[i]), 0, "%s",
		             pbp_channel_errmsg(a));
	}
	for (i = 0; i < 16; i++) {
		rc = pbp_channel_call_finish(a, ids[i], pbptest_Type_NUMBERS, &ans, 5000);
		if (rc == PBP_EPROTO) {
			/* The reply to an id we never used: reported, not fatal. */
			cr_assert_neq(strstr(pbp_channel_errmsg(a), "999999"), NULL);
			rc = pbp_channel_call_finish(a, ids[i], pbptest_Type_NUMBERS, &ans, 5000);
		}
		cr_assert_eq(rc, 0, "call %d: %s", i, pbp_channel_errmsg(a));
		cr_assert_eq(ans.i64, i + 1000);
	}
	pbt_join(t);
	cr_assert_eq(r.rc, 0);
	/* The one-way message that came in between was held for recv. */
	cr_assert_eq(pbp_channel_recv_msg(a, &type, &u, sizeof u), 0);
	cr_assert_str_eq(u.text.text, "by the way");
	cr_assert_eq(pbp_channel_call_finish(a, ids[0], pbptest_Type_NUMBERS, &ans, 0), PBP_EINVAL,
	             "a finished call is gone");
	cr_assert_eq(pbp_channel_close_write(b), 0);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(call_deadline_then_late_reply_is_dropped)
{
	pbp_channel *a, *b;
	pbptest_Numbers q = { .i64 = 1 }, ans;
	pbp_msginfo mi;
	int64_t t0 = pbp__now_ms();

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &ans, 150),
	             PBP_ETIMEDOUT);
	cr_assert_geq(pbp__now_ms() - t0, 140);
	/* The peer answers late; the next call must not take that reply. */
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(pbp_channel_reply(b, mi.id, pbptest_Type_NUMBERS, &(pbptest_Numbers){ .i64 = -1 }), 0);
	{
		struct server s = { b, -100 };
		pthread_t t = pbt_spawn_thread(serve_thread, &s);

		q.i64 = 5;
		cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &ans, 5000), 0,
		             "%s", pbp_channel_errmsg(a));
		cr_assert_eq(ans.i64, 10);
		cr_assert_eq(pbp_channel_close_write(a), 0);
		pbt_join(t);
	}
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A call started with its own deadline: no finish waits past it, the
 * first finish after it ends the call, pbp_channel_next_timeout() counts
 * down to it, and its late reply is dropped. */
T(a_call_with_its_own_deadline_is_expired_by_the_library)
{
	pbp_channel *a, *b;
	pbptest_Numbers q = { .i64 = 1 }, ans;
	pbp_msginfo mi;
	uint64_t id, id2;
	int64_t t0;
	int rc, nt;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_next_timeout(a), -1);
	cr_assert_eq(pbp_channel_next_timeout(NULL), -1);
	cr_assert_eq(pbp_channel_call_start_ex(a, pbptest_Type_NUMBERS, &q, 0, &id), PBP_EINVAL);
	cr_assert_eq(pbp_channel_call_start_ex(a, pbptest_Type_NUMBERS, &q, -1, &id2), 0);
	cr_assert_eq(pbp_channel_next_timeout(a), -1, "a call without a deadline is not due");
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_channel_call_start_ex(a, pbptest_Type_NUMBERS, &q, 300, &id), 0);
	nt = pbp_channel_next_timeout(a);
	cr_assert(nt > 0 && nt <= 300, "next_timeout %d", nt);
	cr_assert_eq(pbp_channel_call_finish(a, id, pbptest_Type_NUMBERS, &ans, 0), PBP_EAGAIN);
	/* No deadline of its own for this wait: the call's ends it. */
	rc = pbp_channel_call_finish(a, id, pbptest_Type_NUMBERS, &ans, -1);
	cr_assert_eq(rc, PBP_ETIMEDOUT, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_geq(pbp__now_ms() - t0, 290);
	cr_assert_lt(pbp__now_ms() - t0, 5000);
	cr_assert(strstr(pbp_channel_errmsg(a), "its deadline of 300 ms") != NULL, "%s",
	          pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_call_finish(a, id, pbptest_Type_NUMBERS, &ans, 0), PBP_EINVAL,
	             "the expired call is over");
	cr_assert_eq(pbp_channel_next_timeout(a), -1);
	/* Both requests reach the peer; it answers both, late for the first. */
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(pbp_channel_reply(b, mi.id, pbptest_Type_NUMBERS, &(pbptest_Numbers){ .i64 = 7 }), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(pbp_channel_reply(b, mi.id, pbptest_Type_NUMBERS, &(pbptest_Numbers){ .i64 = -1 }), 0);
	cr_assert_eq(pbp_channel_call_finish(a, id2, pbptest_Type_NUMBERS, &ans, 5000), 0, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_eq(ans.i64, 7);
	/* A deadline that has not passed does not end a call answered in time. */
	cr_assert_eq(pbp_channel_call_start_ex(a, pbptest_Type_NUMBERS, &q, 5000, &id), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(pbp_channel_reply(b, mi.id, pbptest_Type_NUMBERS, &(pbptest_Numbers){ .i64 = 9 }), 0);
	cr_assert_eq(pbp_channel_call_finish(a, id, pbptest_Type_NUMBERS, &ans, -1), 0, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_eq(ans.i64, 9);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- the barrier -------------------------------------------------------------- */

static atomic_int received;

struct counter {
	pbp_channel *ch;
	int rc;
};

static void *
count_thread(void *arg)
{
	struct counter *c = arg;
	pbp_msginfo mi;

	while ((c->rc = pbp_channel_recv(c->ch, &mi)) == 0) {
		usleep(100); /* "processing" */
		atomic_fetch_add(&received, 1);
	}
	return NULL;
}

T(sync_returns_once_the_peer_processed_everything_before_it)
{
	struct counter c;
	pbp_channel *a, *b;
	pthread_t t;
	int i;

	pbt_pair(&a, &b, NULL, NULL);
	c = (struct counter){ b, 0 };
	t = pbt_spawn_thread(count_thread, &c);
	for (i = 0; i < 200; i++)
		cr_assert_eq(pbp_channel_send_raw(a, 7, 0, "x", 1), 0);
	cr_assert_eq(pbp_channel_sync(a, 5000), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(atomic_load(&received), 200);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(sync_in_two_steps_answers_once_the_peer_reads)
{
	pbp_channel *a, *b;
	pbp_msginfo mi;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_sync_finish(a, 0), PBP_EINVAL, "no barrier pending yet");
	cr_assert_eq(pbp_channel_sync_start(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_sync_finish(a, 0), PBP_EAGAIN, "answered before b read");
	/* b's receive answers the barrier (it holds nothing) and finds no message. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EAGAIN);
	cr_assert_eq(pbp_channel_sync_finish(a, 5000), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_sync_finish(a, 0), PBP_EINVAL, "the barrier is over");
	/* An answered barrier is not "unanswered" at the end of the stream. */
	cr_assert_eq(pbp_channel_close_write(b), 0);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 5000), 0);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EOF, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(sync_started_and_unanswered_at_end_of_stream_is_unanswered)
{
	pbp_channel *a, *b;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_sync_start(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_close_write(b), 0);
	cr_assert_eq(pbp_channel_sync_finish(a, 5000), PBP_EUNANSWERED, "%s",
	             pbp_channel_errmsg(a));
	cr_assert(strstr(pbp_channel_errmsg(a), "barrier") != NULL, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(sync_deadline_when_the_peer_does_not_read)
{
	pbp_channel *a, *b;
	pbp_msginfo mi;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_sync(a, 100), PBP_ETIMEDOUT);
	/* Its late answer is ignored; a second barrier works. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EAGAIN, "the Sync was answered, nothing else");
	{
		struct counter c = { b, 0 };
		pthread_t t;

		cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, -1), 0);
		t = pbt_spawn_thread(count_thread, &c);
		cr_assert_eq(pbp_channel_sync(a, 5000), 0, "%s", pbp_channel_errmsg(a));
		cr_assert_eq(pbp_channel_close_write(a), 0);
		pbt_join(t);
	}
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- non-blocking use and duplex threads --------------------------------------- */

T(non_blocking_send_queues_then_says_would_block)
{
	pbp_channel *a, *b;
	static char frame[4000];
	pbp_msginfo mi;
	int sent = 0, rc, got = 0;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 0), 0);
	while ((rc = pbp_channel_send_raw(a, 3, 0, frame, sizeof frame)) == 0)
		sent++;
	cr_assert_eq(rc, PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	cr_assert_gt(pbp_channel_pending(a), 0);
	cr_assert_leq(pbp_channel_pending(a), 1024 * 1024 + sizeof frame + 64);
	/* An event loop: read on b, poll a's fd for writing, flush. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 0), 0);
	while (got < sent) {
		struct pollfd p = { pbp_channel_write_fd(a), POLLOUT, 0 };

		while (pbp_channel_recv(b, &mi) == 0) {
			cr_assert_eq(mi.size, sizeof frame);
			got++;
		}
		if (pbp_channel_pending(a) > 0 && poll(&p, 1, 0) > 0) {
			rc = pbp_channel_flush(a);
			cr_assert(rc == 0 || rc == PBP_EAGAIN, "%d", rc);
		}
	}
	cr_assert_eq(pbp_channel_pending(a), 0);
	cr_assert_eq(got, sent, "every queued frame arrived once");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

struct duplex_job {
	pbp_channel *ch;
	int n;
	int rc;
};

static void *
duplex_sender(void *arg)
{
	struct duplex_job *j = arg;
	int i;

	for (i = 0; i < j->n && j->rc == 0; i++)
		j->rc = pbp_channel_send_raw(j->ch, 5, (uint64_t)i, "data", 4);
	return NULL;
}

static void *
echo_thread(void *arg)
{
	struct server *s = arg;
	pbp_msginfo mi;

	while ((s->rc = pbp_channel_recv(s->ch, &mi)) == 0)
		if ((s->rc = pbp_channel_send_raw(s->ch, mi.type, mi.id, mi.payload, mi.size)) != 0)
			break;
	return NULL;
}

T(duplex_one_sending_and_one_receiving_thread)
{
	pbp_channel_options o = pbt_options();
	struct duplex_job j;
	struct server e;
	pbp_channel *a, *b;
	pthread_t ts, te;
	pbp_msginfo mi;
	int i;

	o.flags = PBP_CHANNEL_DUPLEX;
	pbt_pair(&a, &b, &o, NULL);
	e = (struct server){ b, 0 };
	te = pbt_spawn_thread(echo_thread, &e);
	j = (struct duplex_job){ a, 20000, 0 };
	ts = pbt_spawn_thread(duplex_sender, &j);
	for (i = 0; i < 20000; i++) {
		cr_assert_eq(pbp_channel_recv(a, &mi), 0, "%s", pbp_channel_errmsg(a));
		cr_assert_eq(mi.id, (uint64_t)i);
	}
	pbt_join(ts);
	cr_assert_eq(j.rc, 0, "%s", pbp_channel_send_error(a)->msg);
	cr_assert_eq(pbp_channel_sync(a, 100), PBP_EINVAL, "no barrier in duplex mode");
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(te);
	cr_assert_eq(e.rc, PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- the barrier in two steps: more -------------------------------------------- */

T(sync_finish_times_out_leaving_the_barrier_pending_and_a_new_start_replaces_it)
{
	struct counter c;
	pbp_channel *a, *b;
	pthread_t t;
	int64_t end;
	int i, rc;

	pbt_pair(&a, &b, NULL, NULL);
	atomic_store(&received, 0);
	for (i = 0; i < 100; i++)
		cr_assert_eq(pbp_channel_send_raw(a, 7, 0, "x", 1), 0);
	cr_assert_eq(pbp_channel_sync_start(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_sync_finish(a, 50), PBP_ETIMEDOUT, "nobody reads b");
	cr_assert_eq(pbp_channel_sync_finish(a, 0), PBP_EAGAIN, "it stays pending");
	c = (struct counter){ b, 0 };
	t = pbt_spawn_thread(count_thread, &c);
	end = pbp__now_ms() + 5000;
	while ((rc = pbp_channel_sync_finish(a, 0)) == PBP_EAGAIN) {
		cr_assert_lt(pbp__now_ms(), end, "no answer within 5 s");
		usleep(1000);
	}
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(atomic_load(&received), 100, "answered once b processed all before it");
	cr_assert_eq(pbp_channel_sync_finish(a, 0), PBP_EINVAL, "the barrier is over");
	/* A second start gives the first up; finish waits for the second. */
	cr_assert_eq(pbp_channel_sync_start(a), 0);
	cr_assert_eq(pbp_channel_sync_start(a), 0);
	cr_assert_eq(pbp_channel_sync_finish(a, 5000), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_sync_finish(a, 0), PBP_EINVAL, "both are over");
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(c.rc, PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(sync_without_a_barrier_on_null_or_in_duplex_is_einval)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_sync_finish(a, 100), PBP_EINVAL, "with a timeout too");
	cr_assert_neq(pbp_channel_errmsg(a)[0], '\0', "with a message");
	cr_assert_eq(pbp_channel_sync_start(NULL), PBP_EINVAL);
	cr_assert_eq(pbp_channel_sync_finish(NULL, 0), PBP_EINVAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
	o.flags = PBP_CHANNEL_DUPLEX;
	pbt_pair(&a, &b, &o, NULL);
	cr_assert_eq(pbp_channel_sync_start(a), PBP_EINVAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(an_unanswered_barrier_at_end_of_stream_is_sticky_and_met_by_recv_too)
{
	pbp_channel *a, *b;
	pbp_msginfo mi;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_sync_start(a), 0);
	cr_assert_eq(pbp_channel_close_write(b), 0);
	cr_assert_eq(pbp_channel_sync_finish(a, 5000), PBP_EUNANSWERED, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EUNANSWERED, "sticky for receiving");
	pbp_channel_free(a);
	pbp_channel_free(b);
	/* Receiving, with the barrier started and not finished. */
	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_sync_start(a), 0);
	cr_assert_eq(pbp_channel_close_write(b), 0);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 5000), 0);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EUNANSWERED, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	pbp_channel_free(b);
}
