/*
 * test_session.c: what a channel does with frames the application does
 * not see (Sync, SyncAck, replies), its inbox, its deadlines against a
 * hostile peer, and its end: each case a defect found by attacking or
 * using pbpipe (issues 12 and 13), over real pipes.  The peer is either a
 * second channel on a thread or a raw peer that writes frames by hand and
 * reads what the channel sends.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define T(name) Test(session, name, .timeout = 60)

/* ---- a raw peer ----------------------------------------------------------- */

typedef struct raw {
	pbp_channel *ch; /* the channel under test */
	int wfd;         /* raw peer -> channel */
	int rfd;         /* channel -> raw peer */
	pbp__reader rd;  /* what the channel sent */
} raw;

/* A channel under test against a raw peer, handshaken. */
static void
raw_open(raw *r, const pbp_channel_options *o)
{
	pbp_channel_options def = pbt_options();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t hello[256];
	size_t n;
	int fds[4];
	const uint8_t *body;
	size_t len;

	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(&r->ch, fds[0], fds[3], o ? o : &def, NULL), 0);
	r->wfd = fds[1];
	r->rfd = fds[2];
	cr_assert_eq(fcntl(r->rfd, F_SETFL, O_NONBLOCK), 0);
	n = pbt_hello_frame(hello, sizeof hello, &h);
	pbt_write_all(r->wfd, hello, n);
	cr_assert_eq(pbp_channel_handshake(r->ch), 0, "%s", pbp_channel_errmsg(r->ch));
	cr_assert_eq(pbp__reader_init(&r->rd, PBP_DEFAULT_MAX_FRAME, 4096), 0);
	/* The channel's Hello. */
	for (;;) {
		uint8_t buf[4096];
		ssize_t k = read(r->rfd, buf, sizeof buf);

		if (k > 0)
			cr_assert_eq(pbp__reader_feed(&r->rd, buf, (size_t)k), 0);
		if (pbp__reader_next(&r->rd, &body, &len) == 1)
			break;
	}
}

static void
raw_close(raw *r)
{
	/* The raw peer may have stopped reading: do not linger. */
	if (pbp_channel_close(r->ch, 0, NULL) != 0)
		cr_log_info("queued output was dropped at close");
	if (r->wfd >= 0)
		close(r->wfd);
	close(r->rfd);
	pbp__reader_free(&r->rd);
}

/* The next frame the channel sent, within timeout_ms: 1, or 0 if none. */
static int
raw_next(raw *r, pbp__frame *f, int timeout_ms)
{
	int64_t deadline = pbp__now_ms() + timeout_ms;
	const uint8_t *body;
	size_t len;

	for (;;) {
		struct pollfd p = { .fd = r->rfd, .events = POLLIN };
		uint8_t buf[65536];
		int64_t left = deadline - pbp__now_ms();
		ssize_t k;
		int rc = pbp__reader_next(&r->rd, &body, &len);

		if (rc == 1) {
			cr_assert_eq(pbp__frame_decode(body, len, f, NULL), 0);
			return 1;
		}
		cr_assert_eq(rc, 0, "the channel's stream: %d", rc);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return 0;
		k = read(r->rfd, buf, sizeof buf);
		if (k <= 0)
			return 0;
		cr_assert_eq(pbp__reader_feed(&r->rd, buf, (size_t)k), 0);
	}
}

/* Frames written by hand. */
static size_t
frame_ctrl(uint8_t *out, int kind, uint64_t id)
{
	pbpipe_Envelope env;
	size_t n;

	memset(&env, 0, sizeof env);
	if (kind == PBP__FRAME_SYNC) {
		env.which_body = pbpipe_Envelope_sync_tag;
		env.body.sync.id = id;
	} else {
		env.which_body = pbpipe_Envelope_sync_ack_tag;
		env.body.sync_ack.id = id;
	}
	cr_assert_eq(pbp__control_encode(out, 64, &env, &n, NULL), 0);
	return n;
}

static size_t
frame_msg(uint8_t *out, uint32_t type, uint64_t id, uint64_t reply_to, const void *payload,
          size_t n)
{
	pbp__reply rp = { reply_to, 0, NULL, 0 };
	uint64_t body;
	size_t h = pbp__message_header_ex(out, type, id, &rp, n, &body);

	if (n > 0)
		memcpy(out + h, payload, n);
	return h + n;
}

/* A Text message's payload: field 1, the string. */
static size_t
text_payload(uint8_t *out, const char *s)
{
	size_t n = strlen(s);

	out[0] = 0x0a;
	out[1] = (uint8_t)n;
	memcpy(out + 2, s, n);
	return n + 2;
}

static void
raw_send_text(raw *r, uint64_t id, uint64_t reply_to, const char *s)
{
	uint8_t p[200], f[400];

	pbt_write_all(r->wfd, f, frame_msg(f, pbptest_Type_TEXT, id, reply_to, p, text_payload(p, s)));
}

/* ---- issue 12 ----------------------------------------------------------------- */

