/*
 * test_win_pool.c: pools of supervised helpers (pbp_pool.h) on Windows,
 * through the public headers, against pbptest-pool-helper.exe
 * (tests/pool_helper.c) next to this program: helpers gone after
 * pbp_pool_free(), calls on two helpers, a crash in flight (lost, then a
 * restart), an idempotent call retried, a hang past the call's deadline,
 * asynchronous calls that overlap, an idle helper terminated from outside,
 * pings answered, application errors and one-way messages.  The Windows
 * counterpart of tests/test_pool.c, without its SIGSTOP tests (a process
 * cannot be suspended through kernel32 alone).
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"
#include "pool_helper.h"
#include "support.h"
#include "winrun.h"

#define T(name) Test(win_pool, name, .timeout = 30)

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};
static const uint32_t idem[] = { pbptest_Type_NUMBERS };

static pbp_channel_options chopt = PBP_CHANNEL_OPTIONS_INIT;
static pbp_spawn_options sopt = PBP_SPAWN_OPTIONS_INIT;
static char helper_path[MAX_PATH * 3];

/* Events seen, in order, with what their reports said. */
#define MAXEV 64
static pbp_pool_event evs[MAXEV];
static pbp_report ev_rep[MAXEV];
static int ev_has_rep[MAXEV];
static int nev;

