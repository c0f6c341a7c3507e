/*
 * loop_common.c: the pbpipe side of pbpipe-uv and pbpipe-event (see
 * loop_common.h): helpers, calls, the nested Lookup, the kill and the
 * restart.  Nothing here waits: every pbpipe call returns at once, and
 * the event loop says when to call again.
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "loop.pb.h"
#include "loop_common.h"
#include "loop_fingerprint.h"

/* The deadline of one Work call, kept by the library. */
#define CALL_TIMEOUT_MS 5000
/* How long the helpers get to exit once the run is over. */
#define CLOSE_GRACE_MS 2000

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(loop_Type_WORK, loop_Work),
	PBP_MSGTYPE(loop_Type_RESULT, loop_Result),
	PBP_MSGTYPE(loop_Type_LOOKUP, loop_Lookup),
	PBP_MSGTYPE(loop_Type_VALUE, loop_Value),
};

struct call {                   /* one place of a slot's window */
	struct loop_slot *slot;
	int64_t key;            /* the call's key; -1: the place is free */
};

struct loop_slot {
	struct loop_run *run;
	int index;
	pbp_child *c;
	pbp_channel *ch;
	int ready;              /* the handshake is done */
	void *user;             /* the glue's */
	struct call win[LOOP_IN_FLIGHT];
	int64_t retry[LOOP_IN_FLIGHT]; /* calls to re-issue here */
	int nretry;
};

struct opts {
	int helpers, timeout_ms, slow_start_ms;
	long calls, kill_after;
	const char *helper;
};

