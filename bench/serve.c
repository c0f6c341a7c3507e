/*
 * serve.c: the child roles of pbpipe-bench, and the helpers both sides
 * use.  The parent re-executes itself as
 *
 *     pbpipe-bench --serve pbpipe|raw [--key value]... WRITE_FD READ_FD
 *
 * An echo child sends every frame back; a sink receives batches of
 * --count frames of --size bytes, checks the stamp of each, and
 * acknowledges each batch.  Either exits 0 at end of stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "bench.pb.h"
#include "bench_fingerprint.h"

/* The raw sink reads with buffers this large. */
#define SINK_BUF (1024u * 1024u)

char self_exe[4096];
const char *role = "pbpipe-bench";

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(bench_Type_ACK, bench_Ack),
	PBP_MSGTYPE(bench_Type_CPU, bench_Cpu),
	PBP_MSGTYPE(bench_Type_BLOB, bench_Blob),
	PBP_MSGTYPE(bench_Type_CALL, bench_Call),
};

/* ---- helpers for both sides ------------------------------------------------ */

void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", role);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory (%zu bytes)", n);
	return p;
}

uint64_t
cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

int
read_exact(int fd, void *buf, size_t n, const char *what)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (uint8_t *)buf + got, n - got);

		if (r > 0)
			got += (size_t)r;
		else if (r == 0 && got == 0)
			return 1;
		else if (r == 0)
			die("%s: end of stream after %zu of %zu bytes", what, got, n);
		else if (errno != EINTR && errno != EAGAIN)
			die("%s: read: %s", what, strerror(errno));
	}
	return 0;
}

void
write_all(int fd, const void *buf, size_t n, const char *what)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, (const uint8_t *)buf + done, n - done);

		if (w > 0)
			done += (size_t)w;
		else if (w < 0 && errno != EINTR && errno != EAGAIN)
			die("%s: write: %s", what, strerror(errno));
	}
}

void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl(O_NONBLOCK): %s", strerror(errno));
}

unsigned long long
parse_num(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
		die("%s: '%s' is not a non-negative number", what, s);
	return v;
}

pbp_channel_options
channel_options(const child_cfg *c)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = BENCH_SCHEMA_FINGERPRINT;
	o.max_frame = (uint32_t)c->max_frame;
	o.flags = (unsigned int)c->flags;
	o.spin_us = (int)c->spin_us;
	o.pipe_size = (int)c->pipe_size;
	return o;
}

/* ---- the child roles ----------------------------------------------------- */

static void
cfg_parse(child_cfg *c, int argc, char **argv)
{
	int i;

	memset(c, 0, sizeof *c);
	c->cpu = -1;
	/* argv: exe --serve KIND (--key value)... WRITE_FD READ_FD */
	for (i = 3; i + 1 < argc - 2; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (strcmp(k, "--pipe-size") == 0)
			c->pipe_size = strtoll(v, NULL, 10);
		else if (strcmp(k, "--mode") == 0)
			c->mode = (int)parse_num(v, k);
		else if (strcmp(k, "--size") == 0)
			c->size = parse_num(v, k);
		else if (strcmp(k, "--count") == 0)
			c->count = parse_num(v, k);
		else if (strcmp(k, "--report") == 0)
			c->report = parse_num(v, k);
		else if (strcmp(k, "--poll") == 0)
			c->poll = parse_num(v, k);
		else if (strcmp(k, "--spin-us") == 0)
			c->spin_us = parse_num(v, k);
		else if (strcmp(k, "--max-frame") == 0)
			c->max_frame = parse_num(v, k);
		else if (strcmp(k, "--flags") == 0)
			c->flags = parse_num(v, k);
		else if (strcmp(k, "--cpu") == 0)
			c->cpu = strtoll(v, NULL, 10);
		else
			die("unknown child option '%s'", k);
	}
}

void
pb_check(pbp_channel *ch, int rc, const char *what)
{
	if (rc != 0)
		die("%s: %s", what, pbp_channel_errmsg(ch));
}

