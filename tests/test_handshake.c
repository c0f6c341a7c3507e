/*
 * test_handshake.c: Hello exchange, its checks and its deadline, against a
 * real peer channel on a thread or a scripted peer writing raw bytes; the
 * handshake in two steps, without waiting, and from one poll() loop over
 * spawned helpers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"
#ifdef PBPTEST_HAVE_DEMO
#include "demo.pb.h"
#include "demo_fingerprint.h"
#endif

#define T(name) Test(handshake, name, .timeout = 20)

/* A channel A whose peer is the test itself: the test writes raw bytes to
 * fds[1] (A reads them) and can read A's output from fds[2]. */
static pbp_channel *
scripted(int fds[4], const pbp_channel_options *o)
{
	pbp_channel_options def = pbt_options();
	pbp_channel *ch;
	pbp_error err;

	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(&ch, fds[0], fds[3], o ? o : &def, &err), 0, "%s",
	             err.msg);
	return ch;
}

static void
close_peer(int fds[4])
{
	close(fds[1]);
	close(fds[2]);
}

/* Handshakes A against a scripted Hello and returns the result. */
static int
against_hello(const pbpipe_Hello *h, pbp_channel **out, int fds[4])
{
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, h);

	*out = scripted(fds, NULL);
	pbt_write_all(fds[1], buf, n);
	return pbp_channel_handshake(*out);
}

T(pair_succeeds_and_reports_the_peer)
{
	pbp_channel *a, *b;
	pbp_peer_info p;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_channel_peer(a, &p), 0);
	cr_assert_eq(p.major, PBP_PROTOCOL_MAJOR);
	cr_assert_eq(p.pid, (uint32_t)getpid());
	cr_assert_eq(p.pointer_bits, sizeof(void *) * 8);
	cr_assert_eq(p.schema_fingerprint, PBPTEST_SCHEMA_FINGERPRINT);
	cr_assert_eq(p.effective_max_frame, PBP_DEFAULT_MAX_FRAME);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EINVAL, "a second handshake must fail");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(effective_limit_is_the_smaller)
{
	pbp_channel_options oa = pbt_options(), ob = pbt_options();
	pbp_channel *a, *b;
	pbp_peer_info pa, pb;
	pbptest_Text t = { "x" };
	char big[2000];
	uint32_t type;
	pbt_any in;

	oa.max_frame = 1000;
	ob.max_frame = 5000;
	pbt_pair(&a, &b, &oa, &ob);
	cr_assert_eq(pbp_channel_peer(a, &pa), 0);
	cr_assert_eq(pbp_channel_peer(b, &pb), 0);
	cr_assert_eq(pa.effective_max_frame, 1000);
	cr_assert_eq(pb.effective_max_frame, 1000);
	cr_assert_eq(pb.max_frame, 1000);
	/* B may not send more than A accepts, even though B's own limit is
	 * larger; the failure is local and leaves B usable. */
	memset(big, 'b', sizeof big);
	cr_assert_eq(pbp_channel_send_raw(b, pbptest_Type_TEXT, 0, big, sizeof big), PBP_EMSGSIZE);
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "1000"), NULL, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_send(b, pbptest_Type_TEXT, &t), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_recv_msg(a, &type, &in, sizeof in), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_str_eq(in.text.text, "x");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(bad_magic_names_both_values)
{
	pbpipe_Hello h = pbt_good_hello();
	pbp_channel *a;
	int fds[4];

	h.magic = 0xdeadbeef;
	cr_assert_eq(against_hello(&h, &a, fds), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "0x50425050"), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "0xdeadbeef"), NULL, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);
}

T(other_major_version_fails_other_minor_passes)
{
	pbpipe_Hello h = pbt_good_hello();
	pbp_channel *a;
	int fds[4];

	h.major = PBP_PROTOCOL_MAJOR + 1;
	h.minor = 7;
	cr_assert_eq(against_hello(&h, &a, fds), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "ours 1.2, peer's 2.7"), NULL, "%s",
	              pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);

	h = pbt_good_hello();
	h.minor = PBP_PROTOCOL_MINOR + 5;
	cr_assert_eq(against_hello(&h, &a, fds), 0, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);
}

