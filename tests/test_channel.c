/*
 * test_channel.c: typed messages, end of stream, truncation, half-close,
 * Goodbye, large messages and byte-at-a-time delivery over real pipes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pb_encode.h>

#include "support.h"

#define T(name) Test(channel, name, .timeout = 30)

static void
recv_ok(pbp_channel *ch, uint32_t want_type, pbt_any *in)
{
	uint32_t type = 0;
	int rc = pbp_channel_recv_msg(ch, &type, in, sizeof *in);

	cr_assert_eq(rc, 0, "recv_msg: %d %s", rc, pbp_channel_errmsg(ch));
	cr_assert_eq(type, want_type);
}

T(typed_round_trip)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "Hello from Process A!" };
	pbptest_Numbers n = { .i32 = INT32_MIN, .i64 = INT64_MIN, .u64 = UINT64_MAX,
		              .s64 = -5, .d = -1.5e300, .f = 3.25f, .b = true,
		              .fx = 0x0123456789abcdefull, .list_count = 3, .list = { 1, -2, 3 } };
	pbptest_Empty e = { 0 };
	pbt_any in;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_NUMBERS, &n), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_EMPTY, &e), 0);
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, t.text);
	recv_ok(b, pbptest_Type_NUMBERS, &in);
	cr_assert_eq(in.numbers.i32, n.i32);
	cr_assert_eq(in.numbers.i64, n.i64);
	cr_assert_eq(in.numbers.u64, n.u64);
	cr_assert_eq(in.numbers.s64, n.s64);
	cr_assert_eq(in.numbers.d, n.d);
	cr_assert_eq(in.numbers.f, n.f);
	cr_assert_eq(in.numbers.b, n.b);
	cr_assert_eq(in.numbers.fx, n.fx);
	cr_assert_eq(in.numbers.list_count, 3);
	cr_assert_arr_eq(in.numbers.list, n.list, 3 * sizeof(int32_t));
	recv_ok(b, pbptest_Type_EMPTY, &in);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(correlation_id_and_two_step_decode)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "abc" }, out1, out2;
	pbp_msginfo mi;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send_ex(a, 42, 0xfeedfacecafebeefull, pbptest_Text_fields, &t), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0);
	cr_assert_eq(mi.type, 42);
	cr_assert_eq(mi.id, 0xfeedfacecafebeefull);
	cr_assert_eq(mi.size, 5); /* tag, length, "abc" */
	cr_assert_eq(pbp_channel_decode(b, pbptest_Text_fields, &out1), 0);
	cr_assert_eq(pbp_channel_decode(b, pbptest_Text_fields, &out2), 0);
	cr_assert_str_eq(out1.text, "abc");
	cr_assert_str_eq(out2.text, "abc");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(unknown_type_is_a_clear_error_and_skipped)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "after" };
	uint32_t type = 0;
	pbt_any in;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send(a, 99, &t), PBP_ETYPE, "send of an unregistered type");
	cr_assert_eq(pbp_channel_send_raw(a, 99, 0, "\x08\x01", 2), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &in, sizeof in), PBP_ETYPE);
	cr_assert_eq(type, 99);
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "type 99"), NULL, "%s", pbp_channel_errmsg(b));
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, "after");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(malformed_payload_is_edecode_and_not_sticky)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "fine" };
	uint32_t type;
	pbt_any in;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send_raw(a, pbptest_Type_TEXT, 0, "\x0a\x7f", 2), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &in, sizeof in), PBP_EDECODE);
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "decoding message type 1"), NULL, "%s",
	              pbp_channel_errmsg(b));
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, "fine");
	/* A buffer too small for the registered struct. */
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &in, 4), PBP_EINVAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(eof_between_frames_is_a_clean_end)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "one" };
	pbp_msginfo mi;
	pbt_any in;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0, "closing twice is a no-op");
	recv_ok(b, pbptest_Type_TEXT, &in);
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF, "EOF stays EOF");
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), PBP_EINVAL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(half_close_then_reply)
{
	/* The seed's exchange: A sends and closes its writer; B reads to the
	 * end, replies and closes; A reads the reply and the end. */
	pbp_channel *a, *b;
	pbptest_Text t = { "Hello from Process A!" }, r = { "Hello from Process B!" };
	pbp_msginfo mi;
	pbt_any in;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, t.text);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	cr_assert_eq(pbp_channel_send(b, pbptest_Type_TEXT, &r), 0);
	cr_assert_eq(pbp_channel_close_write(b), 0);
	recv_ok(a, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, r.text);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(goodbye_ends_the_stream_with_a_reason)
{
	pbp_channel *a, *b;
	pbp_peer_info p;
	pbp_msginfo mi;
	char longtext[300];

	memset(longtext, 'z', sizeof longtext - 1);
	longtext[sizeof longtext - 1] = '\0';
	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_SHUTDOWN, longtext), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "Goodbye (reason 3"), NULL, "%s",
	              pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_peer(b, &p), 0);
	cr_assert_eq(p.goodbye_received, 1);
	cr_assert_eq(p.goodbye_reason, PBP_GOODBYE_SHUTDOWN);
	cr_assert_eq(strlen(p.goodbye_detail), 127, "detail truncated to 127 bytes");
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, NULL), PBP_EINVAL,
	             "the write side is closed");
	pbp_channel_free(a);
	pbp_channel_free(b);

	/* Cut at a character boundary: 2-byte characters give 126 bytes. */
	pbt_pair(&a, &b, NULL, NULL);
	longtext[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(longtext, "\xc3\xa9"); /* U+00E9 */
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_ERROR, longtext), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	cr_assert_eq(pbp_channel_peer(b, &p), 0);
	cr_assert_eq(strlen(p.goodbye_detail), 126);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A scripted peer: handshakes with A by raw bytes, then the test writes
 * what it wants to fds[1]. */
