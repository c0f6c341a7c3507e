/*
 * pbpipe-pool: a pool of supervised helpers (pbp_pool.h).  Starts
 * --helpers N copies of `pbpipe-child --serve`, makes --calls K Add calls
 * asynchronously with --window W of them in flight, checks every Sum, and
 * drives the pool from its own poll() loop.  With --kill-every-ms M it
 * kills a random helper (SIGKILL) every M ms: the pool reports the death,
 * restarts the helper and retries the calls that were on it (Add is
 * declared idempotent), so no call is lost.
 *
 *   pbpipe-pool [--helpers N] [--calls K] [--window W] [--kill-every-ms M]
 *               [--seed S] [--expect-widths] [--child PATH]...
 *
 * Several --child options give the slots different programs, slot i
 * running the (i mod n)th: a 64-bit and a 32-bit pbpipe-child, say.
 * --expect-widths then checks, at the start and after every restart, the
 * ELF class of each slot's /proc/PID/exe: both widths must be running.
 * Exits 0 only if every call ended with the right sum.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

#define MAX_CHILDREN 8
#define MAX_WINDOW 256
#define CALL_TIMEOUT_MS 10000

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
	PBP_MSGTYPE(demo_Type_ADD, demo_Add),
	PBP_MSGTYPE(demo_Type_SUM, demo_Sum),
};
/* An Add may run twice: a call whose helper died is sent to another. */
static const uint32_t idempotent[] = { demo_Type_ADD };

struct run;
struct call {                  /* one place of the window */
	struct run *run;
	int64_t expect;            /* the Sum its current call must return */
};

struct run {
	pbp_pool *pool;
	size_t size;
	long calls, started, ended, ok, lost, failed, kills;
	struct call win[MAX_WINDOW];
	int width[PBP_POOL_MAX_HELPERS];     /* 32 or 64 once seen */
	int unchecked[PBP_POOL_MAX_HELPERS]; /* (re)started, width not seen yet */
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
die(const char *what, const char *msg)
{
	fprintf(stderr, "pbpipe-pool: %s: %s\n", what, msg);
	exit(1);
}

static void done(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err,
                 void *payload);

/* Starts the next call in window place c. */
static void
start(struct run *r, struct call *c)
{
	demo_Add a = { r->started, 1000000 };
	int rc = pbp_pool_call_async(r->pool, demo_Type_ADD, &a, demo_Type_SUM, CALL_TIMEOUT_MS,
	                             done, c, NULL);

	if (rc != 0)
		die("starting a call", pbp_pool_error(r->pool)->msg);
	c->expect = a.a + a.b;
	r->started++;
}

/* How a call ended (called by the pool, inside pbp_pool_run()). */
static void
done(pbp_pool *p, uint64_t id, int rc, const void *resp, const pbp_error *err, void *payload)
{
	struct call *c = payload;
	struct run *r = c->run;

	(void)p;
	r->ended++;
	if (rc == 0 && ((const demo_Sum *)resp)->value != c->expect)
		die("checking a sum", "wrong value");
	if (rc == 0)
		r->ok++;
	else
		fprintf(stderr, "pbpipe-pool: call %llu %s: %s\n", (unsigned long long)id,
		        rc == PBP_ELOST ? "lost" : "failed", err->msg);
	r->lost += rc == PBP_ELOST;
	r->failed += rc != 0 && rc != PBP_ELOST;
	if (r->started < r->calls)
		start(r, c);
}

/* Deaths and restarts, as they happen. */
static void
on_event(pbp_pool *p, const pbp_pool_event *ev, void *payload)
{
	static const char *const what[] = { "", "restarted", "died", "hung (killed)",
	                                    "could not be restarted", "given up" };
	struct run *r = payload;
	char how[512], when[64];

	(void)p;
	if (ev->kind == PBP_POOL_STARTED) {
		printf("pool: slot %zu restarted as pid %ld in %.1f ms (restart %llu of this slot)\n",
		       ev->slot, (long)ev->pid, (double)ev->restart_latency_us / 1000.0,
		       (unsigned long long)ev->restarts);
		r->unchecked[ev->slot] = 1;
	} else if (ev->report != NULL) { /* DIED, HUNG, RESTART_FAILED */
		if (ev->restart_in_ms < 0)
			snprintf(when, sizeof when, "not restarted");
		else
			snprintf(when, sizeof when, "restart in %d ms", ev->restart_in_ms);
		printf("pool: slot %zu %s (%u in the crash window): %s; %s\n", ev->slot,
		       what[ev->kind], ev->deaths, pbp_report_str(ev->report, how, sizeof how), when);
	} else { /* GAVE_UP */
		printf("pool: slot %zu %s\n", ev->slot, what[ev->kind]);
	}
}

/* The pointer width of a running process, from its executable's ELF
 * class: 32, 64, or 0 if it is gone already (looked at after its restart). */
static int
elf_bits(pbp_pid pid)
{
	char path[64];
	unsigned char h[5];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, h, sizeof h);
	close(fd);
	if (n != 5 || memcmp(h, "\177ELF", 4) != 0 || (h[4] != 1 && h[4] != 2))
		die("--expect-widths", "a helper's executable is not an ELF file");
	return h[4] == 1 ? 32 : 64;
}