T(fingerprint_mismatch_fails_on_both_sides)
{
	pbp_channel_options oa = pbt_options(), ob = pbt_options();
	pbp_channel *a, *b;
	pbp_error err;
	pthread_t t;
	int fds[4], ra, rb;
	char fa[40], fb[40];

	ob.schema_fingerprint = 0x1122334455667788ull;
	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &oa, &err), 0);
	cr_assert_eq(pbp_channel_from_fds(&b, fds[2], fds[1], &ob, &err), 0);
	t = pbt_spawn_thread(pbt_handshake_thread, b);
	ra = pbp_channel_handshake(a);
	rb = (int)(intptr_t)pbt_join(t);
	cr_assert_eq(ra, PBP_EPROTO);
	cr_assert_eq(rb, PBP_EPROTO);
	snprintf(fa, sizeof fa, "0x%016" PRIx64, (uint64_t)PBPTEST_SCHEMA_FINGERPRINT);
	snprintf(fb, sizeof fb, "0x%016" PRIx64, (uint64_t)0x1122334455667788ull);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), fa), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_neq(strstr(pbp_channel_errmsg(a), fb), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_neq(strstr(pbp_channel_errmsg(b), fa), NULL, "%s", pbp_channel_errmsg(b));
	cr_assert_neq(strstr(pbp_channel_errmsg(b), fb), NULL, "%s", pbp_channel_errmsg(b));
	/* The failure is sticky in both directions. */
	cr_assert_eq(pbp_channel_send_raw(a, 1, 0, "x", 1), PBP_EPROTO);
	cr_assert_eq(pbp_channel_recv(a, &(pbp_msginfo){ 0 }), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "fingerprint"), NULL);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(silent_peer_times_out_within_the_deadline)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a;
	int64_t t0, dt;
	int fds[4];

	o.handshake_timeout_ms = 300;
	a = scripted(fds, &o);
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_channel_handshake(a), PBP_ETIMEDOUT);
	dt = pbp__now_ms() - t0;
	cr_assert_geq(dt, 290, "returned after %" PRId64 " ms", dt);
	cr_assert_lt(dt, 1300, "returned after %" PRId64 " ms", dt);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "300 ms"), NULL, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);
}

T(peer_closing_before_or_inside_hello_is_truncation)
{
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h), cut;

	for (cut = 0; cut < n; cut++) {
		pbp_channel *a;
		int fds[4];

		a = scripted(fds, NULL);
		pbt_write_all(fds[1], buf, cut);
		close(fds[1]);
		cr_assert_eq(pbp_channel_handshake(a), PBP_ETRUNC, "cut at %zu: %s", cut,
		             pbp_channel_errmsg(a));
		pbp_channel_free(a);
		close(fds[2]);
	}
}

T(first_frame_must_be_hello)
{
	static const uint8_t msg[] = { 0x04, 0x1a, 0x02, 0x08, 0x07 };
	static const uint8_t bye[] = { 0x07, 0x12, 0x05, 0x08, 0x02, 0x12, 0x01, 'x' };
	pbp_channel *a;
	int fds[4];

	a = scripted(fds, NULL);
	pbt_write_all(fds[1], msg, sizeof msg);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "not Hello"), NULL, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);

	a = scripted(fds, NULL);
	pbt_write_all(fds[1], bye, sizeof bye);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "Goodbye (reason 2: x)"), NULL, "%s",
	              pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);
}

T(oversized_first_frame_is_refused)
{
	uint8_t hdr[8];
	size_t n = (size_t)(pbp__put_varint(hdr, PBP__HANDSHAKE_MAX_FRAME + 1) - hdr);
	pbp_channel *a;
	int fds[4];

	a = scripted(fds, NULL);
	pbt_write_all(fds[1], hdr, n);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EMSGSIZE);
	pbp_channel_free(a);
	close_peer(fds);
}

