/*
 * test_nested.c: handlers registered on a channel (pbp_channel_set_handlers)
 * that answer the peer's requests while this side waits, calls nested both
 * ways to the depth limit, request views across a handler's own calls,
 * asynchronous calls ended by pbp_channel_process(), and the rules a
 * handler must keep.  Real pipes, the peer on a thread.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pbp_config.h"
#include "pool_helper.h"
#include "support.h"

#define T(name) Test(nested, name, .timeout = 60)

/* ---- handlers that call back ------------------------------------------------- */

/* What a handler needs: its channel (the table is filled at run time). */
struct ctx {
	pbp_channel *ch;
	int calls;          /* how many times it ran */
	int nested_rc;      /* what its own call returned */
};

/* NUMBERS(n): n <= 0 answers 0; otherwise asks the peer for n - 1 and
 * answers that plus one.  An error of the inner call is passed on. */
static int
countdown(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct ctx *x = payload;
	pbptest_Numbers q = { .i64 = ((const pbptest_Numbers *)req)->i64 - 1 }, r;
	int rc;

	x->calls++;
	if (q.i64 < 0) {
		((pbptest_Numbers *)resp)->i64 = 0;
		return 0;
	}
	rc = pbp_channel_call(x->ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000);
	x->nested_rc = rc;
	if (rc == PBP_EREMOTE) {
		e->code = pbp_channel_error(x->ch)->remote_code;
		snprintf(e->message, sizeof e->message, "%s", pbp_channel_errmsg(x->ch));
		return 1;
	}
	if (rc != 0) {
		snprintf(e->message, sizeof e->message, "nested call: %s", pbp_channel_errmsg(x->ch));
		return 7;
	}
	((pbptest_Numbers *)resp)->i64 = r.i64 + 1;
	return 0;
}

/* TEXT(s): asks the peer to double strlen(s), answers "s=<result>". */
static int
lookup(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct ctx *x = payload;
	const char *s = ((const pbptest_Text *)req)->text;
	pbptest_Numbers q = { .i64 = (int64_t)strlen(s) }, r;
	int rc;

	x->calls++;
	rc = pbp_channel_call(x->ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000);
	x->nested_rc = rc;
	if (rc != 0) {
		snprintf(e->message, sizeof e->message, "%s", pbp_channel_errmsg(x->ch));
		return 9;
	}
	snprintf(((pbptest_Text *)resp)->text, sizeof ((pbptest_Text *)resp)->text, "%.200s=%lld",
	         s, (long long)r.i64);
	return 0;
}

static int
doubler(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct ctx *x = payload;

	(void)e;
	if (x != NULL)
		x->calls++;
	((pbptest_Numbers *)resp)->i64 = ((const pbptest_Numbers *)req)->i64 * 2;
	return 0;
}

struct server {
	pbp_channel *ch;
	const pbp_handler *h;
	size_t n;
	int rc;
};

static void *
serve_thread(void *arg)
{
	struct server *s = arg;

	s->rc = pbp_channel_serve(s->ch, s->h, s->n);
	return NULL;
}

/* ---- nested calls -------------------------------------------------------------- */

