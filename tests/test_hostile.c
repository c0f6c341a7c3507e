/*
 * test_hostile.c: hostile peers.  A hostile child (tests/peer.c) against
 * the library's parent side, and a hostile parent against pbpipe-child.
 * Each case must give its documented error within its deadline, and the
 * death report must say what happened.  Each logs one summary line.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support.h"
#ifdef PBPTEST_HAVE_DEMO
#include "demo.pb.h"
#include "demo_fingerprint.h"
#endif

#define T(name) Test(hostile, name, .timeout = 60)

struct hostile {
	pbp_child *c;
	int rc;           /* of the spawn */
	pbp_report rep;   /* filled on spawn failure */
	int64_t t0;
};

static void
spawn_hostile(struct hostile *h, const char *mode, const char *arg, int deadline_ms)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, mode, arg, NULL };
	pbp_error err;

	/* The child must start within the handshake deadline. */
	co.handshake_timeout_ms = pbt_scale(deadline_ms);
	co.recv_timeout_ms = deadline_ms;
	co.send_timeout_ms = deadline_ms;
	so.channel = &co;
	so.stdout_mode = PBP_STDIO_DEVNULL;
	so.stderr_mode = PBP_STDIO_CAPTURE;
	so.report = &h->rep;
	memset(h, 0, sizeof *h);
	h->t0 = pbp__now_ms();
	h->rc = pbp_child_spawn(&h->c, PBPTEST_PEER, argv, &so, &err);
}

static int64_t
elapsed(const struct hostile *h)
{
	return pbp__now_ms() - h->t0;
}

static void
log_case(const char *side, const char *mode, int rc, const pbp_report *r, int64_t ms)
{
	char line[512];

	cr_log_info("hostile %s=%s rc=%d (%s) elapsed_ms=%lld report: %s", side, mode, rc,
	            pbp_strerror(rc), (long long)ms, pbp_report_str(r, line, sizeof line));
}

/* Ends the child and returns its final report. */
static void
finish(struct hostile *h, pbp_report *r)
{
	pbp_exit_status st;

	cr_assert_eq(pbp_child_close(h->c, 300, &st), 0);
	cr_assert_eq(pbp_child_report(h->c, r), 0);
	pbp_child_free(h->c);
}

T(garbage_instead_of_hello)
{
	struct hostile h;

	spawn_hostile(&h, "garbage", NULL, 1000);
	cr_assert(h.rc == PBP_EDECODE || h.rc == PBP_EPROTO, "rc %d", h.rc);
	cr_assert_eq(h.rep.end, PBP_END_HANDSHAKE);
	cr_assert_eq(h.rep.fate, PBP_FATE_EXITED);
	cr_assert_lt(elapsed(&h), pbt_scale(1000));
	log_case("child", "garbage", h.rc, &h.rep, elapsed(&h));
}

T(never_handshakes)
{
	struct hostile h;

	spawn_hostile(&h, "silent", NULL, 300);
	cr_assert_eq(h.rc, PBP_ETIMEDOUT);
	cr_assert_eq(h.rep.end, PBP_END_TIMEOUT);
	cr_assert_geq(elapsed(&h), 290);
	cr_assert_lt(elapsed(&h), pbt_scale(1500));
	log_case("child", "silent", h.rc, &h.rep, elapsed(&h));
}

T(writes_its_protocol_to_stdout)
{
	struct hostile h;

	spawn_hostile(&h, "stdout", NULL, 300);
	cr_assert_eq(h.rc, PBP_ETIMEDOUT);
	cr_assert_eq(h.rep.end, PBP_END_TIMEOUT);
	cr_assert_lt(elapsed(&h), pbt_scale(1500));
	log_case("child", "stdout", h.rc, &h.rep, elapsed(&h));
}