/* 12.3: coalesced sends must not vanish when the channel is freed. */
T(free_writes_coalesced_output)
{
	pbp_channel_options oa = pbt_options();
	pbp_channel *a, *b;
	pbp_msginfo mi;
	int i, n = 0, rc;

	oa.flags = PBP_CHANNEL_COALESCE;
	pbt_pair(&a, &b, &oa, NULL);
	for (i = 0; i < 3; i++)
		cr_assert_eq(pbp_channel_send_raw(a, pbptest_Type_EMPTY, 0, "", 0), 0);
	cr_assert_gt(pbp_channel_pending(a), 0);
	pbp_channel_free(a);
	while ((rc = pbp_channel_recv(b, &mi)) == 0)
		n++;
	cr_assert_eq(rc, PBP_EOF, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(n, 3, "the peer received %d of 3 messages", n);
	pbp_channel_free(b);
}

/* 12.3: pbp_channel_close() says what it could not write. */
T(close_reports_output_it_could_not_write)
{
	pbp_channel_options o = pbt_options();
	pbptest_Text t;
	pbp_error err;
	raw r;
	int rc;

	o.send_timeout_ms = 0; /* queue what the pipe does not take */
	o.pipe_size = 4096;
	raw_open(&r, &o);
	memset(&t, 0, sizeof t);
	memset(t.text, 'x', sizeof t.text - 1);
	while (pbp_channel_pending(r.ch) == 0)
		cr_assert_eq(pbp_channel_send(r.ch, pbptest_Type_TEXT, &t), 0);
	rc = pbp_channel_close(r.ch, 100, &err);
	r.ch = NULL;
	cr_assert_eq(rc, PBP_ETIMEDOUT, "close returned %d (%s)", rc, err.msg);
	cr_assert_neq(strstr(err.msg, "not written"), NULL, "%s", err.msg);
	raw_close(&r);
}

/* 12.3: and 0 when everything went out. */
T(close_returns_zero_once_everything_is_written)
{
	pbp_channel_options oa = pbt_options();
	pbp_channel *a, *b;
	pbp_msginfo mi;
	pbp_error err;

	oa.flags = PBP_CHANNEL_COALESCE;
	pbt_pair(&a, &b, &oa, NULL);
	cr_assert_eq(pbp_channel_send_raw(a, pbptest_Type_EMPTY, 0, "", 0), 0);
	cr_assert_eq(pbp_channel_close(a, 1000, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	pbp_channel_free(b);
}

/* 12.8: 0 in the options means "do not wait", as in set_timeout. */
T(timeout_zero_in_options_does_not_wait)
{
	pbp_channel_options o = pbt_options();
	pbp_msginfo mi;
	int64_t t0;
	raw r;

	o.recv_timeout_ms = 0;
	raw_open(&r, &o);
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_channel_recv(r.ch, &mi), PBP_EAGAIN, "%s", pbp_channel_errmsg(r.ch));
	cr_assert_lt(pbp__now_ms() - t0, 1000);
	raw_close(&r);
}

T(default_options_have_no_send_or_receive_deadline)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	cr_assert_eq(o.send_timeout_ms, PBP_NO_DEADLINE);
	cr_assert_eq(o.recv_timeout_ms, PBP_NO_DEADLINE);
	cr_assert_eq(o.handshake_timeout_ms, PBP_DEFAULT_HANDSHAKE_TIMEOUT_MS);
}

/* 12.5: the peer dies with a call outstanding: not a clean end. */
T(stream_ending_with_a_call_outstanding_is_unanswered)
{
	pbptest_Numbers q = { .i64 = 1 }, a;
	pbp_report rep;
	uint64_t id;
	raw r;
	int rc;

	raw_open(&r, NULL);
	cr_assert_eq(pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &id), 0);
	close(r.wfd); /* the peer is gone */
	r.wfd = -1;
	rc = pbp_channel_call_finish(r.ch, id, pbptest_Type_NUMBERS, &a, 2000);
	cr_assert_eq(rc, PBP_EUNANSWERED, "call_finish returned %d (%s)", rc,
	             pbp_channel_errmsg(r.ch));
	cr_assert_neq(strstr(pbp_channel_errmsg(r.ch), "1 call went unanswered"), NULL, "%s",
	              pbp_channel_errmsg(r.ch));
	cr_assert_eq(pbp_channel_report(r.ch, &rep), 0);
	cr_assert_eq(rep.end, PBP_END_UNANSWERED);
	raw_close(&r);
}

/* 12.5: a helper killed while a call waits: the report leads with the
 * unanswered call, then says how the helper died. */
T(helper_killed_during_a_call_reports_the_unanswered_call)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "echo", NULL };
	pbptest_Numbers q = { .i64 = 1 }, a;
	static pbp_report rep;
	char line[600];
	pbp_exit_status st;
	pbp_child *c;
	uint64_t id;
	int rc;

	so.channel = &co;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, NULL), 0);
	cr_assert_eq(pbp_channel_call_start(pbp_child_channel(c), pbptest_Type_NUMBERS, &q, &id), 0);
	cr_assert_eq(pbp_child_kill(c, SIGKILL), 0);
	cr_assert_eq(pbp_child_wait(c, pbt_scale(5000), &st), 0);
	do /* the echo of the request, then the end */
		rc = pbp_channel_call_finish(pbp_child_channel(c), id, pbptest_Type_NUMBERS, &a, 5000);
	while (rc == 0);
	cr_assert_eq(rc, PBP_EUNANSWERED, "call_finish returned %d (%s)", rc,
	             pbp_channel_errmsg(pbp_child_channel(c)));
	cr_assert_eq(pbp_child_report(c, &rep), 0);
	pbp_report_str(&rep, line, sizeof line);
	cr_assert_eq(strncmp(line, "stream ended with calls unanswered", 34), 0, "%s", line);
	cr_assert_neq(strstr(line, "1 call went unanswered"), NULL, "%s", line);
	cr_assert_neq(strstr(line, "killed by signal 9"), NULL, "%s", line);
	pbp_child_free(c);
}