struct loop_run {
	const struct loop_glue *glue;
	struct opts o;
	char helper_path[PATH_MAX];
	pbp_handler handlers[1];        /* the parent's: Lookup */
	struct loop_slot *slots;
	unsigned char *looked;          /* per key: its Lookup was answered */
	long next;                      /* the next key never started */
	long ok, failed, nested, lookups, restarts, reissued, during;
	int victim;                     /* the killed slot, -1 before */
	int restarting;                 /* from the kill to its handshake */
	int64_t t_respawn;              /* its replacement was spawned, or 0 */
	int broken, timed_out, bad_exits;
	int64_t t0, t_kill, deadline;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A call's request and the result it must come back with: n + key * 7,
 * the 7 coming from the parent's answer to the nested Lookup. */
static int64_t work_n(int64_t key) { return 3 * key + 1; }
static int64_t lookup_value(int64_t key) { return 7 * key; }

/* The run cannot go on: say why; the loop stops (loop_run_over()). */
static void
fail(struct loop_run *r, const char *what, const char *msg)
{
	fprintf(stderr, "%s: %s: %s\n", r->glue->prog, what, msg);
	r->broken = 1;
}

/* The parent's handler: the helpers' nested calls, answered inside
 * pbp_channel_process(). */
static int
lookup(const void *req, void *resp, pbp_reply_error *err, void *payload)
{
	const loop_Lookup *l = req;
	struct loop_run *r = payload;

	r->lookups++;
	if (l->key < 0 || l->key >= r->o.calls) {
		snprintf(err->message, sizeof err->message, "no key %lld", (long long)l->key);
		return 1;
	}
	r->looked[l->key] = 1;
	((loop_Value *)resp)->value = lookup_value(l->key);
	return 0;
}

static void done(pbp_channel *ch, uint64_t id, int rc, void *resp, void *user);

/* Starts the call of `key` in place c of its slot's window. */
static void
start(struct call *c, int64_t key)
{
	struct loop_slot *s = c->slot;
	loop_Work w = { work_n(key), key };
	int rc;

	c->key = key;
	rc = pbp_channel_call_async(s->ch, loop_Type_WORK, &w, loop_Type_RESULT,
	                            CALL_TIMEOUT_MS, done, c, NULL);
	if (rc != 0) {
		/* The stream is failing: its end comes through
		 * pbp_channel_process(), and the call goes to the
		 * replacement. */
		c->key = -1;
		s->retry[s->nretry++] = key;
	}
}

/* Fills the free places of slot s's window: calls to re-issue first,
 * then new ones. */
static void
fill(struct loop_slot *s)
{
	struct loop_run *r = s->run;
	int j;

	for (j = 0; j < LOOP_IN_FLIGHT && s->ready; j++) {
		if (s->win[j].key >= 0)
			continue;
		if (s->nretry > 0)
			start(&s->win[j], s->retry[--s->nretry]);
		else if (r->next < r->o.calls)
			start(&s->win[j], r->next++);
		else
			break;
		if (s->win[j].key < 0)
			break; /* refused: the stream is ending */
	}
}

/* Once --kill-after calls have ended: SIGKILL one helper. */
static void
maybe_kill(struct loop_run *r)
{
	struct loop_slot *v;

	if (r->o.kill_after == 0 || r->victim >= 0 || r->ok + r->failed < r->o.kill_after)
		return;
	r->victim = (int)(r->o.kill_after % r->o.helpers);
	v = &r->slots[r->victim];
	printf("%s: killing helper %d (pid %ld) after %ld calls\n", r->glue->prog, r->victim,
	       (long)pbp_child_pid(v->c), r->ok + r->failed);
	if (pbp_child_kill(v->c, SIGKILL) != 0)
		fail(r, "killing a helper", pbp_child_error(v->c)->msg);
	r->restarting = 1;
	r->t_kill = now_ms();
}

/* Errors of the call itself; any other ends the stream (the helper is
 * gone), and the call is re-issued on the replacement. */
static int
call_error(int rc)
{
	return rc == PBP_EREMOTE || rc == PBP_ETYPE || rc == PBP_EDECODE || rc == PBP_ETIMEDOUT;
}

/* How a Work call ended (from pbp_channel_process()). */
static void
done(pbp_channel *ch, uint64_t id, int rc, void *resp, void *user)
{
	struct call *c = user;
	struct loop_slot *s = c->slot;
	struct loop_run *r = s->run;
	int64_t key = c->key;

	(void)id;
	c->key = -1;
	if (rc == PBP_ECANCELED)
		return; /* the channel is being freed: the run is over */
	if (rc != 0 && !call_error(rc)) {
		s->retry[s->nretry++] = key;
		r->reissued++;
		return;
	}
	if (rc != 0) {
		fprintf(stderr, "%s: call %lld on helper %d: %s: %s\n", r->glue->prog,
		        (long long)key, s->index, pbp_strerror(rc), pbp_channel_errmsg(ch));
		r->failed++;
	} else if (((const loop_Result *)resp)->value != work_n(key) + lookup_value(key)) {
		fprintf(stderr, "%s: call %lld on helper %d: result %lld, expected %lld\n",
		        r->glue->prog, (long long)key, s->index,
		        (long long)((const loop_Result *)resp)->value,
		        (long long)(work_n(key) + lookup_value(key)));
		r->failed++;
	} else {
		r->ok++;
		r->nested += r->looked[key];
		if (r->t_respawn != 0 && s->index != r->victim)
			r->during++; /* while the replacement's handshake runs */
	}
	maybe_kill(r);
	fill(s);
}

/* Starts slot s's helper and its handshake (which finishes in
 * loop_slot_event()). */
static int
spawn(struct loop_slot *s, int slow)
{
	struct loop_run *r = s->run;
	char ms[16];
	const char *argv[] = { "pbpipe-loop-helper", slow ? "--slow-start-ms" : NULL, ms, NULL };
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_error err;

	snprintf(ms, sizeof ms, "%d", r->o.slow_start_ms);
	co.types = types;
	co.ntypes = sizeof types / sizeof types[0];
	co.schema_fingerprint = LOOP_SCHEMA_FINGERPRINT;
	co.pipe_size = 64 * 1024; /* many pipes: keep each small */
	so.channel = &co;
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	if (pbp_child_spawn(&s->c, r->o.helper, argv, &so, &err) != 0) {
		fail(r, "spawning a helper", err.msg);
		return -1;
	}
	s->ch = pbp_child_channel(s->c);
	s->ready = 0;
	/* Deadlines of 0: no send or receive ever waits. */
	if (pbp_channel_set_timeout(s->ch, PBP_TIMEOUT_SEND, 0) != 0 ||
	    pbp_channel_set_timeout(s->ch, PBP_TIMEOUT_RECV, 0) != 0 ||
	    pbp_channel_set_handlers(s->ch, r->handlers, 1) != 0 ||
	    pbp_channel_handshake_start(s->ch) != 0) {
		fail(r, "starting a helper's channel", pbp_channel_errmsg(s->ch));
		pbp_child_free(s->c);
		s->c = NULL;
		s->ch = NULL;
		return -1;
	}
	r->glue->watch(s, r->glue->payload);
	return 0;
}

/* Slot s's stream has ended (rc): its calls have ended too (their done
 * put them in s->retry).  Report, stop watching, free, start another. */
static void
restart(struct loop_slot *s, int rc)
{
	struct loop_run *r = s->run;
	pbp_report *rep = malloc(sizeof *rep);
	char how[512];

	if (rep != NULL && pbp_child_report(s->c, rep) == 0)
		printf("%s: helper %d ended (%s): %s\n", r->glue->prog, s->index, pbp_strerror(rc),
		       pbp_report_str(rep, how, sizeof how));
	free(rep);
	r->glue->unwatch(s, r->glue->payload);
	s->user = NULL;
	pbp_child_free(s->c);
	s->c = NULL;
	s->ch = NULL;
	if (++r->restarts > r->o.helpers) {
		fail(r, "restarting a helper", "too many restarts");
		return;
	}
	if (s->index == r->victim)
		r->t_respawn = now_ms();
	spawn(s, 1);
}

/* The next step of slot s's handshake. */
static void
handshake_step(struct loop_slot *s)
{
	struct loop_run *r = s->run;
	int rc = pbp_channel_handshake_finish(s->ch, 0);

	if (rc == PBP_EAGAIN)
		return; /* the helper's Hello is not all here yet */
	if (rc != 0 && r->restarting && s->index == r->victim && r->t_respawn == 0) {
		restart(s, rc); /* killed before its handshake was done */
		return;
	}
	if (rc != 0) {
		fail(r, "the handshake with a helper", pbp_channel_errmsg(s->ch));
		return;
	}
	s->ready = 1;
	if (r->restarting && s->index == r->victim) {
		printf("%s: helper %d restarted as pid %ld: handshake done %lld ms after the kill, "
		       "%lld ms after the spawn; %ld calls completed by the others meanwhile\n",
		       r->glue->prog, s->index, (long)pbp_child_pid(s->c),
		       (long long)(now_ms() - r->t_kill), (long long)(now_ms() - r->t_respawn),
		       r->during);
		r->restarting = 0;
		r->t_respawn = 0;
	}
	fill(s); /* start its calls */
}

void
loop_slot_event(struct loop_slot *s)
{
	pbp_msginfo mi;
	int rc;

	if (s->ch == NULL || s->run->broken)
		return;
	if (!s->ready) {
		handshake_step(s);
		return;
	}
	/* Writes what is queued, reads the frames there are, answers the
	 * helper's Lookups and runs done for the calls that ended. */
	while ((rc = pbp_channel_process(s->ch)) > 0 || rc == PBP_ELIMIT) {
		/* Messages for no handler: the helpers send none. */
		while (pbp_channel_recv(s->ch, &mi) == 0)
			fprintf(stderr, "%s: helper %d: unexpected message of type %u\n",
			        s->run->glue->prog, s->index, (unsigned)mi.type);
	}
	if (rc < 0)
		restart(s, rc);
}

static int
usage(const char *prog, const char *why)
{
	fprintf(stderr,
	        "%s: %s\n"
	        "usage: %s [--helpers N] [--calls N] [--kill-after N] [--slow-start-ms MS]\n"
	        "       %*s [--timeout-ms MS] [--helper PATH]\n"
	        "  --helpers N        helpers to drive (default 16)\n"
	        "  --calls N          Work calls in all (default 3200)\n"
	        "  --kill-after N     SIGKILL one helper once N calls have ended, and\n"
	        "                     restart it (default 0: none; less than --calls)\n"
	        "  --slow-start-ms MS the replacement waits that long before its\n"
	        "                     handshake (default 300)\n"
	        "  --timeout-ms MS    give up after that long (default 30000)\n"
	        "  --helper PATH      default: pbpipe-loop-helper next to this program\n",
	        prog, why, prog, (int)strlen(prog), "");
	exit(2);
}

static long
number(const char *prog, const char *opt, const char *s, long lo, long hi)
{
	char *end, why[96];
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		snprintf(why, sizeof why, "%s takes a number from %ld to %ld", opt, lo, hi);
		usage(prog, why);
	}
	return v;
}