T(garbage_instead_of_hello)
{
	static const uint8_t junk[] = "SYNC\nHello from Process A!\nEND\n";
	pbp_channel *a;
	int fds[4], rc;

	a = scripted(fds, NULL);
	/* "SYNC..." reads as a length of 'S' (83) bytes, then an envelope
	 * that is not valid protobuf.  Send enough for that frame. */
	for (int i = 0; i < 3; i++)
		pbt_write_all(fds[1], junk, sizeof junk - 1);
	rc = pbp_channel_handshake(a);
	cr_assert(rc == PBP_EDECODE || rc == PBP_EPROTO, "rc %d: %s", rc, pbp_channel_errmsg(a));
	pbp_channel_free(a);
	close_peer(fds);
}

T(tiny_peer_limit_is_refused)
{
	pbpipe_Hello h = pbt_good_hello();
	pbp_channel *a;
	int fds[4];

	h.max_frame = 10;
	cr_assert_eq(against_hello(&h, &a, fds), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "below the minimum"), NULL);
	pbp_channel_free(a);
	close_peer(fds);
}

T(no_io_before_the_handshake)
{
	pbp_channel *a;
	pbp_msginfo mi;
	pbptest_Text t = { "x" };
	int fds[4];

	a = scripted(fds, NULL);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), PBP_EINVAL);
	cr_assert_eq(pbp_channel_recv(a, &mi), PBP_EINVAL);
	cr_assert_eq(pbp_channel_goodbye(a, 0, NULL), PBP_EINVAL);
	pbp_channel_free(a);
	close_peer(fds);
}

T(peer_that_reads_nothing_and_exits)
{
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h);
	pbp_channel *a;
	int fds[4];

	/* Gone before its Hello: whichever end closed first, truncation. */
	a = scripted(fds, NULL);
	close_peer(fds);
	cr_assert_eq(pbp_channel_handshake(a), PBP_ETRUNC, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);

	/* Sent its Hello but reads nothing: the peer is gone for sending. */
	a = scripted(fds, NULL);
	pbt_write_all(fds[1], buf, n);
	close_peer(fds);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EPIPE, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
}

T(bad_options_are_refused)
{
	pbp_channel_options o = pbt_options();
	static const pbp_msgtype dup[] = {
		PBP_MSGTYPE(1, pbptest_Text),
		PBP_MSGTYPE(1, pbptest_Numbers),
	};
	pbp_channel *a = NULL;
	pbp_error err;
	int fds[4];

	pbt_pipes(fds);
	o.max_frame = 10;
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), PBP_EINVAL);
	o = pbt_options();
	o.version = 99;
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), PBP_EINVAL);
	cr_assert_neq(strstr(err.msg, "PBP_CHANNEL_OPTIONS_INIT"), NULL);
	o = pbt_options();
	o.types = dup;
	o.ntypes = 2;
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), PBP_EINVAL);
	cr_assert_neq(strstr(err.msg, "share type number 1"), NULL, "%s", err.msg);
	cr_assert_eq(pbp_channel_from_fds(&a, -1, fds[3], NULL, &err), PBP_EINVAL);
	cr_assert_eq(a, NULL);
	/* On failure the caller still owns the fds: they are open. */
	cr_assert_eq(write(fds[3], "x", 1), 1);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}

/* ---- the handshake in two steps (event loops) ------------------------------ */

/* Both ends of a pair over pipes, neither handshaken. */
static void
unshaken_pair(pbp_channel **a, pbp_channel **b, const pbp_channel_options *o)
{
	pbp_channel_options def = pbt_options();
	pbp_error err;
	int fds[4];

	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(a, fds[0], fds[3], o ? o : &def, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_from_fds(b, fds[2], fds[1], o ? o : &def, &err), 0, "%s", err.msg);
}