/* 12.5: a report says how the channel is now, not how it once was. */
T(report_forgets_a_deadline_once_a_call_succeeds)
{
	pbptest_Numbers q = { .i64 = 1 }, a;
	pbp__frame f;
	pbp_report rep;
	uint8_t p[16], fr[64];
	raw r;

	raw_open(&r, NULL);
	cr_assert_eq(pbp_channel_call(r.ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &a, 50),
	             PBP_ETIMEDOUT);
	cr_assert_eq(pbp_channel_report(r.ch, &rep), 0);
	cr_assert_eq(rep.end, PBP_END_TIMEOUT);
	/* The next call is answered. */
	cr_assert_eq(raw_next(&r, &f, 1000), 1); /* the first request */
	p[0] = 0x10; /* i64 = 2 */
	p[1] = 2;
	cr_assert_eq(pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &f.id), 0);
	pbt_write_all(r.wfd, fr, frame_msg(fr, pbptest_Type_NUMBERS, 0, f.id, p, 2));
	cr_assert_eq(pbp_channel_call_finish(r.ch, f.id, pbptest_Type_NUMBERS, &a, 2000), 0, "%s",
	             pbp_channel_errmsg(r.ch));
	cr_assert_eq(a.i64, 2);
	cr_assert_eq(pbp_channel_report(r.ch, &rep), 0);
	cr_assert_eq(rep.end, PBP_END_OPEN, "report end %d: %s", rep.end, rep.message);
	raw_close(&r);
}

/* 12.4, then issue 15: serve() used to refuse callback fields (by name,
 * rather than run the handler without the data); now it receives a bytes
 * callback field as a view the handler reads with pbp_bytes_of(). */
static atomic_size_t blob_handler_got;
static atomic_int blob_handler_ok;

static int
blob_handler(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	const pbp_bytes *d = pbp_bytes_of(&((const pbptest_Blob *)req)->data);
	size_t i;
	int ok = d != NULL;

	(void)resp;
	(void)e;
	(void)payload;
	for (i = 0; ok && i < d->size; i++)
		ok = ((const uint8_t *)d->data)[i] == pbt_pattern(7, i);
	atomic_store(&blob_handler_got, d ? d->size : 0);
	atomic_store(&blob_handler_ok, ok);
	return 0;
}

static void *
serve_blobs(void *arg)
{
	static const pbp_handler h[] = {
		{ pbptest_Type_BLOB, pbptest_Type_EMPTY, blob_handler, NULL },
	};

	return (void *)(intptr_t)pbp_channel_serve(arg, h, 1);
}

T(serve_receives_a_request_with_a_bytes_callback_field)
{
	pbp_channel *a, *b;
	pbptest_Blob q;
	pbptest_Empty e;
	pbt_blob_src src = { 1000, 7 };
	pthread_t t;
	int rc;

	pbt_pair(&a, &b, NULL, NULL);
	t = pbt_spawn_thread(serve_blobs, b);
	memset(&q, 0, sizeof q);
	q.tag = 1;
	pbt_blob_set_source(&q, &src);
	rc = pbp_channel_call(a, pbptest_Type_BLOB, &q, pbptest_Type_EMPTY, &e, 5000);
	cr_assert_eq(rc, 0, "call returned %d (%s)", rc, pbp_channel_errmsg(a));
	cr_assert_eq(atomic_load(&blob_handler_got), 1000);
	cr_assert(atomic_load(&blob_handler_ok), "the handler saw other bytes");
	pbp_channel_free(a);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(b);
}

/* ---- issue 13 ----------------------------------------------------------------- */

/* 13.2: a barrier (or a call) may move the receive buffer: the message
 * received before it can no longer be decoded, and says so. */
T(decode_after_a_barrier_is_einval_not_a_stale_read)
{
	pbp__frame f;
	pbp_msginfo mi;
	pbptest_Text t;
	uint8_t fr[64];
	raw r;
	int rc;

	raw_open(&r, NULL);
	raw_send_text(&r, 0, 0, "hello");
	cr_assert_eq(pbp_channel_recv(r.ch, &mi), 0);
	/* The peer answers the barrier. */
	pbt_write_all(r.wfd, fr, frame_ctrl(fr, PBP__FRAME_SYNC_ACK, 1));
	rc = pbp_channel_sync(r.ch, 2000);
	cr_assert_eq(rc, 0, "sync returned %d (%s)", rc, pbp_channel_errmsg(r.ch));
	cr_assert_eq(raw_next(&r, &f, 1000), 1);
	cr_assert_eq(pbp_channel_decode(r.ch, pbptest_Text_fields, &t), PBP_EINVAL);
	raw_close(&r);
}

/* 13.5: a peer that floods Sync and never reads cannot hold a receive
 * past its deadline. */
struct flood {
	int fd;
	int kind;
	atomic_int stop;
};

