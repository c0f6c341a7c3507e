/*
 * test_pool_api.c: more of pbp_pool.h as an application uses it, against
 * pbptest-pool-helper (pool_helper.c): failed starts, argument checks, the
 * queue, callbacks, death reports, retries, backoff, the crash window and
 * cap, failed respawns, hangs, freeing busy helpers, an event loop, one
 * program per slot.  test_pool.c has the basics.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "pool_helper.h"
#include "support.h"

#define T(name) Test(pool_api, name, .timeout = 120)
#define NUM pbptest_Type_NUMBERS

static int64_t
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct ev {
	pbp_pool_event e; /* report NULL: it is valid during the callback only */
	int has_report;
	pbp_report r;
	int64_t at_ms;
};

static struct ev evs[128];
static size_t nev;
static void (*on_ev_hook)(pbp_pool *p, const struct ev *e);

static void
on_ev(pbp_pool *p, const pbp_pool_event *pe, void *payload)
{
	struct ev *e = &evs[nev];

	cr_assert_eq(payload, (void *)evs, "on_event gets event_payload");
	cr_assert_lt(nev++, sizeof evs / sizeof evs[0]);
	memset(e, 0, sizeof *e);
	e->e = *pe;
	e->e.report = NULL;
	e->at_ms = now_ms();
	if ((e->has_report = pe->report != NULL) != 0)
		e->r = *pe->report;
	if (on_ev_hook != NULL)
		on_ev_hook(p, e);
}

/* The k-th event of a kind (0: any) for a slot (-1: any); NULL if none. */
static const struct ev *
nth(int kind, long slot, size_t k)
{
	size_t i;

	for (i = 0; i < nev; i++)
		if ((kind == 0 || evs[i].e.kind == kind) &&
		    (slot < 0 || evs[i].e.slot == (size_t)slot) && k-- == 0)
			return &evs[i];
	return NULL;
}

static size_t
nkind(int kind, long slot)
{
	size_t n = 0;

	while (nth(kind, slot, n) != NULL)
		n++;
	return n;
}

/* How an asynchronous call ended. */
struct res {
	uint64_t id, seen_id;
	int64_t arg;
	int ncalls, rc, has_resp, has_err;
	pbptest_Numbers n; /* the reply */
	pbp_error err;
};

static int inside_async;
static uint64_t order[256];
static size_t norder;
static void (*on_done_hook)(pbp_pool *p, struct res *r);

static void
on_done(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err, void *payload)
{
	struct res *r = payload;

	cr_assert(!inside_async, "done ran inside pbp_pool_call_async() (rc %d: %s)", rc,
	          err ? err->msg : "");
	r->ncalls++;
	r->seen_id = id;
	r->rc = rc;
	if ((r->has_resp = resp != NULL) != 0)
		r->n = *(const pbptest_Numbers *)resp;
	if ((r->has_err = err != NULL) != 0)
		r->err = *err;
	if (norder < sizeof order / sizeof order[0])
		order[norder++] = id;
	if (on_done_hook != NULL)
		on_done_hook(p, r);
}

static int
go(pbp_pool *p, int op, int64_t arg, int timeout_ms, struct res *r)
{
	pbptest_Numbers q = pbptest_Numbers_init_zero;
	int rc;

	memset(r, 0, sizeof *r);
	r->arg = q.i64 = arg;
	q.i32 = op;
	inside_async = 1;
	rc = pbp_pool_call_async(p, NUM, &q, NUM, timeout_ms,
	                         on_done, r, &r->id);
	inside_async = 0;
	return rc;
}

/* r ended once, with rc (0: with the reply to its request). */
static void
check(const struct res *r, int rc)
{
	cr_assert_eq(r->ncalls, 1, "call %llu ended %d times", (unsigned long long)r->id,
	             r->ncalls);
	cr_assert_eq(r->seen_id, r->id);
	cr_assert_eq(r->rc, rc, "call %llu: rc %d, not %d: %s", (unsigned long long)r->id, r->rc,
	             rc, r->err.msg);
	if (rc == 0)
		cr_assert(r->has_resp && !r->has_err && r->n.i64 == r->arg + 1);
	else
		cr_assert(!r->has_resp && r->has_err && r->err.code == rc, "an error, no reply");
}

static pbp_channel_options co;
static pbp_spawn_options so;
static const char *av[8];
static const uint32_t idem[] = { NUM };

/* size helpers running pbptest-pool-helper ARGS... (NULL-terminated),
 * stderr captured, every event recorded, no pings. */
static pbp_pool_options
opts(size_t size, const char *const *args)
{
	pbp_pool_options o = PBP_POOL_OPTIONS_INIT;
	size_t n = 0;

	co = pbt_options();
	so = (pbp_spawn_options)PBP_SPAWN_OPTIONS_INIT;
	so.channel = &co;
	so.stderr_mode = PBP_STDIO_CAPTURE;
	av[n++] = "pbptest-pool-helper";
	while (args != NULL && *args != NULL && n < 7)
		av[n++] = *args++;
	av[n] = NULL;
	o.size = size;
	o.path = PBPTEST_POOL_HELPER;
	o.argv = av;
	o.spawn = &so;
	o.ping_interval_ms = -1;
	o.ping_timeout_ms = pbt_scale(3000);
	o.on_event = on_ev;
	o.event_payload = evs;
	nev = norder = 0;
	return o;
}