static pbp_channel *
scripted_ready(int fds[4])
{
	pbp_channel_options o = pbt_options();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h);
	pbp_channel *ch;
	pbp_error err;

	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(&ch, fds[0], fds[3], &o, &err), 0);
	pbt_write_all(fds[1], buf, n);
	cr_assert_eq(pbp_channel_handshake(ch), 0, "%s", pbp_channel_errmsg(ch));
	return ch;
}

T(eof_inside_a_frame_is_truncation)
{
	static const uint8_t frame[] = { 0x09, 0x1a, 0x07, 0x08, 0x01, 0x1a, 0x03, 0x0a, 0x01, 'x' };
	size_t cut;

	for (cut = 1; cut < sizeof frame; cut++) {
		pbp_channel *a;
		pbp_msginfo mi;
		int fds[4];

		a = scripted_ready(fds);
		pbt_write_all(fds[1], frame, cut);
		close(fds[1]);
		cr_assert_eq(pbp_channel_recv(a, &mi), PBP_ETRUNC, "cut %zu", cut);
		cr_assert_neq(strstr(pbp_channel_errmsg(a), "inside a frame body"), NULL, "%s",
		              pbp_channel_errmsg(a));
		cr_assert_eq(pbp_channel_recv(a, &mi), PBP_ETRUNC, "sticky");
		pbp_channel_free(a);
		close(fds[2]);
	}
	{
		/* Inside the length prefix itself. */
		pbp_channel *a;
		pbp_msginfo mi;
		int fds[4];

		a = scripted_ready(fds);
		pbt_write_all(fds[1], "\x80\x80", 2);
		close(fds[1]);
		cr_assert_eq(pbp_channel_recv(a, &mi), PBP_ETRUNC);
		cr_assert_neq(strstr(pbp_channel_errmsg(a), "inside a frame header"), NULL, "%s",
		              pbp_channel_errmsg(a));
		pbp_channel_free(a);
		close(fds[2]);
	}
}