static void
parse(struct loop_run *r, int argc, char **argv)
{
	const char *p = r->glue->prog;
	struct opts *o = &r->o;
	char self[PATH_MAX];
	ssize_t n;
	int i;

	*o = (struct opts){ 16, 30000, 300, 3200, 0, NULL };
	for (i = 1; i < argc; i += 2) {
		if (i + 1 == argc)
			usage(p, "an option without its value");
		if (strcmp(argv[i], "--helpers") == 0)
			o->helpers = (int)number(p, argv[i], argv[i + 1], 1, 256);
		else if (strcmp(argv[i], "--calls") == 0)
			o->calls = number(p, argv[i], argv[i + 1], 1, 10000000);
		else if (strcmp(argv[i], "--kill-after") == 0)
			o->kill_after = number(p, argv[i], argv[i + 1], 0, 10000000);
		else if (strcmp(argv[i], "--slow-start-ms") == 0)
			o->slow_start_ms = (int)number(p, argv[i], argv[i + 1], 0, 60000);
		else if (strcmp(argv[i], "--timeout-ms") == 0)
			o->timeout_ms = (int)number(p, argv[i], argv[i + 1], 1, 3600000);
		else if (strcmp(argv[i], "--helper") == 0)
			o->helper = argv[i + 1];
		else
			usage(p, "unknown option");
	}
	if (o->kill_after >= o->calls)
		usage(p, "--kill-after must be less than --calls");
	if (o->helper == NULL) {
		n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n < 0)
			usage(p, "cannot find pbpipe-loop-helper (/proc/self/exe); use --helper");
		self[n] = '\0';
		snprintf(r->helper_path, sizeof r->helper_path, "%s/pbpipe-loop-helper", dirname(self));
		o->helper = r->helper_path;
	}
}