static pbp_pool *
up(const pbp_pool_options *o)
{
	pbp_pool *p = NULL;
	pbp_error err;
	int rc = pbp_pool_start(&p, o, &err);

	cr_assert_eq(rc, 0, "pbp_pool_start: %d: %s", rc, err.msg);
	return p;
}

static int
op(pbp_pool *p, int what, int64_t arg, pbptest_Numbers *out, int timeout_ms)
{
	pbptest_Numbers q = pbptest_Numbers_init_zero, r;

	q.i32 = what;
	q.i64 = arg;
	return pbp_pool_call(p, NUM, &q, NUM, out ? out : &r, timeout_ms);
}

/* An ECHO that must work: the pid that answered. */
static pid_t
echo(pbp_pool *p)
{
	pbptest_Numbers r = pbptest_Numbers_init_zero;
	int rc = op(p, POOL_OP_ECHO, 7, &r, pbt_scale(5000));

	cr_assert_eq(rc, 0, "echo: %d: %s", rc, pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 8);
	return (pid_t)r.u64;
}

static pbp_pool_stats
st(const pbp_pool *p)
{
	pbp_pool_stats s;

	cr_assert_eq(pbp_pool_stats_get(p, &s), 0);
	return s;
}

static pid_t
pid_of(pbp_pool *p, size_t slot)
{
	cr_assert_not_null(pbp_pool_child(p, slot), "slot %zu has no helper", slot);
	return pbp_child_pid(pbp_pool_child(p, slot));
}

