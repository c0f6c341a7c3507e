/*
 * test_pool.c: pools of supervised helpers (pbp_pool.h), against
 * pbptest-pool-helper (pool_helper.c): calls, deaths in flight with and
 * without retries, restarts with backoff, the crash-loop cap, hangs in a
 * call and missed pings, the event loop, misuse.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"
#include "pool_helper.h"
#include "support.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};
static const uint32_t idem[] = { pbptest_Type_NUMBERS };

static pbp_channel_options chopt = PBP_CHANNEL_OPTIONS_INIT;
static pbp_spawn_options sopt = PBP_SPAWN_OPTIONS_INIT;

/* Events seen, in order. */
#define MAXEV 256
static pbp_pool_event evs[MAXEV];
static int ev_sig[MAXEV];
static int nev;

static void
on_event(pbp_pool *p, const pbp_pool_event *ev, void *payload)
{
	(void)p;
	(void)payload;
	if (nev < MAXEV) {
		evs[nev] = *ev;
		ev_sig[nev] = ev->report ? ev->report->status.signal : -1;
		evs[nev].report = NULL;
		nev++;
	}
}

static int
count_ev(int kind)
{
	int i, n = 0;

	for (i = 0; i < nev; i++)
		n += evs[i].kind == kind;
	return n;
}

static pbp_pool_options
options(size_t size)
{
	static const char *const argv[] = { "pbptest-pool-helper", NULL };
	pbp_pool_options o = PBP_POOL_OPTIONS_INIT;

	chopt.types = types;
	chopt.ntypes = 3;
	chopt.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	sopt.channel = &chopt;
	o.size = size;
	o.path = PBPTEST_POOL_HELPER;
	o.argv = argv;
	o.spawn = &sopt;
	o.on_event = on_event;
	o.ping_timeout_ms = pbt_scale(1000); /* valgrind's helpers are slow */
	nev = 0;
	return o;
}

static pbp_pool *
start(pbp_pool_options *o)
{
	pbp_pool *p = NULL;
	pbp_error err;
	int rc = pbp_pool_start(&p, o, &err);

	cr_assert_eq(rc, 0, "pool_start: %d %s", rc, err.msg);
	return p;
}

static int
call(pbp_pool *p, int op, long arg, pbptest_Numbers *out, int timeout_ms)
{
	pbptest_Numbers rq = pbptest_Numbers_init_zero;

	rq.i32 = op;
	rq.i64 = arg;
	memset(out, 0, sizeof *out);
	return pbp_pool_call(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS, out, timeout_ms);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
gone(pid_t pid)
{
	return kill(pid, 0) != 0 && errno == ESRCH;
}

Test(pool, calls_answered_and_helpers_reaped_at_free, .timeout = 60)
{
	pbp_pool_options o = options(2);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pid_t pids[2];

	cr_assert_eq(call(p, POOL_OP_ECHO, 41, &r, pbt_scale(5000)), 0, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 42);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.size, 2);
	cr_assert_eq(st.live, 2);
	cr_assert_eq(st.calls_ok, 1);
	pids[0] = pbp_child_pid(pbp_pool_child(p, 0));
	pids[1] = pbp_child_pid(pbp_pool_child(p, 1));
	cr_assert(pids[0] > 0 && pids[1] > 0 && pids[0] != pids[1]);
	cr_assert_null(pbp_pool_child(p, 2));
	pbp_pool_free(p);
	cr_assert(gone(pids[0]) && gone(pids[1]), "helpers left after pbp_pool_free");
}

Test(pool, bad_options_are_refused_with_a_message, .timeout = 30)
{
	pbp_pool_options o = options(PBP_POOL_MAX_HELPERS + 1);
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_pool *p = NULL;
	pbp_error err;

	cr_assert_eq(pbp_pool_start(&p, &o, &err), PBP_EINVAL);
	cr_assert(strstr(err.msg, "PBP_POOL_MAX_HELPERS") != NULL, "%s", err.msg);
	o = options(1);
	o.path = NULL;
	cr_assert_eq(pbp_pool_start(&p, &o, &err), PBP_EINVAL);
	cr_assert(strstr(err.msg, "program") != NULL, "%s", err.msg);
	o = options(1);
	so = sopt;
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	o.spawn = &so;
	cr_assert_eq(pbp_pool_start(&p, &o, &err), PBP_EINVAL);
	cr_assert(strstr(err.msg, "NO_HANDSHAKE") != NULL, "%s", err.msg);
	o = options(1);
	o.version = 99;
	cr_assert_eq(pbp_pool_start(&p, &o, &err), PBP_EINVAL);
	cr_assert_null(p);
}