static void *
flood_thread(void *arg)
{
	struct flood *fl = arg;
	enum { N = 8192 };
	uint8_t one[64], *buf = malloc(64 * N);
	size_t n = frame_ctrl(one, fl->kind, 5), i;

	cr_assert(buf != NULL);
	for (i = 0; i < N; i++)
		memcpy(buf + i * n, one, n);
	/* 8192 frames at a time, as fast as the pipe takes them: the channel
	 * always has more to read. */
	cr_assert_eq(fcntl(fl->fd, F_SETFL, O_NONBLOCK), 0);
	for (i = 0; !atomic_load(&fl->stop);) {
		struct pollfd p = { .fd = fl->fd, .events = POLLOUT };
		ssize_t k = write(fl->fd, buf + i, n * N - i);

		if (k < 0 && errno != EAGAIN)
			break;
		if (k > 0)
			i = (i + (size_t)k) % (n * N); /* whole frames, in order */
		(void)poll(&p, 1, 5);
	}
	free(buf);
	return NULL;
}

static void
flood_case(int kind, int pipe_size)
{
	pbp_channel_options o = pbt_options();
	struct flood fl;
	pbp_msginfo mi;
	pthread_t t;
	int64_t t0, took;
	raw r;
	int rc;

	o.recv_timeout_ms = 300;
	o.pipe_size = pipe_size;
	raw_open(&r, &o);
	fl.fd = r.wfd;
	fl.kind = kind;
	atomic_init(&fl.stop, 0);
	t = pbt_spawn_thread(flood_thread, &fl);
	t0 = pbp__now_ms();
	rc = pbp_channel_recv(r.ch, &mi);
	took = pbp__now_ms() - t0;
	atomic_store(&fl.stop, 1);
	pbt_join(t);
	cr_assert_eq(rc, PBP_ETIMEDOUT, "recv returned %d (%s)", rc, pbp_channel_errmsg(r.ch));
	cr_assert_lt(took, pbt_scale(1500), "a 300 ms receive returned after %lld ms",
	             (long long)took);
	raw_close(&r);
}

T(sync_flood_from_a_peer_that_never_reads_keeps_the_deadline)
{
	flood_case(PBP__FRAME_SYNC, 4096);
}

/* 13.6 */
T(sync_ack_flood_keeps_the_deadline)
{
	flood_case(PBP__FRAME_SYNC_ACK, 1024 * 1024);
}

/* 13.9: a Sync flood does not grow the queue of a non-blocking sender:
 * one SyncAck at most is owed. */
T(sync_flood_owes_one_answer_at_most)
{
	pbp_channel_options o = pbt_options();
	uint8_t one[64], buf[64 * 500];
	pbp_msginfo mi;
	size_t n = frame_ctrl(one, PBP__FRAME_SYNC, 9), i, k;
	raw r;

	o.send_timeout_ms = 0;
	o.recv_timeout_ms = 0;
	o.pipe_size = 4096;
	raw_open(&r, &o);
	for (i = 0; i < 500; i++)
		memcpy(buf + i * n, one, n);
	cr_assert_eq(fcntl(r.wfd, F_SETFL, O_NONBLOCK), 0);
	for (i = 0, k = 0; k < 4000; k++) {
		ssize_t w = write(r.wfd, buf + i, n * 500 - i);

		if (w > 0)
			i = (i + (size_t)w) % (n * 500); /* whole frames, in order */
		while (pbp_channel_recv(r.ch, &mi) == 0)
			;
	}
	cr_assert_leq(pbp_channel_pending(r.ch), 64, "%zu bytes queued",
	              pbp_channel_pending(r.ch));
	raw_close(&r);
}

/* 13.7 and 13.10: while a call waits, the peer sends more than the inbox
 * holds: the call says PBP_ELIMIT, and no message is lost. */
T(inbox_is_bounded_in_bytes_and_loses_nothing)
{
	pbptest_Numbers q = { .i64 = 1 }, a;
	pbp_channel_options o = pbt_options();
	static uint8_t payload[1 << 20], fr[(1 << 20) + 64];
	pbp_msginfo mi;
	uint64_t id;
	int i, n = 0, rc, sent = 40;
	size_t len;
	pid_t pid;
	raw r;

	o.recv_timeout_ms = 2000;
	raw_open(&r, &o);
	cr_assert_eq(pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &id), 0);
	memset(payload, 'z', sizeof payload);
	len = frame_msg(fr, pbptest_Type_BLOB, 0, 0, payload, sizeof payload);
	/* The writes block until the channel reads: in another process,
	 * which must _exit(). */
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		for (i = 0; i < sent; i++)
			pbt_write_all(r.wfd, fr, len);
		_exit(0);
	}
	rc = pbp_channel_call_finish(r.ch, id, pbptest_Type_NUMBERS, &a, 10000);
	cr_assert_eq(rc, PBP_ELIMIT, "call_finish returned %d (%s)", rc, pbp_channel_errmsg(r.ch));
	while (n < sent && (rc = pbp_channel_recv(r.ch, &mi)) == 0) {
		cr_assert_eq(mi.size, sizeof payload);
		n++;
	}
	cr_assert_eq(n, sent, "received %d of %d (last rc %d: %s)", n, sent, rc,
	             pbp_channel_errmsg(r.ch));
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	raw_close(&r);
}