T(a_serving_handler_may_call_the_parent_that_waits_for_it)
{
	pbp_channel *a, *b;
	struct ctx xa = { 0 }, xb = { 0 };
	pbp_handler ha[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, doubler, &xa } };
	pbp_handler hb[] = { { pbptest_Type_TEXT, pbptest_Type_TEXT, lookup, &xb } };
	pbptest_Text req = { "four" }, resp = { "" };
	struct server s;
	pthread_t t;

	pbt_pair(&a, &b, NULL, NULL);
	xa.ch = a;
	xb.ch = b;
	cr_assert_eq(pbp_channel_set_handlers(a, ha, 1), 0, "%s", pbp_channel_errmsg(a));
	s = (struct server){ b, hb, 1, -100 };
	t = pbt_spawn_thread(serve_thread, &s);
	/* Without handlers on a, its wait would hold b's request and both
	 * would sit until the deadline. */
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp, 5000),
	             0, "%s", pbp_channel_errmsg(a));
	cr_assert_str_eq(resp.text, "four=8");
	cr_assert_eq(xa.calls, 1);
	cr_assert_eq(xb.calls, 1);
	cr_assert_eq(xb.nested_rc, 0);
	/* Nothing was held for a's recv: the request was answered. */
	cr_assert_eq(pbp_channel_buffered(a), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(b));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(calls_nest_both_ways_and_stop_at_the_depth_limit)
{
	pbp_channel *a, *b;
	struct ctx xa = { 0 }, xb = { 0 };
	pbp_handler ha[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, countdown, &xa } };
	pbp_handler hb[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, countdown, &xb } };
	pbptest_Numbers q = { .i64 = 20 }, r = { 0 };
	struct server s;
	pthread_t t;

	pbt_pair(&a, &b, NULL, NULL);
	xa.ch = a;
	xb.ch = b;
	cr_assert_eq(pbp_channel_set_handlers(a, ha, 1), 0);
	s = (struct server){ b, hb, 1, -100 };
	t = pbt_spawn_thread(serve_thread, &s);
	/* 20 -> b, 19 -> a, 18 -> b, ...: each side 10 or 11 handlers deep. */
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000),
	             0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(r.i64, 20);
	cr_assert_eq(xa.calls, 10);
	cr_assert_eq(xb.calls, 11);
	/* Deeper than PBP_MAX_NESTING on one side: the request that would go
	 * one deeper is answered PBP_REMOTE_TOO_DEEP, passed back up. */
	q.i64 = 2 * PBP_MAX_NESTING + 4;
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000),
	             PBP_EREMOTE, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_error(a)->remote_code, PBP_REMOTE_TOO_DEEP, "%s",
	             pbp_channel_errmsg(a));
	/* Both still work. */
	q.i64 = 3;
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000),
	             0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(r.i64, 3);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(b));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* BLOB with a view of its data: the handler keeps the pointer, makes a
 * call during which the peer sends 2 MiB first (the receive path grows
 * and moves), then checks every byte it points at. */
struct blob_ctx {
	pbp_channel *ch;
	size_t size;
	uint32_t seed;
	int ok;
};

static int
blob_then_call(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct blob_ctx *x = payload;
	const pbp_bytes *v = pbp_bytes_of(&((const pbptest_Blob *)req)->data);
	const uint8_t *p = v->data;
	size_t n = v->size, i;
	pbptest_Numbers q = { .i64 = 1 }, r;

	(void)resp;
	if (((const pbptest_Blob *)req)->tag == 1)
		return 0; /* one of the peer's one-way blobs */
	if (pbp_channel_call(x->ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000) != 0) {
		snprintf(e->message, sizeof e->message, "%s", pbp_channel_errmsg(x->ch));
		return 5;
	}
	x->ok = n == x->size;
	for (i = 0; x->ok && i < n; i++)
		x->ok = p[i] == pbt_pattern(x->seed, i);
	((pbptest_Blob *)resp)->tag = (uint32_t)x->ok;
	return 0;
}

/* a's handler: floods b with one-way blobs before answering. */
static int
flood_then_answer(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct ctx *x = payload;
	pbt_blob_src src = { 1024 * 1024, 99 };
	pbptest_Blob big = { .tag = 1 };
	int i;

	(void)e;
	pbt_blob_set_source(&big, &src);
	for (i = 0; i < 2; i++)
		if (pbp_channel_send(x->ch, pbptest_Type_BLOB, &big) != 0)
			return 3;
	((pbptest_Numbers *)resp)->i64 = ((const pbptest_Numbers *)req)->i64;
	return 0;
}

T(request_views_stay_valid_across_the_handlers_own_calls)
{
	pbp_channel *a, *b;
	pbp_channel_options o = pbt_options();
	struct ctx xa = { 0 };
	struct blob_ctx xb = { 0 };
	pbp_handler ha[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, flood_then_answer, &xa } };
	pbp_handler hb[] = { { pbptest_Type_BLOB, pbptest_Type_BLOB, blob_then_call, &xb } };
	pbt_blob_src src = { 100 * 1000, 7 };
	pbptest_Blob req = { 0 }, resp = { 0 };
	struct server s;
	pthread_t t;

	o.pipe_size = 64 * 1024;
	pbt_pair(&a, &b, &o, &o);
	xa.ch = a;
	xb = (struct blob_ctx){ b, src.size, src.seed, -1 };
	cr_assert_eq(pbp_channel_set_handlers(a, ha, 1), 0);
	s = (struct server){ b, hb, 1, -100 };
	t = pbt_spawn_thread(serve_thread, &s);
	pbt_blob_set_source(&req, &src);
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_BLOB, &req, pbptest_Type_BLOB, &resp, 10000),
	             0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(xb.ok, 1, "the request's view changed under the handler");
	cr_assert_eq(resp.tag, 1);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(b));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- asynchronous calls ------------------------------------------------------- */