/*
 * The CPU time of each batch of --report echoes, from the arrival of its
 * first frame to the echo of its last.  Not from one report to the next:
 * between batches the parent measures the other child, and a child that
 * busy-polls meanwhile burns CPU that is no round trip's cost.
 */
typedef struct cpu_meter {
	uint64_t report, n, start;
} cpu_meter;

/* After a frame arrived. */
static void
meter_arrived(cpu_meter *m)
{
	if (m->report && m->n % m->report == 0)
		m->start = cpu_ns();
}

/* After an echo: 1 with *used set when it ended a batch. */
static int
meter_echoed(cpu_meter *m, uint64_t *used)
{
	if (!m->report || ++m->n % m->report != 0)
		return 0;
	*used = cpu_ns() - m->start;
	return 1;
}

/* Echoes every DATA frame until end of stream. */
static int
pb_serve_echo(pbp_channel *ch, const child_cfg *c)
{
	cpu_meter m = { c->report, 0, 0 };
	bench_Cpu cpu = { 0, 0 };
	pbp_msginfo mi;
	int rc;

	while ((rc = pbp_channel_recv(ch, &mi)) == 0) {
		meter_arrived(&m);
		if (mi.type != bench_Type_DATA)
			die("echo: unexpected message type %" PRIu32, mi.type);
		/* The payload stays valid for this send: send_raw copies it
		 * before anything else can touch the receive buffer. */
		pb_check(ch, pbp_channel_send_raw(ch, bench_Type_DATA, 0, mi.payload, mi.size),
		         "echo: send");
		if (meter_echoed(&m, &cpu.cpu_ns)) {
			cpu.echoes = m.n;
			pb_check(ch, pbp_channel_send(ch, bench_Type_CPU, &cpu), "send Cpu");
		}
	}
	return rc;
}

/* Receives batches of count frames, checks each, acknowledges each batch. */
static int
pb_serve_sink(pbp_channel *ch, const child_cfg *c)
{
	pbp_msginfo mi;
	uint64_t batch, i;
	int rc;

	for (batch = 1;; batch++) {
		bench_Ack ack = { c->count, c->count * c->size, 0 };

		for (i = 0; i < c->count; i++) {
			rc = pbp_channel_recv(ch, &mi);
			if (rc == PBP_EOF && i == 0)
				return rc;
			pb_check(ch, rc, "sink: recv");
			if (mi.type != bench_Type_DATA || mi.size != c->size ||
			    stamp_get(mi.payload) != stamp_value(batch, i))
				die("sink: batch %" PRIu64 " frame %" PRIu64 ": type %" PRIu32
				    ", %zu bytes, stamp %#" PRIx64 ": not what was sent",
				    batch, i, mi.type, mi.size, stamp_get(mi.payload));
		}
		pb_check(ch, pbp_channel_send(ch, bench_Type_ACK, &ack), "sink: send Ack");
	}
}

static int
serve_pbpipe(int argc, char **argv, const child_cfg *c)
{
	pbp_channel_options o = channel_options(c);
	pbp_channel *ch;
	pbp_error err;
	int rc;

	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0)
		die("%s", err.msg);
	pb_check(ch, pbp_channel_handshake(ch), "handshake");
	if (c->mode == MODE_POOL) {
		/* 0 at end of stream or Goodbye: the pool ends helpers with one. */
		pb_check(ch, pool_serve_pbpipe(ch), "serve");
		pbp_channel_free(ch);
		return 0;
	}
	rc = c->mode == MODE_SINK ? pb_serve_sink(ch, c)
	     : c->mode == MODE_LARGE ? large_serve_pbpipe(ch) : pb_serve_echo(ch, c);
	if (rc != PBP_EOF)
		die("recv: %s", pbp_channel_errmsg(ch));
	pbp_channel_free(ch);
	return 0;
}

/* Checks the stamps of fixed-size frames in a byte stream that arrives
 * in chunks of any size: a stamp may straddle two reads. */
typedef struct stamp_scan {
	uint64_t size, batch;
	uint8_t buf[STAMP];
} stamp_scan;

