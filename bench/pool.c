/*
 * pool.c: bench=pool, a pool of supervised helpers (pbp_pool.h) against
 * raw pipes driven the same way from one poll() loop.
 *
 *   pool_calls    calls/s through a pool of 1, then 4 helpers, with
 *                 WINDOW calls submitted and not yet ended (each helper
 *                 runs one at a time; the rest wait in the pool's queue).
 *                 raw: as many raw echo children, one 16-byte request on
 *                 each at a time.
 *   pool_restart  us from SIGKILL of an idle helper to the first reply of
 *                 its replacement (the pool notices the death, spawns,
 *                 handshakes, then one call).  raw: SIGKILL, end of stream
 *                 seen by poll(), waitpid, a new child (pipes and
 *                 posix_spawn), one echo.  Extra: the pool's own
 *                 restart_latency_us (death noticed to handshake done).
 *   pool_chaos    calls/s through 4 helpers while a random one is
 *                 SIGKILLed every CHAOS_KILL_MS (2 ms with --quick),
 *                 every call idempotent.
 *                 raw: the same calls through 4 raw children without
 *                 kills (a raw child killed takes its call with it).
 *                 Extra: kills, calls lost (goal: 0), retries.
 *
 * A pool helper is this program in MODE_POOL, answering Call with
 * pbp_channel_serve(); every reply's stamp is checked against its call.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "bench.pb.h"

#define WINDOW 16          /* calls submitted and not ended */
#define RAW_CALL 16        /* bytes of a raw request and its echo */
#define CHAOS_HELPERS 4 /* at most MAX_HELPERS */
#define CHAOS_KILL_MS 50
#define MAX_HELPERS 4

/* ---- the helper ------------------------------------------------------------ */

static int
answer(const void *request, void *response, pbp_reply_error *err, void *payload)
{
	(void)err;
	(void)payload;
	((bench_Call *)response)->stamp = ((const bench_Call *)request)->stamp;
	return 0;
}

int
pool_serve_pbpipe(pbp_channel *ch)
{
	static const pbp_handler h[] = { { bench_Type_CALL, bench_Type_CALL, answer, NULL } };

	return pbp_channel_serve(ch, h, 1);
}

/* ---- the pool side ----------------------------------------------------------- */

/* A call in flight: the stamp its reply must carry. */
typedef struct call_ctx {
	struct run *r;
	uint64_t stamp;
} call_ctx;

typedef struct run {
	uint64_t submitted, ended, lost, started_events;
	samples *latency; /* restart_latency_us of STARTED events, or NULL */
	call_ctx ctx[WINDOW];
	call_ctx *free_ctx[WINDOW]; /* a stack of the unused ones */
	size_t nfree;
} run;

static void
on_event(pbp_pool *p, const pbp_pool_event *ev, void *payload)
{
	run *r = payload;

	(void)p;
	if (ev->kind == PBP_POOL_STARTED) {
		r->started_events++;
		if (r->latency != NULL)
			samples_add(r->latency, (double)ev->restart_latency_us);
	} else if (ev->kind == PBP_POOL_GAVE_UP || ev->kind == PBP_POOL_RESTART_FAILED) {
		die("pool: slot %zu: a restart failed or was given up", ev->slot);
	}
}

static void
call_done(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err,
          void *payload)
{
	call_ctx *x = payload;
	run *r = x->r;

	(void)p;
	(void)id;
	r->ended++;
	r->free_ctx[r->nfree++] = x;
	if (rc == PBP_ELOST) {
		r->lost++; /* counted, not fatal: pool_chaos reports them */
		return;
	}
	if (rc != 0)
		die("pool call: %s", err != NULL ? err->msg : "?");
	if (((const bench_Call *)resp)->stamp != x->stamp)
		die("pool call: the reply to call %" PRIu64 " has stamp %" PRIu64, x->stamp,
		    ((const bench_Call *)resp)->stamp);
}

/* Starts a pool of n MODE_POOL helpers.  kills: the helpers will be
 * killed on purpose, so no slot is ever given up; restarts after the
 * first within 1 ms of a death are delayed (backoff) only with kills. */
static pbp_pool *
pool_open(size_t n, const child_cfg *c, run *r, int kills, argv_buf *a,
          pbp_channel_options *co, pbp_spawn_options *so)
{
	static const uint32_t idem[] = { bench_Type_CALL };
	pbp_pool_options po = PBP_POOL_OPTIONS_INIT;
	pbp_pool *p;
	pbp_error err;

	*co = channel_options(c);
	so->channel = co;
	argv_build(a, "pbpipe", c);
	po.size = n;
	po.path = self_exe;
	po.argv = a->v;
	po.spawn = so;
	po.idempotent = idem;
	po.nidempotent = 1;
	po.max_crashes = PBP_POOL_NEVER_GIVE_UP;
	po.ping_interval_ms = -1;
	po.on_event = on_event;
	po.event_payload = r;
	if (kills) {
		po.backoff_initial_ms = 10;
		po.backoff_max_ms = 100;
		po.crash_window_ms = 1000;
	} else {
		po.crash_window_ms = 1; /* every death the first: restart at once */
	}
	if (pbp_pool_start(&p, &po, &err) != 0)
		die("pbp_pool_start: %s", err.msg);
	return p;
}

