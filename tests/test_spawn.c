/*
 * test_spawn.c: spawning a child behind two pipes, exec failure, handshake
 * failures, exit codes and signals, end of stream both ways, parent death,
 * fd hygiene and reaping.  The children are tests/peer.c in scripted modes
 * and the demo's pbpipe-child.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define T(name) Test(spawn, name, .timeout = 60)

static int
spawn_peer_rc(pbp_child **c, const char *mode, const char *arg, pbp_channel_options *co,
              pbp_error *err)
{
	pbp_channel_options def = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, mode, arg, NULL };

	so.channel = co ? co : &def;
	return pbp_child_spawn(c, PBPTEST_PEER, argv, &so, err);
}

static pbp_child *
spawn_peer(const char *mode, const char *arg)
{
	pbp_child *c = NULL;
	pbp_error err;
	int rc = spawn_peer_rc(&c, mode, arg, NULL, &err);

	cr_assert_eq(rc, 0, "spawn %s: %s", mode, err.msg);
	return c;
}

static void
assert_no_children(void)
{
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child or zombie is left");
	cr_assert_eq(errno, ECHILD);
}

static void
recv_text(pbp_channel *ch, char *out, size_t size)
{
	uint32_t type;
	pbt_any in;
	int rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);

	cr_assert_eq(rc, 0, "recv: %s", pbp_channel_errmsg(ch));
	cr_assert_eq(type, pbptest_Type_TEXT);
	snprintf(out, size, "%s", in.text.text);
}

T(spawn_exchange_and_clean_close)
{
	pbp_child *c = spawn_peer("echo", NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbptest_Text t = { "ping" };
	pbp_exit_status st;
	pbp_peer_info p;
	char got[256];

	cr_assert_eq(pbp_channel_peer(ch, &p), 0);
	cr_assert_eq(p.pid, (uint32_t)pbp_child_pid(c), "Hello carries the child's pid");
	cr_assert_eq(pbp_channel_send(ch, pbptest_Type_TEXT, &t), 0);
	recv_text(ch, got, sizeof got);
	cr_assert_str_eq(got, "ping");
	/* close: Goodbye, close write; the child sees end of stream, exits 0. */
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
	cr_assert_eq(st.exited, 1);
	cr_assert_eq(st.code, 0);
	pbp_child_free(c);
	assert_no_children();
}

T(the_demo_child_answers)
{
	pbp_child *c;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_exit_status st;
	pbp_error err;

	if (PBPIPE_CHILD[0] == '\0')
		cr_skip_test("pbpipe-child is not built (PBP_BUILD_EXAMPLES=OFF)");
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	cr_assert_eq(pbp_child_spawn(&c, PBPIPE_CHILD, NULL, &so, &err), 0, "%s", err.msg);
	/* Default options (fingerprint 0) do not match the demo schema:
	 * both sides must refuse. */
	cr_assert_eq(pbp_channel_handshake(pbp_child_channel(c)), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(pbp_child_channel(c)), "fingerprint"), NULL);
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
	cr_assert_eq(st.exited, 1);
	cr_assert_eq(st.code, 1, "the child reports its failed handshake by exit 1");
	pbp_child_free(c);
}

T(exec_failure_is_synchronous)
{
	pbp_child *c = NULL;
	pbp_error err;
	int before = pbt_count_fds(), rc;

	/* Under valgrind --trace-children, the exec that happens is valgrind's
	 * own, which succeeds; valgrind then fails to load the program. */
	if (pbt_valgrind())
		cr_skip_test("exec failure is valgrind's to report under valgrind");
	rc = pbp_child_spawn(&c, "/nonexistent/helper", NULL, NULL, &err);
	cr_assert_eq(rc, PBP_EEXEC);
	cr_assert_eq(err.sys_errno, ENOENT);
	cr_assert_neq(strstr(err.msg, "/nonexistent/helper"), NULL, "%s", err.msg);
	cr_assert_null(c);
	/* Not executable: this test's source file. */
	rc = pbp_child_spawn(&c, __FILE__, NULL, NULL, &err);
	cr_assert_eq(rc, PBP_EEXEC);
	cr_assert_eq(err.sys_errno, EACCES, "%s", err.msg);
	/* Not in PATH. */
	rc = pbp_child_spawn(&c, "pbpipe-no-such-program", NULL, NULL, &err);
	cr_assert_eq(rc, PBP_EEXEC);
	cr_assert_eq(pbt_count_fds(), before, "fds leaked by a failed spawn");
	assert_no_children();
}

