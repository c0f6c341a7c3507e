/*
 * bench.h: what the two halves of pbpipe-bench share: the parent
 * (bench.c) and the child roles (serve.c), which are one binary.
 */
#ifndef PBP_BENCH_H
#define PBP_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

/* Every stamp is 8 bytes at the start of a frame (and, in an echo, also at
 * its end), so frames must be at least this long. */
#define STAMP 8

extern char self_exe[4096]; /* this program, for re-executing it */
extern const char *role;    /* prefix of error messages */

enum { MODE_ECHO = 0, MODE_SINK = 1, MODE_LARGE = 2, MODE_POOL = 3 };

/* A child's configuration, passed on its command line as --key value
 * pairs (see argv_build() in bench.c), so that the raw child and the
 * pbpipe child get the same one. */
typedef struct child_cfg {
	int mode;           /* MODE_* */
	uint64_t size;      /* frame size (raw echo, both sinks) */
	uint64_t count;     /* sink: frames per batch */
	uint64_t report;    /* echo: send our CPU time every this many echoes
	                       (and once at the start); 0: never */
	uint64_t poll;      /* raw: busy-poll non-blocking fds */
	uint64_t spin_us;   /* pbpipe: pbp_channel_options.spin_us */
	int64_t pipe_size;  /* pbpipe: .pipe_size; raw: set by the parent */
	uint64_t max_frame; /* pbpipe: .max_frame (0: default) */
	uint64_t flags;     /* pbpipe: .flags */
	int64_t cpu;        /* the CPU to run on, or -1 to stay where spawned */
} child_cfg;

/* Prints "role: message" and exits 1.  Any failure ends the run with one
 * line: a benchmark that half-worked has no numbers worth printing. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xmalloc(size_t n);
unsigned long long parse_num(const char *s, const char *what);
/* This process's CPU time so far, user plus system, in ns. */
uint64_t cpu_ns(void);
/* Reads exactly n bytes.  Returns 0, or 1 on end of stream before the
 * first byte; dies on anything else.  On a non-blocking fd this
 * busy-polls: EAGAIN is retried at once (the raw baseline of lowlat). */
int read_exact(int fd, void *buf, size_t n, const char *what);
/* Writes all n bytes (busy-polling on a non-blocking fd), or dies. */
void write_all(int fd, const void *buf, size_t n, const char *what);
void set_nonblock(int fd);
/* The channel options for a child configuration, for either side. */
pbp_channel_options channel_options(const child_cfg *c);
/* The child roles: main() for "pbpipe-bench --serve ...". */
int serve(int argc, char **argv);
/* Dies with the channel's error message, unless rc is 0. */
void pb_check(pbp_channel *ch, int rc, const char *what);

/* ---- bench.c: what the benches in other files share ------------------------ */

/* The benches, in the order they run (--only names them). */
enum { B_RTT, B_STREAM, B_SPAWN, B_LOWLAT, B_PIPESIZE, B_LARGE_MSG, B_LARGE_STREAM, B_POOL,
       B_INSTR, B_COUNT };

typedef struct options {
	int only[B_COUNT];  /* 1 for each selected bench */
	size_t *sizes;      /* --sizes, or NULL for each bench's defaults */
	size_t nsizes;
	uint64_t count;     /* --count, or 0 for each bench's defaults */
	int rounds;
	int spin_us;
	int json;
	int quick;
	int pin;            /* PIN_* */
	size_t large_size;  /* --large-size, or 0 for the default */
	size_t large_stream_size; /* --large-stream-size, or 0 for the default */
	int large_settle_ms; /* --large-settle-ms */
	int nout;           /* results printed so far */
} options;

/* Prints one result line: bench=... size=... unit=... pbpipe=... raw=...
 * ratio=pbpipe/raw, then extra ("key=value ..."; may be NULL). */
void emit(options *o, const char *bench, uint64_t size, const char *unit, double pb,
          double raw, const char *extra);
uint64_t now_ns(void); /* CLOCK_MONOTONIC */