Test(pool, a_missing_program_fails_start_and_leaves_nothing, .timeout = 30)
{
	pbp_pool_options o = options(3);
	pbp_pool *p = NULL;
	pbp_error err;
	int rc;

	o.path = "/nonexistent/pbptest-pool-helper";
	rc = pbp_pool_start(&p, &o, &err);
	/* Under valgrind the exec "succeeds" and the child exits 127. */
	cr_assert(rc == PBP_EEXEC || (pbt_valgrind() && rc == PBP_ETRUNC), "%d %s", rc, err.msg);
	cr_assert(strstr(err.msg, "helper 0") != NULL, "%s", err.msg);
	cr_assert_null(p);
	errno = 0;
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD);
}

Test(pool, a_helper_that_exits_at_start_fails_start, .timeout = 30)
{
	static const char *const argv[] = { "h", "--exit-at-start", "3", NULL };
	pbp_pool_options o = options(2);
	pbp_pool *p = NULL;
	pbp_error err;
	int rc;

	o.argv = argv;
	rc = pbp_pool_start(&p, &o, &err);
	cr_assert(rc == PBP_ETRUNC || rc == PBP_EPIPE, "rc %d: %s", rc, err.msg);
	cr_assert_null(p);
	errno = 0;
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD);
}

static int ndone, done_rc[64];
static pid_t done_pid[64];
static long long done_tag[64];

static void
done(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err, void *payload)
{
	(void)p;
	(void)id;
	(void)payload;
	if (rc == 0)
		cr_assert_null(err);
	else
		cr_assert_not_null(err);
	if (ndone < 64) {
		done_rc[ndone] = rc;
		done_pid[ndone] = rc == 0 ? (pid_t)((const pbptest_Numbers *)resp)->u64 : 0;
		done_tag[ndone] = rc == 0 ? (long long)((const pbptest_Numbers *)resp)->s64 : -1;
	}
	ndone++;
}

static void
async(pbp_pool *p, int op, long arg, int timeout_ms, uint64_t *id)
{
	pbptest_Numbers rq = pbptest_Numbers_init_zero;
	int rc;

	rq.i32 = op;
	rq.i64 = arg;
	rc = pbp_pool_call_async(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS, timeout_ms,
	                         done, NULL, id);
	cr_assert_eq(rc, 0, "%s", pbp_pool_error(p)->msg);
}

static void
run_until(pbp_pool *p, int n, int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ndone < n) {
		cr_assert_geq(pbp_pool_run(p, 50), 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert((t.tv_sec - t0.tv_sec) * 1000 < ms, "only %d of %d calls ended", ndone, n);
	}
}

Test(pool, async_calls_run_on_four_helpers_at_once, .timeout = 60)
{
	pbp_pool_options o = options(4);
	pbp_pool *p = start(&o);
	struct timespec t0, t1;
	uint64_t ids[4];
	int i, j;

	ndone = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 4; i++)
		async(p, POOL_OP_SLEEP, 400, -1, &ids[i]);
	cr_assert_eq(ndone, 0, "done ran inside pbp_pool_call_async");
	run_until(p, 4, pbt_scale(20000));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(done_rc[i], 0);
		for (j = 0; j < i; j++)
			cr_assert_neq(done_pid[i], done_pid[j], "two calls ran on one helper");
	}
	cr_assert(ids[0] > 0 && ids[1] > ids[0] && ids[3] > ids[2]);
	if (!pbt_valgrind())
		cr_assert_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
		             1200, "4 x 400 ms calls did not overlap");
	cr_assert_eq(pbp_pool_run(p, 0), 0);
	cr_assert_eq(ndone, 4, "a done callback ran twice");
	pbp_pool_free(p);
}