static void
on_event(pbp_pool *p, const pbp_pool_event *ev, void *payload)
{
	(void)p;
	(void)payload;
	if (nev < MAXEV) {
		evs[nev] = *ev;
		ev_has_rep[nev] = ev->report != NULL;
		if (ev->report)
			ev_rep[nev] = *ev->report;
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

static int
find_ev(int kind)
{
	int i;

	for (i = 0; i < nev; i++)
		if (evs[i].kind == kind)
			return i;
	return -1;
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
	sopt.stderr_mode = PBP_STDIO_CAPTURE; /* the death reports' tails */
	pbt_win_sibling(helper_path, sizeof helper_path, "pbptest-pool-helper.exe");
	o.size = size;
	o.path = helper_path;
	o.argv = argv;
	o.spawn = &sopt;
	o.on_event = on_event;
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
	cr_assert_not_null(p);
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
	LARGE_INTEGER f, c;

	QueryPerformanceFrequency(&f);
	QueryPerformanceCounter(&c);
	return (int64_t)(c.QuadPart * 1000 / f.QuadPart);
}

/* A handle on the helper in a slot, opened while it runs (so that a
 * recycled pid cannot fool the checks below), with its pid in *pid. */
static HANDLE
open_helper(pbp_pool *p, size_t slot, DWORD access, pbp_pid *pid)
{
	pbp_child *c = pbp_pool_child(p, slot);
	HANDLE h;

	cr_assert_not_null(c, "slot %u has no helper", (unsigned)slot);
	*pid = pbp_child_pid(c);
	cr_assert_gt(*pid, 0);
	h = OpenProcess(access | SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE,
	                (DWORD)*pid);
	cr_assert_not_null(h, "OpenProcess(%lu): error %lu", (unsigned long)*pid,
	                   (unsigned long)GetLastError());
	return h;
}

/* 1 if the process has ended (now, or within ms). */
static int
ended(HANDLE h, DWORD ms)
{
	return WaitForSingleObject(h, ms) == WAIT_OBJECT_0;
}

static DWORD
exit_code(HANDLE h)
{
	DWORD code = 0;

	cr_assert(GetExitCodeProcess(h, &code));
	return code;
}

T(two_helpers_start_and_are_gone_after_free)
{
	pbp_pool_options o = options(2);
	pbp_pool *p = start(&o);
	pbp_pool_stats st;
	pbp_pid pids[2];
	HANDLE h[2];

	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.size, 2);
	cr_assert_eq(st.live, 2);
	cr_assert_eq(st.idle, 2);
	h[0] = open_helper(p, 0, 0, &pids[0]);
	h[1] = open_helper(p, 1, 0, &pids[1]);
	cr_assert_neq(pids[0], pids[1]);
	cr_assert_null(pbp_pool_child(p, 2));
	cr_assert(!ended(h[0], 0) && !ended(h[1], 0), "a helper ended before pbp_pool_free()");
	pbp_pool_free(p);
	/* pbp_pool_free() waits for them: they are gone when it returns, and
	 * went by themselves on Goodbye (exit code 0, not a termination). */
	cr_assert(ended(h[0], 0), "helper %lu still runs after pbp_pool_free()", pids[0]);
	cr_assert(ended(h[1], 0), "helper %lu still runs after pbp_pool_free()", pids[1]);
	cr_assert_eq(exit_code(h[0]), 0);
	cr_assert_eq(exit_code(h[1]), 0);
	cr_assert_eq(nev, 0, "events without a death");
	CloseHandle(h[0]);
	CloseHandle(h[1]);
}

T(blocking_echo_calls_through_two_helpers_are_answered)
{
	pbp_pool_options o = options(2);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pid pid0 = pbp_child_pid(pbp_pool_child(p, 0));
	pbp_pid pid1 = pbp_child_pid(pbp_pool_child(p, 1));
	int64_t t0 = now_ms();
	int i;

	for (i = 0; i < 200; i++) {
		cr_assert_eq(call(p, POOL_OP_ECHO, 100 + i, &r, 5000), 0, "call %d: %s", i,
		             pbp_pool_error(p)->msg);
		cr_assert_eq(r.i64, 101 + i);
		cr_assert_eq(r.i32, 64, "the helper is %d-bit", (int)r.i32);
		cr_assert(r.u64 == pid0 || r.u64 == pid1, "answered by pid %llu, not a helper",
		          (unsigned long long)r.u64);
	}
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_log_info("200 blocking ECHO calls: %lld ms", (long long)(now_ms() - t0));
	cr_assert_eq(st.calls_ok, 200);
	cr_assert_eq(st.calls_failed, 0);
	cr_assert_eq(st.live, 2);
	cr_assert_eq(st.idle, 2);
	cr_assert_eq(st.in_flight, 0);
	cr_assert_eq(nev, 0);
	pbp_pool_free(p);
}

T(a_crash_in_flight_is_lost_then_the_helper_is_restarted)
{
	pbp_pool_options o = options(1);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pid old;
	HANDLE h = open_helper(p, 0, 0, &old);
	int d, s;

	cr_assert_eq(call(p, POOL_OP_CRASH, 0, &r, 10000), PBP_ELOST, "%s",
	             pbp_pool_error(p)->msg);
	cr_assert(strstr(pbp_pool_error(p)->msg, "died") != NULL, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	d = find_ev(PBP_POOL_DIED);
	cr_assert_eq(d, 0);
	cr_assert_eq(evs[d].slot, 0);
	cr_assert_eq(evs[d].pid, old);
	cr_assert_eq(evs[d].deaths, 1);
	cr_assert_eq(evs[d].restart_in_ms, 0);
	cr_assert(ev_has_rep[d], "DIED without a death report");
	cr_assert_eq(ev_rep[d].pid, old);
	/* abort() in msvcrt ends the process with exit code 3. */
	cr_assert_eq(ev_rep[d].fate, PBP_FATE_EXITED, "fate %d", ev_rep[d].fate);
	cr_assert_eq(ev_rep[d].status.code, 3, "exit code %d", ev_rep[d].status.code);
	cr_assert(strstr(ev_rep[d].stderr_tail, "pbptest-pool-helper: crashing") != NULL,
	          "stderr tail: \"%s\"", ev_rep[d].stderr_tail);
	cr_assert(ended(h, 0));
	cr_assert_eq(exit_code(h), 3);
	/* The restart happens on the next pool call. */
	cr_assert_eq(call(p, POOL_OP_ECHO, 1, &r, 10000), 0, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 2);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1);
	s = find_ev(PBP_POOL_STARTED);
	cr_assert_gt(s, d);
	cr_assert_eq(evs[s].slot, 0);
	cr_assert_neq(evs[s].pid, old);
	cr_assert_eq((pbp_pid)r.u64, evs[s].pid, "answered by %llu, started %lu",
	             (unsigned long long)r.u64, evs[s].pid);
	cr_assert_eq(pbp_child_pid(pbp_pool_child(p, 0)), evs[s].pid);
	cr_assert_gt(evs[s].restart_latency_us, 0);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.calls_lost, 1);
	cr_assert_eq(st.deaths, 1);
	cr_assert_eq(st.restarts, 1);
	cr_assert_eq(st.live, 1);
	pbp_pool_free(p);
	CloseHandle(h);
}