T(oversize_length_is_refused_and_sticky)
{
	pbp_channel_options o = pbt_options();
	uint8_t hdr[8];
	size_t n = (size_t)(pbp__put_varint(hdr, PBP_DEFAULT_MAX_FRAME + 1) - hdr);
	pbp_channel *a;
	pbp_msginfo mi;
	int fds[4];

	(void)o;
	a = scripted_ready(fds);
	pbt_write_all(fds[1], hdr, n);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EMSGSIZE);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "4194305"), NULL, "%s", pbp_channel_errmsg(a));
	/* Sending still works (the error is in the receive direction). */
	cr_assert_eq(pbp_channel_send_raw(a, 1, 0, "", 0), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EMSGSIZE);
	pbp_channel_free(a);
	close(fds[1]);
	close(fds[2]);
}

T(second_hello_is_a_protocol_error)
{
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h);
	pbp_channel *a;
	pbp_msginfo mi;
	int fds[4];

	a = scripted_ready(fds);
	pbt_write_all(fds[1], buf, n);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EPROTO);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EPROTO);
	pbp_channel_free(a);
	close(fds[1]);
	close(fds[2]);
}

/* ---- large messages ------------------------------------------------------ */

struct blob_job {
	pbp_channel *ch;
	size_t size;
	uint32_t seed;
	int rc;
};

static void *
send_blob(void *arg)
{
	struct blob_job *j = arg;
	pbt_blob_src src = { j->size, j->seed };
	pbptest_Blob blob = { .tag = 7 };

	pbt_blob_set_source(&blob, &src);
	j->rc = pbp_channel_send(j->ch, pbptest_Type_BLOB, &blob);
	return NULL;
}

T(one_mebibyte_message)
{
	pbp_channel *a, *b;
	struct blob_job j;
	pbt_blob_sink sink = { .seed = 99 };
	pbptest_Blob in;
	pbp_msginfo mi;
	pthread_t t;

	pbt_pair(&a, &b, NULL, NULL);
	j = (struct blob_job){ a, 1024 * 1024, 99, -100 };
	t = pbt_spawn_thread(send_blob, &j);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
	pbt_join(t);
	cr_assert_eq(j.rc, 0, "send: %s", pbp_channel_errmsg(a));
	cr_assert_eq(mi.type, pbptest_Type_BLOB);
	cr_assert_gt(mi.size, 1024 * 1024);
	memset(&in, 0, sizeof in);
	pbt_blob_set_sink(&in, &sink);
	cr_assert_eq(pbp_channel_decode(b, pbptest_Blob_fields, &in), 0, "%s",
	             pbp_channel_errmsg(b));
	cr_assert_eq(in.tag, 7);
	cr_assert_eq(sink.got, 1024 * 1024);
	cr_assert_eq(sink.mismatch, 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(message_over_the_default_limit_needs_a_bigger_one)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;
	pbptest_Blob blob = { .tag = 1 };
	pbt_blob_src src = { PBP_DEFAULT_MAX_FRAME, 1 };
	struct blob_job j;
	pbp_msginfo mi;
	pthread_t t;

	pbt_pair(&a, &b, NULL, NULL);
	pbt_blob_set_source(&blob, &src);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_BLOB, &blob), PBP_EMSGSIZE);
	pbp_channel_free(a);
	pbp_channel_free(b);

	o.max_frame = 16u * 1024 * 1024;
	pbt_pair(&a, &b, &o, &o);
	j = (struct blob_job){ a, 12u * 1024 * 1024, 5, -100 };
	t = pbt_spawn_thread(send_blob, &j);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
	pbt_join(t);
	cr_assert_eq(j.rc, 0);
	cr_assert_gt(mi.size, 12u * 1024 * 1024);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- delivery in pieces ------------------------------------------------- */

struct dribble {
	int fd;
	const uint8_t *buf;
	size_t n;
};

static void *
dribble_thread(void *arg)
{
	struct dribble *d = arg;
	size_t i;

	for (i = 0; i < d->n; i++) {
		pbt_write_all(d->fd, d->buf + i, 1);
		if (i % 7 == 0)
			usleep(50);
	}
	close(d->fd);
	return NULL;
}