static void
check_widths(struct run *r)
{
	size_t s;

	for (s = 0; s < r->size; s++) {
		pbp_child *c = r->unchecked[s] ? pbp_pool_child(r->pool, s) : NULL;
		int bits = c != NULL ? elf_bits(pbp_child_pid(c)) : 0;

		if (bits == 0)
			continue;
		if (r->width[s] != 0 && r->width[s] != bits)
			die("--expect-widths", "a restarted helper changed its width");
		r->width[s] = bits;
		r->unchecked[s] = 0;
	}
}

/* Kills a random live helper, as a crash would. */
static void
kill_one(struct run *r)
{
	size_t s0 = (size_t)rand() % r->size, i;

	for (i = 0; i < r->size; i++) {
		pbp_child *c = pbp_pool_child(r->pool, (s0 + i) % r->size);

		if (c != NULL) {
			if (pbp_child_kill(c, SIGKILL) != 0)
				die("killing a helper", pbp_child_error(c)->msg);
			r->kills++;
			return;
		}
	}
}

int
main(int argc, char **argv)
{
	static const char *const child_argv[] = { "pbpipe-child", "--serve", NULL };
	static char self[PATH_MAX], dflt[PATH_MAX + 16];
	pbp_pool_helper helpers[MAX_CHILDREN];
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_pool_options po = PBP_POOL_OPTIONS_INIT;
	struct run r = { 0 };
	pbp_pool_stats st;
	pbp_error err;
	long window = 16, kill_ms = 0, helpers_n = 4, seed = 1;
	int i, expect_widths = 0, nchild = 0, has32 = 0, has64 = 0;
	int64_t t0, next_kill;
	double secs;

	r.calls = 10000;
	for (i = 1; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(k, "--expect-widths") == 0)
			expect_widths = 1;
		else if (v != NULL && strcmp(k, "--helpers") == 0)
			helpers_n = atol(argv[++i]);
		else if (v != NULL && strcmp(k, "--calls") == 0)
			r.calls = atol(argv[++i]);
		else if (v != NULL && strcmp(k, "--window") == 0)
			window = atol(argv[++i]);
		else if (v != NULL && strcmp(k, "--kill-every-ms") == 0)
			kill_ms = atol(argv[++i]);
		else if (v != NULL && strcmp(k, "--seed") == 0)
			seed = atol(argv[++i]);
		else if (v != NULL && strcmp(k, "--child") == 0 && nchild < MAX_CHILDREN)
			helpers[nchild++] = (pbp_pool_helper){ argv[++i], child_argv };
		else
			break;
	}
	if (i != argc || helpers_n < 1 || helpers_n > PBP_POOL_MAX_HELPERS || r.calls < 1 ||
	    window < 1 || window > MAX_WINDOW || kill_ms < 0) {
		fprintf(stderr, "usage: pbpipe-pool [--helpers N<=%d] [--calls K] [--window W<=%d]\n"
		                "                   [--kill-every-ms M] [--seed S] [--expect-widths]\n"
		                "                   [--child PATH]... (at most %d)\n",
		        PBP_POOL_MAX_HELPERS, MAX_WINDOW, MAX_CHILDREN);
		return 2;
	}
	if (nchild == 0) { /* the pbpipe-child next to this program */
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

		if (n < 0)
			die("locating pbpipe-child", "cannot read /proc/self/exe");
		self[n] = '\0';
		snprintf(dflt, sizeof dflt, "%s/pbpipe-child", dirname(self));
		helpers[nchild++] = (pbp_pool_helper){ dflt, child_argv };
	}
	srand((unsigned int)seed);

	co.types = types;
	co.ntypes = sizeof types / sizeof types[0];
	co.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	co.pipe_size = 64 * 1024; /* several pipes: keep each small */
	so.channel = &co;
	po.size = (size_t)helpers_n;
	po.helpers = helpers;
	po.nhelpers = (size_t)nchild;
	po.spawn = &so;
	po.idempotent = idempotent;
	po.nidempotent = 1;
	po.on_event = on_event;
	po.event_payload = &r;
	if (kill_ms > 0) {
		/* The kills are ours, not a crash loop: never give a slot up,
		 * and keep the backoff short. */
		po.max_crashes = PBP_POOL_NEVER_GIVE_UP;
		po.backoff_initial_ms = 10;
		po.backoff_max_ms = 100;
	}
	if (pbp_pool_start(&r.pool, &po, &err) != 0)
		die("starting the pool", err.msg);
	r.size = (size_t)helpers_n;
	for (i = 0; i < helpers_n; i++)
		r.unchecked[i] = 1;
	printf("pool: %ld helpers started; %ld calls, %ld in flight; a helper killed every %ld ms\n",
	       helpers_n, r.calls, window, kill_ms);

	t0 = now_ms();
	next_kill = t0 + kill_ms;
	for (i = 0; i < window && r.started < r.calls; i++) {
		r.win[i].run = &r;
		start(&r, &r.win[i]);
	}
	while (r.ended < r.started) {
		struct pollfd fds[2 * PBP_POOL_MAX_HELPERS];
		size_t n = pbp_pool_pollfds(r.pool, fds, sizeof fds / sizeof fds[0]);
		int wait = pbp_pool_next_timeout(r.pool);

		if (kill_ms > 0) {
			int64_t k = next_kill - now_ms();

			k = k < 0 ? 0 : k;
			wait = wait < 0 || k < wait ? (int)k : wait;
		}
		if (poll(fds, (nfds_t)n, wait) < 0 && errno != EINTR)
			die("poll", strerror(errno));
		if (pbp_pool_run(r.pool, 0) < 0)
			die("pbp_pool_run", pbp_pool_error(r.pool)->msg);
		if (expect_widths)
			check_widths(&r);
		if (kill_ms > 0 && now_ms() >= next_kill && r.ended < r.started) {
			kill_one(&r);
			next_kill = now_ms() + kill_ms;
		}
	}
	secs = (double)(now_ms() - t0 + 1) / 1000.0;
	if (pbp_pool_stats_get(r.pool, &st) != 0)
		die("pbp_pool_stats_get", pbp_pool_error(r.pool)->msg);
	printf("pool: %ld calls ok, %ld lost, %ld failed, %llu retries, %llu restarts, "
	       "%llu deaths (%ld kills), %.0f calls/s\n", r.ok, r.lost, r.failed,
	       (unsigned long long)st.retries, (unsigned long long)st.restarts,
	       (unsigned long long)st.deaths, r.kills, (double)r.ended / secs);
	if (st.calls_ok != (uint64_t)r.ok || st.calls_lost != (uint64_t)r.lost)
		die("checking pbp_pool_stats", "its counts differ from the calls that ended");
	if (expect_widths) {
		check_widths(&r);
		for (i = 0; i < helpers_n; i++) {
			has32 |= r.width[i] == 32;
			has64 |= r.width[i] == 64;
		}
		printf("pool: helper widths seen:%s%s\n", has64 ? " 64-bit" : "", has32 ? " 32-bit" : "");
		if (!has32 || !has64)
			die("--expect-widths", "the helpers were not of both widths");
	}
	pbp_pool_free(r.pool);
	if (r.ok != r.calls)
		die("checking the calls", "not every call ended with the right sum");
	printf("pool: all checks passed\n");
	return 0;
}