Test(pool, a_crash_in_flight_is_lost_then_the_helper_is_restarted, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbp_pool *p;
	pbptest_Numbers r;
	pbp_pool_stats st;
	pid_t old;

	o.idempotent = NULL;
	p = start(&o);
	old = pbp_child_pid(pbp_pool_child(p, 0));
	cr_assert_eq(call(p, POOL_OP_CRASH, 0, &r, pbt_scale(10000)), PBP_ELOST);
	cr_assert(strstr(pbp_pool_error(p)->msg, "died") != NULL, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	cr_assert_eq(evs[0].kind, PBP_POOL_DIED);
	cr_assert_eq(evs[0].pid, old);
	cr_assert_eq(ev_sig[0], SIGABRT, "the report says signal %d", ev_sig[0]);
	cr_assert_eq(evs[0].restart_in_ms, 0);
	/* The restart happens on the next pool call. */
	cr_assert_eq(call(p, POOL_OP_ECHO, 1, &r, pbt_scale(10000)), 0, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1);
	cr_assert_neq((pid_t)r.u64, old);
	cr_assert_gt(evs[1].restart_latency_us, 0);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.calls_lost, 1);
	cr_assert_eq(st.deaths, 1);
	cr_assert_eq(st.restarts, 1);
	cr_assert(gone(old));
	pbp_pool_free(p);
}

Test(pool, an_idempotent_call_is_retried_on_another_helper, .timeout = 60)
{
	static const char *const argv[] = { "h", "--crash-flag", NULL, NULL };
	char flag[] = "/tmp/pbptest-pool-XXXXXX";
	pbp_pool_options o = options(2);
	const char *av[4];
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pool *p;
	int fd = mkstemp(flag);

	cr_assert_geq(fd, 0);
	close(fd);
	unlink(flag); /* the first CRASH_ONCE creates it and crashes */
	memcpy(av, argv, sizeof av);
	av[2] = flag;
	o.argv = av;
	o.idempotent = idem;
	o.nidempotent = 1;
	p = start(&o);
	cr_assert_eq(call(p, POOL_OP_CRASH_ONCE, 5, &r, pbt_scale(10000)), 0, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 6);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.retries, 1);
	cr_assert_eq(st.calls_lost, 0);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	unlink(flag);
	pbp_pool_free(p);
}

/* done: keeps rc in *payload. */
static void
done_keep(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err,
          void *payload)
{
	(void)p;
	(void)id;
	(void)resp;
	(void)err;
	*(int *)payload = rc;
}

#ifdef __linux__
/* The state letter of /proc/PID/stat (R, S, T...), or 0. */
static char
proc_state(pid_t pid)
{
	char path[64], buf[512], *paren;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	paren = strrchr(buf, ')');
	return paren != NULL && paren[1] == ' ' ? paren[2] : 0;
}

/* Linux tells how much of a pipe is unread: a request still in the pipe
 * when its helper died never ran, so it is sent again, although its type
 * is not idempotent, and that was no attempt (max_attempts 1). */
Test(pool, a_request_its_dead_helper_never_read_is_sent_again, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbptest_Numbers rq = pbptest_Numbers_init_zero;
	pbp_pool_stats st;
	pbp_pool *p;
	pid_t pid;
	int rc = 1, i;

	o.ping_interval_ms = -1;
	o.max_attempts = 1;
	p = start(&o);
	pid = (pid_t)pbp_child_pid(pbp_pool_child(p, 0));
	cr_assert_eq(kill(pid, SIGSTOP), 0); /* ours: the pool has not reaped it */
	/* Stopped before the request arrives, or it might read it first. */
	for (i = 0; i < 1000 && proc_state(pid) != 'T'; i++)
		usleep(1000);
	cr_assert_eq(proc_state(pid), 'T');
	rq.i32 = POOL_OP_ECHO;
	rq.i64 = 7;
	cr_assert_eq(pbp_pool_call_async(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS, -1,
	                                 done_keep, &rc, NULL), 0);
	cr_assert_eq(pbp_pool_run(p, 100), 0); /* sent; the stopped helper reads nothing */
	cr_assert_eq(rc, 1);
	cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 0), SIGKILL), 0);
	for (i = 0; i < 100 && rc == 1; i++)
		cr_assert_geq(pbp_pool_run(p, 100), 0);
	cr_assert_eq(rc, 0, "the unread call ended with %d: %s", rc, pbp_pool_error(p)->msg);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.retries, 1);
	cr_assert_eq(st.calls_lost, 0);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	cr_assert_neq((pid_t)pbp_child_pid(pbp_pool_child(p, 0)), pid);
	pbp_pool_free(p);
}
#endif