T(frames_arriving_one_byte_at_a_time)
{
	pbp_channel_options o = pbt_options();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[4096];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h);
	pbptest_Text texts[3] = { { "first" }, { "second, a little longer" }, { "" } };
	struct dribble d;
	pbp_channel *a;
	pbp_error err;
	pbp_msginfo mi;
	pthread_t t;
	pbt_any in;
	int fds[4], i;

	for (i = 0; i < 3; i++) {
		uint8_t payload[300];
		pb_ostream_t os = pb_ostream_from_buffer(payload, sizeof payload);
		uint64_t body;

		cr_assert(pb_encode(&os, pbptest_Text_fields, &texts[i]));
		n += pbp__message_header(buf + n, pbptest_Type_TEXT, (uint64_t)i, os.bytes_written, &body);
		memcpy(buf + n, payload, os.bytes_written);
		n += os.bytes_written;
	}
	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), 0);
	d = (struct dribble){ fds[1], buf, n };
	t = pbt_spawn_thread(dribble_thread, &d);
	cr_assert_eq(pbp_channel_handshake(a), 0, "%s", pbp_channel_errmsg(a));
	for (i = 0; i < 3; i++) {
		recv_ok(a, pbptest_Type_TEXT, &in);
		cr_assert_str_eq(in.text.text, texts[i].text);
	}
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EOF);
	pbt_join(t);
	pbp_channel_free(a);
	close(fds[2]);
}

struct streamer {
	pbp_channel *ch;
	int count;
	int rc;
};

static void *
stream_thread(void *arg)
{
	struct streamer *s = arg;
	pbptest_Numbers n = { 0 };
	int i;

	for (i = 0; i < s->count; i++) {
		n.i64 = i;
		s->rc = pbp_channel_send(s->ch, pbptest_Type_NUMBERS, &n);
		if (s->rc != 0)
			break;
	}
	if (s->rc == 0)
		s->rc = pbp_channel_close_write(s->ch);
	return NULL;
}

T(many_frames_in_order)
{
	struct streamer s;
	pbp_channel *a, *b;
	pbp_msginfo mi;
	pthread_t t;
	pbt_any in;
	int i;

	pbt_pair(&a, &b, NULL, NULL);
	s = (struct streamer){ a, 20000, 0 };
	t = pbt_spawn_thread(stream_thread, &s);
	for (i = 0; i < 20000; i++) {
		recv_ok(b, pbptest_Type_NUMBERS, &in);
		cr_assert_eq(in.numbers.i64, i);
	}
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	pbt_join(t);
	cr_assert_eq(s.rc, 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- a departed peer ----------------------------------------------------- */

T(writing_to_a_departed_peer_is_epipe_and_data_sent_before_survives)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "last words" };
	struct sigaction sa;
	pbp_msginfo mi;
	pbt_any in;
	int rc, i;

	/* SIGPIPE has its default, fatal disposition here. */
	sigaction(SIGPIPE, NULL, &sa);
	cr_assert_eq(sa.sa_handler, SIG_DFL);
	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_send(b, pbptest_Type_TEXT, &t), 0);
	pbp_channel_free(b);
	/* The first send may land in the pipe buffer before the kernel sees
	 * the reader gone; a few tries make sure one write meets EPIPE. */
	for (i = 0, rc = 0; i < 3 && rc == 0; i++)
		rc = pbp_channel_send(a, pbptest_Type_TEXT, &t);
	cr_assert_eq(rc, PBP_EPIPE, "rc %d: %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_error(a)->sys_errno, EPIPE);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), PBP_EPIPE, "sticky");
	/* What B sent before leaving is still readable, then a clean end. */
	recv_ok(a, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, "last words");
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EOF);
	/* No SIGPIPE was left pending and the mask is as it was. */
	{
		sigset_t pend, mask;

		sigpending(&pend);
		pthread_sigmask(SIG_BLOCK, NULL, &mask);
		cr_assert_eq(sigismember(&pend, SIGPIPE), 0);
		cr_assert_eq(sigismember(&mask, SIGPIPE), 0);
	}
	pbp_channel_free(a);
}

