/*
 * test_io.c: the channel's I/O loops under injected faults (short reads
 * and writes and EAGAIN at every stream offset, a write failure at every
 * offset) through the memory transport, and over real pipes: deadlines,
 * both sides writing large frames at once, and an EINTR storm.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#ifndef _WIN32
#include <signal.h>
#include <time.h>
#include <unistd.h>
#endif

#include <pb_encode.h>

#include "memio.h"
#include "support.h"

#define T(name) Test(io, name, .timeout = 120)

/* ---- memory transport ----------------------------------------------------- */

/* The frames A sends in every injection run. */
static void
send_script(pbp_channel *a, size_t blob)
{
	pbptest_Text t = { "short one" };
	pbptest_Numbers n = { .i64 = -42, .d = 2.5, .list_count = 2, .list = { 7, 8 } };
	pbptest_Empty e = { 0 };
	pbptest_Blob b = { .tag = 9 };
	pbt_blob_src src = { blob, 3 };

	pbt_blob_set_source(&b, &src);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_NUMBERS, &n), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_EMPTY, &e), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_BLOB, &b), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_send_ex(a, pbptest_Type_TEXT, 77, pbptest_Text_fields, &t), 0);
}

/* Receives and checks what send_script sent. */
static void
recv_script(pbp_channel *b, size_t blob)
{
	pbt_blob_sink sink = { .seed = 3 };
	pbptest_Blob in;
	pbp_msginfo mi;
	uint32_t type;
	pbt_any u;

	cr_assert_eq(pbp_channel_recv_msg(b, &type, &u, sizeof u), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_str_eq(u.text.text, "short one");
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &u, sizeof u), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(u.numbers.i64, -42);
	cr_assert_eq(u.numbers.list[1], 8);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &u, sizeof u), 0);
	cr_assert_eq(type, pbptest_Type_EMPTY);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
	memset(&in, 0, sizeof in);
	pbt_blob_set_sink(&in, &sink);
	cr_assert_eq(pbp_channel_decode(b, pbptest_Blob_fields, &in), 0);
	cr_assert_eq(sink.got, blob);
	cr_assert_eq(sink.mismatch, 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(mi.id, 77);
}

/* A: handshakes against a scripted Hello, writes into ab.  B: reads ab,
 * writes nowhere that matters. */
struct rig {
	pbt_pipe ab, ba, sink;
	pbt_end ea, eb;
	pbp_channel *a, *b;
};

static void
rig_a(struct rig *r)
{
	pbp_channel_options o = pbt_options();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t hello[128];
	size_t n = pbt_hello_frame(hello, sizeof hello, &h);
	pbp_error err;

	pbt_pipe_init(&r->ab, 0);
	pbt_pipe_init(&r->ba, 0);
	pbt_pipe_init(&r->sink, 0);
	pbt_pipe_put(&r->ba, hello, n);
	r->ea.in = &r->ba;
	r->ea.out = &r->ab;
	cr_assert_eq(pbp__channel_new_io(&r->a, &pbt_mem_io, &r->ea, &o, &err), 0);
	cr_assert_eq(pbp_channel_handshake(r->a), 0, "%s", pbp_channel_errmsg(r->a));
}

static void
rig_b(struct rig *r)
{
	pbp_channel_options o = pbt_options();
	pbp_error err;

	r->eb.in = &r->ab;
	r->eb.out = &r->sink;
	cr_assert_eq(pbp__channel_new_io(&r->b, &pbt_mem_io, &r->eb, &o, &err), 0);
	cr_assert_eq(pbp_channel_handshake(r->b), 0, "%s", pbp_channel_errmsg(r->b));
}

static void
rig_free(struct rig *r)
{
	pbp_channel_free(r->a);
	pbp_channel_free(r->b);
	pbt_pipe_free(&r->ab);
	pbt_pipe_free(&r->ba);
	pbt_pipe_free(&r->sink);
}

/* Length of the whole A -> B stream, measured once without faults. */
static size_t
stream_length(size_t blob)
{
	struct rig r = { 0 };
	size_t n;

	rig_a(&r);
	send_script(r.a, blob);
	n = r.ab.len;
	rig_free(&r);
	return n;
}