Test(pool, retries_stop_after_max_attempts, .timeout = 60)
{
	pbp_pool_options o = options(2);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pool *p;

	o.idempotent = idem;
	o.nidempotent = 1;
	o.max_attempts = 2;
	p = start(&o);
	cr_assert_eq(call(p, POOL_OP_CRASH, 0, &r, pbt_scale(20000)), PBP_ELOST);
	cr_assert(strstr(pbp_pool_error(p)->msg, "2 attempts") != NULL, "%s",
	          pbp_pool_error(p)->msg);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.retries, 1);
	cr_assert_eq(st.deaths, 2);
	pbp_pool_free(p);
}

Test(pool, backoff_doubles_then_the_slot_is_given_up_and_calls_fail_down, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pool *p;
	int i, d = 0, delays[4];

	o.backoff_initial_ms = 50;
	o.max_crashes = 4;
	p = start(&o);
	for (i = 0; i < 4; i++)
		cr_assert_eq(call(p, POOL_OP_CRASH, 0, &r, pbt_scale(20000)), PBP_ELOST, "call %d", i);
	for (i = 0; i < nev; i++)
		if (evs[i].kind == PBP_POOL_DIED)
			delays[d++] = evs[i].restart_in_ms;
	cr_assert_eq(d, 4);
	cr_assert_eq(delays[0], 0);
	cr_assert_eq(delays[1], 50);
	cr_assert_eq(delays[2], 100);
	cr_assert_eq(delays[3], -1, "the 4th death within the window gives the slot up");
	cr_assert_eq(count_ev(PBP_POOL_GAVE_UP), 1);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 3);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.down, 1);
	cr_assert_eq(st.live, 0);
	cr_assert_eq(call(p, POOL_OP_ECHO, 0, &r, 1000), PBP_EDOWN);
	{
		pbptest_Numbers rq = pbptest_Numbers_init_zero;

		ndone = 0;
		cr_assert_eq(pbp_pool_call_async(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS,
		                                 1000, done, NULL, NULL), PBP_EDOWN);
	}
	pbp_pool_free(p);
	cr_assert_eq(ndone, 0);
}

Test(pool, a_call_past_its_deadline_marks_the_helper_hung, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pid_t old = pbp_child_pid(pbp_pool_child(p, 0));

	cr_assert_eq(call(p, POOL_OP_HANG, 0, &r, pbt_scale(300)), PBP_ETIMEDOUT);
	cr_assert_eq(count_ev(PBP_POOL_HUNG), 1);
	cr_assert_eq(ev_sig[0], SIGKILL, "the hung helper's report says signal %d", ev_sig[0]);
	cr_assert(gone(old));
	cr_assert_eq(call(p, POOL_OP_ECHO, 2, &r, pbt_scale(10000)), 0, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 3);
	pbp_pool_free(p);
}

Test(pool, a_stopped_idle_helper_misses_its_ping_and_is_replaced, .timeout = 60)
{
	pbp_pool_options o = options(2);
	pbp_pool_stats st;
	pbp_pool *p;
	pid_t stopped;
	int i;

	o.ping_interval_ms = 100;
	o.ping_timeout_ms = pbt_scale(200);
	p = start(&o);
	stopped = pbp_child_pid(pbp_pool_child(p, 0));
	cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 0), SIGSTOP), 0);
	for (i = 0; i < 100 && count_ev(PBP_POOL_STARTED) == 0; i++)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(count_ev(PBP_POOL_HUNG), 1, "no hung event");
	cr_assert_eq(evs[0].slot, 0);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1);
	cr_assert(gone(stopped));
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_gt(st.pings, 0, "the healthy helper answered no ping");
	cr_assert_eq(st.live, 2);
	pbp_pool_free(p);
}

Test(pool, without_pings_a_stopped_idle_helper_stays, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbp_pool_stats st;
	pbp_pool *p;
	int i;

	o.ping_interval_ms = -1;
	p = start(&o);
	cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 0), SIGSTOP), 0);
	for (i = 0; i < 10; i++)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(nev, 0);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.pings, 0);
	cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 0), SIGCONT), 0);
	pbp_pool_free(p);
}

