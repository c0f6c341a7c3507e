/*
 * pbpipe-bench: measures pbpipe against raw pipes of the same shape.
 *
 * Every figure is a pair: pbpipe, and a baseline that moves the same bytes
 * between the same two processes (this program and one child spawned with
 * two pipes) with plain read() and write().  Both are measured in the same
 * run, in alternating rounds, so a change in machine load hits both.
 *
 * One binary: the parent re-executes itself (/proc/self/exe) as the child,
 *
 *     pbpipe-bench --serve pbpipe [--key value]... WRITE_FD READ_FD
 *     pbpipe-bench --serve raw    [--key value]... WRITE_FD READ_FD
 *
 * which echoes frames back, or sinks batches of them and acknowledges each
 * batch, until the parent ends the stream.  Every echoed or streamed frame
 * carries a stamp (a batch and a sequence number) that the receiving side
 * checks, so a broken channel fails the run instead of producing fast
 * numbers.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "bench.h"
#include "bench.pb.h"

extern char **environ;

/* Default stream length: 64 MiB or 2,000,000 frames, whichever is fewer. */
#define STREAM_BYTES (64ull * 1024 * 1024)
#define STREAM_FRAMES 2000000ull
/* The frame size of bench=pipesize. */
#define PIPESIZE_FRAME 65536u
/* How long pbp_child_close() waits before it signals a child. */
#define CLOSE_GRACE_MS 5000

/* ---- small helpers ------------------------------------------------------- */

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fills a payload with a pattern that an echo must bring back intact. */
static void
pattern_fill(uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131u + 7u);
}

/* ---- samples ----------------------------------------------------------- */

void
samples_add(samples *s, double x)
{
	if (s->n == s->cap) {
		double *nv;

		s->cap = s->cap ? s->cap * 2 : 64;
		nv = realloc(s->v, s->cap * sizeof *nv);
		if (nv == NULL)
			die("out of memory for samples");
		s->v = nv;
	}
	s->v[s->n++] = x;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of all samples; sorts them.  Frees them too: every set is
 * summarised exactly once. */
double
samples_median(samples *s)
{
	double m;

	if (s->n == 0)
		die("internal: no samples");
	qsort(s->v, s->n, sizeof *s->v, cmp_double);
	m = s->n % 2 ? s->v[s->n / 2] : (s->v[s->n / 2 - 1] + s->v[s->n / 2]) / 2;
	free(s->v);
	memset(s, 0, sizeof *s);
	return m;
}

/* ---- what a child is told ----------------------------------------------- */

/* Where the children of the current bench run: a CPU, or -1 (see
 * pin_bench()). */
static int child_cpu = -1;

static void
argv_num(argv_buf *a, const char *key, long long v)
{
	snprintf(a->num[a->nn], sizeof a->num[a->nn], "%lld", v);
	a->v[a->n++] = key;
	a->v[a->n++] = a->num[a->nn++];
}

void
argv_build(argv_buf *a, const char *kind, const child_cfg *c)
{
	memset(a, 0, sizeof *a);
	a->v[a->n++] = self_exe;
	a->v[a->n++] = "--serve";
	a->v[a->n++] = kind;
	argv_num(a, "--mode", c->mode);
	argv_num(a, "--size", (long long)c->size);
	argv_num(a, "--count", (long long)c->count);
	argv_num(a, "--report", (long long)c->report);
	argv_num(a, "--poll", (long long)c->poll);
	argv_num(a, "--spin-us", (long long)c->spin_us);
	argv_num(a, "--pipe-size", c->pipe_size);
	argv_num(a, "--max-frame", (long long)c->max_frame);
	argv_num(a, "--flags", (long long)c->flags);
	argv_num(a, "--cpu", child_cpu);
}

/* ---- the parent's side of a child -------------------------------------- */

/* Dies with the channel's error and what became of the child. */
static void pb_die(peer *p, const char *what) __attribute__((noreturn));

static void
pb_die(peer *p, const char *what)
{
	static pbp_report r; /* 66 KiB: not on the stack */
	char msg[PBP_ERRMSG_SIZE];
	char line[512];
	int rc;

	snprintf(msg, sizeof msg, "%s", pbp_channel_errmsg(p->ch));
	/* A dying child: give it a moment, so the report says how it ended
	 * (PBP_ETIMEDOUT only means it is still running). */
	rc = pbp_child_wait(p->c, 200, NULL);
	(void)rc;
	pbp_child_report(p->c, &r);
	die("%s: %s (%s)", what, msg, pbp_report_str(&r, line, sizeof line));
}

static void
pb_open(peer *p, const child_cfg *c)
{
	pbp_channel_options o = channel_options(c);
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_error err;
	argv_buf a;

	memset(p, 0, sizeof *p);
	argv_build(&a, "pbpipe", c);
	so.channel = &o;
	if (pbp_child_spawn(&p->c, self_exe, a.v, &so, &err) != 0)
		die("pbp_child_spawn: %s", err.msg);
	p->ch = pbp_child_channel(p->c);
}

static void
check_exit(int exited, int code, const char *what)
{
	if (!exited || code != 0)
		die("%s: the child did not exit with status 0 (%s %d)", what,
		    exited ? "status" : "signal", code);
}

static void
pb_close(peer *p)
{
	pbp_exit_status st;

	if (pbp_child_close(p->c, CLOSE_GRACE_MS, &st) != 0)
		die("pbp_child_close: %s", pbp_child_error(p->c)->msg);
	check_exit(st.exited, st.exited ? st.code : st.signal, "pbpipe child");
	pbp_child_free(p->c);
	p->c = NULL;
}

/* Returns fd if it is at least min, else a close-on-exec copy at or above
 * min (closing fd).  The child's two pipe ends must not sit on 3 or 4,
 * where the file actions dup2 them: one dup2 would clobber the other's
 * source. */
static int
fd_above(int fd, int min)
{
	int nfd;

	if (fd >= min)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, min);
	if (nfd < 0)
		die("fcntl(F_DUPFD_CLOEXEC): %s", strerror(errno));
	close(fd);
	return nfd;
}

static void
pipe_resize(int fd, int64_t size)
{
	if (size > 0 && fcntl(fd, F_SETPIPE_SZ, (int)size) < 0)
		die("F_SETPIPE_SZ %" PRId64 ": %s", size, strerror(errno));
}