#define GONE(pid) (kill((pid), 0) == -1 && errno == ESRCH)
#define SIG(p, slot, signo) cr_assert_eq(pbp_child_kill(pbp_pool_child((p), (slot)), (signo)), 0)
#define UNTIL(p, cond, ms)                                                             \
	do {                                                                           \
		int64_t until_ = now_ms() + (ms);                                      \
		while (!(cond)) {                                                      \
			cr_assert_lt(now_ms(), until_, "not within %d ms: %s (%zu events)", \
			             (int)(ms), #cond, nev);                           \
			cr_assert_geq(pbp_pool_run((p), 20), 0);                       \
		}                                                                      \
	} while (0)

/* Runs the pool for ms; the number of calls that ended. */
static int
spin(pbp_pool *p, int ms)
{
	int n = 0, rc;

	for (int64_t end = now_ms() + ms; now_ms() < end; n += rc)
		cr_assert_geq(rc = pbp_pool_run(p, 20), 0);
	return n;
}

static void
no_children(void)
{
	errno = 0;
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child or a zombie is left");
	cr_assert_eq(errno, ECHILD);
}

T(a_later_slot_failing_to_start_ends_the_started_ones_and_leaves_nothing)
{
	static const char *const exit3[] = { "pbptest-pool-helper", "--exit-at-start", "3", NULL };
	static const char *const silent[] = { "--no-handshake", NULL };
	pbp_pool_helper hs[2] = { { PBPTEST_POOL_HELPER, NULL }, { "/nonexistent/pool-helper", NULL } };
	pbp_pool_options o = opts(2, NULL);
	pbp_pool *p = NULL;
	pbp_error err;
	int64_t t0;
	int rc;

	hs[0].argv = av;
	o.helpers = hs; /* slot i runs helpers[i % 2] */
	o.nhelpers = 2;
	rc = pbp_pool_start(&p, &o, &err);
	cr_assert(rc == PBP_EEXEC || (pbt_valgrind() && rc != 0), "rc %d: %s", rc, err.msg);
	cr_assert(pbt_valgrind() || err.sys_errno == ENOENT, "errno %d", err.sys_errno);
	cr_assert_not_null(strstr(err.msg, "helper 1"), "names slot 1: %s", err.msg);
	cr_assert_null(p);
	no_children();
	hs[1] = (pbp_pool_helper){ PBPTEST_POOL_HELPER, exit3 };
	rc = pbp_pool_start(&p, &o, &err);
	cr_assert(rc == PBP_ETRUNC || rc == PBP_EPIPE, "rc %d: %s", rc, err.msg);
	cr_assert(strstr(err.msg, "helper 1") && strstr(err.msg, "status 3"), "%s", err.msg);
	no_children();
	o = opts(1, silent); /* never handshakes: the handshake deadline */
	co.handshake_timeout_ms = 300;
	t0 = now_ms();
	rc = pbp_pool_start(&p, &o, &err);
	cr_assert_eq(rc, PBP_ETIMEDOUT, "rc %d: %s", rc, err.msg);
	cr_assert_lt(now_ms() - t0, pbt_scale(3000));
	cr_assert_null(p);
	cr_assert_eq(nev, 0, "no events from a failed start (%zu events)", nev);
	no_children();
}

T(bad_arguments_are_refused_and_async_calls_end_inside_blocking_ones)
{
	pbp_pool_options o = opts(2, NULL);
	pbp_pool *p = up(&o);
	pbptest_Numbers q = pbptest_Numbers_init_zero, r;
	struct res d;

	q.i32 = POOL_OP_ECHO;
	cr_assert_eq(pbp_pool_call(NULL, NUM, &q, NUM, &r, 9), PBP_EINVAL);
	cr_assert_eq(pbp_pool_call(p, NUM, NULL, NUM, &r, 9), PBP_EINVAL);
	cr_assert_eq(pbp_pool_call(p, NUM, &q, NUM, NULL, 9), PBP_EINVAL);
	cr_assert_eq(pbp_pool_call(p, 77, &q, NUM, &r, 9), PBP_ETYPE);
	cr_assert_eq(pbp_pool_call(p, NUM, &q, 77, &r, 9), PBP_ETYPE);
	cr_assert_eq(pbp_pool_error(p)->code, PBP_ETYPE);
	cr_assert_eq(pbp_pool_call_async(p, 77, &q, NUM, 9, on_done, &d, NULL), PBP_ETYPE);
	cr_assert_eq(pbp_pool_call_async(NULL, NUM, &q, NUM, 9, on_done, &d, NULL), PBP_EINVAL);
	cr_assert_eq(pbp_pool_call_async(p, NUM, &q, NUM, 9, NULL, &d, NULL), PBP_EINVAL);
	cr_assert_eq(pbp_pool_run(NULL, 0), PBP_EINVAL);
	cr_assert_eq(spin(p, 100), 0, "no refused call ends");
	cr_assert_eq(norder, 0, "done is not called for a refused call");
	cr_assert_eq(go(p, POOL_OP_SLEEP, 100, -1, &d), 0);
	cr_assert_eq(op(p, POOL_OP_SLEEP, 400, &r, pbt_scale(5000)), 0, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 401);
	check(&d, 0);
	cr_assert_neq((pid_t)d.n.u64, (pid_t)r.u64, "the two calls ran on the two helpers");
	/* An application error reaches done with its code. */
	cr_assert_eq(go(p, POOL_OP_APP_ERROR, 43, pbt_scale(5000), &d), 0);
	UNTIL(p, d.ncalls > 0, pbt_scale(5000));
	check(&d, PBP_EREMOTE);
	cr_assert_eq(d.err.remote_code, 43);
	cr_assert_not_null(strstr(d.err.msg, "application error 43"), "%s", d.err.msg);
	cr_assert(st(p).calls_ok == 2 && st(p).calls_failed == 1 && st(p).deaths == 0);
	cr_assert_eq(nev, 0, "%zu events", nev);
	pbp_pool_free(p);
}

T(the_queue_runs_calls_in_order_is_bounded_and_its_deadlines_kill_nothing)
{
	pbp_pool_options o = opts(1, NULL);
	pbp_pool *p;
	struct res d[4], late;
	int64_t t0;
	int i;

	o.max_queued = 3;
	p = up(&o);
	cr_assert_eq(go(p, POOL_OP_SLEEP, 1000, -1, &d[0]), 0);
	for (i = 1; i < 4; i++)
		cr_assert_eq(go(p, POOL_OP_ECHO, i * 10, -1, &d[i]), 0);
	cr_assert(st(p).in_flight == 1 && st(p).queued == 3 && st(p).idle == 0);
	t0 = now_ms();
	cr_assert_eq(op(p, POOL_OP_ECHO, 1, NULL, 5000), PBP_ELIMIT);
	cr_assert_lt(now_ms() - t0, 300, "PBP_ELIMIT at once");
	cr_assert_eq(go(p, POOL_OP_ECHO, 1, 5000, &late), PBP_ELIMIT);
	UNTIL(p, d[3].ncalls == 1, pbt_scale(5000));
	cr_assert_eq(norder, 4);
	for (i = 0; i < 4; i++) {
		check(&d[i], 0);
		cr_assert_eq(order[i], d[i].id, "call %d ended out of order", i);
	}
	/* Deadlines in the queue end the call at once, and kill no helper. */
	cr_assert_eq(go(p, POOL_OP_SLEEP, 1500, -1, &d[0]), 0);
	t0 = now_ms();
	cr_assert_eq(op(p, POOL_OP_ECHO, 1, NULL, 200), PBP_ETIMEDOUT);
	cr_assert_eq(pbp_pool_error(p)->code, PBP_ETIMEDOUT);
	cr_assert(now_ms() - t0 >= 190 && now_ms() - t0 < 1200, "not at its deadline");
	cr_assert_eq(go(p, POOL_OP_ECHO, 2, 200, &late), 0);
	UNTIL(p, late.ncalls == 1, 1200);
	check(&late, PBP_ETIMEDOUT);
	cr_assert_eq(d[0].ncalls, 0, "the running call goes on");
	UNTIL(p, d[0].ncalls == 1, pbt_scale(5000));
	check(&d[0], 0);
	cr_assert_eq(nev, 0, "a deadline in the queue kills nothing (%zu events)", nev);
	cr_assert(st(p).hung == 0 && st(p).calls_failed == 2 && st(p).queued == 0);
	pbp_pool_free(p);
}

/* done and on_event may start calls and read the pool, not run it. */
static struct res chain[5];
static int nchain, reent[3];

static void
chain_done(pbp_pool *p, struct res *r)
{
	pbptest_Numbers q = pbptest_Numbers_init_zero, out;
	pbp_pool_stats s;

	(void)r;
	if (nchain == 1) {
		q.i32 = POOL_OP_ECHO;
		reent[0] = pbp_pool_run(p, 0);
		reent[1] = pbp_pool_call(p, NUM, &q, NUM, &out, 100);
		cr_assert_eq(pbp_pool_stats_get(p, &s), 0);
	}
	if (nchain < 5) {
		cr_assert_eq(go(p, POOL_OP_ECHO, nchain, -1, &chain[nchain]), 0);
		nchain++;
	}
}

static void
reenter_on_death(pbp_pool *p, const struct ev *e)
{
	if (e->e.kind == PBP_POOL_DIED)
		reent[2] = pbp_pool_run(p, 0);
}

T(callbacks_may_start_calls_but_not_run_the_pool)
{
	pbp_pool_options o = opts(2, NULL);
	pbp_pool *p = up(&o);
	int i;

	reent[0] = reent[1] = reent[2] = 1;
	on_done_hook = chain_done;
	cr_assert_eq(go(p, POOL_OP_ECHO, 0, -1, &chain[0]), 0);
	nchain = 1;
	UNTIL(p, nchain == 5 && chain[4].ncalls == 1, pbt_scale(5000));
	on_done_hook = NULL;
	for (i = 0; i < 5; i++)
		check(&chain[i], 0);
	cr_assert_eq(reent[0], PBP_EINVAL, "pbp_pool_run() from done");
	cr_assert_eq(reent[1], PBP_EINVAL, "pbp_pool_call() from done");
	on_ev_hook = reenter_on_death;
	SIG(p, 0, SIGKILL);
	UNTIL(p, nkind(PBP_POOL_STARTED, 0) == 1, pbt_scale(5000));
	on_ev_hook = NULL;
	cr_assert_eq(reent[2], PBP_EINVAL, "pbp_pool_run() from on_event");
	echo(p);
	pbp_pool_free(p);
}

T(death_reports_say_how_the_helper_ended_and_spare_the_other_slot)
{
	pbp_pool_options o = opts(2, NULL);
	pbp_pool *p = up(&o);
	const struct ev *died, *started;
	pid_t pids[2];
	struct res d;
	size_t k;

	pids[0] = pid_of(p, 0), pids[1] = pid_of(p, 1);
	cr_assert_eq(op(p, POOL_OP_CRASH, 0, NULL, pbt_scale(5000)), PBP_ELOST);
	UNTIL(p, nkind(PBP_POOL_STARTED, -1) == 1, pbt_scale(5000));
	died = nth(PBP_POOL_DIED, -1, 0);
	started = nth(PBP_POOL_STARTED, -1, 0);
	cr_assert_not_null(died, "%zu events", nev);
	k = died->e.slot;
	cr_assert(died->has_report && died->r.fate == PBP_FATE_SIGNALED, "fate %d", died->r.fate);
	cr_assert_eq(died->r.status.signal, SIGABRT);
	cr_assert_eq(died->r.pid, pids[k]);
	cr_assert_not_null(strstr(died->r.stderr_tail, "crashing"), "%s", died->r.stderr_tail);
	cr_assert(started > died && started->e.slot == k && !started->has_report);
	cr_assert(started->e.restarts == 1 && started->e.deaths == 0);
	cr_assert_eq(pid_of(p, k), started->e.pid);
	cr_assert_eq(pid_of(p, 1 - k), pids[1 - k], "the other slot is untouched");
	cr_assert(st(p).calls_failed == 1 && st(p).live == 2);
	nev = 0; /* exiting in a call: lost too, with the exit status */
	cr_assert_eq(go(p, POOL_OP_EXIT, 7, pbt_scale(5000), &d), 0);
	UNTIL(p, d.ncalls == 1 && nkind(PBP_POOL_STARTED, -1) == 1, pbt_scale(5000));
	check(&d, PBP_ELOST);
	died = nth(PBP_POOL_DIED, -1, 0);
	cr_assert(died->has_report && died->r.fate == PBP_FATE_EXITED && died->r.status.code == 7,
	          "fate %d code %d", died->r.fate, died->r.status.code);
	echo(p);
	pbp_pool_free(p);
	no_children();
}

T(an_idempotent_call_is_retried_on_another_helper_and_tried_on_3_by_default)
{
	char flag[] = "/tmp/pbptest-poolapi-XXXXXX";
	const char *args[] = { "--crash-flag", flag, NULL };
	pbp_pool_options o = opts(3, args);
	pbp_pool *p;
	struct res d;

	cr_assert_geq(close(mkstemp(flag)), 0);
	cr_assert_eq(unlink(flag), 0); /* the first CRASH_ONCE creates it and crashes */
	o.idempotent = idem;
	o.nidempotent = 1;
	p = up(&o);
	cr_assert_eq(go(p, POOL_OP_CRASH_ONCE, 8, pbt_scale(10000), &d), 0);
	UNTIL(p, d.ncalls > 0, pbt_scale(10000));
	check(&d, 0);
	cr_assert_eq(nkind(PBP_POOL_DIED, -1), 1, "%zu events", nev);
	cr_assert_neq((pid_t)d.n.u64, nth(PBP_POOL_DIED, -1, 0)->e.pid, "answered by another helper");
	cr_assert(spin(p, 200) == 0 && d.ncalls == 1, "it ended twice");
	cr_assert(st(p).retries == 1 && st(p).calls_lost == 0);
	/* A call that kills each helper it runs on is lost after 3 of them. */
	cr_assert_eq(op(p, POOL_OP_CRASH, 0, NULL, pbt_scale(20000)), PBP_ELOST);
	cr_assert_not_null(strstr(pbp_pool_error(p)->msg, "3 attempts"), "%s",
	                   pbp_pool_error(p)->msg);
	cr_assert(st(p).retries == 3 && st(p).calls_lost == 1 && nkind(PBP_POOL_DIED, -1) == 4);
	pbp_pool_free(p);
	unlink(flag);
}

T(backoff_stops_doubling_at_its_max_and_a_call_waits_for_the_restart)
{
	static const int delay[] = { 0, 150, 300, 600, 600 };
	pbp_pool_options o = opts(1, NULL);
	pbp_pool *p;
	int k;

	o.backoff_initial_ms = 150;
	o.backoff_max_ms = 600;
	o.max_crashes = PBP_POOL_NEVER_GIVE_UP;
	p = up(&o);
	for (k = 0; k < 5; k++) {
		const struct ev *died, *started;

		cr_assert_eq(op(p, POOL_OP_CRASH, 0, NULL, pbt_scale(10000)), PBP_ELOST);
		cr_assert_not_null(died = nth(PBP_POOL_DIED, 0, (size_t)k), "%zu events", nev);
		cr_assert_eq(died->e.deaths, (unsigned)k + 1);
		cr_assert_eq(died->e.restart_in_ms, delay[k], "death %d", k + 1);
		if (k == 2) { /* the slot waits without a helper; a call waits for it */
			cr_assert(st(p).restarting == 1 && st(p).live == 0);
			cr_assert_null(pbp_pool_child(p, 0));
			cr_assert_leq(pbp_pool_next_timeout(p), delay[k], "the restart is due");
			echo(p);
			cr_assert_geq(now_ms() - died->at_ms, delay[k] - 5, "ran before the restart");
		}
		UNTIL(p, nkind(PBP_POOL_STARTED, 0) == (size_t)k + 1, delay[k] + pbt_scale(5000));
		started = nth(PBP_POOL_STARTED, 0, (size_t)k);
		cr_assert_geq(started->e.restart_latency_us, (int64_t)delay[k] * 1000 - 2000);
		cr_assert_geq(started->at_ms - died->at_ms, delay[k] - 5);
		cr_assert_lt(started->at_ms - died->at_ms, delay[k] + pbt_scale(3000));
	}
	cr_assert(st(p).restarts == 5 && nkind(PBP_POOL_GAVE_UP, -1) == 0);
	echo(p);
	pbp_pool_free(p);
}

T(deaths_outside_the_crash_window_do_not_count)
{
	pbp_pool_options o = opts(1, NULL);
	pbp_pool *p;
	int k;

	o.max_crashes = 2;
	o.crash_window_ms = 400;
	o.backoff_initial_ms = 1000;
	p = up(&o);
	for (k = 0; k < 3; k++) {
		const struct ev *died;

		cr_assert_eq(op(p, POOL_OP_CRASH, 0, NULL, pbt_scale(10000)), PBP_ELOST);
		cr_assert_not_null(died = nth(PBP_POOL_DIED, 0, (size_t)k), "%zu events", nev);
		cr_assert(died->e.deaths == 1 && died->e.restart_in_ms == 0, "%zu events", nev);
		UNTIL(p, nkind(PBP_POOL_STARTED, 0) == (size_t)k + 1, pbt_scale(5000));
		spin(p, 600);
	}
	cr_assert_eq(nkind(PBP_POOL_GAVE_UP, -1), 0, "%zu events", nev);
	echo(p);
	pbp_pool_free(p);
}

T(when_every_slot_gives_up_calls_fail_down_at_once_and_nothing_is_due)
{
	pbp_pool_options o = opts(2, NULL);
	pbp_pool *p;
	struct res d;
	int lost = 0, rc, slot;
	int64_t t0;

	o.max_crashes = 3;
	o.backoff_initial_ms = 20;
	o.backoff_max_ms = 40;
	p = up(&o);
	while ((rc = op(p, POOL_OP_CRASH, 0, NULL, pbt_scale(10000))) == PBP_ELOST && lost < 20)
		lost++;
	cr_assert_eq(rc, PBP_EDOWN, "rc %d: %s", rc, pbp_pool_error(p)->msg);
	cr_assert_eq(lost, 6, "3 deaths per slot (%zu events)", nev);
	for (slot = 0; slot < 2; slot++) {
		const struct ev *third = nth(PBP_POOL_DIED, slot, 2);
		const struct ev *gave = nth(PBP_POOL_GAVE_UP, slot, 0);

		cr_assert(third != NULL && gave != NULL, "%zu events", nev);
		cr_assert(third->e.deaths == 3 && third->e.restart_in_ms == -1);
		cr_assert(gave > third && !gave->has_report && gave->e.restart_in_ms == -1);
		cr_assert_null(pbp_pool_child(p, (size_t)slot));
	}
	cr_assert(st(p).down == 2 && st(p).live == 0 && st(p).restarting == 0);
	cr_assert(st(p).deaths == 6 && st(p).restarts == 4);
	t0 = now_ms();
	cr_assert_eq(op(p, POOL_OP_ECHO, 1, NULL, 10000), PBP_EDOWN);
	cr_assert_lt(now_ms() - t0, 500, "PBP_EDOWN at once");
	cr_assert_eq(pbp_pool_error(p)->code, PBP_EDOWN);
	cr_assert_eq(go(p, POOL_OP_ECHO, 1, 10000, &d), PBP_EDOWN);
	cr_assert_eq(spin(p, 100), 0);
	cr_assert_eq(d.ncalls, 0);
	cr_assert_eq(pbp_pool_next_timeout(p), -1, "nothing is due");
	pbp_pool_free(p);
	no_children();
}

static char fail_flag[] = "/tmp/pbptest-poolapi-XXXXXX";

static void
unflag(pbp_pool *p, const struct ev *e)
{
	(void)p;
	if (e->e.kind == PBP_POOL_RESTART_FAILED)
		unlink(fail_flag);
}

T(a_failed_respawn_is_reported_counts_as_a_death_and_is_retried_after_backoff)
{
	const char *args[] = { "--fail-start-if", fail_flag, NULL };
	const struct ev *failed = &evs[1], *started = &evs[2];
	pbp_pool_options o = opts(1, args);
	pbp_pool *p;

	o.backoff_initial_ms = 100;
	p = up(&o);
	/* The first helper had the template; a respawn has the file made of it. */
	cr_assert_geq(close(mkstemp(fail_flag)), 0);
	on_ev_hook = unflag;
	SIG(p, 0, SIGKILL);
	UNTIL(p, nkind(PBP_POOL_STARTED, 0) == 1, pbt_scale(10000));
	on_ev_hook = NULL;
	cr_assert_eq(nev, 3, "DIED, RESTART_FAILED, STARTED (%zu events)", nev);
	cr_assert(evs[0].e.kind == PBP_POOL_DIED && evs[0].e.restart_in_ms == 0);
	cr_assert_eq(failed->e.kind, PBP_POOL_RESTART_FAILED);
	cr_assert_eq(failed->e.deaths, 2, "a failed respawn counts as a death");
	cr_assert_eq(failed->e.restart_in_ms, 100);
	cr_assert(failed->has_report && failed->r.fate == PBP_FATE_EXITED, "%d", failed->r.fate);
	cr_assert_eq(failed->r.status.code, 3);
	cr_assert_not_null(strstr(failed->r.stderr_tail, "exists"), "%s", failed->r.stderr_tail);
	cr_assert_eq(started->e.kind, PBP_POOL_STARTED);
	cr_assert_geq(started->at_ms - failed->at_ms, 95);
	cr_assert_geq(started->e.restart_latency_us, 100000, "backoff included");
	cr_assert(st(p).deaths == 1 && st(p).restarts == 1, "deaths count DIED and HUNG");
	echo(p);
	pbp_pool_free(p);
	no_children();
}

static char slow_flag[] = "/tmp/pbptest-poolslow-XXXXXX";

T(a_slow_restart_does_not_stall_the_other_helpers)
{
	const char *args[] = { "--slow-start-if", slow_flag, "2000", NULL };
	pbp_pool_options o = opts(2, args);
	const struct ev *started;
	pbp_pool *p;
	int64_t t0;
	int i;

	co.handshake_timeout_ms = pbt_scale(10000);
	p = up(&o);
	/* The first helpers had the template; the respawn sleeps 2 s before
	 * its Hello. */
	cr_assert_geq(close(mkstemp(slow_flag)), 0);
	t0 = now_ms();
	SIG(p, 0, SIGKILL);
	UNTIL(p, nkind(PBP_POOL_DIED, 0) == 1, pbt_scale(5000));
	for (i = 0; i < 20; i++)
		echo(p);
	/* The death was noticed and every call ran on the other helper while
	 * the restart waited for its Hello: a restart that waited for it in
	 * the pool's work would have held the pool 2 s, and be over. */
	cr_assert_lt(now_ms() - t0, pbt_scale(1500), "the death and 20 calls took %lld ms",
	             (long long)(now_ms() - t0));
	cr_assert_eq(nkind(PBP_POOL_STARTED, 0), 0, "the restart is still under way");
	cr_assert_eq(st(p).restarting, 1);
	cr_assert_eq(st(p).live, 1);
	cr_assert_null(pbp_pool_child(p, 0), "a starting slot takes no calls");
	UNTIL(p, nkind(PBP_POOL_STARTED, 0) == 1, pbt_scale(10000));
	cr_assert_eq(nev, 2, "DIED, STARTED (%zu events)", nev);
	started = nth(PBP_POOL_STARTED, 0, 0);
	cr_assert_geq(started->e.restart_latency_us, 1900000, "%lld us",
	              (long long)started->e.restart_latency_us);
	cr_assert_eq(st(p).live, 2);
	cr_assert_eq(unlink(slow_flag), 0);
	echo(p);
	echo(p);
	pbp_pool_free(p);
	no_children();
}

T(a_hung_idempotent_call_times_out_is_not_retried_and_is_hung_not_died)
{
	pbp_pool_options o = opts(1, NULL);
	const struct ev *hung;
	int64_t t0, dt;
	pbp_pool *p;
	pid_t old;

	o.idempotent = idem; /* not retried after its deadline */
	o.nidempotent = 1;
	old = pid_of(p = up(&o), 0);
	t0 = now_ms();
	cr_assert_eq(op(p, POOL_OP_HANG, 0, NULL, 400), PBP_ETIMEDOUT);
	dt = now_ms() - t0;
	cr_assert(dt >= 390 && dt < 400 + pbt_scale(2000), "%lld ms", (long long)dt);
	UNTIL(p, nkind(PBP_POOL_STARTED, 0) == 1, pbt_scale(5000));
	cr_assert_eq(nkind(PBP_POOL_HUNG, 0), 1, "%zu events", nev);
	cr_assert_eq(nkind(PBP_POOL_DIED, 0), 0, "HUNG, not DIED (%zu events)", nev);
	hung = nth(PBP_POOL_HUNG, 0, 0);
	cr_assert(hung->e.pid == old && hung->has_report && hung->r.fate == PBP_FATE_SIGNALED);
	cr_assert(st(p).hung == 1 && st(p).deaths == 1 && st(p).calls_failed == 1);
	cr_assert_eq(st(p).retries, 0, "not retried after its deadline");
	cr_assert_eq(st(p).calls_lost, 0);
	cr_assert_eq(echo(p), nth(PBP_POOL_STARTED, 0, 0)->e.pid);
	pbp_pool_free(p);
}

static int free_rc = 1;
static struct res at_free;

static void
start_at_free(pbp_pool *p, struct res *r)
{
	(void)r;
	if (free_rc == 1)
		free_rc = go(p, POOL_OP_ECHO, 1, -1, &at_free);
}

T(free_cancels_calls_on_busy_helpers_without_waiting_and_refuses_new_ones)
{
	pbp_pool_options o = opts(2, NULL);
	pbp_pool *p;
	struct res d[4];
	pid_t pids[2];
	int64_t t0;
	int i;

	o.close_grace_ms = 300;
	p = up(&o);
	pids[0] = pid_of(p, 0), pids[1] = pid_of(p, 1);
	for (i = 0; i < 4; i++)
		cr_assert_eq(go(p, i < 2 ? POOL_OP_SLEEP : POOL_OP_ECHO, 20000, -1, &d[i]), 0);
	cr_assert_eq(pbp_pool_run(p, 100), 0);
	cr_assert(st(p).in_flight == 2 && st(p).queued == 2);
	on_done_hook = start_at_free; /* done, run by free, may not start calls */
	t0 = now_ms();
	pbp_pool_free(p);
	on_done_hook = NULL;
	cr_assert_lt(now_ms() - t0, 10000, "free waited for the calls");
	for (i = 0; i < 4; i++)
		check(&d[i], PBP_ECANCELED);
	cr_assert_eq(free_rc, PBP_EINVAL);
	cr_assert_eq(at_free.ncalls, 0);
	cr_assert(GONE(pids[0]) && GONE(pids[1]));
	no_children();
}

T(a_new_pool_is_idle_and_quiet_and_an_event_loop_sees_each_live_helper)
{
	pbp_pool_options o = opts(3, NULL);
	pbp_pool *p = up(&o);
	pbp_pool_stats s = st(p);
	struct pollfd fds[6], none;
	pid_t old[3];
	struct res d;
	int64_t t0;
	size_t n, k, j;

	cr_assert(s.size == 3 && s.live == 3 && s.idle == 3, "%zu %zu %zu", s.size, s.live, s.idle);
	cr_assert(s.restarting == 0 && s.down == 0 && s.queued == 0 && s.in_flight == 0);
	cr_assert_eq(s.calls_ok + s.calls_failed + s.deaths + s.restarts + s.retries + s.pings, 0);
	cr_assert(pbp_pool_stats_get(NULL, &s) == PBP_EINVAL && pbp_pool_stats_get(p, NULL) == PBP_EINVAL);
	cr_assert_eq(nev, 0, "no event for the first start (%zu events)", nev);
	n = pbp_pool_pollfds(p, fds, 6);
	cr_assert_eq(n, 3, "one read fd per idle helper");
	cr_assert_eq(pbp_pool_pollfds(p, &none, 0), n);
	cr_assert_eq(pbp_pool_pollfds(p, fds, 1), n, "the count, though only 1 was filled");
	for (k = 0; k < n; k++) {
		cr_assert(fds[k].fd >= 0 && fds[k].events == POLLIN && fds[k].revents == 0);
		for (j = 0; j < k; j++)
			cr_assert_neq(fds[j].fd, fds[k].fd);
		old[k] = pid_of(p, k);
	}
	cr_assert_eq(pbp_pool_next_timeout(p), -1, "nothing is due");
	cr_assert_eq(poll(fds, n, 0), 0, "idle helpers send nothing");
	cr_assert_eq(go(p, POOL_OP_SLEEP, 100, -1, &d), 0);
	while (d.ncalls == 0) {
		n = pbp_pool_pollfds(p, fds, 6);
		cr_assert(n >= 3 && n <= 6);
		cr_assert_geq(poll(fds, n, pbt_scale(5000)), 1, "the reply makes a fd readable");
		cr_assert_geq(pbp_pool_run(p, 0), 0);
	}
	check(&d, 0);
	/* A death ends an unbounded pbp_pool_run(): nothing else is due. */
	SIG(p, 2, SIGKILL);
	t0 = now_ms();
	while (nkind(PBP_POOL_STARTED, 2) == 0)
		cr_assert_geq(pbp_pool_run(p, -1), 0);
	cr_assert_lt(now_ms() - t0, pbt_scale(2000));
	cr_assert(nth(PBP_POOL_DIED, 2, 0)->e.pid == old[2] && GONE(old[2]));
	cr_assert(nkind(0, 0) + nkind(0, 1) == 0 && pid_of(p, 0) == old[0] && pid_of(p, 1) == old[1]);
	cr_assert_eq(pbp_pool_pollfds(p, fds, 6), 3);
	t0 = now_ms();
	pbp_pool_free(p); /* idle helpers leave at Goodbye: no grace is waited */
	cr_assert_lt(now_ms() - t0, pbt_scale(1500), "%lld ms", (long long)(now_ms() - t0));
	no_children();
	pbp_pool_free(NULL);
}

T(slots_cycle_through_helpers_and_a_restart_keeps_its_program)
{
	static const char *const a10[] = { "pbptest-pool-helper", "--tag", "10", NULL };
	static const char *const a20[] = { "pbptest-pool-helper", "--tag", "20", NULL };
	pbp_pool_helper hs[2] = { { PBPTEST_POOL_HELPER, a10 }, { PBPTEST_POOL_HELPER, a20 } };
	pbp_pool_options o = opts(4, NULL);
	pbp_pool *p;
	struct res d[4];
	pid_t pids[4];
	int round, i, s;

	o.helpers = hs;
	o.nhelpers = 2;
	o.path = "/nonexistent/ignored"; /* helpers wins */
	p = up(&o);
	cr_assert_eq(st(p).size, 4);
	for (round = 0; round < 2; round++) {
		for (i = 0; i < 4; i++)
			pids[i] = pid_of(p, (size_t)i);
		for (i = 0; i < 4; i++)
			cr_assert_eq(go(p, POOL_OP_SLEEP, 300, pbt_scale(10000), &d[i]), 0);
		UNTIL(p, d[0].ncalls && d[1].ncalls && d[2].ncalls && d[3].ncalls, pbt_scale(10000));
		for (i = 0; i < 4; i++) {
			check(&d[i], 0);
			for (s = 0; s < 4 && pids[s] != (pid_t)d[i].n.u64; s++)
				;
			cr_assert_lt(s, 4, "served by no slot's helper");
			cr_assert_eq(d[i].n.s64, s % 2 ? 20 : 10, "round %d: slot %d runs helpers[%d]",
			             round, s, s % 2);
		}
		if (round == 0) { /* the restarted helper keeps its slot's program */
			SIG(p, 1, SIGKILL);
			UNTIL(p, nkind(PBP_POOL_STARTED, 1) == 1, pbt_scale(5000));
		}
	}
	pbp_pool_free(p);
	no_children();
}

/* Helpers that died before the pool looked: a call made then is not
 * lost (its request never reached them), and done does not run inside
 * pbp_pool_call_async(). */
T(calls_made_before_the_pool_noticed_its_helpers_died_wait_for_the_restarts)
{
	pbp_pool_options o = opts(3, NULL); /* default max_attempts; not idempotent */
	pbp_pool *p = up(&o);
	struct res d;
	size_t i;
	int rc;

	for (i = 0; i < 3; i++)
		SIG(p, i, SIGKILL);
	usleep(200000); /* the helpers are gone; the pool has not looked yet */
	rc = op(p, POOL_OP_ECHO, 1, NULL, pbt_scale(10000));
	cr_assert_eq(rc, 0, "blocking: rc %d: %s", rc, pbp_pool_error(p)->msg);
	cr_assert_eq(st(p).calls_lost, 0);
	UNTIL(p, st(p).live == 3, pbt_scale(10000));
	for (i = 0; i < 3; i++)
		SIG(p, i, SIGKILL);
	usleep(200000);
	rc = go(p, POOL_OP_ECHO, 5, pbt_scale(10000), &d); /* on_done fails if it runs here */
	cr_assert_eq(rc, 0, "rc %d: %s", rc, pbp_pool_error(p)->msg);
	UNTIL(p, d.ncalls == 1, pbt_scale(10000));
	check(&d, 0);
	cr_assert_eq(st(p).calls_lost, 0);
	pbp_pool_free(p);
}

/* The same with one slot given up at its first death: PBP_EDOWN reaches
 * done from a later pool call, never from pbp_pool_call_async(). */
T(a_slot_given_up_by_an_unnoticed_death_fails_async_calls_later)
{
	pbp_pool_options o = opts(1, NULL);
	pbp_pool *p;
	struct res d;

	o.max_crashes = 1;
	p = up(&o);
	SIG(p, 0, SIGKILL);
	usleep(200000);
	cr_assert_eq(go(p, POOL_OP_ECHO, 5, pbt_scale(10000), &d), 0);
	UNTIL(p, d.ncalls == 1, pbt_scale(10000));
	check(&d, PBP_EDOWN);
	cr_assert_eq(go(p, POOL_OP_ECHO, 5, -1, &d), PBP_EDOWN);
	pbp_pool_free(p);
}

/* A call whose helper is found dead after its deadline ends with
 * PBP_ETIMEDOUT, is not counted as retried, and says what happened. */
T(a_call_whose_helper_died_after_its_deadline_is_not_retried)
{
	pbp_pool_options o = opts(1, NULL);
	pbp_pool *p;
	struct res d;

	o.idempotent = idem;
	o.nidempotent = 1;
	p = up(&o);
	cr_assert_eq(go(p, POOL_OP_SLEEP, 5000, 200, &d), 0);
	SIG(p, 0, SIGKILL);
	usleep(400000); /* the deadline passes before the pool sees the death */
	UNTIL(p, d.ncalls == 1, pbt_scale(5000));
	check(&d, PBP_ETIMEDOUT);
	cr_assert_eq(st(p).retries, 0, "%s", d.err.msg);
	cr_assert(strstr(d.err.msg, "waited in the queue") == NULL, "%s", d.err.msg);
	pbp_pool_free(p);
}

/* max_crashes has a limit, and a call cannot have a deadline of 0. */
T(max_crashes_over_its_limit_and_a_zero_deadline_are_einval)
{
	pbp_pool_options o = opts(1, NULL);
	pbp_pool *p = NULL;
	pbp_error err;
	struct res d;

	o.max_crashes = PBP_POOL_MAX_CRASHES + 1;
	cr_assert_eq(pbp_pool_start(&p, &o, &err), PBP_EINVAL);
	cr_assert_null(p);
	cr_assert(strstr(err.msg, "max_crashes") != NULL, "%s", err.msg);
	o.max_crashes = PBP_POOL_MAX_CRASHES;
	p = up(&o);
	cr_assert_eq(op(p, POOL_OP_ECHO, 1, NULL, 0), PBP_EINVAL);
	cr_assert(strstr(pbp_pool_error(p)->msg, "timeout_ms 0") != NULL);
	cr_assert_eq(go(p, POOL_OP_ECHO, 1, 0, &d), PBP_EINVAL);
	cr_assert_eq(d.ncalls, 0);
	cr_assert_eq(st(p).deaths, 0);
	pbp_pool_free(p);
}