T(nonblocking_handshake_waits_for_nothing_and_completes_later)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "after" };
	uint32_t type;
	pbt_any in;
	int64_t t0;

	unshaken_pair(&a, &b, NULL);
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EINVAL, "finish before start");
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_start(a), PBP_EINVAL, "start twice");
	/* B has not said Hello yet: A does not wait for it. */
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "not sticky");
	cr_assert_lt(pbp__now_ms() - t0, 500);
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), PBP_EINVAL, "not ready yet");
	cr_assert_eq(pbp_channel_buffered(a), 0);
	/* B starts: its Hello is in the pipe, and A's is in B's. */
	cr_assert_eq(pbp_channel_handshake_start(b), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(b, 0), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EINVAL, "finish after success");
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "already done"), NULL, "%s",
	              pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_start(a), PBP_EINVAL, "start after success");
	cr_assert_eq(pbp_channel_handshake(a), PBP_EINVAL, "handshake after success");
	/* The channel works. */
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &in, sizeof in), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_str_eq(in.text.text, "after");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(nonblocking_handshake_with_the_peer_hello_one_byte_at_a_time)
{
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h), i;
	pbp_peer_info p;
	pbp_channel *a;
	int fds[4];

	a = scripted(fds, NULL);
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	for (i = 0; i + 1 < n; i++) {
		pbt_write_all(fds[1], buf + i, 1);
		cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "after %zu of %zu bytes: %s",
		             i + 1, n, pbp_channel_errmsg(a));
		cr_assert_eq(pbp_channel_buffered(a), 0, "after %zu bytes", i + 1);
	}
	pbt_write_all(fds[1], buf + i, 1);
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_peer(a, &p), 0);
	cr_assert_eq(p.schema_fingerprint, PBPTEST_SCHEMA_FINGERPRINT);
	pbp_channel_free(a);
	close_peer(fds);
}

/* Our Hello stuck behind a full pipe while the peer's came in whole: the
 * wait is for the write fd, and pbp_channel_buffered() says the Hello is
 * there. */
T(nonblocking_handshake_with_our_hello_stuck_in_a_full_pipe)
{
	pbp_channel_options o = pbt_options();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256], junk[4096];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h);
	pbp_channel *a;
	ssize_t k;
	int fds[4];

	o.pipe_size = 4096;
	a = scripted(fds, &o);
	memset(junk, 0, sizeof junk);
	/* The channel made its write fd non-blocking: fill that pipe. */
	while (write(fds[3], junk, sizeof junk) > 0)
		;
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_gt(pbp_channel_pending(a), 0, "our Hello waits in the channel");
	pbt_write_all(fds[1], buf, n);
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "did not take our Hello"), NULL, "%s",
	              pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_buffered(a), 1, "the peer's whole Hello is buffered");
	/* The peer reads: the pipe takes our Hello, and the handshake ends. */
	cr_assert_eq(fcntl(fds[2], F_SETFL, O_NONBLOCK), 0);
	while ((k = read(fds[2], junk, sizeof junk)) > 0)
		;
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_pending(a), 0);
	pbp_channel_free(a);
	close_peer(fds);
}

T(nonblocking_handshake_past_its_deadline_fails_for_good)
{
	pbp_channel_options o = pbt_options();
	pbptest_Text t = { "x" };
	pbp_report r;
	pbp_channel *a;
	int fds[4], left, ms = pbt_scale(200);
	char within[64];

	o.handshake_timeout_ms = ms;
	snprintf(within, sizeof within, "no Hello from the peer within %d ms", ms);
	a = scripted(fds, &o);
	cr_assert_eq(pbp_channel_next_timeout(a), -1, "no deadline before the start");
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	left = pbp_channel_next_timeout(a);
	cr_assert(left > 0 && left <= ms, "next_timeout %d", left);
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	/* A wait shorter than the handshake's deadline ends only the wait. */
	cr_assert_eq(pbp_channel_handshake_finish(a, 20), PBP_ETIMEDOUT, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	/* A longer one stops at the deadline, and the handshake is over. */
	cr_assert_eq(pbp_channel_handshake_finish(a, 5000), PBP_ETIMEDOUT, "%s",
	             pbp_channel_errmsg(a));
	cr_assert_neq(strstr(pbp_channel_errmsg(a), within), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_ETIMEDOUT, "sticky");
	cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), PBP_ETIMEDOUT, "both directions");
	cr_assert_eq(pbp_channel_next_timeout(a), -1);
	cr_assert_eq(pbp_channel_report(a, &r), 0);
	cr_assert_eq(r.end, PBP_END_TIMEOUT);
	pbp_channel_free(a);
	close_peer(fds);

	/* The deadline passing while nobody waits: the next finish says so. */
	a = scripted(fds, &o);
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	usleep((useconds_t)(ms + 50) * 1000);
	cr_assert_eq(pbp_channel_next_timeout(a), 0, "due now");
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_ETIMEDOUT, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_ETIMEDOUT, "sticky");
	pbp_channel_free(a);
	close_peer(fds);
}