/* 13.10: the 4097th message is not consumed and dropped. */
T(held_count_limit_loses_nothing)
{
	pbptest_Numbers q = { .i64 = 1 }, a;
	static uint8_t buf[5000 * 16];
	pbp_msginfo mi;
	uint64_t id;
	size_t len = 0;
	int i, n = 0, rc;
	raw r;
	pid_t pid;

	raw_open(&r, NULL);
	cr_assert_eq(pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &id), 0);
	for (i = 0; i < 5000; i++) {
		uint8_t p[4] = { 0x10, (uint8_t)(i & 0x7f) };

		len += frame_msg(buf + len, pbptest_Type_NUMBERS, (uint64_t)i + 1, 0, p, 2);
	}
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		pbt_write_all(r.wfd, buf, len);
		_exit(0);
	}
	rc = pbp_channel_call_finish(r.ch, id, pbptest_Type_NUMBERS, &a, 10000);
	cr_assert_eq(rc, PBP_ELIMIT, "call_finish returned %d (%s)", rc, pbp_channel_errmsg(r.ch));
	cr_assert_eq(pbp_channel_set_timeout(r.ch, PBP_TIMEOUT_RECV, 5000), 0);
	while (n < 5000 && (rc = pbp_channel_recv(r.ch, &mi)) == 0) {
		cr_assert_eq(mi.id, (uint64_t)n + 1, "message %d has id %llu", n,
		             (unsigned long long)mi.id);
		n++;
	}
	cr_assert_eq(n, 5000, "received %d of 5000 (%s)", n, pbp_channel_errmsg(r.ch));
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	raw_close(&r);
}

/* 13.8: cancelled calls give their slot back at once. */
T(cancelled_calls_free_their_slots)
{
	pbptest_Numbers q = { .i64 = 1 };
	pbp_channel_options o = pbt_options();
	uint64_t id;
	raw r;
	int i;

	o.send_timeout_ms = 0; /* nobody reads the requests */
	raw_open(&r, &o);
	for (i = 0; i < PBP_MAX_CALLS + 100; i++) {
		int rc = pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &id);

		cr_assert_eq(rc, 0, "call %d: %d (%s)", i, rc, pbp_channel_errmsg(r.ch));
		cr_assert_eq(pbp_channel_call_cancel(r.ch, id), 0);
		/* The peer reads, so the queue stays small. */
		if (i % 256 == 0) {
			pbp__frame f;

			while (raw_next(&r, &f, 0) == 1)
				;
		}
	}
	raw_close(&r);
}

/* 13.8: and a late reply to a cancelled call is dropped quietly. */
T(late_reply_to_a_cancelled_call_is_dropped)
{
	pbptest_Numbers q = { .i64 = 1 };
	pbp_msginfo mi;
	uint64_t id;
	raw r;

	raw_open(&r, NULL);
	cr_assert_eq(pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &id), 0);
	cr_assert_eq(pbp_channel_call_cancel(r.ch, id), 0);
	raw_send_text(&r, 0, id, "late");
	raw_send_text(&r, 0, 0, "next");
	cr_assert_eq(pbp_channel_recv(r.ch, &mi), 0, "%s", pbp_channel_errmsg(r.ch));
	cr_assert_eq(mi.size, 6);
	cr_assert_eq(memcmp((const char *)mi.payload + 2, "next", 4), 0);
	raw_close(&r);
}

/* 13.13: the first reply stands; a second one is dropped. */
T(a_second_reply_does_not_replace_the_first)
{
	pbptest_Numbers q = { .i64 = 1 }, a;
	uint8_t p1[2] = { 0x10, 11 }, p2[2] = { 0x10, 22 }, fr[64];
	uint64_t id;
	raw r;

	raw_open(&r, NULL);
	cr_assert_eq(pbp_channel_call_start(r.ch, pbptest_Type_NUMBERS, &q, &id), 0);
	pbt_write_all(r.wfd, fr, frame_msg(fr, pbptest_Type_NUMBERS, 0, id, p1, 2));
	pbt_write_all(r.wfd, fr, frame_msg(fr, pbptest_Type_NUMBERS, 0, id, p2, 2));
	/* Both replies arrive before the call is finished. */
	cr_assert_eq(pbp_channel_sync(r.ch, 0), PBP_EAGAIN);
	cr_assert_eq(pbp_channel_call_finish(r.ch, id, pbptest_Type_NUMBERS, &a, 2000), 0);
	cr_assert_eq(a.i64, 11);
	raw_close(&r);
}

/* 13.13: one stray reply does not end the serving loop. */
static int
echo_text(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	(void)e;
	(void)payload;
	memcpy(resp, req, sizeof(pbptest_Text));
	return 0;
}

static void *
serve_text(void *arg)
{
	static const pbp_handler h[] = {
		{ pbptest_Type_TEXT, pbptest_Type_TEXT, echo_text, NULL },
	};

	return (void *)(intptr_t)pbp_channel_serve(arg, h, 1);
}

T(serve_survives_a_stray_reply)
{
	pbp__frame f;
	pthread_t t;
	raw r;
	int got = 0;

	raw_open(&r, NULL);
	t = pbt_spawn_thread(serve_text, r.ch);
	raw_send_text(&r, 0, 999, "stray");
	raw_send_text(&r, 7, 0, "real");
	while (raw_next(&r, &f, 3000) == 1)
		if (f.kind == PBP__FRAME_MESSAGE && f.reply_to == 7) {
			got = 1;
			break;
		}
	cr_assert(got, "serve did not answer the request after a stray reply");
	close(r.wfd);
	r.wfd = -1;
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	raw_close(&r);
}

