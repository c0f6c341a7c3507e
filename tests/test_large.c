/*
 * test_large.c: one large message, and what a channel keeps afterwards
 * (issue 15, items 3 and 4): the receive and write buffers go back to
 * their initial size once empty, held messages and replies do not pin
 * their memory, the reader grows straight to a large frame's size, and an
 * idle channel's resident memory ends within 1 MiB of where it started.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "pbpbytes.pb.h"
#include "support.h"
#include "channel_impl.h"
#include "memio.h"

#define T(name) Test(large, name, .timeout = 120)

#define KIB 1024u
#define MIB (1024u * 1024u)
#define LARGE (32u * MIB)
#define INITIAL (64u * KIB)

#if defined(__SANITIZE_ADDRESS__)
#define PBPTEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PBPTEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define PBPTEST_ASAN 1
#endif

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbpbytes_Type_PUT, pbpbytes_Put),
	PBP_MSGTYPE(pbpbytes_Type_GET, pbpbytes_Get),
};

static pbp_channel_options
opts(void)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.max_frame = LARGE + 4096;
	o.handshake_timeout_ms = pbt_scale(2000);
	return o;
}

static void
pair(pbp_channel **a, pbp_channel **b)
{
	pbp_channel_options o = opts();

	pbt_pair(a, b, &o, &o);
}

static uint8_t *
pattern(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n);
	size_t i;

	cr_assert_not_null(p);
	for (i = 0; i < n; i++)
		p[i] = pbt_pattern(seed, i);
	return p;
}

/* Checks every 4099th byte and the last: cheap, and catches a shift. */
static int
looks_like(const void *data, size_t n, uint32_t seed)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i < n; i += 4099)
		if (p[i] != pbt_pattern(seed, i))
			return 0;
	return n == 0 || p[n - 1] == pbt_pattern(seed, n - 1);
}

/* A send on its own thread, so that the receiver reads meanwhile: zero
 * copy (pbp_bytes_out) or raw (the payload copied into the write
 * buffer). */
typedef struct sender {
	pbp_channel *ch;
	const uint8_t *data;
	size_t size;
	int raw;
	int rc;
	size_t wcap; /* the write buffer's capacity once the send returned */
} sender;

static void *
send_thread(void *arg)
{
	sender *s = arg;

	if (s->raw) {
		s->rc = pbp_channel_send_raw(s->ch, pbpbytes_Type_PUT, 0, s->data, s->size);
	} else {
		pbpbytes_Put put = pbpbytes_Put_init_zero;
		pbp_bytes data;

		pbp_bytes_out(&put.data, &data, s->data, s->size);
		s->rc = pbp_channel_send(s->ch, pbpbytes_Type_PUT, &put);
	}
	s->wcap = pbp__channel_wbuf_cap(s->ch);
	return NULL;
}

/* Sends size bytes from `from` to `to` (on a thread) and receives them as
 * a view, checking the pattern. */
static void
move(pbp_channel *from, pbp_channel *to, size_t size, int raw, uint32_t seed, size_t *wcap)
{
	uint8_t *buf = pattern(size, seed);
	sender s = { from, buf, size, raw, -1, 0 };
	pbpbytes_Put got = pbpbytes_Put_init_zero;
	pbp_bytes in;
	uint32_t type;
	pthread_t t;

	t = pbt_spawn_thread(send_thread, &s);
	if (raw) {
		/* send_raw: the payload is the bytes themselves. */
		pbp_msginfo mi;

		cr_assert_eq(pbp_channel_recv(to, &mi), 0, "%s", pbp_channel_errmsg(to));
		cr_assert_eq(mi.size, size);
		cr_assert(looks_like(mi.payload, mi.size, seed), "the bytes differ");
		type = mi.type;
	} else {
		pbp_bytes_view(&got.data, &in);
		cr_assert_eq(pbp_channel_recv_msg(to, &type, &got, sizeof got), 0, "%s",
		             pbp_channel_errmsg(to));
		cr_assert_eq(in.size, size);
		cr_assert(looks_like(in.data, in.size, seed), "the bytes differ");
	}
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(from));
	cr_assert_eq(type, pbpbytes_Type_PUT);
	free(buf);
	if (wcap != NULL)
		*wcap = s.wcap;
}