/* posix_spawn with the child's write end on fd 3 and its read end on 4,
 * nothing else inherited, no signal blocked and SIGPIPE back to default:
 * what pbp_child_spawn does, without the handshake. */
static pid_t
raw_spawn(int child_w, int child_r, const char *const *argv)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, pipe_sig;
	pid_t pid;
	int rc;

	sigemptyset(&none);
	sigemptyset(&pipe_sig);
	sigaddset(&pipe_sig, SIGPIPE); /* we ignore it; the child must not */
	if (posix_spawn_file_actions_init(&fa) != 0 || posix_spawnattr_init(&at) != 0)
		die("posix_spawn: out of memory");
	rc = posix_spawn_file_actions_adddup2(&fa, child_w, 3);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, child_r, 4);
	if (rc == 0)
		rc = posix_spawn_file_actions_addclosefrom_np(&fa, 5);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&at, &none);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&at, &pipe_sig);
	if (rc == 0)
		rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (rc == 0)
		rc = posix_spawn(&pid, self_exe, &fa, &at, (char *const *)argv, environ);
	if (rc != 0)
		die("posix_spawn %s: %s", self_exe, strerror(rc));
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

static void
raw_open(peer *p, const child_cfg *c)
{
	int to_child[2], from_child[2];
	argv_buf a;

	memset(p, 0, sizeof *p);
	p->raw = 1;
	if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0)
		die("pipe2: %s", strerror(errno));
	pipe_resize(to_child[1], c->pipe_size);
	pipe_resize(from_child[1], c->pipe_size);
	from_child[1] = fd_above(from_child[1], 5);
	to_child[0] = fd_above(to_child[0], 5);
	argv_build(&a, "raw", c);
	a.v[a.n++] = "3";
	a.v[a.n++] = "4";
	p->pid = raw_spawn(from_child[1], to_child[0], a.v);
	close(from_child[1]);
	close(to_child[0]);
	p->rfd = from_child[0];
	p->wfd = to_child[1];
	if (c->poll) {
		set_nonblock(p->rfd);
		set_nonblock(p->wfd);
	}
}