/* 13.11: a Sync that arrives while the application waits inside a call,
 * behind a message it has not seen yet, is answered only once the
 * application has received that message and asks for the next one. */
T(barrier_is_not_answered_before_held_messages_are_seen)
{
	pbptest_Numbers q = { .i64 = 1 }, a;
	pbp_msginfo mi;
	pbp__frame f;
	uint8_t fr[64];
	raw r;
	int acked = 0;

	raw_open(&r, NULL);
	raw_send_text(&r, 0, 0, "before the barrier");
	pbt_write_all(r.wfd, fr, frame_ctrl(fr, PBP__FRAME_SYNC, 3));
	cr_assert_eq(pbp_channel_call(r.ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &a, 200),
	             PBP_ETIMEDOUT);
	while (raw_next(&r, &f, 200) == 1)
		cr_assert_neq(f.kind, PBP__FRAME_SYNC_ACK,
		              "the barrier was answered while its message was only held");
	cr_assert_eq(pbp_channel_set_timeout(r.ch, PBP_TIMEOUT_RECV, 100), 0);
	cr_assert_eq(pbp_channel_recv(r.ch, &mi), 0);
	cr_assert_eq(mi.type, pbptest_Type_TEXT);
	while (raw_next(&r, &f, 200) == 1)
		cr_assert_neq(f.kind, PBP__FRAME_SYNC_ACK, "answered before the next receive");
	cr_assert_eq(pbp_channel_recv(r.ch, &mi), PBP_ETIMEDOUT);
	while (!acked && raw_next(&r, &f, 1000) == 1)
		acked = f.kind == PBP__FRAME_SYNC_ACK && f.sync_id == 3;
	cr_assert(acked, "the barrier was never answered");
	raw_close(&r);
}

/* 13.12: two threads sending on a channel without PBP_CHANNEL_DUPLEX:
 * the misuse is reported, and the stream stays whole. */
struct sender {
	pbp_channel *ch;
	atomic_int *ok, *refused;
};

static void *
send_many(void *arg)
{
	struct sender *s = arg;
	pbptest_Text t;
	int i;

	memset(&t, 0, sizeof t);
	strcpy(t.text, "concurrent");
	for (i = 0; i < 20000; i++) {
		int rc = pbp_channel_send(s->ch, pbptest_Type_TEXT, &t);

		if (rc == 0)
			atomic_fetch_add(s->ok, 1);
		else if (rc == PBP_EINVAL)
			atomic_fetch_add(s->refused, 1);
		else
			cr_assert(0, "send returned %d", rc);
	}
	return NULL;
}

static void *
count_all(void *arg)
{
	pbp_msginfo mi;
	intptr_t n = 0;
	int rc;

	while ((rc = pbp_channel_recv(arg, &mi)) == 0)
		n++;
	return (void *)(rc == PBP_EOF ? n : -1);
}

T(two_threads_on_a_simplex_channel_are_refused_not_torn)
{
	pbp_channel *a, *b;
	atomic_int ok, refused;
	struct sender s;
	pthread_t t1, t2, rt;
	intptr_t got;

	atomic_init(&ok, 0);
	atomic_init(&refused, 0);
	pbt_pair(&a, &b, NULL, NULL);
	rt = pbt_spawn_thread(count_all, b);
	s = (struct sender){ a, &ok, &refused };
	t1 = pbt_spawn_thread(send_many, &s);
	t2 = pbt_spawn_thread(send_many, &s);
	pbt_join(t1);
	pbt_join(t2);
	pbp_channel_free(a);
	got = (intptr_t)pbt_join(rt);
	cr_assert_eq(got, atomic_load(&ok), "the peer got %ld of %d (-1: a torn stream)",
	             (long)got, atomic_load(&ok));
	cr_log_info("concurrent sends: %d accepted, %d refused", atomic_load(&ok),
	            atomic_load(&refused));
	pbp_channel_free(b);
}

/* The same, made certain: one thread is blocked inside a send (the peer
 * does not read yet) when another sends. */
struct blocked_sender {
	pbp_channel *ch;
	atomic_int inside;
	int rc, sent;
};

static void *
send_until_blocked(void *arg)
{
	struct blocked_sender *s = arg;
	static pbptest_Text t;

	memset(t.text, 'b', sizeof t.text - 1);
	for (s->sent = 0; s->sent < 4000; s->sent++) {
		atomic_store(&s->inside, 1);
		s->rc = pbp_channel_send(s->ch, pbptest_Type_TEXT, &t);
		if (s->rc != 0)
			break;
	}
	atomic_store(&s->inside, 0);
	return NULL;
}