struct loop_run *
loop_run_new(int argc, char **argv, const struct loop_glue *glue)
{
	struct loop_run *r = calloc(1, sizeof *r);
	int i, j;

	if (r == NULL)
		return NULL;
	setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines as they happen */
	r->glue = glue;
	parse(r, argc, argv);
	r->slots = calloc((size_t)r->o.helpers, sizeof *r->slots);
	r->looked = calloc((size_t)r->o.calls, 1);
	if (r->slots == NULL || r->looked == NULL) {
		free(r->slots);
		free(r->looked);
		free(r);
		return NULL;
	}
	r->handlers[0] = (pbp_handler){ loop_Type_LOOKUP, loop_Type_VALUE, lookup, r };
	r->victim = -1;
	for (i = 0; i < r->o.helpers; i++) {
		r->slots[i].run = r;
		r->slots[i].index = i;
		for (j = 0; j < LOOP_IN_FLIGHT; j++)
			r->slots[i].win[j] = (struct call){ &r->slots[i], -1 };
	}
	return r;
}

int
loop_run_start(struct loop_run *r)
{
	int i;

	r->t0 = now_ms();
	r->deadline = r->t0 + r->o.timeout_ms;
	for (i = 0; i < r->o.helpers; i++)
		if (spawn(&r->slots[i], 0) != 0)
			return -1;
	return 0;
}