/* Ends the stream (the child exits on end of stream) and reaps. */
static void
raw_close(peer *p)
{
	int st;

	close(p->wfd);
	while (waitpid(p->pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	close(p->rfd);
	check_exit(WIFEXITED(st), WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), "raw child");
}

/* Channel flags every pbpipe channel gets on both sides (--sigpipe-handled). */
static uint64_t all_flags;

void
peer_open(peer *p, int raw, const child_cfg *c)
{
	child_cfg cc = *c;

	cc.flags |= all_flags;
	if (raw)
		raw_open(p, &cc);
	else
		pb_open(p, &cc);
}

void
peer_close(peer *p)
{
	if (p->raw)
		raw_close(p);
	else
		pb_close(p);
}

/* ---- measured operations ------------------------------------------------- */

/* A payload buffer and the copy an echo is compared with. */
typedef struct payload {
	uint8_t *buf, *ref, *in;
	size_t size;
} payload;

static void
payload_init(payload *pl, size_t size)
{
	pl->size = size;
	pl->buf = xmalloc(size);
	pl->ref = xmalloc(size);
	pl->in = xmalloc(size);
	pattern_fill(pl->buf, size);
	pattern_fill(pl->ref, size);
}

static void
payload_free(payload *pl)
{
	free(pl->buf);
	free(pl->ref);
	free(pl->in);
}

/* Stamps the head and the tail of the payload with v. */
static void
payload_stamp(payload *pl, uint64_t v)
{
	stamp_put(pl->buf, v);
	if (pl->size >= 2 * STAMP)
		stamp_put(pl->buf + pl->size - STAMP, v);
}

/* Checks an echo: its size and stamps always, every byte on every 64th. */
static void
echo_check(const payload *pl, const uint8_t *p, size_t n, uint64_t v, uint64_t i)
{
	int ok = n == pl->size && stamp_get(p) == v &&
	         (pl->size < 2 * STAMP || stamp_get(p + n - STAMP) == v);

	if (ok && i % 64 == 0) {
		stamp_put(pl->ref, v);
		if (pl->size >= 2 * STAMP)
			stamp_put(pl->ref + pl->size - STAMP, v);
		ok = memcmp(p, pl->ref, n) == 0;
	}
	if (!ok)
		die("echo %" PRIu64 " of %zu bytes came back wrong (%zu bytes, stamp %#" PRIx64
		    " instead of %#" PRIx64 ")", i, pl->size, n, n >= STAMP ? stamp_get(p) : 0, v);
}

/* One round trip: send, wait for the echo, check it. */
static void
round_trip(peer *p, payload *pl, uint64_t i)
{
	uint64_t v = stamp_value(p->batch, i);
	pbp_msginfo mi;

	payload_stamp(pl, v);
	if (p->raw) {
		write_all(p->wfd, pl->buf, pl->size, "rtt");
		if (read_exact(p->rfd, pl->in, pl->size, "rtt") != 0)
			die("rtt: the raw child closed its pipe");
		echo_check(pl, pl->in, pl->size, v, i);
		return;
	}
	if (pbp_channel_send_raw(p->ch, bench_Type_DATA, 0, pl->buf, pl->size) != 0)
		pb_die(p, "rtt: send");
	if (pbp_channel_recv(p->ch, &mi) != 0)
		pb_die(p, "rtt: recv");
	if (mi.type != bench_Type_DATA)
		die("rtt: message type %" PRIu32 " instead of an echo", mi.type);
	echo_check(pl, mi.payload, mi.size, v, i);
}

/* iters round trips, each timed (us) into s if s is not NULL. */
static void
rtt_round(peer *p, payload *pl, uint64_t iters, samples *s)
{
	uint64_t i;

	p->batch++;
	for (i = 0; i < iters; i++) {
		uint64_t t0 = now_ns();

		round_trip(p, pl, i);
		if (s != NULL)
			samples_add(s, (double)(now_ns() - t0) / 1e3);
	}
}

/* The CPU time the echo child spent on its last batch, from its report. */
static uint64_t
read_child_cpu(peer *p)
{
	union {
		bench_Ack ack;
		bench_Cpu cpu;
	} m;
	uint32_t type;
	uint64_t v;

	if (p->raw) {
		if (read_exact(p->rfd, &v, sizeof v, "cpu report") != 0)
			die("cpu report: the raw child closed its pipe");
		return v;
	}
	if (pbp_channel_recv_msg(p->ch, &type, &m, sizeof m) != 0)
		pb_die(p, "cpu report: recv");
	if (type != bench_Type_CPU)
		die("cpu report: message type %" PRIu32 " instead", type);
	return m.cpu.cpu_ns;
}

/* Sends count frames and waits for the sink's acknowledgement.  Returns
 * the time from the first send to the ack, in ns. */
static uint64_t
stream_round(peer *p, payload *pl, uint64_t count)
{
	uint64_t batch = ++p->batch, i, t0 = now_ns();

	for (i = 0; i < count; i++) {
		stamp_put(pl->buf, stamp_value(batch, i));
		if (p->raw)
			write_all(p->wfd, pl->buf, pl->size, "stream");
		else if (pbp_channel_send_raw(p->ch, bench_Type_DATA, 0, pl->buf, pl->size) != 0)
			pb_die(p, "stream: send");
	}
	if (!p->raw && pbp_channel_flush(p->ch) != 0)
		pb_die(p, "stream: flush");
	if (p->raw) {
		uint64_t got;

		if (read_exact(p->rfd, &got, sizeof got, "stream: ack") != 0 ||
		    got != count * pl->size)
			die("stream: the raw sink did not acknowledge %" PRIu64 " bytes",
			    count * pl->size);
	} else {
		union {
			bench_Ack ack;
			bench_Cpu cpu;
		} m;
		uint32_t type;

		if (pbp_channel_recv_msg(p->ch, &type, &m, sizeof m) != 0)
			pb_die(p, "stream: recv ack");
		if (type != bench_Type_ACK || m.ack.frames != count ||
		    m.ack.bytes != count * pl->size)
			die("stream: the sink acknowledged something else than %" PRIu64
			    " frames", count);
	}
	return now_ns() - t0;
}

/* ---- options and output ------------------------------------------------ */

static const char *const bench_names[B_COUNT] = {
	"rtt", "stream", "spawn", "lowlat", "pipesize", "large_msg", "large_stream", "pool",
	"instr",
};

/* ---- where the processes run ------------------------------------------- */

enum { PIN_AUTO, PIN_NONE, PIN_SAME, PIN_SPLIT, PIN_COUNT };
static const char *const pin_names[PIN_COUNT] = { "auto", "none", "same", "split" };

static cpu_set_t orig_cpus; /* what we may run on, as started */
static int cpu_a = -1, cpu_b = -1; /* its first two CPUs */

static void
cpus_init(void)
{
	int i;

	if (sched_getaffinity(0, sizeof orig_cpus, &orig_cpus) != 0)
		die("sched_getaffinity: %s", strerror(errno));
	for (i = 0; i < CPU_SETSIZE && cpu_b < 0; i++)
		if (CPU_ISSET(i, &orig_cpus)) {
			if (cpu_a < 0)
				cpu_a = i;
			else
				cpu_b = i;
		}
}

/*
 * Where a bench runs.  Left to the scheduler, a child lands on our CPU or
 * on another, and on an idle VM a wake-up on another vCPU costs tens of
 * microseconds of halt exit: round trips come out at 5 or 40 us, and
 * streams through small pipes at a third of their speed, from one child
 * to the next, whatever the library does.  So by default (auto) both
 * processes share one CPU, which times the work each side adds; the
 * spinning lowlat bench gives the child a CPU of its own, without which
 * spinning only burns the other side's time; spawn is left alone.
 * --pin split or none shows what the platform's wake-ups add.
 */
static int
pin_mode(const options *o, int bench)
{
	int m = o->pin;

	if (m == PIN_AUTO)
		m = bench == B_LOWLAT ? PIN_SPLIT : bench == B_SPAWN ? PIN_NONE : PIN_SAME;
	if (m == PIN_SPLIT && cpu_b < 0)
		m = PIN_NONE; /* one CPU: nothing to split */
	return m;
}

/* Pins this process (and so the children it spawns) for a bench, and
 * says where its children go. */
static void
pin_bench(const options *o, int bench)
{
	int m = pin_mode(o, bench);
	cpu_set_t set = orig_cpus;

	if (m != PIN_NONE) {
		CPU_ZERO(&set);
		CPU_SET(cpu_a, &set);
	}
	if (sched_setaffinity(0, sizeof set, &set) != 0)
		die("sched_setaffinity: %s", strerror(errno));
	child_cpu = m == PIN_SPLIT ? cpu_b : -1;
}

/* Formats a result with as many digits as it deserves. */
static const char *
fmt(char *buf, size_t n, double v)
{
	snprintf(buf, n, v >= 1000 ? "%.0f" : v >= 100 ? "%.1f" : v >= 1 ? "%.2f" : "%.3f", v);
	return buf;
}

void
emit(options *o, const char *bench, uint64_t size, const char *unit, double pb,
     double raw, const char *extra)
{
	char a[32], b[32], r[32];

	fmt(a, sizeof a, pb);
	fmt(b, sizeof b, raw);
	snprintf(r, sizeof r, "%.3f", raw > 0 ? pb / raw : 0.0);
	if (o->json)
		printf("%s  {\"bench\": \"%s\", \"size\": %" PRIu64 ", \"unit\": \"%s\", "
		       "\"pbpipe\": %s, \"raw\": %s, \"ratio\": %s%s%s}",
		       o->nout ? ",\n" : "", bench, size, unit, a, b, r,
		       extra ? ", " : "", extra ? extra : "");
	else
		printf("bench=%s size=%" PRIu64 " unit=%s pbpipe=%s raw=%s ratio=%s%s%s\n", bench,
		       size, unit, a, b, r, extra ? " " : "", extra ? extra : "");
	o->nout++;
	fflush(stdout);
}

/* The sizes a bench runs with: --sizes, or its own defaults. */
static size_t
bench_sizes(const options *o, const size_t *dflt, size_t n, const size_t **out)
{
	if (o->sizes != NULL) {
		*out = o->sizes;
		return o->nsizes;
	}
	*out = dflt;
	return n;
}

static uint64_t
stream_count(const options *o, size_t size)
{
	uint64_t n = STREAM_BYTES / size;

	if (o->count)
		return o->count;
	if (o->quick)
		n = (2u << 20) / size;
	if (n > (o->quick ? 200 : STREAM_FRAMES))
		n = o->quick ? 200 : STREAM_FRAMES;
	return n < 2 ? 2 : n;
}

/* max_frame for frames of this size: the default unless they need more. */
static uint64_t
max_frame_for(size_t size)
{
	return size + 64 > PBP_DEFAULT_MAX_FRAME ? size + 4096 : 0;
}

/* ---- the benches ----------------------------------------------------------- */

/* bench=rtt: round trips of one message through an echoing child. */
static void
bench_rtt(options *o)
{
	static const size_t dflt[] = { 16, 64, 1024, 65536 };
	const size_t *sizes;
	size_t ns = bench_sizes(o, dflt, 4, &sizes), k;
	uint64_t iters = o->count ? o->count : o->quick ? 50 : 5000;

	for (k = 0; k < ns; k++) {
		child_cfg c = { .mode = MODE_ECHO, .size = sizes[k],
		                .max_frame = max_frame_for(sizes[k]) };
		samples s[2] = { { 0 } };
		peer p[2];
		payload pl;
		int r, raw;

		payload_init(&pl, sizes[k]);
		for (raw = 0; raw < 2; raw++) {
			peer_open(&p[raw], raw, &c);
			rtt_round(&p[raw], &pl, iters, NULL); /* warm-up */
		}
		for (r = 0; r < o->rounds; r++)
			for (raw = 0; raw < 2; raw++)
				rtt_round(&p[raw], &pl, iters, &s[raw]);
		for (raw = 0; raw < 2; raw++)
			peer_close(&p[raw]);
		payload_free(&pl);
		emit(o, "rtt", sizes[k], "us", samples_median(&s[0]), samples_median(&s[1]), NULL);
	}
}

/* Streams rounds of count frames to each peer in turn; s[i] gets each
 * round's frames/s for peer i. */
static void
stream_rounds(options *o, peer *p, int np, size_t size, samples *s)
{
	uint64_t count = stream_count(o, size);
	payload pl;
	int r, i;

	payload_init(&pl, size);
	for (r = 0; r < o->rounds; r++)
		for (i = 0; i < np; i++)
			samples_add(&s[i], (double)count * 1e9 / (double)stream_round(&p[i], &pl, count));
	payload_free(&pl);
}

/* Emits the MB/s line (and, but for pipesize, the frames/s line) from
 * medians of frames/s.  size is what the line is about: the frame size,
 * or for pipesize the pipe size. */
static void
emit_stream(options *o, const char *bench, size_t size, size_t frame, double pb_fps,
            double raw_fps, const char *extra)
{
	double mb = (double)frame / 1e6;

	if (strcmp(bench, "pipesize") != 0)
		emit(o, bench, size, "frames/s", pb_fps, raw_fps, extra);
	emit(o, bench, size, "MB/s", pb_fps * mb, raw_fps * mb, extra);
}

void
bench_ops(int raw, int stream, size_t size, uint64_t n)
{
	child_cfg c = { .mode = stream ? MODE_SINK : MODE_ECHO, .size = size, .count = n,
	                .max_frame = max_frame_for(size),
	                .flags = stream && !raw ? PBP_CHANNEL_COALESCE : 0 };
	payload pl;
	peer p;

	payload_init(&pl, size);
	peer_open(&p, raw, &c);
	if (stream)
		(void)stream_round(&p, &pl, n);
	else
		rtt_round(&p, &pl, n, NULL);
	peer_close(&p);
	payload_free(&pl);
}

/* bench=stream and stream_coalesce: one-way streams into a sink. */
static void
bench_stream(options *o)
{
	static const size_t dflt[] = { 64, 1024, 65536, 1048576 };
	const size_t *sizes;
	size_t ns = bench_sizes(o, dflt, 4, &sizes), k;

	for (k = 0; k < ns; k++) {
		child_cfg c = { .mode = MODE_SINK, .size = sizes[k],
		                .count = stream_count(o, sizes[k]),
		                .max_frame = max_frame_for(sizes[k]) };
		child_cfg cc = c;
		samples s[3] = { { 0 } };
		peer p[3];
		double fps[3];
		int i;

		cc.flags = PBP_CHANNEL_COALESCE;
		peer_open(&p[0], 0, &c);
		peer_open(&p[1], 0, &cc);
		peer_open(&p[2], 1, &c);
		stream_rounds(o, p, 3, sizes[k], s);
		for (i = 0; i < 3; i++) {
			peer_close(&p[i]);
			fps[i] = samples_median(&s[i]);
		}
		emit_stream(o, "stream", sizes[k], sizes[k], fps[0], fps[2], NULL);
		emit_stream(o, "stream_coalesce", sizes[k], sizes[k], fps[1], fps[2],
		            o->json ? "\"variant\": \"coalesce\"" : "variant=coalesce");
	}
}

/* The pipe sizes pbpipe ended up with, when they differ from the ask. */
static void
check_pipe_size(const options *o, peer *p, int64_t want)
{
	int r = fcntl(pbp_channel_read_fd(p->ch), F_GETPIPE_SZ);
	int w = fcntl(pbp_channel_write_fd(p->ch), F_GETPIPE_SZ);

	if ((r != want || w != want) && !o->json)
		printf("# note: pipe_size=%" PRId64 " gave pbpipe pipes of %d and %d bytes\n",
		       want, r, w);
}

/* bench=pipesize: 64 KiB frames through pipes of each size. */
static void
bench_pipesize(options *o)
{
	static const size_t dflt[] = { 65536, 262144, 1048576 };
	const size_t *sizes;
	size_t ns = bench_sizes(o, dflt, 3, &sizes), k;

	for (k = 0; k < ns; k++) {
		child_cfg c = { .mode = MODE_SINK, .size = PIPESIZE_FRAME,
		                .count = stream_count(o, PIPESIZE_FRAME),
		                .pipe_size = (int64_t)sizes[k] };
		samples s[2] = { { 0 } };
		peer p[2];
		char extra[64];

		peer_open(&p[0], 0, &c);
		peer_open(&p[1], 1, &c);
		check_pipe_size(o, &p[0], (int64_t)sizes[k]);
		stream_rounds(o, p, 2, PIPESIZE_FRAME, s);
		peer_close(&p[0]);
		peer_close(&p[1]);
		snprintf(extra, sizeof extra, o->json ? "\"frame\": %u" : "frame=%u", PIPESIZE_FRAME);
		emit_stream(o, "pipesize", sizes[k], PIPESIZE_FRAME, samples_median(&s[0]),
		            samples_median(&s[1]), extra);
	}
}

/* One spawn + handshake + close cycle of a pbpipe or a raw child, in us. */
static double
spawn_cycle(int raw)
{
	child_cfg c = { .mode = MODE_ECHO, .size = 64 };
	uint64_t t0 = now_ns();
	peer p;

	peer_open(&p, raw, &c);
	peer_close(&p);
	return (double)(now_ns() - t0) / 1e3;
}

/* bench=spawn: a child's whole life, empty. */
static void
bench_spawn(options *o)
{
	uint64_t n = o->count ? o->count : o->quick ? 3 : 100, i;
	samples s[2] = { { 0 } };
	int r, raw;

	for (r = 0; r < o->rounds; r++)
		for (raw = 0; raw < 2; raw++)
			for (i = 0; i < n; i++)
				samples_add(&s[raw], spawn_cycle(raw));
	emit(o, "spawn", 0, "us", samples_median(&s[0]), samples_median(&s[1]), NULL);
}

/* One lowlat round: iters timed round trips; cpu gets both processes'
 * CPU time per round trip (us). */
static void
lowlat_round(peer *p, payload *pl, uint64_t iters, samples *lat, samples *cpu)
{
	uint64_t c0 = cpu_ns(), c1, child;

	rtt_round(p, pl, iters, lat);
	c1 = cpu_ns();
	child = read_child_cpu(p);
	if (cpu != NULL)
		samples_add(cpu, (double)(c1 - c0 + child) / 1e3 / (double)iters);
}

/* bench=lowlat: rtt with spin_us on both sides against busy-polling raw
 * pipes, and what that costs in CPU. */
static void
bench_lowlat(options *o)
{
	static const size_t dflt[] = { 64 };
	const size_t *sizes;
	size_t ns = bench_sizes(o, dflt, 1, &sizes), k;
	uint64_t iters = o->count ? o->count : o->quick ? 200 : 20000;

	if (pin_mode(o, B_LOWLAT) == PIN_SAME || (pin_mode(o, B_LOWLAT) == PIN_NONE && cpu_b < 0)) {
		/* Two busy-polling processes on one CPU take turns only when
		 * the scheduler preempts one: milliseconds per round trip. */
		fprintf(o->json ? stderr : stdout, "# lowlat skipped: it needs two CPUs\n");
		return;
	}
	for (k = 0; k < ns; k++) {
		child_cfg c = { .mode = MODE_ECHO, .size = sizes[k], .report = iters,
		                .spin_us = (uint64_t)o->spin_us,
		                .max_frame = max_frame_for(sizes[k]) };
		samples lat[2] = { { 0 } }, cpu[2] = { { 0 } };
		peer p;
		payload pl;
		int r, raw;

		payload_init(&pl, sizes[k]);
		/* A child per round, alone: an idle raw child busy-polls, and
		 * would take the CPU from the other while that one is timed. */
		for (r = 0; r < o->rounds; r++)
			for (raw = 0; raw < 2; raw++) {
				c.poll = (uint64_t)raw;
				peer_open(&p, raw, &c);
				lowlat_round(&p, &pl, iters, NULL, NULL); /* warm-up */
				lowlat_round(&p, &pl, iters, &lat[raw], &cpu[raw]);
				peer_close(&p);
			}
		payload_free(&pl);
		emit(o, "lowlat", sizes[k], "us", samples_median(&lat[0]), samples_median(&lat[1]),
		     NULL);
		emit(o, "lowlat_cpu", sizes[k], "us_cpu", samples_median(&cpu[0]),
		     samples_median(&cpu[1]), NULL);
	}
}

/* ---- large messages ------------------------------------------------------- */

/*
 * bench=large_msg: one message of 256 MiB (--large-size) from this process
 * to a child, which checks it and answers with a small Ack, timed from the
 * send to the Ack, in MB/s.  pbpipe: a bench.Blob sent with pbp_bytes_out
 * (spliced: written from our memory, never copied into the write buffer)
 * and received with pbp_bytes_view (in place in the receive buffer).  Raw:
 * an 8-byte length header and the bytes with write(); the raw child reads
 * the header, mallocs a buffer of that size, reads the bytes into it and
 * frees it after the Ack, as a raw-pipe application that does not know
 * the size in advance would.  Both children do the same work on the data
 * (large_check: a byte per page) and both pairs of pipes are 1 MiB (the
 * raw ones set with F_SETPIPE_SZ, as a raw application can), so the
 * difference is what pbpipe adds.  Along with the speed, the peak
 * resident memory (VmHWM) of both processes over each pbpipe round, and
 * for comparison over each raw one; the baselines (before the first
 * message); and the pbpipe child's resident memory once it has been idle
 * for 300 ms after the last message.
 *
 * Every large bench is an operation (large_op) run by large_measure(),
 * which alternates rounds, measures memory and prints the line: a
 * large_stream bench is one more operation and child mode.
 */

#define LARGE_DEFAULT (256u * 1024u * 1024u)
#define LARGE_QUICK (8u * 1024u * 1024u)
#define LARGE_PIPE (1024 * 1024)
/* How long the pbpipe child is left idle before its memory is read. */
#define LARGE_IDLE_MS 300
/* The pause after every round (--large-settle-ms).  Both children give their memory back
 * after a message: the raw one frees its buffer after its Ack, the pbpipe
 * one shrinks its receive buffer once it has waited 100 ms for the next
 * (stream.c, rx_grace).  Unmapping 256 MiB takes tens of milliseconds of
 * the CPU both pairs share, so without the pause it would land in the
 * other pair's timed round. */
#define LARGE_SETTLE_MS 150

/* What a large operation sends: size bytes, buf repeated (piece bytes;
 * all of them for a message), and their checksum. */
typedef struct large_data {
	const uint8_t *buf;
	size_t size, piece;
	uint64_t check; /* large_check() of a message, stream_check of a stream */
} large_data;

/* One measured operation against a child: returns the time in ns. */
typedef uint64_t (*large_op)(peer *p, const large_data *d);

static void
large_ack_check(uint64_t bytes, uint64_t check, const large_data *d)
{
	if (bytes != d->size || check != d->check)
		die("large: the child got %" PRIu64 " bytes (check %#" PRIx64 "), not the %zu sent"
		    " (check %#" PRIx64 ")", bytes, check, d->size, d->check);
}

/* The child's Ack of a large message or stream: what it got must be what
 * was sent. */
static void
large_ack(peer *p, const large_data *d)
{
	if (p->raw) {
		uint64_t ack[2];

		if (read_exact(p->rfd, ack, sizeof ack, "large: ack") != 0)
			die("large: the raw child closed its pipe");
		large_ack_check(ack[0], ack[1], d);
	} else {
		union {
			bench_Ack ack;
			bench_Cpu cpu;
		} r;
		uint32_t type;

		if (pbp_channel_recv_msg(p->ch, &type, &r, sizeof r) != 0)
			pb_die(p, "large: recv ack");
		if (type != bench_Type_ACK)
			die("large: message type %" PRIu32 " instead of an Ack", type);
		large_ack_check(r.ack.bytes, r.ack.check, d);
	}
}

/* One message and its Ack. */
static uint64_t
large_msg_op(peer *p, const large_data *d)
{
	uint64_t t0 = now_ns();

	if (p->raw) {
		uint64_t hdr = d->size;

		write_all(p->wfd, &hdr, sizeof hdr, "large: header");
		write_all(p->wfd, d->buf, d->size, "large");
	} else {
		bench_Blob m = bench_Blob_init_zero;
		pbp_bytes b;

		pbp_bytes_out(&m.data, &b, d->buf, d->size);
		if (pbp_channel_send(p->ch, bench_Type_BLOB, &m) != 0)
			pb_die(p, "large: send");
	}
	large_ack(p, d);
	return now_ns() - t0;
}

static long
peer_pid(const peer *p)
{
	return p->raw ? (long)p->pid : (long)pbp_child_pid(p->c);
}

/* Peak resident memory (KiB) of this process and of the child over one
 * operation: a new peak starts before it.  Returns 0, or -1 when peaks
 * cannot be reset here (the peaks are then over each process's life). */
static int
large_timed(peer *p, large_op op, const large_data *d, double *mbps, long *self_kb,
            long *child_kb)
{
	int ok = mem_peak_reset(0) == 0 && mem_peak_reset(peer_pid(p)) == 0;
	uint64_t ns = op(p, d);

	*self_kb = mem_peak_kb(0);
	*child_kb = mem_peak_kb(peer_pid(p));
	*mbps = (double)d->size / 1e3 / ((double)ns / 1e6);
	return ok ? 0 : -1;
}

static void
large_measure(options *o, const char *bench, const child_cfg *c, large_op op, size_t size,
              size_t piece)
{
	long base_self = mem_now_kb(0), base_child[2], peak[2][2] = { { 0 } }, idle_child;
	samples s[2] = { { 0 } };
	large_data d;
	uint8_t *buf;
	char extra[512];
	peer p[2];
	int r, raw, reset_ok = 1;

	buf = xmalloc(piece);
	pattern_fill(buf, piece);
	d = (large_data){ buf, size, piece, 0 };
	if (piece == size) {
		d.check = large_check(buf, size);
	} else {
		stream_check sc;
		size_t off;

		stream_check_init(&sc);
		for (off = 0; off < size; off += piece)
			stream_check_add(&sc, buf, size - off < piece ? size - off : piece);
		d.check = stream_check_end(&sc);
	}
	for (raw = 0; raw < 2; raw++) {
		peer_open(&p[raw], raw, c);
		base_child[raw] = mem_now_kb(peer_pid(&p[raw]));
		(void)op(&p[raw], &d); /* warm-up */
		usleep((useconds_t)o->large_settle_ms * 1000);
	}
	for (r = 0; r < o->rounds; r++)
		for (raw = 0; raw < 2; raw++) {
			double mbps;
			long ps, pc;

			if (large_timed(&p[raw], op, &d, &mbps, &ps, &pc) != 0)
				reset_ok = 0;
			usleep((useconds_t)o->large_settle_ms * 1000);
			samples_add(&s[raw], mbps);
			peak[raw][0] = ps > peak[raw][0] ? ps : peak[raw][0];
			peak[raw][1] = pc > peak[raw][1] ? pc : peak[raw][1];
		}
	/* The pbpipe child idle, waiting for the next message: its receive
	 * buffer has gone back once it waited 100 ms (stream.c, rx_grace). */
	usleep(LARGE_IDLE_MS * 1000);
	idle_child = mem_now_kb(peer_pid(&p[0]));
	for (raw = 0; raw < 2; raw++)
		peer_close(&p[raw]);
	free(buf);
	snprintf(extra, sizeof extra,
	         o->json ? "\"parent_rss_kb\": %ld, \"child_rss_kb\": %ld, \"parent_base_kb\": %ld, "
	                   "\"child_base_kb\": %ld, \"child_idle_kb\": %ld, "
	                   "\"raw_parent_rss_kb\": %ld, \"raw_child_rss_kb\": %ld, "
	                   "\"rss_per_round\": %d"
	                 : "parent_rss_kb=%ld child_rss_kb=%ld parent_base_kb=%ld child_base_kb=%ld "
	                   "child_idle_kb=%ld raw_parent_rss_kb=%ld raw_child_rss_kb=%ld "
	                   "rss_per_round=%d",
	         peak[0][0], peak[0][1], base_self, base_child[0], idle_child, peak[1][0],
	         peak[1][1], reset_ok);
	emit(o, bench, size, "MB/s", samples_median(&s[0]), samples_median(&s[1]), extra);
}

static void
bench_large_msg(options *o)
{
	size_t size = o->large_size ? o->large_size : o->quick ? LARGE_QUICK : LARGE_DEFAULT;
	child_cfg c = { .mode = MODE_LARGE, .size = size, .pipe_size = LARGE_PIPE,
	                .max_frame = size + 4096 };

	large_measure(o, "large_msg", &c, large_msg_op, size, size);
}

/*
 * bench=large_stream: a stream of 1 GiB (--large-stream-size) from this
 * process to a child, which checks it (stream_check: a byte per page, as
 * large_msg) and answers with one Ack at its end, timed from the open to
 * the Ack, in MB/s.  The source is a 4 MiB buffer written again and again
 * (LARGE_STREAM_SOURCE), as from a file read in pieces.  pbpipe:
 * pbp_stream_open, pbp_stream_write of each 4 MiB (chunks spliced from our
 * memory), pbp_stream_end; the child reads with pbp_stream_read_view, in
 * place, granting credit as it goes (the default 1 MiB window).  Raw: a
 * header, then write() of each 4 MiB; the raw child reads through one
 * 256 KiB buffer.  Both pairs of pipes are 1 MiB.  Memory as large_msg:
 * the peaks show what a stream of any length costs each side.
 */
#define LARGE_STREAM_DEFAULT (1024u * 1024u * 1024u)
#define LARGE_STREAM_QUICK (64u * 1024u * 1024u)
#define LARGE_STREAM_SOURCE (4u * 1024u * 1024u)

static uint64_t
large_stream_op(peer *p, const large_data *d)
{
	uint64_t t0 = now_ns();
	size_t off, k;

	if (p->raw) {
		uint64_t hdr = d->size | LARGE_STREAM_BIT;

		write_all(p->wfd, &hdr, sizeof hdr, "large stream: header");
		for (off = 0; off < d->size; off += k) {
			k = d->size - off < d->piece ? d->size - off : d->piece;
			write_all(p->wfd, d->buf, k, "large stream");
		}
	} else {
		bench_Blob hdr = bench_Blob_init_zero;
		uint64_t s;
		size_t done;

		if (pbp_stream_open(p->ch, bench_Type_BLOB, &hdr, &s) != 0)
			pb_die(p, "large stream: open");
		for (off = 0; off < d->size; off += k) {
			k = d->size - off < d->piece ? d->size - off : d->piece;
			if (pbp_stream_write(p->ch, s, d->buf, k, &done) != 0)
				pb_die(p, "large stream: write");
		}
		if (pbp_stream_end(p->ch, s) != 0)
			pb_die(p, "large stream: end");
	}
	large_ack(p, d);
	return now_ns() - t0;
}

static void
bench_large_stream(options *o)
{
	size_t size = o->large_stream_size ? o->large_stream_size
	              : o->quick ? LARGE_STREAM_QUICK : LARGE_STREAM_DEFAULT;
	child_cfg c = { .mode = MODE_LARGE, .size = STAMP, .pipe_size = LARGE_PIPE };

	large_measure(o, "large_stream", &c, large_stream_op, size,
	              size < LARGE_STREAM_SOURCE ? size : LARGE_STREAM_SOURCE);
}

/* ---- the header ----------------------------------------------------------- */

/* The value of the first line of path that starts with key (after its
 * ": "), or with key NULL the first line; "unknown" if there is none. */
static void
file_value(const char *path, const char *key, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	char line[512];
	const char *v = "unknown";
	size_t len;

	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		char *colon = strchr(line, ':');

		line[strcspn(line, "\n")] = '\0';
		if (key == NULL) {
			v = line;
			break;
		}
		if (strncmp(line, key, strlen(key)) == 0 && colon != NULL && colon[1] != '\0') {
			v = colon + 2;
			break;
		}
	}
	len = strlen(v) < n - 1 ? strlen(v) : n - 1;
	memcpy(out, v, len);
	out[len] = '\0';
	if (f != NULL)
		fclose(f);
}