T(exit_code_after_end_of_stream)
{
	pbp_child *c = spawn_peer("exit", "7");
	pbp_msginfo mi;
	pbp_exit_status st;

	/* The child exits without Goodbye: a clean end between frames. */
	cr_assert_eq(pbp_channel_recv(pbp_child_channel(c), &mi), PBP_EOF);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert_eq(st.exited, 1);
	cr_assert_eq(st.code, 7);
	/* Waiting again returns the same status at once. */
	memset(&st, 0, sizeof st);
	cr_assert_eq(pbp_child_wait(c, 0, &st), 0);
	cr_assert_eq(st.code, 7);
	pbp_child_free(c);
	assert_no_children();
}

T(terminating_signal)
{
	pbp_child *c = spawn_peer("signal", "10"); /* SIGUSR1 */
	pbp_exit_status st;
	char how[80];

	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert_eq(st.exited, 0);
	cr_assert_eq(st.signal, SIGUSR1);
	cr_assert_str_eq(pbp_exit_status_str(&st, how, sizeof how),
	                 "killed by signal 10 (SIGUSR1)");
	pbp_child_free(c);
}

T(wait_times_out_then_kill)
{
	pbp_child *c = spawn_peer("echo", NULL);
	pbp_exit_status st;
	int64_t t0 = pbp__now_ms();

	cr_assert_eq(pbp_child_wait(c, 200, &st), PBP_ETIMEDOUT);
	cr_assert_geq(pbp__now_ms() - t0, 190);
	cr_assert_eq(pbp_child_kill(c, SIGTERM), 0);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert_eq(st.signal, SIGTERM);
	cr_assert_eq(pbp_child_kill(c, SIGTERM), 0, "no-op once reaped");
	pbp_child_free(c);
}