T(dies_before_the_handshake_with_stderr)
{
	struct hostile h;
	const char *last;

	spawn_hostile(&h, "stderr", "10000", 1000);
	cr_assert(h.rc == PBP_ETRUNC || h.rc == PBP_EPIPE, "rc %d", h.rc);
	cr_assert_eq(h.rep.fate, PBP_FATE_EXITED);
	cr_assert_eq(h.rep.status.code, 3);
	cr_assert_eq(h.rep.stderr_total, 10000);
	cr_assert_eq(h.rep.stderr_len, PBP_STDERR_TAIL_DEFAULT);
	cr_assert_eq(strlen(h.rep.stderr_tail), PBP_STDERR_TAIL_DEFAULT);
	/* The tail ends where the child stopped writing. */
	last = strrchr(h.rep.stderr_tail, 's');
	cr_assert_not_null(last);
	cr_assert_eq(strncmp(last, "stderr line ", 12), 0, "%s", last);
	log_case("child", "stderr", h.rc, &h.rep, elapsed(&h));
}

/* Spawns a hostile child that handshakes, then returns the result of
 * one receive. */
static int
recv_from(struct hostile *h, const char *mode, const char *arg, int deadline_ms)
{
	pbp_msginfo mi;

	spawn_hostile(h, mode, arg, deadline_ms);
	cr_assert_eq(h->rc, 0, "%s: %s", mode, h->rep.message);
	return pbp_channel_recv(pbp_child_channel(h->c), &mi);
}

T(oversize_length)
{
	struct hostile h;
	pbp_report r;
	int rc = recv_from(&h, "oversize", NULL, 1000);

	cr_assert_eq(rc, PBP_EMSGSIZE);
	cr_assert_neq(strstr(pbp_channel_errmsg(pbp_child_channel(h.c)), "2147483648"), NULL);
	cr_assert_lt(elapsed(&h), pbt_scale(1000));
	finish(&h, &r);
	cr_assert_eq(r.end, PBP_END_OVERSIZE);
	cr_assert_eq(r.fate, PBP_FATE_EXITED);
	log_case("child", "oversize", rc, &r, elapsed(&h));
}

T(length_and_then_nothing)
{
	struct hostile h;
	pbp_report r;
	int rc = recv_from(&h, "lengthonly", NULL, 300);

	cr_assert_eq(rc, PBP_ETIMEDOUT);
	cr_assert_geq(elapsed(&h), 290);
	cr_assert_eq(pbp_child_report(h.c, &r), 0);
	cr_assert_eq(r.end, PBP_END_TIMEOUT);
	cr_assert_eq(r.fate, PBP_FATE_RUNNING);
	finish(&h, &r);
	cr_assert_eq(r.fate, PBP_FATE_EXITED, "it exits once it sees our end of stream");
	log_case("child", "lengthonly", rc, &r, elapsed(&h));
}

T(stops_mid_frame)
{
	struct hostile h;
	pbptest_Text t = { "go" };
	pbp_msginfo mi;
	pbp_report r;
	int rc;

	spawn_hostile(&h, "midframe", NULL, 1000);
	cr_assert_eq(h.rc, 0);
	cr_assert_eq(pbp_channel_send(pbp_child_channel(h.c), pbptest_Type_TEXT, &t), 0);
	rc = pbp_channel_recv(pbp_child_channel(h.c), &mi);
	cr_assert_eq(rc, PBP_ETRUNC);
	finish(&h, &r);
	cr_assert_eq(r.end, PBP_END_TRUNCATED);
	cr_assert_eq(r.fate, PBP_FATE_SIGNALED);
	cr_assert_eq(r.status.signal, SIGKILL);
	log_case("child", "midframe", rc, &r, elapsed(&h));
}

T(exits_by_signal)
{
	struct hostile h;
	pbp_report r;
	int rc = recv_from(&h, "signal", "15", 1000);

	cr_assert_eq(rc, PBP_EOF, "a death between frames is an end of stream");
	finish(&h, &r);
	cr_assert_eq(r.end, PBP_END_EOF);
	cr_assert_eq(r.fate, PBP_FATE_SIGNALED);
	cr_assert_eq(r.status.signal, SIGTERM);
	log_case("child", "signal", rc, &r, elapsed(&h));
}