T(an_idempotent_call_is_retried_on_another_helper)
{
	char dir[MAX_PATH], flag[MAX_PATH + 64];
	const char *av[4] = { "h", "--crash-flag", NULL, NULL };
	pbp_pool_options o = options(2);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pool *p;
	pbp_pid pids[2];
	HANDLE h[2];
	int d;

	cr_assert_gt(GetTempPathA(sizeof dir, dir), 0);
	snprintf(flag, sizeof flag, "%spbptest-pool-%lu-%llu", dir,
	         (unsigned long)GetCurrentProcessId(), (unsigned long long)now_ms());
	DeleteFileA(flag); /* the first CRASH_ONCE creates it and crashes */
	av[2] = flag;
	o.argv = av;
	o.idempotent = idem;
	o.nidempotent = 1;
	p = start(&o);
	h[0] = open_helper(p, 0, 0, &pids[0]);
	h[1] = open_helper(p, 1, 0, &pids[1]);
	cr_assert_eq(call(p, POOL_OP_CRASH_ONCE, 5, &r, 10000), 0, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 6);
	cr_assert_eq(GetFileAttributesA(flag) != INVALID_FILE_ATTRIBUTES, 1,
	             "CRASH_ONCE created no flag file");
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.retries, 1);
	cr_assert_eq(st.calls_lost, 0);
	cr_assert_eq(st.calls_ok, 1);
	cr_assert_eq(st.deaths, 1);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1);
	d = find_ev(PBP_POOL_DIED);
	/* The helper that crashed is gone; the answer came from another one. */
	cr_assert(ended(h[evs[d].slot], 0), "the crashed helper still runs");
	cr_assert_neq((pbp_pid)r.u64, evs[d].pid, "answered by the helper that crashed");
	pbp_pool_free(p);
	DeleteFileA(flag);
	CloseHandle(h[0]);
	CloseHandle(h[1]);
}

T(a_hang_past_the_call_deadline_is_timedout_and_the_helper_replaced)
{
	pbp_pool_options o = options(1);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pid old;
	HANDLE h = open_helper(p, 0, 0, &old);
	int64_t t0 = now_ms(), took;
	int e;

	cr_assert_eq(call(p, POOL_OP_HANG, 0, &r, 300), PBP_ETIMEDOUT, "%s",
	             pbp_pool_error(p)->msg);
	took = now_ms() - t0;
	cr_assert(took >= 290 && took < 5000, "the 300 ms deadline took %lld ms", (long long)took);
	cr_assert_eq(count_ev(PBP_POOL_HUNG), 1);
	e = find_ev(PBP_POOL_HUNG);
	cr_assert_eq(evs[e].slot, 0);
	cr_assert_eq(evs[e].pid, old);
	cr_assert(ev_has_rep[e], "HUNG without a report");
	/* Windows: killed is TerminateProcess with 128 + SIGKILL. */
	cr_assert_eq(ev_rep[e].fate, PBP_FATE_EXITED, "fate %d", ev_rep[e].fate);
	cr_assert_eq(ev_rep[e].status.code, 137, "exit code %d", ev_rep[e].status.code);
	cr_assert(ended(h, 2000), "the hung helper was not killed");
	cr_assert_eq(exit_code(h), 137);
	cr_assert_eq(call(p, POOL_OP_ECHO, 2, &r, 10000), 0, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 3);
	cr_assert_neq((pbp_pid)r.u64, old);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.hung, 1);
	cr_assert_eq(st.restarts, 1);
	pbp_pool_free(p);
	CloseHandle(h);
}

static int ndone, done_rc[16];
static pbp_pid done_pid[16];
static int64_t done_at[16];

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
	if (ndone < 16) {
		done_rc[ndone] = rc;
		done_pid[ndone] = rc == 0 ? (pbp_pid)((const pbptest_Numbers *)resp)->u64 : 0;
		done_at[ndone] = now_ms();
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
	int64_t t0 = now_ms();

	while (ndone < n) {
		cr_assert_geq(pbp_pool_run(p, 50), 0);
		cr_assert(now_ms() - t0 < ms, "only %d of %d calls ended", ndone, n);
	}
}

