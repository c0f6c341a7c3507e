/*
 * test_handshake.c: Hello exchange, its checks and its deadline, against a
 * real peer channel on a thread or a scripted peer writing raw bytes.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

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