T(one_socket_for_both_directions)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;
	pbptest_Text t = { "via socketpair" };
	pbp_msginfo mi;
	pbp_error err;
	pthread_t th;
	pbt_any in;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(pbp_channel_from_fds(&a, sv[0], sv[0], &o, &err), 0);
	cr_assert_eq(pbp_channel_from_fds(&b, sv[1], sv[1], &o, &err), 0);
	th = pbt_spawn_thread(pbt_handshake_thread, b);
	cr_assert_eq(pbp_channel_handshake(a), 0);
	pbt_join(th);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EOF);
	cr_assert_eq(pbp_channel_send(b, pbptest_Type_TEXT, &t), 0);
	recv_ok(a, pbptest_Type_TEXT, &in);
	cr_assert_str_eq(in.text.text, "via socketpair");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(free_keep_fds_leaves_them_open)
{
	pbp_channel *a, *b;
	int rfd, wfd;

	pbt_pair(&a, &b, NULL, NULL);
	rfd = pbp_channel_read_fd(a);
	wfd = pbp_channel_write_fd(a);
	pbp_channel_free_keep_fds(a);
	cr_assert_neq(fcntl(rfd, F_GETFD), -1);
	cr_assert_neq(fcntl(wfd, F_GETFD), -1);
	cr_assert(fcntl(rfd, F_GETFD) & FD_CLOEXEC);
	close(rfd);
	close(wfd);
	pbp_channel_free(b);
}

/* ---- performance options ------------------------------------------------- */

struct echoer {
	pbp_channel *ch;
	int rc;
};

static void *
echo_thread(void *arg)
{
	struct echoer *e = arg;
	pbp_msginfo mi;

	while ((e->rc = pbp_channel_recv(e->ch, &mi)) == 0)
		if ((e->rc = pbp_channel_send_raw(e->ch, mi.type, mi.id, mi.payload, mi.size)) != 0)
			break;
	return NULL;
}

