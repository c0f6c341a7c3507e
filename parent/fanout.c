/*
 * pbpipe-fanout: one parent driving many children at once through poll().
 * Each child (pbpipe-child --serve --reverse) answers Add calls, each batch
 * in reverse order, so replies arrive out of order; the parent keeps a
 * window of calls outstanding per child and checks every sum.  One more
 * child answers slowly (--delay-ms): its call hits a deadline and is
 * cancelled while the others carry on.
 *
 *   pbpipe-fanout [--children N] [--calls N] [--window W]
 *                 [--slow-deadline MS] [--child PATH]
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

#define MAX_WINDOW 64

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
	PBP_MSGTYPE(demo_Type_ADD, demo_Add),
	PBP_MSGTYPE(demo_Type_SUM, demo_Sum),
};

struct kid {
	pbp_child *c;
	pbp_channel *ch;
	uint64_t id[MAX_WINDOW];   /* 0: slot empty */
	int64_t expect[MAX_WINDOW];
	long seq[MAX_WINDOW];      /* start order, to see replies overtake */
	long started, done;
};

struct opts {
	int children, window, slow_deadline_ms;
	long calls;
	const char *child;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
die(const char *what, const char *msg)
{
	fprintf(stderr, "pbpipe-fanout: %s: %s\n", what, msg);
	exit(1);
}

static pbp_child *
spawn(const char *path, const char *const *argv)
{
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c;
	pbp_error err;

	co.types = types;
	co.ntypes = sizeof types / sizeof types[0];
	co.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	co.flags = PBP_CHANNEL_COALESCE; /* a window of calls in one write */
	co.recv_timeout_ms = 0;          /* finishing a call never waits */
	co.pipe_size = 64 * 1024;        /* many pipes: keep each small */
	so.channel = &co;
	if (pbp_child_spawn(&c, path, argv, &so, &err) != 0)
		die("spawning a child", err.msg);
	return c;
}

/* Starts call number k->started in slot j. */
static void
start(struct kid *k, int j)
{
	demo_Add a = { k->started, 1000000 };

	if (pbp_channel_call_start(k->ch, demo_Type_ADD, &a, &k->id[j]) != 0)
		die("starting a call", pbp_channel_errmsg(k->ch));
	k->expect[j] = a.a + a.b;
	k->seq[j] = k->started++;
}

/* Collects every reply that has arrived; returns how many overtook an
 * earlier call.  Passes repeat until one completes nothing: a reply read
 * into the channel's buffer while finishing another call is no longer
 * visible to poll(), so it must be collected now. */
static long
collect(struct kid *k, const struct opts *o)
{
	long overtook = 0, before;
	int j, i, rc;

	do {
		before = k->done;
		for (j = 0; j < o->window; j++) {
			demo_Sum s;

			if (k->id[j] == 0)
				continue;
			rc = pbp_channel_call_finish(k->ch, k->id[j], demo_Type_SUM, &s, 0);
			if (rc == PBP_EAGAIN)
				continue;
			if (rc != 0)
				die("finishing a call", pbp_channel_errmsg(k->ch));
			if (s.value != k->expect[j])
				die("checking a sum", "wrong value");
			for (i = 0; i < o->window; i++)
				if (i != j && k->id[i] != 0 && k->seq[i] < k->seq[j]) {
					overtook++;
					break;
				}
			k->done++;
			k->id[j] = 0;
			if (k->started < o->calls)
				start(k, j);
		}
	} while (k->done != before);
	return overtook;
}

static void
parse(int argc, char **argv, struct opts *o, char *path, size_t size)
{
	char self[PATH_MAX];
	ssize_t n;
	int i;

	*o = (struct opts){ 64, 16, 300, 10000, NULL };
	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--children") == 0)
			o->children = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--calls") == 0)
			o->calls = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--window") == 0)
			o->window = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--slow-deadline") == 0)
			o->slow_deadline_ms = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--child") == 0)
			o->child = argv[i + 1];
		else
			break;
	}
	if (i != argc || o->children < 1 || o->calls < 1 || o->window < 1 ||
	    o->window > MAX_WINDOW) {
		fprintf(stderr, "usage: pbpipe-fanout [--children N] [--calls N] [--window W<=%d]\n"
		                "                     [--slow-deadline MS] [--child PATH]\n", MAX_WINDOW);
		exit(2);
	}
	if (o->child == NULL) {
		n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n < 0)
			die("locating pbpipe-child", "cannot read /proc/self/exe");
		self[n] = '\0';
		snprintf(path, size, "%s/pbpipe-child", dirname(self));
		o->child = path;
	}
}