/* Runs `calls` calls (WINDOW at a time) through the pool; every kill_ms
 * (0: never) SIGKILLs a random live helper.  Returns calls/s. */
static double
pool_round(pbp_pool *p, run *r, uint64_t calls, size_t n, int kill_ms, uint64_t *kills,
           unsigned int *seed)
{
	uint64_t t0 = now_ns(), next_kill = t0 + (uint64_t)kill_ms * 1000000u;

	r->submitted = r->ended = 0;
	for (r->nfree = 0; r->nfree < WINDOW; r->nfree++) {
		r->ctx[r->nfree].r = r;
		r->free_ctx[r->nfree] = &r->ctx[r->nfree];
	}
	while (r->ended < calls) {
		int timeout = -1, rc;

		while (r->submitted < calls && r->nfree > 0) {
			call_ctx *x = r->free_ctx[--r->nfree];
			bench_Call req = { .stamp = r->submitted + 1 };

			x->stamp = req.stamp;
			rc = pbp_pool_call_async(p, bench_Type_CALL, &req, bench_Type_CALL, -1,
			                         call_done, x, NULL);
			if (rc != 0)
				die("pbp_pool_call_async: %s", pbp_pool_error(p)->msg);
			r->submitted++;
		}
		if (kill_ms > 0) {
			uint64_t now = now_ns();

			if (now >= next_kill) {
				pbp_child *c = pbp_pool_child(p, (size_t)rand_r(seed) % n);

				if (c != NULL && pbp_child_kill(c, SIGKILL) == 0)
					(*kills)++;
				next_kill = now + (uint64_t)kill_ms * 1000000u;
			}
			timeout = (int)((next_kill - now) / 1000000u) + 1;
		}
		if (pbp_pool_run(p, timeout) < 0)
			die("pbp_pool_run: %s", pbp_pool_error(p)->msg);
	}
	return (double)calls * 1e9 / (double)(now_ns() - t0);
}

/* ---- the raw side ---------------------------------------------------------- */

static void
raw_call_send(peer *q, uint64_t stamp)
{
	uint8_t b[RAW_CALL] = { 0 };

	stamp_put(b, stamp);
	write_all(q->wfd, b, sizeof b, "raw pool: send");
}

static uint64_t
raw_call_recv(peer *q)
{
	uint8_t b[RAW_CALL];

	if (read_exact(q->rfd, b, sizeof b, "raw pool: recv") != 0)
		die("raw pool: end of stream");
	return stamp_get(b);
}

/* The raw pool_round: one request on each child at a time, the next
 * child with a reply found by poll(). */
static double
raw_round(peer *q, size_t n, uint64_t calls)
{
	struct pollfd fds[MAX_HELPERS];
	uint64_t want[MAX_HELPERS] = { 0 }, next = 1, ended = 0, t0 = now_ns();
	size_t i;

	for (i = 0; i < n && next <= calls; i++) {
		want[i] = next++;
		raw_call_send(&q[i], want[i]);
	}
	while (ended < calls) {
		for (i = 0; i < n; i++)
			fds[i] = (struct pollfd){ .fd = q[i].rfd, .events = POLLIN };
		if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			if (!(fds[i].revents & (POLLIN | POLLHUP)))
				continue;
			if (raw_call_recv(&q[i]) != want[i])
				die("raw pool: a reply with another stamp");
			ended++;
			want[i] = 0;
			if (next <= calls) {
				want[i] = next++;
				raw_call_send(&q[i], want[i]);
			}
		}
	}
	return (double)calls * 1e9 / (double)(now_ns() - t0);
}

/* ---- the three measurements ---------------------------------------------- */

static const child_cfg pool_cfg = { .mode = MODE_POOL, .size = RAW_CALL, .cpu = -1 };
static const child_cfg raw_cfg = { .mode = MODE_ECHO, .size = RAW_CALL, .cpu = -1 };

/* pool_calls (kill_ms 0) and pool_chaos: rounds of calls through n
 * helpers, then through n raw children. */