/* The pipe size pbpipe gives a channel by default, and the kernel's. */
static void
default_pipe_sizes(int *pb, int *kernel)
{
	pbp_channel *ch;
	int fds[2];

	*pb = *kernel = -1;
	if (pipe2(fds, O_CLOEXEC) != 0)
		return;
	*kernel = fcntl(fds[0], F_GETPIPE_SZ);
	if (pbp_channel_from_fds(&ch, fds[0], fds[1], NULL, NULL) != 0) {
		close(fds[0]);
		close(fds[1]);
		return;
	}
	*pb = fcntl(fds[0], F_GETPIPE_SZ);
	pbp_channel_free(ch);
}

static void
header(const options *o)
{
	FILE *out = o->json ? stderr : stdout;
	char cpu[256], load[256], date[64], only[128] = "";
	struct utsname u;
	time_t t = time(NULL);
	int pb, kernel, i;

	uname(&u);
	file_value("/proc/cpuinfo", "model name", cpu, sizeof cpu);
	file_value("/proc/loadavg", NULL, load, sizeof load);
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	default_pipe_sizes(&pb, &kernel);
	for (i = 0; i < B_COUNT; i++)
		if (o->only[i])
			snprintf(only + strlen(only), sizeof only - strlen(only), "%s%s",
			         only[0] ? "," : "", bench_names[i]);
	fprintf(out, "# pbpipe-bench %s date=%s kernel=%s cpu=\"%s\" nproc=%ld loadavg=\"%s\"\n",
	        PBP_VERSION_STRING, date, u.release, cpu, sysconf(_SC_NPROCESSORS_ONLN), load);
	fprintf(out, "# options: only=%s rounds=%d count=%s spin_us=%d quick=%d "
	        "large_settle_ms=%d sigpipe_handled=%d; pipes: pbpipe %d bytes, raw %d (kernel "
	        "default; set only in bench=pipesize, and 1 MiB for both in large_msg and large_stream)\n", only,
	        o->rounds, o->count ? "set" : "default", o->spin_us, o->quick, o->large_settle_ms,
	        (all_flags & PBP_CHANNEL_SIGPIPE_HANDLED) != 0, pb, kernel);
	fprintf(out, "# pin=%s:", pin_names[o->pin]);
	for (i = 0; i < B_COUNT; i++)
		if (o->only[i])
			fprintf(out, " %s=%s", bench_names[i], pin_names[pin_mode(o, i)]);
	if (cpu_b >= 0)
		fprintf(out, " (same: both on cpu %d; split: the child on cpu %d)\n", cpu_a, cpu_b);
	else
		fprintf(out, " (one CPU allowed: %d)\n", cpu_a);
	fprintf(out, "# medians over all samples; ratio = pbpipe/raw (us: lower is better; "
	        "frames/s, MB/s: higher is better); MB = 10^6 bytes\n");
	fflush(out);
}