T(a_send_while_another_thread_is_inside_one_is_refused)
{
	pbp_channel_options oa = pbt_options();
	struct blocked_sender s;
	pbp_channel *a, *b;
	pbptest_Text t;
	pthread_t ts, rt;
	intptr_t got;
	int rc;

	oa.send_timeout_ms = 10000;
	oa.pipe_size = 65536;
	pbt_pair(&a, &b, &oa, NULL);
	s.ch = a;
	atomic_init(&s.inside, 0);
	ts = pbt_spawn_thread(send_until_blocked, &s);
	/* The peer reads nothing yet: the sender fills the pipe and blocks. */
	while (!atomic_load(&s.inside))
		usleep(1000);
	usleep(300 * 1000);
	memset(&t, 0, sizeof t);
	strcpy(t.text, "second thread");
	rc = pbp_channel_send(a, pbptest_Type_TEXT, &t);
	cr_assert_eq(rc, PBP_EINVAL, "a send from a second thread returned %d", rc);
	rt = pbt_spawn_thread(count_all, b);
	pbt_join(ts);
	cr_assert_eq(s.rc, 0, "the first thread's send: %d", s.rc);
	pbp_channel_free(a);
	got = (intptr_t)pbt_join(rt);
	cr_assert_eq(got, s.sent, "the peer got %ld of %d (-1: a torn stream)", (long)got, s.sent);
	pbp_channel_free(b);
}

/* 12.6: a duplex channel answers the barrier from its receiving thread
 * while its sending thread keeps sending. */
struct duplex_side {
	pbp_channel *ch;
	atomic_int stop;
	int sent, rc;
	char why[PBP_ERRMSG_SIZE];
};

static void *
duplex_sender(void *arg)
{
	struct duplex_side *d = arg;
	pbptest_Text t;

	memset(&t, 0, sizeof t);
	strcpy(t.text, "from the duplex side");
	while (!atomic_load(&d->stop) && d->sent < 100000) {
		d->rc = pbp_channel_send(d->ch, pbptest_Type_TEXT, &t);
		if (d->rc != 0) {
			memcpy(d->why, pbp_channel_send_error(d->ch)->msg, sizeof d->why);
			break;
		}
		d->sent++;
	}
	return NULL;
}

static void *
duplex_receiver(void *arg)
{
	pbp_msginfo mi;
	int rc;

	while ((rc = pbp_channel_recv(arg, &mi)) == 0)
		;
	return (void *)(intptr_t)rc;
}

T(duplex_side_answers_the_barrier_while_it_sends)
{
	pbp_channel_options ob = pbt_options();
	struct duplex_side d;
	pbp_channel *a, *b;
	pbp_msginfo mi;
	pthread_t ts, tr;
	int i, got = 0, limited = 0;

	ob.flags = PBP_CHANNEL_DUPLEX;
	pbt_pair(&a, &b, NULL, &ob);
	d.ch = b;
	d.sent = d.rc = 0;
	atomic_init(&d.stop, 0);
	tr = pbt_spawn_thread(duplex_receiver, b);
	ts = pbt_spawn_thread(duplex_sender, &d);
	for (i = 0; i < 20; i++) {
		int rc = pbp_channel_sync(a, 5000);

		/* The sender can fill the inbox while the barrier waits: then
		 * receive what is held and try again. */
		if (rc == PBP_ELIMIT) {
			i--;
			limited++;
		} else {
			cr_assert_eq(rc, 0, "barrier %d: %d (%s)", i, rc, pbp_channel_errmsg(a));
		}
		/* Drain what the sender sent meanwhile. */
		cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 0), 0);
		while (pbp_channel_recv(a, &mi) == 0)
			got++;
	}
	atomic_store(&d.stop, 1);
	pbt_join(ts);
	cr_assert_eq(d.rc, 0, "the duplex side's send: %d (%s)", d.rc, d.why);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	cr_assert_eq((intptr_t)pbt_join(tr), PBP_EOF);
	cr_assert_eq(pbp_channel_close_write(b), 0);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 5000), 0);
	while (pbp_channel_recv(a, &mi) == 0)
		got++;
	cr_assert_eq(got, d.sent, "received %d of %d", got, d.sent);
	cr_log_info("duplex barrier: %d messages, %d barriers refused by a full inbox", got,
	            limited);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* 13.4: a forked copy of a channel writes nothing when it is freed, not
 * even what the creator had queued. */