/* A receive that finds nothing (deadline 0): what a poll-driven
 * application does while idle. */
static void
idle_recv(pbp_channel *ch)
{
	pbp_msginfo mi;

	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv(ch, &mi), PBP_EAGAIN, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, -1), 0);
}

/* Resident memory of this process in bytes (Linux), or 0 where unknown. */
static size_t
rss_bytes(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	int n;

	if (f == NULL)
		return 0;
	n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* This thread's minor page faults so far (Linux), or -1. */
static long
minor_faults(void)
{
#ifdef RUSAGE_THREAD
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) == 0)
		return ru.ru_minflt;
#endif
	return -1;
}

/* ---- capacities -------------------------------------------------------------- */

/* 32 MiB each way, zero copy: both receive buffers grow to the frame and
 * go back to 64 KiB at the next receive; the write buffers never grow. */
T(buffers_back_to_initial_after_32_mib_each_way)
{
	pbp_channel *a, *b;
	size_t wcap;

	pair(&a, &b);
	move(a, b, LARGE, 0, 1, &wcap);
	/* The frame reserves 64 KiB plus its header before encoding, which
	 * may take the buffer to 128 KiB, never more: the payload is spliced. */
	cr_assert_leq(wcap, 2 * INITIAL, "spliced: the write buffer grew to %zu", wcap);
	cr_assert_geq(pbp__channel_rbuf_cap(b), LARGE, "the frame is in the receive buffer");
	move(b, a, LARGE, 0, 2, &wcap);
	idle_recv(a);
	idle_recv(b);
	cr_assert_eq(pbp__channel_rbuf_cap(a), INITIAL, "A's receive buffer: %zu",
	             pbp__channel_rbuf_cap(a));
	cr_assert_eq(pbp__channel_rbuf_cap(b), INITIAL, "B's receive buffer: %zu",
	             pbp__channel_rbuf_cap(b));
	cr_assert_leq(pbp__channel_wbuf_cap(a), 2 * INITIAL);
	cr_assert_leq(pbp__channel_wbuf_cap(b), 2 * INITIAL);
	/* And the channel still works, large and small. */
	move(a, b, LARGE, 0, 3, NULL);
	move(b, a, 100, 0, 4, NULL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A 32 MiB frame copied into the write buffer (a payload in the receive
 * buffer, sent back with send_raw: a blocked write may move that buffer,
 * so it is copied): the buffer goes back to 64 KiB as soon as the frame is
 * written.  Sent from the caller's memory, it never grows. */
T(write_buffer_back_to_initial_after_a_copied_32_mib_frame)
{
	pbp_channel *a, *b;
	uint8_t *buf = pattern(LARGE, 5);
	sender s = { NULL, buf, LARGE, 1, -1, 0 };
	pbp_msginfo mi;
	pthread_t t;

	pair(&a, &b);
	s.ch = a;
	t = pbt_spawn_thread(send_thread, &s);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(s.wcap, INITIAL, "the write buffer grew to %zu bytes", s.wcap);
	s = (sender){ b, mi.payload, mi.size, 1, -1, 0 };
	t = pbt_spawn_thread(send_thread, &s);
	cr_assert_eq(pbp_channel_recv(a, &mi), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(mi.size, LARGE);
	cr_assert(looks_like(mi.payload, mi.size, 5), "the bytes differ");
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(s.wcap, INITIAL, "the write buffer kept %zu bytes", s.wcap);
	free(buf);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Frames of 1 MiB keep their buffers: no allocation per frame for them
 * (tests/test_alloc.c counts), only what grows past 1 MiB shrinks.  (The
 * sender's write buffer never grows: send_raw splices the payload.) */
T(one_mib_frames_keep_their_buffers)
{
	pbp_channel *a, *b;
	size_t wcap;

	pair(&a, &b);
	move(a, b, MIB, 1, 7, &wcap);
	idle_recv(b);
	cr_assert_eq(wcap, INITIAL);
	cr_assert_gt(pbp__channel_rbuf_cap(b), MIB);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* The reader grows straight to a large frame's declared size, one
 * allocation, even from a buffer more than half that size (doubling
 * would reserve 40 MiB for a 32 MiB frame here). */
T(reader_grows_exactly_to_a_large_frame)
{
	size_t first = 20u * MIB, hdr1, hdr2;
	uint8_t h1[PBP__VARINT32_MAX], h2[PBP__VARINT32_MAX];
	uint8_t *body = calloc(1, first), *p;
	const uint8_t *got;
	pbp__reader r;
	size_t len, n;

	cr_assert_not_null(body);
	hdr1 = (size_t)(pbp__put_varint(h1, first) - h1);
	hdr2 = (size_t)(pbp__put_varint(h2, LARGE) - h2);
	cr_assert_eq(pbp__reader_init(&r, LARGE + 16, INITIAL), 0);
	cr_assert_eq(pbp__reader_feed(&r, h1, hdr1), 0);
	cr_assert_eq(pbp__reader_feed(&r, body, first), 0);
	cr_assert_eq(pbp__reader_feed(&r, h2, hdr2), 0);
	cr_assert_eq(pbp__reader_next(&r, &got, &len), 1);
	cr_assert_eq(len, first);
	cr_assert_eq(pbp__reader_space(&r, &p, &n), 0);
	cr_assert_eq(r.cap, hdr2 + LARGE, "grew to %zu for a frame of %zu", r.cap,
	             hdr2 + (size_t)LARGE);
	cr_assert_eq(n, LARGE);
	pbp__reader_commit(&r, n);
	cr_assert_eq(pbp__reader_next(&r, &got, &len), 1);
	cr_assert_eq(len, LARGE);
	/* Empty now: it can give the memory back (the engine decides when). */
	cr_assert(pbp__reader_idle_large(&r));
	cr_assert_eq(pbp__reader_shrink(&r), 1);
	cr_assert_eq(r.cap, INITIAL);
	cr_assert_eq(pbp__reader_shrink(&r), 0);
	pbp__reader_free(&r);
	free(body);
}

/* ---- when the receive buffer goes back ---------------------------------------- */

/* Sends `n` messages of `size` bytes (zero copy), waiting `gap_ms` before
 * each. */
typedef struct later {
	pbp_channel *ch;
	size_t size;
	int n, gap_ms;
	int rc;
} later;

static void *
later_thread(void *arg)
{
	later *l = arg;
	uint8_t *buf = pattern(l->size, 21);
	int i;

	l->rc = 0;
	for (i = 0; i < l->n && l->rc == 0; i++) {
		pbpbytes_Put put = pbpbytes_Put_init_zero;
		pbp_bytes data;

		if (l->gap_ms > 0)
			usleep((useconds_t)l->gap_ms * 1000);
		pbp_bytes_out(&put.data, &data, buf, l->size);
		l->rc = pbp_channel_send(l->ch, pbpbytes_Type_PUT, &put);
	}
	free(buf);
	return NULL;
}

static size_t
recv_put(pbp_channel *ch)
{
	pbpbytes_Put got = pbpbytes_Put_init_zero;
	pbp_bytes in;
	uint32_t type;

	pbp_bytes_view(&got.data, &in);
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(ch));
	cr_assert(looks_like(in.data, in.size, 21));
	return in.size;
}

/* A blocking receive that waits with a large, empty buffer gives it back
 * after the grace period (100 ms) and waits on: the small message that
 * comes after 400 ms lands in a 64 KiB buffer. */
T(blocked_receive_gives_the_buffer_back_after_the_grace_period)
{
	pbp_channel *a, *b;
	later l;
	pthread_t t;

	pair(&a, &b);
	move(a, b, LARGE, 0, 20, NULL);
	l = (later){ a, 100, 1, 400, -1 };
	t = pbt_spawn_thread(later_thread, &l);
	cr_assert_eq(recv_put(b), 100);
	pbt_join(t);
	cr_assert_eq(l.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp__channel_rbuf_cap(b), INITIAL, "the receive buffer kept %zu bytes",
	             pbp__channel_rbuf_cap(b));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Back-to-back large messages keep the buffer (and its mapped pages):
 * the second one arrives well within the grace period. */
T(back_to_back_large_messages_keep_the_buffer)
{
	pbp_channel *a, *b;
	long faults;
	later l;
	pthread_t t;

	if (pbt_valgrind())
		cr_skip_test("timing: under valgrind 4 MiB may take longer than 100 ms");
	pair(&a, &b);
	l = (later){ a, 4 * MIB, 2, 0, -1 };
	t = pbt_spawn_thread(later_thread, &l);
	cr_assert_eq(recv_put(b), 4 * MIB);
	faults = minor_faults();
	cr_assert_eq(recv_put(b), 4 * MIB);
	faults = minor_faults() - faults;
	pbt_join(t);
	/* Into pages already mapped: a buffer given back and grown again
	 * would fault once per 4 KiB page (1,024 times). */
	if (faults >= 0)
		cr_assert_lt(faults, 256, "%ld page faults receiving into a kept buffer", faults);
	cr_assert_eq(l.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_gt(pbp__channel_rbuf_cap(b), 4 * MIB);
	/* And a receive that finds nothing gives it back at once. */
	idle_recv(b);
	cr_assert_eq(pbp__channel_rbuf_cap(b), INITIAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A receive whose deadline passes gives the buffer back too. */
T(receive_timing_out_gives_the_buffer_back)
{
	pbp_channel *a, *b;
	pbp_msginfo mi;

	pair(&a, &b);
	move(a, b, LARGE, 0, 22, NULL);
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 20), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_ETIMEDOUT, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp__channel_rbuf_cap(b), INITIAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- held messages ------------------------------------------------------------ */

/* A call that waits while a 12 MiB message arrives holds it (12: the
 * reply must still fit the 16 MiB inbox); once it has been received and
 * the application moves on, its copy is freed. */
#define HELD (12u * MIB)

static void *
answer_thread(void *arg)
{
	pbp_channel *b = arg;
	uint8_t *buf = pattern(HELD, 9);
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbpbytes_Get get = pbpbytes_Get_init_zero;
	pbp_bytes data;
	pbp_msginfo mi;
	int rc;

	pbp_bytes_out(&put.data, &data, buf, HELD);
	rc = pbp_channel_recv(b, &mi); /* the call's request */
	if (rc == 0)
		rc = pbp_channel_send(b, pbpbytes_Type_PUT, &put); /* not the reply */
	if (rc == 0)
		rc = pbp_channel_reply(b, mi.id, pbpbytes_Type_GET, &get);
	free(buf);
	return (void *)(intptr_t)rc;
}

T(held_12_mib_message_is_freed_after_it_was_received)
{
	pbp_channel *a, *b;
	pbpbytes_Get get = pbpbytes_Get_init_zero, reply;
	pbpbytes_Put got = pbpbytes_Put_init_zero;
	pbp_bytes in;
	uint32_t type;
	pthread_t t;

	pair(&a, &b);
	t = pbt_spawn_thread(answer_thread, b);
	cr_assert_eq(pbp_channel_call(a, pbpbytes_Type_GET, &get, pbpbytes_Type_GET, &reply,
	                              pbt_scale(20000)), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq((int)(intptr_t)pbt_join(t), 0, "%s", pbp_channel_errmsg(b));
	pbp_bytes_view(&got.data, &in);
	cr_assert_eq(pbp_channel_recv_msg(a, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_eq(in.size, HELD);
	cr_assert(looks_like(in.data, in.size, 9));
	cr_assert_geq(a->cur.cap, HELD, "received from its held copy");
	idle_recv(a);
	/* Freed.  Whether the pages go back to the system is the
	 * allocator's business: with glibc, once the application has freed
	 * a block of this size it had mmap'd (as answer_thread does, maybe
	 * before the copy was made), blocks up to that size come from the
	 * heap, whose memory returns only from its top. */
	cr_assert_eq(a->cur.cap, 0, "the held copy's %zu bytes are still kept", a->cur.cap);
	cr_assert_null(a->cur.buf);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- resident memory ---------------------------------------------------------- */

/* Over a real pipe pair (the peer on a thread): 32 MiB each way, zero
 * copy and copied, then idle: resident memory within 1 MiB of before. */
T(idle_rss_within_1_mib_of_before_after_32_mib_each_way)
{
	pbp_channel *a, *b;
	size_t before, after;
	long grew;

	if (rss_bytes() == 0 || pbt_valgrind())
		cr_skip_test("no /proc/self/statm, or under valgrind");
#ifdef PBPTEST_ASAN
	cr_skip_test("a sanitizer's allocator keeps freed memory");
#endif
	pair(&a, &b);
	/* Warm up: threads (their stacks stay cached), small frames. */
	move(a, b, 1000, 0, 10, NULL);
	move(b, a, 1000, 1, 11, NULL);
	before = rss_bytes();
	move(a, b, LARGE, 0, 12, NULL);
	move(b, a, LARGE, 0, 13, NULL);
	move(a, b, LARGE, 1, 14, NULL);
	move(b, a, LARGE, 1, 15, NULL);
	idle_recv(a);
	idle_recv(b);
	after = rss_bytes();
	grew = (long)after - (long)before;
	cr_log_info("resident: %zu KiB before, %zu KiB after idle (%+ld KiB)", before / KIB,
	            after / KIB, grew / 1024);
	cr_assert_leq(grew, (long)MIB, "an idle channel kept %ld KiB more than before", grew / 1024);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- gather writes ------------------------------------------------------------- */

/* Frames with spliced payloads (send_raw of 16 KiB or more) and copied
 * ones between them, through a memory transport that takes at most
 * `chunk` bytes per write: writes end inside headers, inside spliced bytes
 * and at every boundary between pieces.  Non-blocking (the second pass),
 * the transport says "full" once inside the third frame, so what follows
 * queues behind its rest (copied: the send returned) and one gather list
 * spans frames.  Every byte arrives once, in order. */
T(spliced_frames_arrive_whole_however_writes_cut_them)
{
	static const size_t chunks[] = { 1, 3, 4093, 16384, 16391, 20011, 65536 };
	static const size_t sizes[] = { 20000, 10, 40000, 17, 16384, 16 * KIB + 1 };
	uint8_t *data = pattern(40000, 40);
	size_t c, i;
	int nb;

	for (c = 0; c < 2 * sizeof chunks / sizeof chunks[0]; c++) {
		pbp_channel_options o = pbt_options();
		pbpipe_Hello h = pbt_good_hello();
		uint8_t hello[128];
		pbt_pipe ab, ba, sink;
		pbt_end ea, eb;
		pbp_channel *a, *b;
		pbp_msginfo mi;
		pbp_error err;
		size_t chunk = chunks[c / 2];
		int rc;

		nb = c % 2;
		pbt_pipe_init(&ab, 0);
		pbt_pipe_init(&ba, 0);
		pbt_pipe_init(&sink, 0);
		pbt_pipe_put(&ba, hello, pbt_hello_frame(hello, sizeof hello, &h));
		ea = (pbt_end){ .in = &ba, .out = &ab, .max_chunk = chunk, .split = nb ? 60013 : 0 };
		cr_assert_eq(pbp__channel_new_io(&a, &pbt_mem_io, &ea, &o, &err), 0, "%s", err.msg);
		cr_assert_eq(pbp_channel_handshake(a), 0, "%s", pbp_channel_errmsg(a));
		cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, nb ? 0 : -1), 0);
		for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
			cr_assert_eq(pbp_channel_send_raw(a, 7, 0, data, sizes[i]), 0, "%s",
			             pbp_channel_errmsg(a));
		for (i = 0; (rc = pbp_channel_flush(a)) == PBP_EAGAIN && i < 10; i++)
			;
		cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(a));
		cr_assert(!nb || ea.eagain_w_done, "chunk %zu: the transport was never full", chunk);
		cr_assert_eq(pbp_channel_close_write(a), 0, "%s", pbp_channel_errmsg(a));
		eb = (pbt_end){ .in = &ab, .out = &sink };
		cr_assert_eq(pbp__channel_new_io(&b, &pbt_mem_io, &eb, &o, &err), 0, "%s", err.msg);
		cr_assert_eq(pbp_channel_handshake(b), 0, "%s", pbp_channel_errmsg(b));
		for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			cr_assert_eq(pbp_channel_recv(b, &mi), 0, "chunk %zu frame %zu: %s", chunk, i,
			             pbp_channel_errmsg(b));
			cr_assert_eq(mi.size, sizes[i], "chunk %zu frame %zu", chunk, i);
			cr_assert(memcmp(mi.payload, data, sizes[i]) == 0, "chunk %zu frame %zu", chunk,
			          i);
		}
		cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF, "%s", pbp_channel_errmsg(b));
		if (chunk >= 16384)
			cr_assert_lt(ea.writes, 24, "chunk %zu: %ld writes", chunk, ea.writes);
		pbp_channel_free(a);
		pbp_channel_free(b);
		pbt_pipe_free(&ab);
		pbt_pipe_free(&ba);
		pbt_pipe_free(&sink);
	}
	free(data);
}

/* ---- the sender's peak ----------------------------------------------------------- */

/* Issue 18, item 4: one blocking send of 64 MiB costs the sender the
 * payload and little more (at most 1.1x the payload), through
 * pbp_bytes_out() and through pbp_channel_send_raw() alike: neither copies
 * the bytes into the write buffer.  The sender is a process forked for it
 * (its peak then starts near its resident memory, and clear_refs restarts
 * it where the kernel allows), the receiver another, over real pipes. */
#define PEAK (64u * MIB)

/* A field of /proc/self/status in KiB, or -1. */
static long
status_kb(const char *key)
{
	char line[256], name[64];
	long v, found = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (found < 0 && fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "%63[^:]: %ld", name, &v) == 2 && strcmp(name, key) == 0)
			found = v;
	fclose(f);
	return found;
}

static pbp_channel *
peak_channel(int rfd, int wfd)
{
	pbp_channel_options o = opts();
	pbp_channel *ch;
	pbp_error err;

	o.max_frame = PEAK + 64 * KIB;
	o.handshake_timeout_ms = pbt_scale(10000);
	if (pbp_channel_from_fds(&ch, rfd, wfd, &o, &err) != 0)
		_exit(2);
	if (pbp_channel_handshake(ch) != 0)
		_exit(3);
	return ch;
}

/* The receiver: the message, its bytes checked, then end of stream. */
static void
peak_receiver(int rfd, int wfd, int raw)
{
	pbp_channel *ch = peak_channel(rfd, wfd);
	pbpbytes_Put got = pbpbytes_Put_init_zero;
	pbp_msginfo mi;
	pbp_bytes in;
	uint32_t type;

	if (raw) {
		if (pbp_channel_recv(ch, &mi) != 0 || mi.size != PEAK ||
		    !looks_like(mi.payload, mi.size, 30))
			_exit(4);
	} else {
		pbp_bytes_view(&got.data, &in);
		if (pbp_channel_recv_msg(ch, &type, &got, sizeof got) != 0 || in.size != PEAK ||
		    !looks_like(in.data, in.size, 30))
			_exit(4);
	}
	_exit(pbp_channel_recv(ch, &mi) == PBP_EOF ? 0 : 5);
}

/* The sender: writes { send's result, peak growth in KiB } to out. */
static void
peak_sender(int rfd, int wfd, int raw, int out)
{
	pbp_channel *ch = peak_channel(rfd, wfd);
	FILE *f = fopen("/proc/self/clear_refs", "w");
	long res[2], base;
	uint8_t *buf;
	size_t i;

	/* "5" restarts the peak at the resident memory now. */
	if (f != NULL)
		(void)(fputs("5", f), fclose(f));
	base = status_kb("VmRSS");
	if ((buf = malloc(PEAK)) == NULL)
		_exit(6);
	for (i = 0; i < PEAK; i++)
		buf[i] = pbt_pattern(30, i);
	if (raw) {
		res[0] = pbp_channel_send_raw(ch, pbpbytes_Type_PUT, 0, buf, PEAK);
	} else {
		pbpbytes_Put put = pbpbytes_Put_init_zero;
		pbp_bytes data;

		pbp_bytes_out(&put.data, &data, buf, PEAK);
		res[0] = pbp_channel_send(ch, pbpbytes_Type_PUT, &put);
	}
	res[1] = status_kb("VmHWM") - base;
	pbt_write_all(out, res, sizeof res);
	pbp_channel_free(ch);
	free(buf);
	_exit(0);
}

static void
peak_check(int raw)
{
	int fds[4], res[2], st;
	long got[2];
	pid_t r, s;

	if (status_kb("VmHWM") < 0 || pbt_valgrind())
		cr_skip_test("no VmHWM in /proc/self/status, or under valgrind");
#ifdef PBPTEST_ASAN
	cr_skip_test("a sanitizer's allocator and shadow memory add to the peak");
#endif
	pbt_pipes(fds);
	cr_assert_eq(pipe(res), 0);
	if ((r = fork()) == 0) {
		close(fds[0]), close(fds[3]), close(res[0]), close(res[1]);
		peak_receiver(fds[2], fds[1], raw);
	}
	if ((s = fork()) == 0) {
		close(fds[1]), close(fds[2]), close(res[0]);
		peak_sender(fds[0], fds[3], raw, res[1]);
	}
	cr_assert(r > 0 && s > 0);
	close(fds[0]), close(fds[1]), close(fds[2]), close(fds[3]), close(res[1]);
	cr_assert_eq(read(res[0], got, sizeof got), (ssize_t)sizeof got, "the sender died");
	close(res[0]);
	cr_assert_eq(waitpid(s, &st, 0), s);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sender status %#x", st);
	cr_assert_eq(waitpid(r, &st, 0), r);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "receiver status %#x", st);
	cr_assert_eq(got[0], 0, "the send failed: %ld", got[0]);
	cr_log_info("%s: the sender's peak grew by %ld KiB for %u KiB (%.3fx)",
	            raw ? "send_raw" : "pbp_bytes_out", got[1], PEAK / KIB,
	            (double)got[1] / (PEAK / KIB));
	cr_assert_leq(got[1], (long)(PEAK / KIB) * 11 / 10,
	              "the sender's peak grew by %ld KiB for a payload of %u KiB (%.2fx)", got[1],
	              PEAK / KIB, (double)got[1] / (PEAK / KIB));
}

T(sender_peak_of_a_64_mib_bytes_out_send_is_at_most_1_1x)
{
	peak_check(0);
}

T(sender_peak_of_a_64_mib_send_raw_is_at_most_1_1x)
{
	peak_check(1);
}