int
main(int argc, char **argv)
{
	const char *fast_argv[] = { "pbpipe-child", "--serve", "--reverse", NULL };
	char delay[32];
	const char *slow_argv[] = { "pbpipe-child", "--serve", "--delay-ms", delay, NULL };
	char path[PATH_MAX], how[96];
	struct opts o;
	struct kid *kids, slow = { 0 };
	struct pollfd *pfd;
	long total = 0, overtook = 0, during_slow = -1;
	int64_t t0, slow_deadline;
	demo_Add a = { 1, 2 };
	int i, j, slow_timed_out = 0;

	parse(argc, argv, &o, path, sizeof path);
	/* The slow child takes four times the deadline to answer. */
	snprintf(delay, sizeof delay, "%d", 4 * o.slow_deadline_ms);
	kids = calloc((size_t)o.children, sizeof *kids);
	pfd = calloc((size_t)o.children, sizeof *pfd);
	if (kids == NULL || pfd == NULL)
		die("starting", "out of memory");
	t0 = now_ms();
	for (i = 0; i < o.children; i++) {
		kids[i].c = spawn(o.child, fast_argv);
		kids[i].ch = pbp_child_channel(kids[i].c);
		pfd[i] = (struct pollfd){ pbp_channel_read_fd(kids[i].ch), POLLIN, 0 };
	}
	slow.c = spawn(o.child, slow_argv);
	slow.ch = pbp_child_channel(slow.c);
	printf("fanout: %d children spawned in %lld ms\n", o.children + 1, (long long)(now_ms() - t0));

	t0 = now_ms();
	if (pbp_channel_call_start(slow.ch, demo_Type_ADD, &a, &slow.id[0]) != 0 ||
	    pbp_channel_flush(slow.ch) != 0)
		die("calling the slow child", pbp_channel_errmsg(slow.ch));
	slow_deadline = t0 + o.slow_deadline_ms;
	for (i = 0; i < o.children; i++) {
		for (j = 0; j < o.window && kids[i].started < o.calls; j++)
			start(&kids[i], j);
		if (pbp_channel_flush(kids[i].ch) != 0)
			die("sending", pbp_channel_errmsg(kids[i].ch));
	}
	while (total < o.calls * o.children || !slow_timed_out) {
		int wait = slow_timed_out ? 1000 : (int)(slow_deadline - now_ms());

		if (total == o.calls * o.children)
			wait = wait > 0 ? wait : 0; /* only the slow deadline is left */
		if (poll(pfd, (nfds_t)o.children, wait < 0 ? 0 : wait) < 0)
			die("poll", "failed");
		for (i = 0; i < o.children; i++) {
			long before = kids[i].done;

			if (pfd[i].revents == 0)
				continue;
			overtook += collect(&kids[i], &o);
			total += kids[i].done - before;
			if (pbp_channel_pending(kids[i].ch) > 0 && pbp_channel_flush(kids[i].ch) != 0)
				die("sending", pbp_channel_errmsg(kids[i].ch));
		}
		if (!slow_timed_out && now_ms() >= slow_deadline) {
			/* The deadline of the slow call: give up on it. */
			demo_Sum s;

			if (pbp_channel_call_finish(slow.ch, slow.id[0], demo_Type_SUM, &s, 0) != PBP_EAGAIN)
				die("the slow child", "answered before its deadline");
			if (pbp_channel_call_cancel(slow.ch, slow.id[0]) != 0)
				die("cancelling", pbp_channel_errmsg(slow.ch));
			slow_timed_out = 1;
			during_slow = total;
		}
	}
	printf("fanout: %ld calls to %d children in %lld ms (%.0f calls/s), %ld replies overtook an earlier call\n",
	       total, o.children, (long long)(now_ms() - t0),
	       (double)total * 1000.0 / (double)(now_ms() - t0 + 1), overtook);
	printf("fanout: the slow child's call hit its %d ms deadline and was cancelled; "
	       "%ld calls completed meanwhile\n", o.slow_deadline_ms, during_slow);
	for (i = 0; i < o.children; i++) {
		pbp_exit_status st;

		if (pbp_child_close(kids[i].c, 5000, &st) != 0 || !st.exited || st.code != 0)
			die("closing a child", pbp_exit_status_str(&st, how, sizeof how));
		pbp_child_free(kids[i].c);
	}
	{
		pbp_exit_status st;

		if (pbp_child_close(slow.c, 2 * o.slow_deadline_ms, &st) != 0)
			die("closing the slow child", pbp_child_error(slow.c)->msg);
		printf("fanout: slow child %s\n", pbp_exit_status_str(&st, how, sizeof how));
		pbp_child_free(slow.c);
	}
	free(kids);
	free(pfd);
	if (overtook == 0)
		die("checking order", "no reply ever overtook an earlier call");
	printf("fanout: all checks passed\n");
	return 0;
}