Test(pool, an_idle_helper_killed_is_noticed_and_restarted, .timeout = 60)
{
	pbp_pool_options o = options(2);
	pbp_pool *p = start(&o);
	int i;

	cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 1), SIGKILL), 0);
	for (i = 0; i < 100 && count_ev(PBP_POOL_STARTED) == 0; i++)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	cr_assert_eq(evs[0].slot, 1);
	cr_assert_eq(ev_sig[0], SIGKILL);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1);
	cr_assert_not_null(pbp_pool_child(p, 1));
	pbp_pool_free(p);
}

/* pbp_pool_run() with a long timeout and no call returns at the death
 * (an event), not at the end of its timeout. */
Test(pool, run_returns_at_an_event_before_its_timeout, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbp_pool *p = start(&o);
	int64_t t0;
	int i;

	cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 0), SIGKILL), 0);
	t0 = now_ms();
	for (i = 0; i < 2 && count_ev(PBP_POOL_STARTED) == 0; i++)
		cr_assert_eq(pbp_pool_run(p, 20000), 0);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1);
	cr_assert_lt(now_ms() - t0, 10000, "pbp_pool_run waited for its timeout");
	pbp_pool_free(p);
}

Test(pool, an_application_error_is_remote_and_not_retried, .timeout = 60)
{
	pbp_pool_options o = options(2);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pool *p;

	o.idempotent = idem;
	o.nidempotent = 1;
	p = start(&o);
	cr_assert_eq(call(p, POOL_OP_APP_ERROR, 77, &r, pbt_scale(5000)), PBP_EREMOTE);
	cr_assert_eq(pbp_pool_error(p)->remote_code, 77);
	cr_assert(strstr(pbp_pool_error(p)->msg, "application error 77") != NULL, "%s",
	          pbp_pool_error(p)->msg);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(st.deaths, 0);
	pbp_pool_free(p);
}

Test(pool, one_way_messages_are_dropped_and_counted, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;

	cr_assert_eq(call(p, POOL_OP_ONEWAY, 3, &r, pbt_scale(5000)), 0, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert_eq(call(p, POOL_OP_ECHO, 0, &r, pbt_scale(5000)), 0);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.dropped, 3);
	pbp_pool_free(p);
}

/* Calls waiting in the queue end at their own deadlines, earliest first,
 * while the only helper is busy; one without a deadline runs after. */
struct ended {
	int rc[3];
	int64_t at[3];
	char msg[3][PBP_ERRMSG_SIZE];
};

static struct ended ended;

static void
done_at(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err,
        void *payload)
{
	int i = (int)(intptr_t)payload;

	(void)p;
	(void)id;
	(void)resp;
	ended.rc[i] = rc;
	ended.at[i] = now_ms();
	snprintf(ended.msg[i], sizeof ended.msg[i], "%s", err != NULL ? err->msg : "");
}

Test(pool, queued_calls_end_at_their_own_deadlines, .timeout = 60)
{
	static const int timeouts[3] = { 900, 300, -1 }; /* submitted in this order */
	pbp_pool_options o = options(1);
	pbptest_Numbers rq = pbptest_Numbers_init_zero;
	pbp_pool *p = start(&o);
	int64_t t0;
	int i, busy = 1;

	memset(&ended, 0, sizeof ended);
	rq.i32 = POOL_OP_SLEEP;
	rq.i64 = 1500;
	cr_assert_eq(pbp_pool_call_async(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS, -1,
	                                 done_keep, &busy, NULL), 0);
	rq.i32 = POOL_OP_ECHO;
	rq.i64 = 7;
	t0 = now_ms();
	for (i = 0; i < 3; i++) {
		ended.rc[i] = 1;
		cr_assert_eq(pbp_pool_call_async(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS,
		                                 timeouts[i], done_at, (void *)(intptr_t)i, NULL), 0);
	}
	cr_assert_leq(pbp_pool_next_timeout(p), 300);
	for (i = 0; i < 200 && (ended.rc[0] == 1 || ended.rc[1] == 1); i++)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(ended.rc[1], PBP_ETIMEDOUT, "%d %s", ended.rc[1], ended.msg[1]);
	cr_assert_eq(ended.rc[0], PBP_ETIMEDOUT, "%d %s", ended.rc[0], ended.msg[0]);
	cr_assert(strstr(ended.msg[0], "waited in the queue") != NULL, "%s", ended.msg[0]);
	cr_assert_lt(ended.at[1], ended.at[0]); /* the earlier deadline first */
	cr_assert_geq(ended.at[1] - t0, 300);
	cr_assert_geq(ended.at[0] - t0, 900);
	cr_assert_eq(busy, 1, "the sleeping call ended first (%d)", busy);
	cr_assert_eq(ended.rc[2], 1); /* no deadline: still waiting */
	for (i = 0; i < 200 && ended.rc[2] == 1; i++)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(busy, 0);
	cr_assert_eq(ended.rc[2], 0, "%d %s", ended.rc[2], ended.msg[2]);
	pbp_pool_free(p);
}