T(coalescing_queues_until_flush_or_receive)
{
	pbp_channel_options o = pbt_options();
	pbptest_Numbers n = { .i64 = 1 };
	struct echoer e;
	pbp_channel *a, *b;
	pbp_msginfo mi;
	pthread_t t;
	int i;

	o.flags = PBP_CHANNEL_COALESCE;
	pbt_pair(&a, &b, &o, NULL);
	for (i = 0; i < 100; i++)
		cr_assert_eq(pbp_channel_send(a, pbptest_Type_NUMBERS, &n), 0);
	cr_assert_gt(pbp_channel_pending(a), 0, "frames are queued, not written");
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_EAGAIN, "nothing reached the peer yet");
	cr_assert_eq(pbp_channel_flush(a), 0);
	cr_assert_eq(pbp_channel_pending(a), 0);
	for (i = 0; i < 100; i++)
		cr_assert_eq(pbp_channel_recv(b, &mi), 0, "frame %d: %s", i, pbp_channel_errmsg(b));
	/* Request/response cannot stall: receiving flushes first. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, -1), 0);
	e = (struct echoer){ b, 0 };
	t = pbt_spawn_thread(echo_thread, &e);
	for (i = 0; i < 50; i++) {
		n.i64 = i;
		cr_assert_eq(pbp_channel_send(a, pbptest_Type_NUMBERS, &n), 0);
		cr_assert_eq(pbp_channel_recv(a, &mi), 0, "%s", pbp_channel_errmsg(a));
	}
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(e.rc, PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(coalescing_writes_when_64k_are_queued)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;
	char payload[1000];
	size_t most = 0;
	int i;

	memset(payload, 'p', sizeof payload);
	o.flags = PBP_CHANNEL_COALESCE;
	pbt_pair(&a, &b, &o, NULL);
	/* 200 frames of ~1 KiB: about 3 writes of 64 KiB, never more queued. */
	for (i = 0; i < 200; i++) {
		cr_assert_eq(pbp_channel_send_raw(a, 1, 0, payload, sizeof payload), 0);
		if (pbp_channel_pending(a) > most)
			most = pbp_channel_pending(a);
	}
	cr_assert_leq(most, 64 * 1024);
	cr_assert_lt(pbp_channel_pending(a), 200 * sizeof payload, "some were written");
	cr_assert_eq(pbp_channel_close_write(a), 0, "close_write flushes");
	for (i = 0; i < 200; i++) {
		pbp_msginfo mi;

		cr_assert_eq(pbp_channel_recv(b, &mi), 0);
		cr_assert_eq(mi.size, sizeof payload);
	}
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(low_latency_receive_works)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;
	struct echoer e;
	pbp_msginfo mi;
	pthread_t t;
	int i;

	o.spin_us = 200;
	pbt_pair(&a, &b, &o, &o);
	e = (struct echoer){ b, 0 };
	t = pbt_spawn_thread(echo_thread, &e);
	for (i = 0; i < 200; i++) {
		cr_assert_eq(pbp_channel_send_raw(a, 1, (uint64_t)i, "ping", 4), 0);
		cr_assert_eq(pbp_channel_recv(a, &mi), 0);
		cr_assert_eq(mi.id, (uint64_t)i);
	}
	/* A receive deadline shorter than the spin still holds. */
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EAGAIN);
	cr_assert_eq(pbp_channel_close_write(a), 0);
	pbt_join(t);
	cr_assert_eq(e.rc, PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(pipe_capacity_option)
{
	pbp_channel_options keep = pbt_options(), big = pbt_options();
	pbp_channel *a, *b;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(fcntl(pbp_channel_read_fd(a), F_GETPIPE_SZ), PBP_DEFAULT_PIPE_SIZE);
	pbp_channel_free(a);
	pbp_channel_free(b);
	keep.pipe_size = -1;
	pbt_pair(&a, &b, &keep, &keep);
	cr_assert_eq(fcntl(pbp_channel_read_fd(a), F_GETPIPE_SZ), 65536, "the kernel's default");
	pbp_channel_free(a);
	pbp_channel_free(b);
	big.pipe_size = 256 * 1024;
	pbt_pair(&a, &b, &big, &big);
	cr_assert_eq(fcntl(pbp_channel_write_fd(a), F_GETPIPE_SZ), 256 * 1024);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(unknown_flags_are_refused)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a = NULL;
	pbp_error err;
	int fds[4];

	pbt_pipes(fds);
	o.flags = 0x80;
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), PBP_EINVAL);
	cr_assert_neq(strstr(err.msg, "unknown flags 0x80"), NULL, "%s", err.msg);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}

/* Frames read into the buffer leave the fd unreadable: pbp_channel_buffered()
 * says they are there, until they are received. */
static int
readable(pbp_channel *ch)
{
	struct pollfd p = { .fd = pbp_channel_read_fd(ch), .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

T(buffered_frames_are_reported_while_the_fd_is_not_readable)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "one" };
	pbt_any in;
	uint32_t type;
	uint8_t half[2];

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_buffered(NULL), 0);
	cr_assert_eq(pbp_channel_buffered(b), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
	cr_assert(readable(b));
	cr_assert_eq(pbp_channel_buffered(b), 0, "nothing read yet: the fd says it");
	recv_ok(b, pbptest_Type_TEXT, &in); /* one read takes both frames */
	cr_assert(!readable(b), "the second frame is in the buffer, not the pipe");
	cr_assert_eq(pbp_channel_buffered(b), 1);
	recv_ok(b, pbptest_Type_TEXT, &in);
	cr_assert_eq(pbp_channel_buffered(b), 0);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &in, sizeof in), PBP_EAGAIN);
	/* A partial frame is not a frame. */
	half[0] = 10;
	half[1] = 0x08;
	pbt_write_all(pbp_channel_write_fd(a), half, 2);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &in, sizeof in), PBP_EAGAIN);
	cr_assert_eq(pbp_channel_buffered(b), 0);
	/* The end of stream met is input too: receiving returns at once. */
	pbp_channel_free(a);
	cr_assert_neq(pbp_channel_recv_msg(b, &type, &in, sizeof in), 0);
	cr_assert_eq(pbp_channel_buffered(b), 1);
	pbp_channel_free(b);
}