T(nonblocking_handshake_after_the_peer_closed_is_truncation)
{
	pbp_channel *a;
	int fds[4];

	a = scripted(fds, NULL);
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	close(fds[1]);
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_ETRUNC, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, 0), PBP_ETRUNC, "sticky");
	pbp_channel_free(a);
	close(fds[2]);
}

T(handshake_with_a_deadline_of_0_does_not_wait_and_goes_on)
{
	pbp_channel_options o = pbt_options();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	size_t n = pbt_hello_frame(buf, sizeof buf, &h);
	pbp_channel *a;
	int fds[4];

	o.handshake_timeout_ms = 0;
	a = scripted(fds, &o);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_next_timeout(a), -1, "no deadline kept for 0");
	pbt_write_all(fds[1], buf, n / 2);
	cr_assert_eq(pbp_channel_handshake(a), PBP_EAGAIN, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(a, -1), PBP_EAGAIN, "-1: up to a deadline of 0");
	pbt_write_all(fds[1], buf + n / 2, n - n / 2);
	cr_assert_eq(pbp_channel_handshake(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake(a), PBP_EINVAL, "after it succeeded");
	pbp_channel_free(a);
	close_peer(fds);
}

T(next_timeout_counts_a_pending_handshake_until_it_is_done)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *a, *b;
	int left;

	o.handshake_timeout_ms = 10000;
	unshaken_pair(&a, &b, &o);
	cr_assert_eq(pbp_channel_handshake_start(a), 0, "%s", pbp_channel_errmsg(a));
	left = pbp_channel_next_timeout(a);
	cr_assert(left > 9000 && left <= 10000, "next_timeout %d", left);
	cr_assert_eq(pbp_channel_next_timeout(b), -1, "B has not started");
	cr_assert_eq(pbp_channel_handshake_start(b), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_handshake_finish(a, -1), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_handshake_finish(b, -1), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_next_timeout(a), -1, "done");
	cr_assert_eq(pbp_channel_next_timeout(b), -1, "done");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- many helpers from one poll() loop ------------------------------------ */

#ifdef PBPTEST_HAVE_DEMO
static const pbp_msgtype demo_types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
};
#endif

/* A helper that never says Hello (tests/peer.c "silent"), spawned without
 * the handshake and with its own handshake deadline. */
static pbp_child *
spawn_silent(int handshake_ms)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "silent", NULL };
	pbp_child *c;
	pbp_error err;

	co.handshake_timeout_ms = handshake_ms;
	so.channel = &co;
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_handshake_start(pbp_child_channel(c)), 0);
	return c;
}

#define NHELPERS 16