T(child_killed_mid_frame_is_truncation)
{
	pbp_child *c = spawn_peer("midframe", NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbptest_Text t = { "go" };
	pbp_exit_status st;
	pbp_msginfo mi;

	cr_assert_eq(pbp_channel_send(ch, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv(ch, &mi), PBP_ETRUNC);
	cr_assert_neq(strstr(pbp_channel_errmsg(ch), "3 of 100 bytes"), NULL, "%s",
	              pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert_eq(st.signal, SIGKILL);
	pbp_child_free(c);
}

T(child_exiting_before_the_handshake)
{
	pbp_child *c = NULL;
	pbp_error err;
	int rc = spawn_peer_rc(&c, "early", "3", NULL, &err);

	cr_assert(rc == PBP_ETRUNC || rc == PBP_EPIPE, "rc %d: %s", rc, err.msg);
	cr_assert_neq(strstr(err.msg, "exited with status 3"), NULL, "%s", err.msg);
	cr_assert_null(c);
	assert_no_children();
}

T(child_never_answering)
{
	pbp_channel_options co = pbt_options();
	pbp_child *c = NULL;
	pbp_error err;
	int64_t t0 = pbp__now_ms(), dt;
	int rc;

	co.handshake_timeout_ms = 300;
	rc = spawn_peer_rc(&c, "silent", NULL, &co, &err);
	dt = pbp__now_ms() - t0;
	/* The child exits when it sees end of stream; either way it is
	 * reaped before spawn returns. */
	cr_assert_eq(rc, PBP_ETIMEDOUT, "%s", err.msg);
	cr_assert_neq(strstr(err.msg, "no Hello from the peer within 300 ms"), NULL, "%s", err.msg);
	cr_assert_lt(dt, pbt_scale(2000), "took %lld ms", (long long)dt);
	assert_no_children();
}

T(child_answering_garbage)
{
	pbp_child *c = NULL;
	pbp_error err;
	int rc = spawn_peer_rc(&c, "garbage", NULL, NULL, &err);

	cr_assert(rc == PBP_EDECODE || rc == PBP_EPROTO, "rc %d: %s", rc, err.msg);
	assert_no_children();
}

T(child_gets_exactly_five_fds_env_and_cwd)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "info", NULL };
	char *envp[] = { "PBPTEST_VAR=from-the-parent", NULL };
	pbp_child *c;
	pbp_error err;
	pbp_exit_status st;
	char got[256];

	so.channel = &co;
	so.envp = envp;
	so.cwd = "/tmp";
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	recv_text(pbp_child_channel(c), got, sizeof got);
	cr_assert_str_eq(got, "fds=0,1,2,3,4,;cwd=/tmp;env=from-the-parent");
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
	cr_assert_eq(st.code, 0);
	pbp_child_free(c);
}

T(second_child_does_not_hold_the_first_childs_pipes)
{
	pbp_child *a = spawn_peer("echo", NULL), *b = spawn_peer("info", NULL);
	pbp_exit_status st;
	char got[256];

	/* b's fd list shows no pipe end of a. */
	recv_text(pbp_child_channel(b), got, sizeof got);
	cr_assert_eq(strncmp(got, "fds=0,1,2,3,4,;", 15), 0, "%s", got);
	/* a sees end of stream and exits by itself, while b still runs. */
	cr_assert_eq(pbp_channel_close_write(pbp_child_channel(a)), 0);
	cr_assert_eq(pbp_child_wait(a, 5000, &st), 0, "a did not see end of stream");
	cr_assert_eq(st.exited, 1);
	cr_assert_eq(st.code, 0);
	cr_assert_eq(pbp_child_wait(b, 0, &st), PBP_ETIMEDOUT, "b is still running");
	cr_assert_eq(pbp_child_close(b, 5000, &st), 0);
	cr_assert_eq(st.code, 0);
	pbp_child_free(a);
	pbp_child_free(b);
	assert_no_children();
}

T(child_sees_the_end_when_the_parent_dies)
{
	/* This test process adopts orphans, so the grandchild becomes ours
	 * when its parent dies, and we can wait for it. */
	pbp_child *c;
	pbptest_Text t = { "got it" };
	pbp_exit_status st;
	char got[256];
	pid_t gc;
	int raw = 0, i;

	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	c = spawn_peer("orphan", NULL);
	recv_text(pbp_child_channel(c), got, sizeof got);
	gc = (pid_t)atoi(got);
	cr_assert_gt(gc, 0);
	cr_assert_eq(pbp_channel_send(pbp_child_channel(c), pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert_eq(st.signal, SIGKILL);
	/* The grandchild's parent is gone; its read side reaches end of
	 * stream and it exits 0 on its own. */
	for (i = 0; i < 500; i++) {
		pid_t r = waitpid(gc, &raw, WNOHANG);

		if (r == gc)
			break;
		usleep(10000);
	}
	cr_assert_lt(i, 500, "the orphaned child did not exit");
	cr_assert(WIFEXITED(raw) && WEXITSTATUS(raw) == 0, "status %#x", raw);
	pbp_child_free(c);
}

T(close_escalates_to_sigterm_then_sigkill)
{
	pbp_child *c = spawn_peer("stubborn", NULL);
	pbp_exit_status st;
	char got[256];
	int64_t t0;

	recv_text(pbp_child_channel(c), got, sizeof got);
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_child_close(c, 200, &st), 0);
	cr_assert_eq(st.signal, SIGTERM);
	cr_assert_geq(pbp__now_ms() - t0, 190);
	pbp_child_free(c);

	c = spawn_peer("immortal", NULL);
	recv_text(pbp_child_channel(c), got, sizeof got);
	cr_assert_eq(pbp_child_close(c, 200, &st), 0);
	cr_assert_eq(st.signal, SIGKILL);
	pbp_child_free(c);
	assert_no_children();
}

T(close_drains_a_child_that_still_writes)
{
	/* 2000 frames of about 260 bytes: far more than a pipe holds.  If
	 * close did not read them, the child would block and be killed. */
	pbp_child *c = spawn_peer("flood", "2000");
	pbp_exit_status st;

	cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
	cr_assert_eq(st.exited, 1, "signal %d", st.signal);
	cr_assert_eq(st.code, 0);
	pbp_child_free(c);
}

T(free_without_close_leaves_no_zombie)
{
	pbp_child *c = spawn_peer("immortal", NULL);
	char got[256];

	recv_text(pbp_child_channel(c), got, sizeof got);
	pbp_child_free(c);
	assert_no_children();
}

T(two_hundred_cycles_leave_no_fd_and_no_zombie)
{
	int before = pbt_count_fds(), i, n = pbt_valgrind() ? 20 : 200;

	for (i = 0; i < n; i++) {
		pbp_child *c = spawn_peer("echo", NULL);
		pbp_exit_status st;

		cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
		cr_assert_eq(st.code, 0, "cycle %d", i);
		pbp_child_free(c);
	}
	cr_assert_eq(pbt_count_fds(), before);
	assert_no_children();
}