T(async_calls_on_two_helpers_overlap)
{
	pbp_pool_options o = options(2);
	pbp_pool *p = start(&o);
	pbp_pool_stats st;
	uint64_t ids[4];
	int64_t t0, took;
	int i;

	ndone = 0;
	t0 = now_ms();
	async(p, POOL_OP_SLEEP, 300, -1, &ids[0]);
	async(p, POOL_OP_SLEEP, 300, -1, &ids[1]);
	cr_assert_eq(ndone, 0, "done ran inside pbp_pool_call_async");
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.in_flight, 2, "both calls should be on a helper at once");
	cr_assert_eq(st.queued, 0);
	run_until(p, 2, 10000);
	took = now_ms() - t0;
	cr_assert_eq(done_rc[0], 0);
	cr_assert_eq(done_rc[1], 0);
	cr_assert_neq(done_pid[0], done_pid[1], "two calls ran on one helper");
	cr_log_info("2 x 300 ms calls on 2 helpers: %lld ms", (long long)took);
	cr_assert(took >= 300 && took < 550, "2 x 300 ms calls took %lld ms: no overlap",
	          (long long)took);
	cr_assert(ids[0] > 0 && ids[1] > ids[0]);
	/* A third and fourth: one queued behind each helper. */
	ndone = 0;
	async(p, POOL_OP_SLEEP, 100, -1, &ids[2]);
	async(p, POOL_OP_SLEEP, 100, -1, &ids[3]);
	async(p, POOL_OP_ECHO, 7, -1, NULL);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.in_flight, 2);
	cr_assert_eq(st.queued, 1);
	run_until(p, 3, 10000);
	for (i = 0; i < 3; i++)
		cr_assert_eq(done_rc[i], 0, "call %d: %d", i, done_rc[i]);
	cr_assert_eq(pbp_pool_run(p, 0), 0);
	cr_assert_eq(ndone, 3, "a done callback ran twice");
	pbp_pool_free(p);
}

T(an_idle_helper_terminated_from_outside_is_noticed_and_restarted)
{
	pbp_pool_options o = options(2);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pid victim, newpid;
	HANDLE h = open_helper(p, 1, PROCESS_TERMINATE, &victim);
	int i, d, s;

	/* The pool's own child, by a handle opened while it runs. */
	cr_assert(TerminateProcess(h, 9), "TerminateProcess: %lu", GetLastError());
	cr_assert(ended(h, 5000));
	for (i = 0; i < 200 && count_ev(PBP_POOL_STARTED) == 0; i++)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(count_ev(PBP_POOL_DIED), 1, "the death was not noticed");
	d = find_ev(PBP_POOL_DIED);
	cr_assert_eq(evs[d].slot, 1);
	cr_assert_eq(evs[d].pid, victim);
	cr_assert(ev_has_rep[d]);
	cr_assert_eq(ev_rep[d].fate, PBP_FATE_EXITED, "fate %d", ev_rep[d].fate);
	cr_assert_eq(ev_rep[d].status.code, 9, "exit code %d", ev_rep[d].status.code);
	cr_assert_eq(count_ev(PBP_POOL_STARTED), 1, "no restart");
	s = find_ev(PBP_POOL_STARTED);
	cr_assert_eq(evs[s].slot, 1);
	cr_assert_not_null(pbp_pool_child(p, 1));
	newpid = pbp_child_pid(pbp_pool_child(p, 1));
	cr_assert_eq(newpid, evs[s].pid);
	cr_assert_neq(newpid, victim);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.live, 2);
	cr_assert_eq(st.calls_lost, 0);
	for (i = 0; i < 4; i++)
		cr_assert_eq(call(p, POOL_OP_ECHO, i, &r, 5000), 0, "%s", pbp_pool_error(p)->msg);
	pbp_pool_free(p);
	CloseHandle(h);
}

/* CPU time (user + kernel) of this process so far, in ms. */
static double
cpu_ms(void)
{
	FILETIME create, exit_, kernel, user;
	ULARGE_INTEGER k, u;

	cr_assert(GetProcessTimes(GetCurrentProcess(), &create, &exit_, &kernel, &user));
	k.LowPart = kernel.dwLowDateTime;
	k.HighPart = kernel.dwHighDateTime;
	u.LowPart = user.dwLowDateTime;
	u.HighPart = user.dwHighDateTime;
	return (double)(k.QuadPart + u.QuadPart) / 10000.0;
}

/* pbp_pool_run() waits for two silent helpers by polling their pipes
 * (lib/os/win32/io.c, pbp__os_io_wait_any): for the time asked, and
 * without burning the CPU. */