Test(pool, a_full_queue_is_elimit_and_free_cancels_pending_calls, .timeout = 60)
{
	pbp_pool_options o = options(1);
	pbptest_Numbers rq = pbptest_Numbers_init_zero;
	pbp_pool *p;
	int i;

	o.max_queued = 2;
	p = start(&o);
	ndone = 0;
	async(p, POOL_OP_SLEEP, 200, -1, NULL); /* on the helper */
	async(p, POOL_OP_ECHO, 0, -1, NULL);
	async(p, POOL_OP_ECHO, 0, -1, NULL);
	rq.i32 = POOL_OP_ECHO;
	cr_assert_eq(pbp_pool_call_async(p, pbptest_Type_NUMBERS, &rq, pbptest_Type_NUMBERS, -1,
	                                 done, NULL, NULL), PBP_ELIMIT);
	pbp_pool_free(p);
	cr_assert_eq(ndone, 3, "every pending call ends exactly once");
	for (i = 0; i < 3; i++)
		cr_assert_eq(done_rc[i], PBP_ECANCELED);
}

Test(pool, a_poll_loop_drives_four_helpers_through_a_kill, .timeout = 120)
{
	pbp_pool_options o = options(4);
	struct pollfd fds[8];
	pbp_pool_stats st;
	pbp_pool *p;
	int started = 0, killed = 0, spins = 0;

	o.idempotent = idem;
	o.nidempotent = 1;
	p = start(&o);
	ndone = 0;
	while (ndone < 200) {
		size_t n;

		while (started < 200 && started - ndone < 8) {
			async(p, POOL_OP_SLEEP, 2, pbt_scale(20000), NULL);
			started++;
		}
		if (!killed && ndone >= 50) {
			cr_assert_eq(pbp_child_kill(pbp_pool_child(p, 2), SIGKILL), 0);
			killed = 1;
		}
		n = pbp_pool_pollfds(p, fds, 8);
		cr_assert_leq(n, 8);
		cr_assert_geq(poll(fds, n, pbp_pool_next_timeout(p)), 0);
		cr_assert_geq(pbp_pool_run(p, 0), 0);
		cr_assert_lt(++spins, 200000);
	}
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.calls_ok, 200, "%llu ok, %llu failed", (unsigned long long)st.calls_ok,
	             (unsigned long long)st.calls_failed);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	pbp_pool_free(p);
}

Test(pool, each_slot_runs_its_own_program, .timeout = 60)
{
	static const char *const a0[] = { "h", "--tag", "10", NULL };
	static const char *const a1[] = { "h", "--tag", "11", NULL };
	pbp_pool_helper hs[2] = { { PBPTEST_POOL_HELPER, a0 }, { PBPTEST_POOL_HELPER, a1 } };
	pbp_pool_options o = options(0);
	pbp_pool *p;
	int seen[2] = { 0, 0 };

	o.helpers = hs;
	o.nhelpers = 2;
	p = start(&o);
	ndone = 0;
	async(p, POOL_OP_SLEEP, 100, -1, NULL);
	async(p, POOL_OP_SLEEP, 100, -1, NULL);
	run_until(p, 2, pbt_scale(20000));
	seen[(done_tag[0] - 10) & 1]++;
	seen[(done_tag[1] - 10) & 1]++;
	cr_assert(done_tag[0] + done_tag[1] == 21, "tags %lld %lld", done_tag[0], done_tag[1]);
	cr_assert(seen[0] == 1 && seen[1] == 1);
	{
		pbp_pool_stats st;

		cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
		cr_assert_eq(st.size, 2);
	}
	pbp_pool_free(p);
}