T(forked_copy_of_a_channel_writes_nothing_when_freed)
{
	pbp_channel_options oa = pbt_options();
	pbp_channel *a, *b;
	pbp_msginfo mi;
	int status, n = 0, rc;
	pid_t pid;

	oa.flags = PBP_CHANNEL_COALESCE;
	pbt_pair(&a, &b, &oa, NULL);
	cr_assert_eq(pbp_channel_send_raw(a, pbptest_Type_EMPTY, 1, "", 0), 0);
	cr_assert_gt(pbp_channel_pending(a), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		pbp_channel_free(a);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	pbp_channel_free(a); /* the creator's queued frame goes out once */
	while ((rc = pbp_channel_recv(b, &mi)) == 0)
		n++;
	cr_assert_eq(rc, PBP_EOF, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(n, 1, "the peer received %d copies of one message", n);
	pbp_channel_free(b);
}

/* ---- Goodbye behind queued output ------------------------------------------ */

#define GB_PAYLOAD 1000

/* Sends raw messages numbered from 0 until the pipe is full and output
 * is queued, then a few more; returns how many.  Each send either
 * succeeded or timed out with its frame queued (nothing lost either way). */
static int
fill_and_queue(pbp_channel *a)
{
	char p[GB_PAYLOAD];
	int n = 0, rc;

	do {
		memset(p, 'a' + n % 26, sizeof p);
		snprintf(p, sizeof p, "message %d", n);
		rc = pbp_channel_send_raw(a, pbptest_Type_TEXT, 0, p, sizeof p);
		cr_assert(rc == 0 || rc == PBP_ETIMEDOUT, "send %d: %s", n, pbp_channel_errmsg(a));
		n++;
	} while (pbp_channel_pending(a) == 0 || (rc == 0 && n < 40));
	return n;
}

/* Receives what is there (all of it, when receives wait), checking that
 * message i is number i: counts them in *got and returns what stopped it. */
static int
recv_numbered(pbp_channel *b, int *got)
{
	pbp_msginfo mi;
	char want[32];
	int rc;

	while ((rc = pbp_channel_recv(b, &mi)) == 0) {
		snprintf(want, sizeof want, "message %d", *got);
		cr_assert_eq(mi.size, GB_PAYLOAD);
		cr_assert_str_eq((const char *)mi.payload, want);
		(*got)++;
	}
	return rc;
}

static void
assert_goodbye_after(pbp_channel *b, int rc, int got, int sent)
{
	pbp_peer_info p;

	cr_assert_eq(rc, PBP_EOF, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(got, sent, "the peer received %d of %d messages", got, sent);
	cr_assert_eq(pbp_channel_peer(b, &p), 0);
	cr_assert_eq(p.goodbye_received, 1, "the Goodbye came last");
	cr_assert_eq(p.goodbye_reason, PBP_GOODBYE_DONE);
	cr_assert_str_eq(p.goodbye_detail, "bye");
}

T(goodbye_without_waiting_keeps_queued_messages_and_closes_after_them)
{
	pbp_channel_options oa = pbt_options(), ob = pbt_options();
	pbp_channel *a, *b;
	char p[GB_PAYLOAD];
	int sent, got = 0, rc, frc = PBP_EAGAIN;
	size_t left;
	int64_t deadline = pbp__now_ms() + 10000;

	oa.pipe_size = ob.pipe_size = 4096;
	oa.send_timeout_ms = 0;
	ob.recv_timeout_ms = 0;
	pbt_pair(&a, &b, &oa, &ob);
	sent = fill_and_queue(a);
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, "bye"), PBP_EAGAIN, "%s",
	             pbp_channel_errmsg(a));
	left = pbp_channel_pending(a);
	cr_assert_gt(left, 0);
	cr_assert_geq(pbp_channel_write_fd(a), 0, "closing, not closed");
	/* The write side is closing: no more sends, no second Goodbye, and
	 * nothing of what is queued goes away. */
	memset(p, 0, sizeof p);
	cr_assert_eq(pbp_channel_send_raw(a, pbptest_Type_TEXT, 0, p, sizeof p), PBP_EINVAL);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "after Goodbye"), NULL, "%s",
	              pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, "again"), PBP_EINVAL);
	cr_assert_eq(pbp_channel_close_write(a), PBP_ETIMEDOUT, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_pending(a), left);
	/* The peer reads later, while the sender flushes. */
	for (;;) {
		cr_assert_lt(pbp__now_ms(), deadline, "received %d of %d", got, sent);
		if (frc != 0) {
			frc = pbp_channel_flush(a);
			cr_assert(frc == 0 || frc == PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
		}
		if ((rc = recv_numbered(b, &got)) == PBP_EOF)
			break;
		cr_assert_eq(rc, PBP_EAGAIN, "%s", pbp_channel_errmsg(b));
	}
	assert_goodbye_after(b, rc, got, sent);
	cr_assert_eq(pbp_channel_pending(a), 0);
	cr_assert_eq(pbp_channel_write_fd(a), -1, "closed after the last byte");
	cr_assert_eq(pbp_channel_flush(a), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

static void *
recv_numbered_thread(void *arg)
{
	int got = 0, rc = recv_numbered(arg, &got);

	return (void *)(intptr_t)(got * 1000 + (rc == PBP_EOF));
}

T(goodbye_past_its_deadline_then_close_writes_everything)
{
	pbp_channel_options oa = pbt_options(), ob = pbt_options();
	pbp_channel *a, *b;
	pbp_error err;
	pthread_t t;
	intptr_t res;
	int sent;

	oa.pipe_size = ob.pipe_size = 4096;
	oa.send_timeout_ms = 50;
	pbt_pair(&a, &b, &oa, &ob);
	sent = fill_and_queue(a);
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, "bye"), PBP_ETIMEDOUT, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_gt(pbp_channel_pending(a), 0);
	t = pbt_spawn_thread(recv_numbered_thread, b);
	cr_assert_eq(pbp_channel_close(a, 10000, &err), 0, "%s", err.msg);
	res = (intptr_t)pbt_join(t);
	assert_goodbye_after(b, res % 1000 == 1 ? PBP_EOF : pbp_channel_error(b)->code,
	                     (int)(res / 1000), sent);
	pbp_channel_free(b);
}

T(goodbye_then_send_is_einval)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "late" };
	pbp_msginfo mi;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, "bye"), 0, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_write_fd(a), -1);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), PBP_EINVAL);
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, "bye"), PBP_EINVAL);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF, "%s", pbp_channel_errmsg(b));
	pbp_channel_free(a);
	pbp_channel_free(b);
}