T(short_io_and_eagain_at_every_offset)
{
	const size_t blob = 600;
	size_t len = stream_length(blob), k;

	cr_assert_gt(len, blob);
	for (k = 1; k < len; k++) {
		struct rig r = { 0 };
		pbp_msginfo mi;

		/* Writer and reader both split at offset k, with an EAGAIN
		 * there, and move at most 7 bytes per call after it. */
		r.ea.split = k;
		r.eb.split = k;
		rig_a(&r);
		send_script(r.a, blob);
		cr_assert_eq(pbp_channel_close_write(r.a), 0);
		r.eb.max_chunk = 7;
		rig_b(&r);
		recv_script(r.b, blob);
		cr_assert_eq(pbp_channel_recv(r.b, &mi), PBP_EOF, "split %zu", k);
		cr_assert(r.ea.eagain_w_done && r.eb.eagain_r_done, "split %zu not reached", k);
		rig_free(&r);
	}
}

T(one_byte_at_a_time_both_ways)
{
	struct rig r = { 0 };
	pbp_msginfo mi;

	r.ea.max_chunk = 1;
	r.eb.max_chunk = 1;
	rig_a(&r);
	send_script(r.a, 100000);
	cr_assert_eq(pbp_channel_close_write(r.a), 0);
	rig_b(&r);
	recv_script(r.b, 100000);
	cr_assert_eq(pbp_channel_recv(r.b, &mi), PBP_EOF);
	cr_assert_gt(r.eb.reads, 100000, "reads were not 1 byte each");
	rig_free(&r);
}

T(write_failure_at_every_offset_loses_nothing_before_it)
{
	pbptest_Text pt = { "short one" };
	size_t hello_len, frame_len, k;
	struct rig probe = { 0 };

	rig_a(&probe);
	hello_len = probe.ab.len;
	cr_assert_eq(pbp_channel_send(probe.a, pbptest_Type_TEXT, &pt), 0);
	frame_len = probe.ab.len - hello_len;
	rig_free(&probe);
	for (k = hello_len + 1; k < hello_len + 5 * frame_len; k++) {
		struct rig r = { 0 };
		pbptest_Text t = { "short one" };
		pbp_msginfo mi;
		int rc, got = 0;

		r.ea.fail_at = k;
		rig_a(&r);
		/* Sends succeed until one meets the failure, which is sticky. */
		while ((rc = pbp_channel_send(r.a, pbptest_Type_TEXT, &t)) == 0)
			;
		cr_assert_eq(rc, PBP_ESYS, "offset %zu: %s", k, pbp_channel_errmsg(r.a));
		cr_assert_eq(pbp_channel_error(r.a)->sys_errno, EIO);
		cr_assert_eq(pbp_channel_send(r.a, pbptest_Type_TEXT, &t), PBP_ESYS);
		cr_assert_eq(r.ab.len, k);
		r.ab.wclosed = 1;
		/* Every whole frame written before the failure arrives; the
		 * stream then ends cleanly or truncated, as the offset says. */
		rig_b(&r);
		while ((rc = pbp_channel_recv(r.b, &mi)) == 0)
			got++;
		cr_assert(rc == PBP_EOF || rc == PBP_ETRUNC, "offset %zu: %d", k, rc);
		cr_assert_eq(got, (int)((k - hello_len) / frame_len), "offset %zu", k);
		cr_assert_eq(rc == PBP_EOF, (k - hello_len) % frame_len == 0, "offset %zu", k);
		rig_free(&r);
	}
}