struct outcome {
	int runs;
	int rc;
	uint64_t id;
	int64_t value;
	char msg[PBP_ERRMSG_SIZE];
};

static void
on_done(pbp_channel *ch, uint64_t id, int rc, void *resp, void *user)
{
	struct outcome *o = user;

	o->runs++;
	o->rc = rc;
	o->id = id;
	if (rc == 0)
		o->value = ((pbptest_Numbers *)resp)->i64;
	else
		snprintf(o->msg, sizeof o->msg, "%s", pbp_channel_errmsg(ch));
}

/* Runs a's loop: poll its read fd until every outcome has run once or
 * the time is up, as an event loop would. */
static void
loop_until(pbp_channel *a, struct outcome *o, size_t n, int ms)
{
	int64_t end = pbp__now_ms() + ms;

	for (;;) {
		size_t i, done = 0;
		int rc, wait;
		struct pollfd p = { pbp_channel_read_fd(a), POLLIN, 0 };

		for (i = 0; i < n; i++)
			done += o[i].runs > 0;
		if (done == n || pbp__now_ms() > end)
			return;
		wait = pbp_channel_next_timeout(a);
		if (wait < 0 || wait > 100)
			wait = 100;
		if (!pbp_channel_buffered(a))
			(void)poll(&p, 1, wait);
		rc = pbp_channel_process(a);
		cr_assert(rc >= 0 || rc == PBP_EOF || rc == PBP_EUNANSWERED, "process: %d %s", rc,
		          pbp_channel_errmsg(a));
	}
}

static const pbp_handler doubling[] = {
	{ pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, doubler, NULL },
};

T(asynchronous_calls_end_in_process_each_once)
{
	pbp_channel *a, *b;
	struct outcome o[3];
	uint64_t id[3];
	struct server s;
	pthread_t t;
	int i;

	memset(o, 0, sizeof o);
	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 0), 0);
	s = (struct server){ b, doubling, 1, -100 };
	t = pbt_spawn_thread(serve_thread, &s);
	for (i = 0; i < 3; i++) {
		pbptest_Numbers q = { .i64 = 10 + i };

		cr_assert_eq(pbp_channel_call_async(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS,
		                                    5000, on_done, &o[i], &id[i]), 0,
		             "%s", pbp_channel_errmsg(a));
		cr_assert_eq(o[i].runs, 0, "done never runs inside call_async");
	}
	/* Finishing one the blocking way is refused: process() ends it. */
	cr_assert_eq(pbp_channel_call_finish(a, id[0], pbptest_Type_NUMBERS,
	                                     &(pbptest_Numbers){ 0 }, 0), PBP_EINVAL);
	loop_until(a, o, 3, 5000);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(o[i].runs, 1);
		cr_assert_eq(o[i].rc, 0, "%s", o[i].msg);
		cr_assert_eq(o[i].id, id[i]);
		cr_assert_eq(o[i].value, 2 * (10 + i));
	}
	/* Nothing left: process says 0 and runs nothing again. */
	cr_assert_eq(pbp_channel_process(a), 0);
	cr_assert_eq(pbp_channel_next_timeout(a), -1);
	for (i = 0; i < 3; i++)
		cr_assert_eq(o[i].runs, 1);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(an_asynchronous_call_past_its_deadline_is_ended_by_the_library)
{
	pbp_channel *a, *b;
	struct outcome o = { 0 };
	pbptest_Numbers q = { .i64 = 1 };
	pbp_msginfo mi;
	int64_t t0;
	int wait;

	pbt_pair(&a, &b, NULL, NULL);
	/* b never answers (nobody serves it). */
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_channel_call_async(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, 200,
	                                    on_done, &o, NULL), 0);
	wait = pbp_channel_next_timeout(a);
	cr_assert(wait > 0 && wait <= 200, "next_timeout %d", wait);
	cr_assert_eq(pbp_channel_process(a), 0);
	cr_assert_eq(o.runs, 0, "not over before its deadline");
	loop_until(a, &o, 1, 3000);
	cr_assert_eq(o.runs, 1);
	cr_assert_eq(o.rc, PBP_ETIMEDOUT);
	cr_assert(strstr(o.msg, "deadline of 200 ms") != NULL, "%s", o.msg);
	cr_assert(pbp__now_ms() - t0 >= 200);
	cr_assert_eq(pbp_channel_next_timeout(a), -1);
	/* A late reply is dropped, and done does not run again. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 2000), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(pbp_channel_reply(b, mi.id, pbptest_Type_NUMBERS, &q), 0);
	{
		struct pollfd p = { pbp_channel_read_fd(a), POLLIN, 0 };

		cr_assert_eq(poll(&p, 1, 2000), 1, "the late reply arrives");
	}
	cr_assert_eq(pbp_channel_process(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_buffered(a), 0, "the late reply was read and dropped");
	cr_assert_eq(o.runs, 1);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(asynchronous_calls_end_when_the_stream_ends_or_the_channel_is_freed)
{
	pbp_channel *a, *b;
	struct outcome o[2];
	pbptest_Numbers q = { .i64 = 1 };

	memset(o, 0, sizeof o);
	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_call_async(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, -1,
	                                    on_done, &o[0], NULL), 0);
	pbp_channel_free(b); /* the peer leaves without answering */
	loop_until(a, o, 1, 5000);
	cr_assert_eq(o[0].runs, 1);
	cr_assert_eq(o[0].rc, PBP_EUNANSWERED, "%d %s", o[0].rc, o[0].msg);
	cr_assert_eq(pbp_channel_process(a), PBP_EUNANSWERED);
	pbp_channel_free(a);

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_call_async(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, -1,
	                                    on_done, &o[1], NULL), 0);
	pbp_channel_free(a); /* freed with the call outstanding: done is told */
	cr_assert_eq(o[1].runs, 1);
	cr_assert_eq(o[1].rc, PBP_ECANCELED);
	pbp_channel_free(b);
}