static void
scan_chunk(stamp_scan *sc, const uint8_t *p, size_t n, uint64_t pos)
{
	uint64_t end = pos + n, f;

	for (f = pos / sc->size; f * sc->size < end; f++) {
		uint64_t s0 = f * sc->size, s1 = s0 + STAMP;
		uint64_t a = s0 > pos ? s0 : pos, b = s1 < end ? s1 : end;

		if (a >= b)
			continue;
		memcpy(sc->buf + (a - s0), p + (a - pos), b - a);
		if (b == s1 && stamp_get(sc->buf) != stamp_value(sc->batch, f))
			die("raw sink: batch %" PRIu64 " frame %" PRIu64 ": stamp %#" PRIx64
			    ": not what was sent", sc->batch, f, stamp_get(sc->buf));
	}
}

/* Reads batches of count * size bytes with large reads and acknowledges
 * each with the byte count (8 bytes). */
static void
raw_serve_sink(int wfd, int rfd, const child_cfg *c)
{
	uint8_t *buf = xmalloc(SINK_BUF);
	stamp_scan sc = { c->size, 0, { 0 } };

	for (sc.batch = 1;; sc.batch++) {
		uint64_t total = c->count * c->size, got = 0;

		while (got < total) {
			size_t want = total - got < SINK_BUF ? (size_t)(total - got) : SINK_BUF;
			ssize_t r = read(rfd, buf, want);

			if (r == 0 && got == 0) {
				free(buf);
				return;
			}
			if (r == 0)
				die("raw sink: end of stream after %" PRIu64 " bytes", got);
			if (r < 0 && errno != EINTR)
				die("raw sink: read: %s", strerror(errno));
			if (r > 0) {
				scan_chunk(&sc, buf, (size_t)r, got);
				got += (uint64_t)r;
			}
		}
		write_all(wfd, &got, sizeof got, "raw sink: ack");
	}
}

/* Echoes frames of c->size bytes; after every c->report echoes also
 * writes their CPU time (8 bytes), as the pbpipe child does. */
static void
raw_serve_echo(int wfd, int rfd, const child_cfg *c)
{
	uint8_t *buf = xmalloc(c->size);
	cpu_meter m = { c->report, 0, 0 };
	uint64_t cpu;

	if (c->poll) {
		set_nonblock(rfd);
		set_nonblock(wfd);
	}
	while (read_exact(rfd, buf, c->size, "raw echo") == 0) {
		meter_arrived(&m);
		write_all(wfd, buf, c->size, "raw echo");
		if (meter_echoed(&m, &cpu))
			write_all(wfd, &cpu, sizeof cpu, "raw echo: cpu");
	}
	free(buf);
}

static int
serve_raw(int argc, char **argv, const child_cfg *c)
{
	int wfd = (int)parse_num(argv[argc - 2], "write fd");
	int rfd = (int)parse_num(argv[argc - 1], "read fd");

	if (c->size < STAMP)
		die("raw child: --size %" PRIu64 " is below %d", c->size, STAMP);
	if (c->mode == MODE_LARGE)
		large_serve_raw(wfd, rfd);
	else if (c->mode == MODE_SINK)
		raw_serve_sink(wfd, rfd, c);
	else
		raw_serve_echo(wfd, rfd, c);
	return 0;
}

int
serve(int argc, char **argv)
{
	child_cfg c;

	role = "pbpipe-bench (child)";
	if (argc < 5)
		die("usage: pbpipe-bench --serve pbpipe|raw [--key value]... WRITE_FD READ_FD");
	cfg_parse(&c, argc, argv);
	if (c.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET((int)c.cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) != 0)
			die("sched_setaffinity(cpu %" PRId64 "): %s", c.cpu, strerror(errno));
	}
	if (strcmp(argv[2], "pbpipe") == 0)
		return serve_pbpipe(argc, argv, &c);
	if (strcmp(argv[2], "raw") == 0)
		return serve_raw(argc, argv, &c);
	die("--serve: unknown kind '%s'", argv[2]);
}