T(send_deadline_keeps_the_frame_queued)
{
	struct rig r = { 0 };
	pbptest_Text t = { "queued" };
	pbp_msginfo mi;
	int sent = 0, rc, got = 0;

	rig_a(&r);
	r.ab.capacity = 100; /* a small pipe nobody drains yet */
	while ((rc = pbp_channel_send(r.a, pbptest_Type_TEXT, &t)) == 0)
		sent++;
	cr_assert_eq(rc, PBP_ETIMEDOUT);
	cr_assert_gt(pbp_channel_pending(r.a), 0);
	cr_assert_eq(pbp_channel_flush(r.a), PBP_ETIMEDOUT, "still full");
	/* The reader takes everything; the queued frame then goes out once. */
	r.ab.capacity = 0;
	cr_assert_eq(pbp_channel_flush(r.a), 0);
	cr_assert_eq(pbp_channel_pending(r.a), 0);
	cr_assert_eq(pbp_channel_close_write(r.a), 0);
	rig_b(&r);
	while ((rc = pbp_channel_recv(r.b, &mi)) == 0)
		got++;
	cr_assert_eq(rc, PBP_EOF);
	cr_assert_eq(got, sent + 1, "the timed-out frame must arrive exactly once");
	rig_free(&r);
}

T(recv_deadline_is_not_sticky)
{
	struct rig r = { 0 };
	pbptest_Text t = { "late" };
	uint32_t type;
	pbt_any u;

	rig_a(&r);
	send_script(r.a, 10);
	rig_b(&r);
	recv_script(r.b, 10);
	/* Nothing more: a non-blocking receive (deadline 0) would block. */
	cr_assert_eq(pbp_channel_set_timeout(r.b, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv_msg(r.b, &type, &u, sizeof u), PBP_EAGAIN);
	/* Half a frame: still would block, with the half kept. */
	cr_assert_eq(pbp_channel_send(r.a, pbptest_Type_TEXT, &t), 0);
	r.ab.len -= 5;
	cr_assert_eq(pbp_channel_recv_msg(r.b, &type, &u, sizeof u), PBP_EAGAIN);
	cr_assert_neq(strstr(pbp_channel_errmsg(r.b), "bytes buffered"), NULL, "%s",
	              pbp_channel_errmsg(r.b));
	r.ab.len += 5;
	cr_assert_eq(pbp_channel_recv_msg(r.b, &type, &u, sizeof u), 0, "%s", pbp_channel_errmsg(r.b));
	cr_assert_str_eq(u.text.text, "late");
	rig_free(&r);
}

/* ---- real pipes ------------------------------------------------------------ */

/* POSIX pipes, threads and signals: not in the Windows build (tests/win/),
 * which runs the memory-transport tests above. */
#ifndef _WIN32

struct big_job {
	pbp_channel *ch;
	size_t size;
	uint32_t seed;
	int send_rc, recv_rc;
	size_t got;
	int mismatch;
};

static void
send_then_recv(struct big_job *j)
{
	pbt_blob_src src = { j->size, j->seed };
	pbt_blob_sink sink = { .seed = j->seed ^ 1 };
	pbptest_Blob b = { .tag = 1 }, in;
	pbp_msginfo mi;

	pbt_blob_set_source(&b, &src);
	j->send_rc = pbp_channel_send(j->ch, pbptest_Type_BLOB, &b);
	j->recv_rc = pbp_channel_recv(j->ch, &mi);
	if (j->recv_rc == 0) {
		memset(&in, 0, sizeof in);
		pbt_blob_set_sink(&in, &sink);
		j->recv_rc = pbp_channel_decode(j->ch, pbptest_Blob_fields, &in);
		j->got = sink.got;
		j->mismatch = sink.mismatch;
	}
}

static void *
send_then_recv_thread(void *arg)
{
	send_then_recv(arg);
	return NULL;
}

T(both_sides_sending_large_frames_at_once)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;
	struct big_job ja, jb;
	pthread_t t;

	o.max_frame = 16u * 1024 * 1024;
	pbt_pair(&a, &b, &o, &o);
	/* Each frame is 128 times the pipe buffer; without draining while
	 * writing, both sends would block forever. */
	ja = (struct big_job){ .ch = a, .size = 8u * 1024 * 1024, .seed = 10 };
	jb = (struct big_job){ .ch = b, .size = 8u * 1024 * 1024, .seed = 11 };
	t = pbt_spawn_thread(send_then_recv_thread, &jb);
	send_then_recv(&ja);
	pbt_join(t);
	cr_assert_eq(ja.send_rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(jb.send_rc, 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(ja.recv_rc, 0);
	cr_assert_eq(jb.recv_rc, 0);
	cr_assert_eq(ja.got, 8u * 1024 * 1024);
	cr_assert_eq(jb.got, 8u * 1024 * 1024);
	cr_assert_eq(ja.mismatch + jb.mismatch, 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(receive_deadline_over_a_pipe)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "now" };
	pbp_msginfo mi;
	int64_t t0, dt;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 150), 0);
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_ETIMEDOUT);
	dt = pbp__now_ms() - t0;
	cr_assert(dt >= 140 && dt < 1000, "returned after %lld ms", (long long)dt);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "a timeout is not sticky");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