T(floods)
{
	struct hostile h;
	pbp_report r;
	pbp_msginfo mi;
	int i, rc = 0;

	spawn_hostile(&h, "spam", NULL, 1000);
	cr_assert_eq(h.rc, 0);
	for (i = 0; i < 20000 && rc == 0; i++)
		rc = pbp_channel_recv(pbp_child_channel(h.c), &mi);
	cr_assert_eq(rc, 0);
	/* It never stops by itself: close escalates to SIGTERM. */
	finish(&h, &r);
	cr_assert_eq(r.end, PBP_END_OPEN);
	cr_assert_eq(r.fate, PBP_FATE_SIGNALED);
	cr_assert_eq(r.status.signal, SIGTERM);
	log_case("child", "spam", rc, &r, elapsed(&h));
}

T(closes_only_its_read_pipe)
{
	struct hostile h;
	pbptest_Text t = { "anyone there?" };
	pbp_report r;
	pbp_msginfo mi;
	int rc, i;

	spawn_hostile(&h, "closeread", NULL, 1000);
	cr_assert_eq(h.rc, 0);
	/* Its message still arrives; our sends find no reader. */
	cr_assert_eq(pbp_channel_recv(pbp_child_channel(h.c), &mi), 0);
	for (i = 0, rc = 0; i < 100 && rc == 0; i++)
		rc = pbp_channel_send(pbp_child_channel(h.c), pbptest_Type_TEXT, &t);
	cr_assert_eq(rc, PBP_EPIPE);
	cr_assert_eq(pbp_child_report(h.c, &r), 0);
	cr_assert_eq(r.end, PBP_END_PEER_GONE);
	finish(&h, &r);
	cr_assert_eq(r.fate, PBP_FATE_SIGNALED);
	log_case("child", "closeread", rc, &r, elapsed(&h));
}

T(closes_only_its_write_pipe)
{
	struct hostile h;
	pbp_report r;
	int rc = recv_from(&h, "closewrite", NULL, 1000);

	cr_assert_eq(rc, PBP_EOF);
	finish(&h, &r);
	cr_assert_eq(r.end, PBP_END_EOF);
	cr_assert_eq(r.fate, PBP_FATE_EXITED);
	cr_assert_eq(r.status.code, 0);
	log_case("child", "closewrite", rc, &r, elapsed(&h));
}

T(exec_failure_report)
{
	struct hostile h;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_error err;

	if (pbt_valgrind())
		cr_skip_test("exec failure is valgrind's to report under valgrind");
	memset(&h, 0, sizeof h);
	so.report = &h.rep;
	h.rc = pbp_child_spawn(&h.c, "/nonexistent/helper", NULL, &so, &err);
	cr_assert_eq(h.rc, PBP_EEXEC);
	cr_assert_eq(h.rep.end, PBP_END_EXEC);
	cr_assert_eq(h.rep.fate, PBP_FATE_EXEC_FAILED);
	cr_assert_neq(strstr(h.rep.message, "No such file"), NULL);
	log_case("child", "exec", h.rc, &h.rep, 0);
}

/* ---- a hostile parent against pbpipe-child -------------------------------- */

#ifdef PBPTEST_HAVE_DEMO
static const pbp_msgtype demo_types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
};

/* Starts pbpipe-child without a handshake; with `hello`, handshakes as
 * the demo parent would. */
static pbp_child *
demo_child(int hello, uint64_t fingerprint)
{
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c;
	pbp_error err;

	co.types = demo_types;
	co.ntypes = 1;
	co.schema_fingerprint = fingerprint;
	so.channel = &co;
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	so.stdout_mode = PBP_STDIO_DEVNULL;
	so.stderr_mode = PBP_STDIO_CAPTURE;
	cr_assert_eq(pbp_child_spawn(&c, PBPIPE_CHILD, NULL, &so, &err), 0, "%s", err.msg);
	if (hello)
		cr_assert_eq(pbp_channel_handshake(pbp_child_channel(c)), 0, "%s",
		             pbp_channel_errmsg(pbp_child_channel(c)));
	return c;
}