typedef struct samples {
	double *v;
	size_t n, cap;
} samples;
void samples_add(samples *s, double x);
/* The median of all samples; frees them. */
double samples_median(samples *s);

/* argv for a child: 3 + 2 * 10 options + 2 handles + NULL. */
typedef struct argv_buf {
	const char *v[32];
	char num[12][24];
	int n, nn;
} argv_buf;
/* Builds "pbpipe-bench --serve KIND --mode ... ..." (without the handles). */
void argv_build(argv_buf *a, const char *kind, const child_cfg *c);

/* One child, pbpipe or raw, with the state of its stream. */
typedef struct peer {
	int raw;
	pbp_child *c;     /* pbpipe */
	pbp_channel *ch;
	pid_t pid;        /* raw */
	int rfd, wfd;
	uint64_t batch;   /* sink: batches sent so far */
} peer;
/* Spawns a child (raw: pipes and posix_spawn; pbpipe: pbp_child_spawn
 * and the handshake); peer_close() ends its stream and reaps it, and dies
 * unless it exited with status 0. */
void peer_open(peer *p, int raw, const child_cfg *c);
void peer_close(peer *p);

/* n operations with one child: round trips of size-byte messages through
 * an echoing child, or (stream) n size-byte frames into a sink and its
 * acknowledgement, pbpipe's sender coalescing; raw: the raw child. */
void bench_ops(int raw, int stream, size_t size, uint64_t n);

/* ---- instr.c: bench=instr ---------------------------------------------------- */

void bench_instr(options *o);
/* main() for "pbpipe-bench --instr-run KIND SIZE N": what bench=instr counts. */
int instr_run(int argc, char **argv);

/* ---- pool.c: bench=pool ------------------------------------------------------ */

void bench_pool(options *o);
/* The pool helper (MODE_POOL): answers Call requests with pbp_channel_serve()
 * until end of stream or Goodbye. */
int pool_serve_pbpipe(pbp_channel *ch);

/* ---- large.c: large messages, and the memory they cost ---------------------- */

/* The work both large-message children do with what arrived, the same
 * for pbpipe and raw: one byte of every 4 KiB page and the last, mixed
 * into a checksum (every page is touched once; the data is not copied). */
uint64_t large_check(const uint8_t *p, size_t n);
/* The large-message children (MODE_LARGE): receive messages of any size,
 * check each, acknowledge each.  Both return at end of stream. */
int large_serve_pbpipe(pbp_channel *ch);
void large_serve_raw(int wfd, int rfd);
/* Streams (bench=large_stream): the raw header's flag, and the buffer a
 * raw child reads a stream through. */
#define LARGE_STREAM_BIT (1ull << 63)
#define LARGE_STREAM_PIECE (256u * 1024u)
/* large_check for a stream: the same bytes (every 4096th and the last)
 * mixed the same way whatever pieces the stream arrives in, then its
 * length. */
typedef struct stream_check {
	uint64_t h, off;
	uint8_t last;
} stream_check;
void stream_check_init(stream_check *c);
void stream_check_add(stream_check *c, const uint8_t *p, size_t n);
uint64_t stream_check_end(const stream_check *c);
/* Memory of a process (0: this one) from /proc/PID/status, in KiB:
 * VmHWM (peak resident) or VmRSS (resident now); -1 where unknown. */
long mem_peak_kb(long pid);
long mem_now_kb(long pid);
/* Starts a new peak: VmHWM becomes VmRSS (/proc/PID/clear_refs, "5";
 * Linux 4.0 and later).  0, or -1 where that is not possible. */
int mem_peak_reset(long pid);

/* A stamp names one frame: the batch (round) it belongs to and its index
 * in it.  Batches count from 1, so a stamp is never 0. */
static inline uint64_t
stamp_value(uint64_t batch, uint64_t index)
{
	return batch << 32 | index;
}

static inline void
stamp_put(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, STAMP);
}

static inline uint64_t
stamp_get(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, STAMP);
	return v;
}

#endif /* PBP_BENCH_H */