/* b calls a, which answers from its handler table in process(); a
 * one-way message without a handler is held for a's recv. */
struct caller {
	pbp_channel *ch;
	int rc;
	int64_t value;
};

static void *
call_thread(void *arg)
{
	struct caller *c = arg;
	pbptest_Numbers q = { .i64 = 33 }, r = { 0 };
	pbptest_Text note = { "by the way" };

	if ((c->rc = pbp_channel_send(c->ch, pbptest_Type_TEXT, &note)) != 0)
		return NULL;
	c->rc = pbp_channel_call(c->ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 5000);
	c->value = r.i64;
	return NULL;
}

T(process_answers_requests_for_handlers_and_holds_the_rest)
{
	pbp_channel *a, *b;
	struct ctx xa = { 0 };
	pbp_handler ha[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, doubler, &xa } };
	struct caller c;
	pbp_msginfo mi;
	pbt_any in;
	uint32_t type;
	pthread_t t;
	int held = 0, rc;
	int64_t end;

	pbt_pair(&a, &b, NULL, NULL);
	xa.ch = a;
	cr_assert_eq(pbp_channel_set_handlers(a, ha, 1), 0);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 0), 0);
	c = (struct caller){ b, -100, 0 };
	t = pbt_spawn_thread(call_thread, &c);
	end = pbp__now_ms() + 5000;
	while (xa.calls == 0 && pbp__now_ms() < end) {
		struct pollfd p = { pbp_channel_read_fd(a), POLLIN, 0 };

		(void)poll(&p, 1, 100);
		rc = pbp_channel_process(a);
		cr_assert(rc >= 0, "%s", pbp_channel_errmsg(a));
		held += rc;
	}
	pbt_join(t);
	cr_assert_eq(c.rc, 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(c.value, 66);
	cr_assert_eq(xa.calls, 1);
	cr_assert(held >= 1, "the one-way TEXT is held");
	cr_assert_eq(pbp_channel_buffered(a), 1);
	cr_assert_eq(pbp_channel_recv_msg(a, &type, &in, sizeof in), 0);
	cr_assert_eq(type, pbptest_Type_TEXT);
	cr_assert_str_eq(in.text.text, "by the way");
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EAGAIN, "nothing else: one code for would block");
	pbp_channel_free(b);
	end = pbp__now_ms() + 5000;
	while ((rc = pbp_channel_process(a)) == 0 && pbp__now_ms() < end) {
		struct pollfd p = { pbp_channel_read_fd(a), POLLIN, 0 };

		(void)poll(&p, 1, 100);
	}
	cr_assert_eq(rc, PBP_EOF, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
}