int loop_run_size(const struct loop_run *r) { return r->o.helpers; }
struct loop_slot *loop_run_slot(const struct loop_run *r, int i) { return &r->slots[i]; }
int loop_slot_index(const struct loop_slot *s) { return s->index; }
int loop_slot_read_fd(const struct loop_slot *s) { return pbp_channel_read_fd(s->ch); }
int loop_slot_write_fd(const struct loop_slot *s) { return pbp_channel_write_fd(s->ch); }
void *
loop_alloc(size_t size)
{
	void *p = calloc(1, size);

	if (p == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

void loop_slot_set_user(struct loop_slot *s, void *user) { s->user = user; }
void *loop_slot_user(const struct loop_slot *s) { return s->user; }

int
loop_slot_wants_write(const struct loop_slot *s)
{
	return s->ch != NULL && pbp_channel_pending(s->ch) > 0;
}

int
loop_slot_buffered(const struct loop_slot *s)
{
	return s->ch != NULL && !s->run->broken && pbp_channel_buffered(s->ch);
}

int
loop_run_timeout(const struct loop_run *r)
{
	int64_t left = r->deadline - now_ms();
	int i, t;

	for (i = 0; i < r->o.helpers; i++) {
		if (r->slots[i].ch == NULL)
			continue;
		t = pbp_channel_next_timeout(r->slots[i].ch);
		if (t >= 0 && t < left)
			left = t;
	}
	return left < 0 ? 0 : (int)left;
}

void
loop_run_tick(struct loop_run *r)
{
	int i;

	for (i = 0; i < r->o.helpers; i++)
		if (r->slots[i].ch != NULL && pbp_channel_next_timeout(r->slots[i].ch) == 0)
			loop_slot_event(&r->slots[i]);
	if (!loop_run_over(r) && now_ms() >= r->deadline) {
		fprintf(stderr, "%s: the run did not end within %d ms (--timeout-ms)\n",
		        r->glue->prog, r->o.timeout_ms);
		r->timed_out = 1;
	}
}

int
loop_run_over(const struct loop_run *r)
{
	return r->broken || r->timed_out ||
	       (r->ok + r->failed == r->o.calls && !r->restarting);
}

/* Goodbye, then the helper's exit within CLOSE_GRACE_MS. */
static void
close_slot(struct loop_slot *s)
{
	struct loop_run *r = s->run;
	pbp_exit_status st;
	char how[96];

	r->glue->unwatch(s, r->glue->payload);
	s->user = NULL;
	/* The Goodbye may wait for the pipe now. */
	if (pbp_channel_set_timeout(s->ch, PBP_TIMEOUT_SEND, CLOSE_GRACE_MS) != 0 ||
	    pbp_child_close(s->c, CLOSE_GRACE_MS, &st) != 0) {
		fprintf(stderr, "%s: closing helper %d: %s\n", r->glue->prog, s->index,
		        pbp_child_error(s->c)->msg);
		r->bad_exits++;
	} else if (!st.exited || st.code != 0) {
		fprintf(stderr, "%s: helper %d %s\n", r->glue->prog, s->index,
		        pbp_exit_status_str(&st, how, sizeof how));
		r->bad_exits++;
	}
	pbp_child_free(s->c);
	s->c = NULL;
	s->ch = NULL;
}

int
loop_run_finish(struct loop_run *r)
{
	long lost = r->o.calls - r->ok - r->failed;
	int i, ok;

	for (i = 0; i < r->o.helpers; i++)
		if (r->slots[i].c != NULL)
			close_slot(&r->slots[i]);
	printf("%s: helpers %d calls %ld ok %ld failed %ld nested %ld restarts %ld reissued %ld "
	       "lost %ld during_restart %ld ms %lld\n",
	       r->glue->prog, r->o.helpers, r->o.calls, r->ok, r->failed, r->nested, r->restarts,
	       r->reissued, lost, r->during, (long long)(now_ms() - r->t0));
	ok = !r->broken && !r->timed_out && r->bad_exits == 0 && r->ok == r->o.calls &&
	     r->nested == r->o.calls && lost == 0 && r->restarts == (r->o.kill_after > 0 ? 1 : 0);
	if (!ok)
		fprintf(stderr, "%s: FAILED\n", r->glue->prog);
	free(r->slots);
	free(r->looked);
	free(r);
	return ok ? 0 : 1;
}