static atomic_long storm_signals;
static atomic_int storm_stop;

static void
on_storm(int sig)
{
	(void)sig;
	atomic_fetch_add(&storm_signals, 1);
}

struct storm {
	pthread_t targets[2];
};

static void *
storm_thread(void *arg)
{
	struct storm *s = arg;

	while (!atomic_load(&storm_stop)) {
		int64_t until;
		struct timespec ts;

		pthread_kill(s->targets[0], SIGUSR1);
		pthread_kill(s->targets[1], SIGUSR1);
		/* Spin about 3 microseconds: usleep() would sleep for 50. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		until = ts.tv_sec * 1000000000ll + ts.tv_nsec + 3000;
		do
			clock_gettime(CLOCK_MONOTONIC, &ts);
		while (ts.tv_sec * 1000000000ll + ts.tv_nsec < until);
	}
	return NULL;
}

struct streamer {
	pbp_channel *ch;
	int frames;
	int rc;
};

static void *
blob_sender(void *arg)
{
	struct streamer *s = arg;
	int i;

	/* At least s->frames frames, and on until the storm has delivered
	 * 10000 signals, so a busy machine cannot make the test vacuous. */
	for (i = 0; s->rc == 0 && (i < s->frames || (atomic_load(&storm_signals) < 10000 &&
	                                              i < 20 * s->frames));
	     i++) {
		pbt_blob_src src = { 1024 * 1024, (uint32_t)i };
		pbptest_Blob b = { .tag = (uint32_t)i };

		pbt_blob_set_source(&b, &src);
		s->rc = pbp_channel_send(s->ch, pbptest_Type_BLOB, &b);
	}
	if (s->rc == 0)
		s->rc = pbp_channel_close_write(s->ch);
	return NULL;
}

T(eintr_storm_loses_and_corrupts_nothing)
{
	struct sigaction sa;
	struct streamer s;
	struct storm st;
	pbp_channel *a, *b;
	pthread_t ts, tstorm;
	pbp_msginfo mi;
	int i, rc;

	/* A handler without SA_RESTART: every blocking call it interrupts
	 * fails with EINTR. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_storm;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	pbt_pair(&a, &b, NULL, NULL);
	s = (struct streamer){ a, 100, 0 };
	ts = pbt_spawn_thread(blob_sender, &s);
	st.targets[0] = pthread_self();
	st.targets[1] = ts;
	tstorm = pbt_spawn_thread(storm_thread, &st);
	for (i = 0; (rc = pbp_channel_recv(b, &mi)) == 0; i++) {
		pbt_blob_sink sink = { .seed = (uint32_t)i };
		pbptest_Blob in;

		memset(&in, 0, sizeof in);
		pbt_blob_set_sink(&in, &sink);
		cr_assert_eq(pbp_channel_decode(b, pbptest_Blob_fields, &in), 0);
		cr_assert_eq(in.tag, (uint32_t)i, "frame %d out of order", i);
		cr_assert_eq(sink.got, 1024 * 1024);
		cr_assert_eq(sink.mismatch, 0, "frame %d corrupted", i);
	}
	atomic_store(&storm_stop, 1);
	pbt_join(tstorm);
	pbt_join(ts);
	cr_assert_eq(rc, PBP_EOF, "%s", pbp_channel_errmsg(b));
	cr_assert_geq(i, 100, "at least 100 MiB in 1 MiB frames");
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_geq(atomic_load(&storm_signals), 10000, "the storm was too weak");
	cr_log_info("EINTR storm: %ld signals during %d MiB", atomic_load(&storm_signals), i);
	pbp_channel_free(a);
	pbp_channel_free(b);
}
#endif /* !_WIN32 */