/* Waits for pbpipe-child to exit by itself; checks its code and stderr. */
static void
expect_child_exit(pbp_child *c, const char *mode, int code, const char *needle, int64_t t0)
{
	pbp_exit_status st;
	pbp_report r;

	cr_assert_eq(pbp_child_wait(c, 10000, &st), 0, "%s: child still running", mode);
	cr_assert_eq(pbp_child_report(c, &r), 0);
	cr_assert_eq(st.exited, 1, "%s", mode);
	cr_assert_eq(st.code, code, "%s: exit %d, stderr: %s", mode, st.code, r.stderr_tail);
	if (needle != NULL)
		cr_assert_neq(strstr(r.stderr_tail, needle), NULL, "%s: stderr: %s", mode,
		              r.stderr_tail);
	cr_log_info("hostile parent=%s child exit=%d elapsed_ms=%lld child stderr: %.*s", mode,
	            st.code, (long long)(pbp__now_ms() - t0),
	            (int)strcspn(r.stderr_tail, "\n"), r.stderr_tail);
	pbp_child_free(c);
}

static void
raw(pbp_child *c, const void *bytes, size_t n)
{
	pbt_write_all(pbp_channel_write_fd(pbp_child_channel(c)), bytes, n);
}

T(parent_sends_garbage)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(0, DEMO_SCHEMA_FINGERPRINT);
	static const char junk[] = "SYNC\nHello from Process A!\nEND\nSYNC\nHello from Process A!\n"
	                           "END\nSYNC\nHello from Process A!\nEND\n";

	raw(c, junk, sizeof junk - 1);
	expect_child_exit(c, "garbage", 1, "handshake failed", t0);
}

T(parent_never_handshakes)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(0, DEMO_SCHEMA_FINGERPRINT);

	expect_child_exit(c, "silent", 1, "no Hello from the peer within 5000 ms", t0);
}

T(parent_with_another_schema)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(0, 0x1234);

	cr_assert_eq(pbp_channel_handshake(pbp_child_channel(c)), PBP_EPROTO);
	expect_child_exit(c, "fingerprint", 1, "schema fingerprint mismatch", t0);
}

T(parent_declares_an_oversize_frame)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(1, DEMO_SCHEMA_FINGERPRINT);

	raw(c, "\xff\xff\xff\xff\x0f", 5);
	expect_child_exit(c, "oversize", 1, "exceeds the limit", t0);
}

T(parent_stops_mid_frame)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(1, DEMO_SCHEMA_FINGERPRINT);

	raw(c, "\x20\x1a\x1e\x08\x01", 5);
	cr_assert_eq(pbp_channel_close_write(pbp_child_channel(c)), 0);
	expect_child_exit(c, "midframe", 1, "end of stream inside a frame body", t0);
}

T(parent_sends_an_unknown_type)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(1, DEMO_SCHEMA_FINGERPRINT);

	cr_assert_eq(pbp_channel_send_raw(pbp_child_channel(c), 99, 0, "\x08\x01", 2), 0);
	expect_child_exit(c, "unknown-type", 1, "type 99", t0);
}

T(parent_says_goodbye)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(1, DEMO_SCHEMA_FINGERPRINT);

	cr_assert_eq(pbp_channel_goodbye(pbp_child_channel(c), PBP_GOODBYE_SHUTDOWN, "bye"), 0);
	expect_child_exit(c, "goodbye", 0, NULL, t0);
}

T(parent_vanishes)
{
	int64_t t0 = pbp__now_ms();
	pbp_child *c = demo_child(0, DEMO_SCHEMA_FINGERPRINT);

	/* Close both our ends without a word. */
	cr_assert_eq(pbp_channel_close_write(pbp_child_channel(c)), 0);
	close(pbp_channel_read_fd(pbp_child_channel(c)));
	expect_child_exit(c, "vanish", 1, "handshake failed", t0);
}
#endif