/* ---- main ----------------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: pbpipe-bench [options]\n"
	        "  Measures pbpipe against raw pipes between this process and a child.\n"
	        "  --only NAME[,NAME]  benches to run: rtt, stream, spawn, lowlat, pipesize,\n"
	        "                      large_msg, large_stream, pool, instr (default: all;\n"
	        "                      instr needs valgrind and is left out by --quick)\n"
	        "  --sizes LIST        comma-separated sizes in bytes for the selected benches\n"
	        "                      (payloads; pipe sizes for pipesize); each at least %d\n"
	        "  --count N           per round: round trips (rtt, lowlat), frames (stream,\n"
	        "                      pipesize), spawns (spawn), calls (pool_calls,\n"
	        "                      pool_chaos) or restarts (pool_restart)\n"
	        "  --rounds N          rounds of each side, alternating (default 5)\n"
	        "  --spin-us N         spin_us of bench=lowlat (default 100)\n"
	        "  --pin MODE          where parent and child run: same (one CPU), split\n"
	        "                      (a CPU each), none (the scheduler decides), or auto\n"
	        "                      (default: lowlat split, spawn none, others same)\n"
	        "  --large-size N      the message of large_msg, in bytes (default 256 MiB;\n"
	        "                      8 MiB with --quick)\n"
	        "  --large-stream-size N  the stream of large_stream, in bytes (default 1 GiB;\n"
	        "                      64 MiB with --quick)\n"
	        "  --large-settle-ms N pause after each large_msg or large_stream round\n"
	        "                      (default %d): 0 sends back to back, where buffers stay mapped\n"
	        "  --sigpipe-handled   give every channel PBP_CHANNEL_SIGPIPE_HANDLED (both\n"
	        "                      processes ignore SIGPIPE)\n"
	        "  --json              print a JSON array (the header goes to stderr)\n"
	        "  --quick             small counts and 2 rounds: a smoke test\n"
	        "  --help              this text\n",
	        STAMP, LARGE_SETTLE_MS);
}

static size_t *
parse_sizes(const char *s, size_t *n)
{
	size_t cap = 1, i = 0;
	size_t *v;
	char *copy, *tok, *save;

	for (const char *p = s; *p; p++)
		cap += *p == ',';
	v = xmalloc(cap * sizeof *v);
	copy = strdup(s);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		v[i] = (size_t)parse_num(tok, "--sizes");
		if (v[i] < STAMP || v[i] > PBP_MAX_MAX_FRAME / 2)
			die("--sizes: %zu is outside [%d, %u]", v[i], STAMP, PBP_MAX_MAX_FRAME / 2);
		i++;
	}
	free(copy);
	if (i == 0)
		die("--sizes: empty list");
	*n = i;
	return v;
}

static void
parse_only(options *o, const char *s)
{
	char *copy = strdup(s), *tok, *save;
	int i;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < B_COUNT && strcmp(tok, bench_names[i]) != 0; i++)
			;
		if (i == B_COUNT)
			die("--only: unknown bench '%s' (rtt, stream, spawn, lowlat, pipesize, "
			    "large_msg, large_stream, pool, instr)", tok);
		o->only[i] = 1;
	}
	free(copy);
}

static size_t
parse_large_size(const char *s)
{
	unsigned long long v = parse_num(s, "--large-size");

	if (v < STAMP || v > PBP_MAX_MAX_FRAME - 4096)
		die("--large-size: %llu is outside [%d, %u]", v, STAMP, PBP_MAX_MAX_FRAME - 4096);
	return (size_t)v;
}

static size_t
parse_large_stream_size(const char *s)
{
	unsigned long long v = parse_num(s, "--large-stream-size");

	if (v < STAMP || v > (unsigned long long)SIZE_MAX / 2)
		die("--large-stream-size: %llu is outside [%d, %zu]", v, STAMP, (size_t)SIZE_MAX / 2);
	return (size_t)v;
}

static int
parse_pin(const char *s)
{
	int i;

	for (i = 0; i < PIN_COUNT; i++)
		if (strcmp(s, pin_names[i]) == 0)
			return i;
	die("--pin: unknown mode '%s' (auto, none, same, split)", s);
}

static void
parse_options(options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sizes", required_argument, NULL, 's' }, { "count", required_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' }, { "only", required_argument, NULL, 'o' },
		{ "spin-us", required_argument, NULL, 'S' }, { "json", no_argument, NULL, 'j' },
		{ "quick", no_argument, NULL, 'q' },         { "help", no_argument, NULL, 'h' },
		{ "pin", required_argument, NULL, 'p' },
		{ "sigpipe-handled", no_argument, NULL, 'H' },
		{ "large-size", required_argument, NULL, 'L' },
		{ "large-settle-ms", required_argument, NULL, 'M' },
		{ "large-stream-size", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, i, any = 0;

	memset(o, 0, sizeof *o);
	o->rounds = -1;
	o->spin_us = 100;
	o->large_settle_ms = LARGE_SETTLE_MS;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': free(o->sizes); o->sizes = parse_sizes(optarg, &o->nsizes); break;
		case 'c': o->count = parse_num(optarg, "--count"); break;
		case 'r': o->rounds = (int)parse_num(optarg, "--rounds"); break;
		case 'o': parse_only(o, optarg); break;
		case 'S': o->spin_us = (int)parse_num(optarg, "--spin-us"); break;
		case 'j': o->json = 1; break;
		case 'q': o->quick = 1; break;
		case 'p': o->pin = parse_pin(optarg); break;
		case 'H': all_flags |= PBP_CHANNEL_SIGPIPE_HANDLED; break;
		case 'L': o->large_size = parse_large_size(optarg); break;
		case 'T': o->large_stream_size = parse_large_stream_size(optarg); break;
		case 'M': o->large_settle_ms = (int)parse_num(optarg, "--large-settle-ms"); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (o->rounds < 0)
		o->rounds = o->quick ? 2 : 5;
	if (o->rounds == 0)
		die("--rounds must be at least 1");
	for (i = 0; i < B_COUNT; i++)
		any |= o->only[i];
	for (i = 0; i < B_COUNT && !any; i++)
		o->only[i] = 1;
}

int
main(int argc, char **argv)
{
	static void (*const benches[B_COUNT])(options *) = {
		bench_rtt, bench_stream, bench_spawn, bench_lowlat, bench_pipesize, bench_large_msg,
		bench_large_stream, bench_pool, bench_instr,
	};
	options o;
	ssize_t n;
	int i;

	/* A raw write to a child that died must fail with EPIPE and a
	 * message, not kill us.  Children are spawned with default handling
	 * and come through here too, so with --sigpipe-handled both sides of
	 * every channel really do ignore SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
	if (n <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self_exe[n] = '\0';
	if (argc >= 2 && strcmp(argv[1], "--serve") == 0)
		return serve(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "--instr-run") == 0)
		return instr_run(argc, argv);
	parse_options(&o, argc, argv);
	cpus_init();
	header(&o);
	if (o.json)
		printf("[\n");
	for (i = 0; i < B_COUNT; i++)
		if (o.only[i]) {
			pin_bench(&o, i);
			benches[i](&o);
		}
	if (o.json)
		printf("\n]\n");
	free(o.sizes);
	return 0;
}