/* ---- the rules ------------------------------------------------------------------ */

struct rules {
	pbp_channel *ch;
	int set_rc, process_rc, sync_rc, serve_rc;
	uint64_t outer;
	int cancel_rc;
};

static int
rule_breaker(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct rules *x = payload;

	(void)e;
	x->set_rc = pbp_channel_set_handlers(x->ch, NULL, 0);
	x->process_rc = pbp_channel_process(x->ch);
	x->serve_rc = pbp_channel_serve(x->ch, NULL, 0);
	x->sync_rc = pbp_channel_sync_start(x->ch);
	/* Ending the call the interrupted code waits for. */
	x->cancel_rc = pbp_channel_call_cancel(x->ch, x->outer);
	((pbptest_Numbers *)resp)->i64 = ((const pbptest_Numbers *)req)->i64;
	return 0;
}

static int
echo_back(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	struct ctx *x = payload;
	pbptest_Numbers q = *(const pbptest_Numbers *)req, r;

	(void)e;
	/* Calls a, whose handler breaks the rules, then answers. */
	if (pbp_channel_call(x->ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 5000) != 0)
		return 4;
	*(pbptest_Numbers *)resp = r;
	return 0;
}

T(a_handler_that_breaks_the_rules_is_refused_and_nothing_crashes)
{
	pbp_channel *a, *b;
	struct rules xa = { 0 };
	struct ctx xb = { 0 };
	pbp_handler ha[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, rule_breaker, &xa } };
	pbp_handler hb[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, echo_back, &xb } };
	pbp_handler bad[] = { { 999, pbptest_Type_NUMBERS, doubler, NULL } };
	pbptest_Numbers q = { .i64 = 5 }, r = { 0 };
	struct server s;
	pthread_t t;

	pbt_pair(&a, &b, NULL, NULL);
	xa.ch = a;
	xb.ch = b;
	cr_assert_eq(pbp_channel_set_handlers(a, bad, 1), PBP_EINVAL, "unregistered type");
	cr_assert_eq(pbp_channel_set_handlers(a, NULL, 1), PBP_EINVAL);
	cr_assert_eq(pbp_channel_call_async(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, 0,
	                                    on_done, NULL, NULL), PBP_EINVAL, "timeout 0");
	cr_assert_eq(pbp_channel_call_async(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, 100,
	                                    NULL, NULL, NULL), PBP_EINVAL, "no done");
	cr_assert_eq(pbp_channel_set_handlers(a, ha, 1), 0);
	s = (struct server){ b, hb, 1, -100 };
	t = pbt_spawn_thread(serve_thread, &s);
	cr_assert_eq(pbp_channel_call_start(a, pbptest_Type_NUMBERS, &q, &xa.outer), 0);
	cr_assert_eq(pbp_channel_call_finish(a, xa.outer, pbptest_Type_NUMBERS, &r, 5000),
	             PBP_EINVAL, "the handler ended it: %s", pbp_channel_errmsg(a));
	cr_assert_eq(xa.set_rc, PBP_EINVAL);
	cr_assert_eq(xa.process_rc, PBP_EINVAL);
	cr_assert_eq(xa.serve_rc, PBP_EINVAL);
	cr_assert_eq(xa.sync_rc, 0, "no barrier waited: a handler may start one");
	cr_assert_eq(xa.cancel_rc, 0);
	/* The channel still works. */
	cr_assert_eq(pbp_channel_set_handlers(a, NULL, 0), 0);
	cr_assert_eq(pbp_channel_sync(a, 5000), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(handlers_are_refused_on_duplex_channels)
{
	pbp_channel *a, *b;
	pbp_channel_options o = pbt_options();

	o.flags = PBP_CHANNEL_DUPLEX;
	pbt_pair(&a, &b, &o, NULL);
	cr_assert_eq(pbp_channel_set_handlers(a, doubling, 1), PBP_EINVAL);
	cr_assert_eq(pbp_channel_process(a), PBP_EINVAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- with a helper process ------------------------------------------------------ */

static int
times_ten(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	(void)e;
	(*(int *)payload)++;
	((pbptest_Numbers *)resp)->i64 = ((const pbptest_Numbers *)req)->i64 * 10;
	return 0;
}

static pbp_child *
spawn_helper(void)
{
	static const char *const argv[] = { "pbptest-pool-helper", NULL };
	static pbp_channel_options co;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c = NULL;
	pbp_error err;

	co = pbt_options();
	so.channel = &co;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_POOL_HELPER, argv, &so, &err), 0, "%s", err.msg);
	return c;
}

T(a_helper_process_calls_back_while_its_parent_waits)
{
	pbp_child *c = spawn_helper();
	pbp_channel *ch = pbp_child_channel(c);
	int runs = 0;
	pbp_handler h[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, times_ten, &runs } };
	pbptest_Numbers q = { .i32 = POOL_OP_CALLBACK, .i64 = 4 }, r = { 0 };
	pbp_exit_status st;

	/* Without a handler the helper's request is held while the parent
	 * waits, and both sit until the parent's deadline. */
	cr_assert_eq(pbp_channel_call(ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 300),
	             PBP_ETIMEDOUT, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_channel_buffered(ch), 1, "the helper's request is held");
	{
		pbp_msginfo mi;
		pbptest_Numbers back = { .i64 = 0 };

		cr_assert_eq(pbp_channel_recv(ch, &mi), 0);
		cr_assert_neq(mi.id, 0);
		cr_assert_eq(pbp_channel_reply(ch, mi.id, pbptest_Type_NUMBERS, &back), 0);
	}
	cr_assert_eq(pbp_channel_sync(ch, 5000), 0, "%s", pbp_channel_errmsg(ch));
	/* With one, the parent answers inside its wait. */
	cr_assert_eq(pbp_channel_set_handlers(ch, h, 1), 0);
	cr_assert_eq(pbp_channel_call(ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 5000),
	             0, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(r.i64, 41);
	cr_assert_eq(runs, 1);
	cr_assert_eq(pbp_child_close(c, 2000, &st), 0);
	cr_assert(st.exited && st.code == 0);
	pbp_child_free(c);
}

T(a_helper_process_calls_back_an_event_loop)
{
	pbp_child *c = spawn_helper();
	pbp_channel *ch = pbp_child_channel(c);
	int runs = 0, i;
	pbp_handler h[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, times_ten, &runs } };
	struct outcome o[4];

	memset(o, 0, sizeof o);
	cr_assert_eq(pbp_channel_set_handlers(ch, h, 1), 0);
	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_SEND, 0), 0);
	for (i = 0; i < 4; i++) {
		pbptest_Numbers q = { .i32 = POOL_OP_CALLBACK, .i64 = i };

		cr_assert_eq(pbp_channel_call_async(ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS,
		                                    5000, on_done, &o[i], NULL), 0);
	}
	loop_until(ch, o, 4, 5000);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(o[i].runs, 1);
		cr_assert_eq(o[i].rc, 0, "%s", o[i].msg);
		cr_assert_eq(o[i].value, 10 * i + 1);
	}
	cr_assert_eq(runs, 4);
	pbp_child_free(c);
}