static void
bench_calls(options *o, size_t n, uint64_t calls, int kill_ms)
{
	samples s[2] = { { 0 } };
	peer q[MAX_HELPERS];
	argv_buf a;
	pbp_channel_options co;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	run r = { 0 };
	uint64_t kills = 0, lost = 0;
	unsigned int seed = 1;
	pbp_pool_stats st;
	char extra[128];
	pbp_pool *p = pool_open(n, &pool_cfg, &r, kill_ms > 0, &a, &co, &so);
	size_t i;
	int k;

	for (i = 0; i < n; i++)
		peer_open(&q[i], 1, &raw_cfg);
	pool_round(p, &r, calls / 10 + 1, n, 0, NULL, &seed); /* warm-up */
	raw_round(q, n, calls / 10 + 1);
	for (k = 0; k < o->rounds; k++) {
		r.lost = 0;
		samples_add(&s[0], pool_round(p, &r, calls, n, kill_ms, &kills, &seed));
		lost += r.lost;
		samples_add(&s[1], raw_round(q, n, calls));
	}
	if (pbp_pool_stats_get(p, &st) != 0)
		die("pbp_pool_stats_get: %s", pbp_pool_error(p)->msg);
	pbp_pool_free(p);
	for (i = 0; i < n; i++)
		peer_close(&q[i]);
	if (kill_ms == 0 && lost != 0)
		die("pool_calls: %" PRIu64 " calls lost without a kill", lost);
	snprintf(extra, sizeof extra,
	         "kill_every_ms=%d calls=%" PRIu64 " kills=%" PRIu64 " lost=%" PRIu64
	         " retries=%" PRIu64, kill_ms, calls * (uint64_t)o->rounds, kills, lost,
	         st.retries);
	emit(o, kill_ms ? "pool_chaos" : "pool_calls", n, "calls/s", samples_median(&s[0]),
	     samples_median(&s[1]), kill_ms ? extra : NULL);
}

/* One raw restart: kill, see the end of stream, reap, spawn, one echo. */
static double
raw_restart(peer *q)
{
	uint64_t t0 = now_ns();
	struct pollfd pf = { .fd = q->rfd, .events = POLLIN };
	uint8_t b;
	int st;

	if (kill(q->pid, SIGKILL) != 0) /* ours, and not reaped yet */
		die("kill: %s", strerror(errno));
	while (poll(&pf, 1, -1) < 0)
		if (errno != EINTR)
			die("poll: %s", strerror(errno));
	if (read(q->rfd, &b, 1) != 0)
		die("raw restart: the killed child still wrote");
	while (waitpid(q->pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	close(q->rfd);
	close(q->wfd);
	peer_open(q, 1, &raw_cfg);
	raw_call_send(q, 7);
	if (raw_call_recv(q) != 7)
		die("raw restart: a reply with another stamp");
	return (double)(now_ns() - t0) / 1e3;
}

/* One pool restart: kill the helper, run the pool until its replacement
 * has started, then one call. */
static double
pool_restart(pbp_pool *p, run *r)
{
	uint64_t t0 = now_ns(), started = r->started_events;
	bench_Call req = { .stamp = 7 }, resp;
	pbp_child *c = pbp_pool_child(p, 0);

	if (c == NULL || pbp_child_kill(c, SIGKILL) != 0)
		die("pool restart: no helper to kill");
	while (r->started_events == started)
		if (pbp_pool_run(p, 5000) < 0)
			die("pbp_pool_run: %s", pbp_pool_error(p)->msg);
	if (pbp_pool_call(p, bench_Type_CALL, &req, bench_Type_CALL, &resp, 5000) != 0)
		die("pool restart: call: %s", pbp_pool_error(p)->msg);
	if (resp.stamp != 7)
		die("pool restart: a reply with another stamp");
	return (double)(now_ns() - t0) / 1e3;
}

static void
bench_restart(options *o)
{
	uint64_t n = o->count ? o->count : o->quick ? 3 : 50, i;
	samples s[2] = { { 0 } }, lat = { 0 };
	argv_buf a;
	pbp_channel_options co;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	run r = { .latency = &lat };
	pbp_pool *p = pool_open(1, &pool_cfg, &r, 0, &a, &co, &so);
	char extra[64];
	peer q;
	int k;

	peer_open(&q, 1, &raw_cfg);
	for (k = 0; k < o->rounds; k++) {
		for (i = 0; i < n; i++)
			samples_add(&s[0], pool_restart(p, &r));
		for (i = 0; i < n; i++)
			samples_add(&s[1], raw_restart(&q));
	}
	pbp_pool_free(p);
	peer_close(&q);
	snprintf(extra, sizeof extra, "restart_latency_us=%.0f", samples_median(&lat));
	emit(o, "pool_restart", 1, "us", samples_median(&s[0]), samples_median(&s[1]), extra);
}

void
bench_pool(options *o)
{
	uint64_t calls = o->count ? o->count : o->quick ? 500 : 100000;

	bench_calls(o, 1, calls, 0);
	bench_calls(o, MAX_HELPERS, calls, 0);
	bench_restart(o);
	/* --quick: a few kills all the same */
	bench_calls(o, CHAOS_HELPERS, calls, o->quick ? 2 : CHAOS_KILL_MS);
}