T(waiting_for_silent_helpers_lasts_its_timeout_and_does_not_spin)
{
	pbp_pool_options o = options(2);
	volatile unsigned long x = 0;
	double cpu0, cpu1, burn0;
	pbp_pool *p;
	int64_t t0, waited;

	o.ping_interval_ms = -1;
	p = start(&o);
	/* The CPU clock must see CPU being used, or "little" below proves
	 * nothing. */
	burn0 = cpu_ms();
	t0 = now_ms();
	while (cpu_ms() - burn0 < 100.0 && now_ms() - t0 < 5000)
		x++;
	cr_assert_geq(cpu_ms() - burn0, 100.0, "GetProcessTimes does not measure CPU time here");
	cpu0 = cpu_ms();
	t0 = now_ms();
	cr_assert_eq(pbp_pool_run(p, 1000), 0);
	waited = now_ms() - t0;
	cpu1 = cpu_ms();
	cr_log_info("pbp_pool_run(1000) on 2 silent helpers: %lld ms, %.1f ms CPU",
	            (long long)waited, cpu1 - cpu0);
	cr_assert(waited >= 950 && waited <= 2000, "returned after %lld ms", (long long)waited);
	cr_assert_leq(cpu1 - cpu0, 30.0, "the 1 s wait used %.1f ms of CPU: busy waiting",
	              cpu1 - cpu0);
	cr_assert_eq(nev, 0);
	pbp_pool_free(p);
}

T(idle_helpers_answer_pings_and_stay)
{
	pbp_pool_options o = options(2);
	pbp_pool_stats st;
	pbp_pool *p;
	int64_t t0;

	o.ping_interval_ms = 100;
	o.ping_timeout_ms = 1000;
	p = start(&o);
	t0 = now_ms();
	while (now_ms() - t0 < 700)
		cr_assert_geq(pbp_pool_run(p, 50), 0);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_geq(st.pings, 4, "%llu pings answered in 700 ms", (unsigned long long)st.pings);
	cr_assert_eq(st.deaths, 0);
	cr_assert_eq(st.live, 2);
	cr_assert_eq(nev, 0);
	pbp_pool_free(p);
}

T(an_application_error_is_remote_and_not_retried)
{
	pbp_pool_options o = options(2);
	pbptest_Numbers r;
	pbp_pool_stats st;
	pbp_pool *p;

	o.idempotent = idem;
	o.nidempotent = 1;
	p = start(&o);
	cr_assert_eq(call(p, POOL_OP_APP_ERROR, 77, &r, 5000), PBP_EREMOTE);
	cr_assert_eq(pbp_pool_error(p)->remote_code, 77);
	cr_assert(strstr(pbp_pool_error(p)->msg, "application error 77") != NULL, "%s",
	          pbp_pool_error(p)->msg);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(st.deaths, 0);
	pbp_pool_free(p);
}

T(one_way_messages_are_dropped_and_counted)
{
	pbp_pool_options o = options(1);
	pbp_pool *p = start(&o);
	pbptest_Numbers r;
	pbp_pool_stats st;

	cr_assert_eq(call(p, POOL_OP_ONEWAY, 3, &r, 5000), 0, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(r.i64, 4);
	cr_assert_eq(call(p, POOL_OP_ECHO, 0, &r, 5000), 0, "%s", pbp_pool_error(p)->msg);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.dropped, 3);
	pbp_pool_free(p);
}

/* 40 helpers with captured stderr wait on 80 events, more than one
 * WaitForMultipleObjects takes (MAXIMUM_WAIT_OBJECTS, 64): the rest are
 * looked at every millisecond, and every call is still answered. */
T(forty_helpers_answer_forty_async_calls)
{
	pbp_pool_options o = options(40);
	pbp_pool *p = start(&o);
	pbp_pool_stats st;
	int i, j;

	ndone = 0;
	for (i = 0; i < 16; i++)
		async(p, POOL_OP_SLEEP, 200, -1, NULL);
	for (; i < 40; i++)
		async(p, POOL_OP_ECHO, i, -1, NULL);
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.live, 40);
	cr_assert_eq(st.in_flight, 40);
	run_until(p, 40, 20000);
	for (i = 0; i < 16 && i < ndone; i++) {
		cr_assert_eq(done_rc[i], 0, "call %d: %d", i, done_rc[i]);
		for (j = 0; j < i; j++)
			cr_assert_neq(done_pid[i], done_pid[j], "two calls ran on one helper");
	}
	cr_assert_eq(pbp_pool_stats_get(p, &st), 0);
	cr_assert_eq(st.calls_ok, 40);
	cr_assert_eq(st.deaths, 0);
	pbp_pool_free(p);
}