/* ---- a peer that asks and never reads --------------------------------------------- */

static int
long_text(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	(void)req;
	(void)e;
	(void)payload;
	memset(((pbptest_Text *)resp)->text, 'x', 250);
	return 0;
}

struct flooder {
	pbp_channel *ch;
	int sent;
};

static void *
flood_thread(void *arg)
{
	struct flooder *f = arg;
	pbptest_Text t = { "?" };
	uint64_t id;

	/* Requests, and never a read: the answers pile up in the pipe. */
	while (f->sent < 3000 && pbp_channel_call_start(f->ch, pbptest_Type_TEXT, &t, &id) == 0)
		f->sent++;
	return NULL;
}

T(answers_to_a_peer_that_never_reads_do_not_hold_a_call_past_its_deadline)
{
	pbp_channel *a, *b;
	pbp_channel_options o = pbt_options();
	pbp_handler ha[] = { { pbptest_Type_TEXT, pbptest_Type_TEXT, long_text, NULL } };
	pbptest_Numbers q = { .i64 = 1 }, r;
	struct flooder f;
	pthread_t t;
	int64_t t0;
	int rc;

	o.pipe_size = 64 * 1024;
	pbt_pair(&a, &b, &o, &o);
	cr_assert_eq(pbp_channel_set_handlers(a, ha, 1), 0);
	f = (struct flooder){ b, 0 };
	t = pbt_spawn_thread(flood_thread, &f);
	/* a's send deadline is none: only its call's deadline bounds the
	 * answers it writes while it waits. */
	t0 = pbp__now_ms();
	rc = pbp_channel_call(a, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 500);
	cr_assert_eq(rc, PBP_ETIMEDOUT, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_lt(pbp__now_ms() - t0, pbt_scale(1000), "the call took %lld ms",
	             (long long)(pbp__now_ms() - t0));
	pbt_join(t);
	cr_assert_gt(f.sent, 1000, "the peer sent %d requests", f.sent);
	pbp_channel_free(b);
	pbp_channel_free(a);
}

T(process_reads_a_bounded_number_of_frames_per_call)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "m" };
	pbp_msginfo mi;
	int i, rc, got = 0, first;

	pbt_pair(&a, &b, NULL, NULL);
	for (i = 0; i < 3000; i++)
		cr_assert_eq(pbp_channel_send(b, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 0), 0);
	first = pbp_channel_process(a);
	cr_assert(first > 0 && first <= 1024, "the first call held %d", first);
	cr_assert_eq(pbp_channel_buffered(a), 1);
	for (i = 0; i < 100 && got < 3000; i++) {
		rc = pbp_channel_process(a);
		cr_assert(rc >= 0, "%s", pbp_channel_errmsg(a));
		while (pbp_channel_recv(a, &mi) == 0)
			got++;
	}
	cr_assert_eq(got, 3000);
	cr_assert_eq(pbp_channel_buffered(a), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(a_loop_ends_a_helper_without_blocking)
{
	pbp_child *c = spawn_helper();
	pbp_channel *ch = pbp_child_channel(c);
	pbp_os_handle h = pbp_child_exit_handle(c);
	pbp_exit_status st;
	int64_t end = pbp__now_ms() + pbt_scale(5000);
	int rc;

#if (PBP_HAVE_PIDFD_OPEN || PBP_HAVE_SYS_PIDFD_OPEN) && \
	(PBP_HAVE_PIDFD_SEND_SIGNAL || PBP_HAVE_SYS_PIDFD_SEND_SIGNAL)
	/* Built with pidfds (not scripts/test-fallbacks): valgrind alone
	 * refuses them at run time. */
	if (!pbt_valgrind())
		cr_assert_neq(h, PBP_OS_HANDLE_INVALID, "a pidfd (Linux >= 5.3)");
#endif
	cr_assert_eq(pbp_child_wait(c, 0, &st), PBP_ETIMEDOUT, "still running");
	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_SEND, 0), 0);
	rc = pbp_channel_goodbye(ch, PBP_GOODBYE_DONE, "bye");
	cr_assert(rc == 0 || rc == PBP_EAGAIN, "%d %s", rc, pbp_channel_errmsg(ch));
	while (pbp_channel_pending(ch) > 0 && pbp__now_ms() < end) {
		rc = pbp_channel_flush(ch);
		cr_assert(rc == 0 || rc == PBP_EAGAIN, "%d %s", rc, pbp_channel_errmsg(ch));
	}
	if (h != PBP_OS_HANDLE_INVALID) {
		struct pollfd p = { h, POLLIN, 0 };

		cr_assert_eq(poll(&p, 1, pbt_scale(5000)), 1, "the exit handle became readable");
		cr_assert_eq(pbp_child_wait(c, 0, &st), 0, "%s", pbp_child_error(c)->msg);
	} else {
		while ((rc = pbp_child_wait(c, 0, &st)) == PBP_ETIMEDOUT && pbp__now_ms() < end)
			usleep(10000);
		cr_assert_eq(rc, 0);
	}
	cr_assert(st.exited && st.code == 0, "the helper ended cleanly at the Goodbye");
	cr_assert_eq(pbp_child_exit_handle(c), PBP_OS_HANDLE_INVALID, "gone once reaped");
	pbp_child_free(c);
}