T(poll_loop_finishes_sixteen_handshakes_while_a_silent_helper_waits)
{
#ifdef PBPTEST_HAVE_DEMO
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c[NHELPERS + 2];
	int done[NHELPERS + 2] = { 0 }, before = pbt_count_fds(), ndone = 0, i, rc;
	int64_t deadline, slowest = 0;
	pbp_exit_status st;
	pbp_error err;
	pbp_report r;

	co.types = demo_types;
	co.ntypes = 1;
	co.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	co.handshake_timeout_ms = pbt_scale(10000);
	so.channel = &co;
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	so.stdout_mode = PBP_STDIO_DEVNULL;
	if (PBPIPE_CHILD[0] == '\0')
		cr_skip_test("pbpipe-child is not built (PBP_BUILD_EXAMPLES=OFF)");
	for (i = 0; i < NHELPERS; i++) {
		cr_assert_eq(pbp_child_spawn(&c[i], PBPIPE_CHILD, NULL, &so, &err), 0, "%s", err.msg);
		cr_assert_eq(pbp_channel_handshake_start(pbp_child_channel(c[i])), 0, "%s",
		             pbp_channel_errmsg(pbp_child_channel(c[i])));
	}
	c[NHELPERS] = spawn_silent(-1);          /* pending for ever */
	c[NHELPERS + 1] = spawn_silent(300);     /* fails at its deadline */
	deadline = pbp__now_ms() + pbt_scale(20000);
	while (ndone < NHELPERS || !done[NHELPERS + 1]) {
		struct pollfd p[2 * (NHELPERS + 2)];
		nfds_t n = 0;
		int wait = pbp_channel_next_timeout(pbp_child_channel(c[NHELPERS + 1]));

		cr_assert_lt(pbp__now_ms(), deadline, "%d of %d handshakes done", ndone, NHELPERS);
		for (i = 0; i < NHELPERS + 2; i++) {
			pbp_channel *ch = pbp_child_channel(c[i]);

			if (done[i])
				continue;
			p[n++] = (struct pollfd){ .fd = pbp_channel_read_fd(ch), .events = POLLIN };
			if (pbp_channel_pending(ch) > 0)
				p[n++] = (struct pollfd){ .fd = pbp_channel_write_fd(ch), .events = POLLOUT };
		}
		cr_assert_geq(poll(p, n, wait < 0 || wait > 100 ? 100 : wait), 0);
		for (i = 0; i < NHELPERS + 2; i++) {
			int64_t t0 = pbp__now_ms();

			if (done[i])
				continue;
			rc = pbp_channel_handshake_finish(pbp_child_channel(c[i]), 0);
			slowest = pbp__now_ms() - t0 > slowest ? pbp__now_ms() - t0 : slowest;
			if (rc == PBP_EAGAIN)
				continue;
			if (i == NHELPERS + 1) {
				cr_assert_eq(rc, PBP_ETIMEDOUT, "%s",
				             pbp_channel_errmsg(pbp_child_channel(c[i])));
			} else {
				cr_assert_lt(i, NHELPERS, "the silent helper answered: %d", rc);
				cr_assert_eq(rc, 0, "helper %d: %s", i,
				             pbp_channel_errmsg(pbp_child_channel(c[i])));
				ndone++;
			}
			done[i] = 1;
		}
	}
	cr_assert_lt(slowest, 100, "a finish of a non-blocking handshake took %lld ms",
	             (long long)slowest);
	/* The silent one is still waiting, not failed. */
	cr_assert_eq(pbp_channel_handshake_finish(pbp_child_channel(c[NHELPERS]), 0), PBP_EAGAIN);
	cr_assert_eq(pbp_child_report(c[NHELPERS + 1], &r), 0);
	cr_assert_eq(r.end, PBP_END_TIMEOUT, "%d: %s", r.end, r.message);
	/* Every handshaken helper answers. */
	for (i = 0; i < NHELPERS; i++) {
		pbp_channel *ch = pbp_child_channel(c[i]);
		demo_Greeting g = { "hi" }, in;
		uint32_t type;

		cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, pbt_scale(5000)), 0);
		cr_assert_eq(pbp_channel_send(ch, demo_Type_GREETING, &g), 0, "%s",
		             pbp_channel_errmsg(ch));
		cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), 0, "%s",
		             pbp_channel_errmsg(ch));
		cr_assert_str_eq(in.text, "Hello from Process B!");
	}
	/* Closing one whose handshake is under way: it sees the end of the
	 * stream and exits. */
	cr_assert_eq(pbp_child_close(c[NHELPERS], pbt_scale(5000), &st), 0);
	cr_assert(st.exited && st.code == 0, "exited %d code %d signal %d", st.exited, st.code,
	          st.signal);
	for (i = 0; i < NHELPERS + 2; i++)
		pbp_child_free(c[i]);
	cr_assert_eq(pbt_count_fds(), before, "an fd is left");
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child or zombie is left");
	cr_assert_eq(errno, ECHILD);
#else
	cr_skip_test("the demo schema is not built");
#endif
}
