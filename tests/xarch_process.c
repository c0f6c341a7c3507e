/*
 * xarch-process: the child's lifecycle, checked without Criterion, so that
 * trees without it (musl, 32-bit) test the platform layer of lib/os/posix/proc.c
 * too: the fds a child inherits, exit statuses and signal names, waiting
 * with a deadline, kill and close, reaping, and (Linux) that a helper busy
 * in a call dies with its parent (issue 16; lib/os/posix/watch.c).  Usage:
 *
 *     xarch-process PEER
 *
 * PEER is a pbptest-peer (tests/peer.c) of any width and libc.  Runs every
 * check, prints "xarch-process: ok <check>" or "xarch-process: FAIL
 * <check>: <why>" for each, then the closing line "xarch-process: N passed,
 * M failed", and exits 0 only if nothing failed.  An alarm ends a run that
 * hangs (exit by SIGALRM).
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
};

static const char *peer;
static char why[512];

/* Records why the current check failed (the first reason only); returns 0
 * so that a check can say `return failed(...)`. */
static int failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
failed(const char *fmt, ...)
{
	va_list ap;

	if (why[0] != '\0')
		return 0;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return 0;
}

static pbp_channel_options
options(void)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	o.handshake_timeout_ms = 5000;
	return o;
}

/* Spawns PEER MODE [ARG]; NULL (and why) on failure. */
static pbp_child *
spawn(const char *mode, const char *arg, pbp_spawn_options *so)
{
	pbp_spawn_options def = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = options();
	const char *argv[] = { peer, mode, arg, NULL };
	pbp_child *c = NULL;
	pbp_error err;

	if (so == NULL)
		so = &def;
	so->channel = &co;
	if (pbp_child_spawn(&c, peer, argv, so, &err) != 0) {
		failed("spawning '%s %s': %s", mode, arg ? arg : "", err.msg);
		return NULL;
	}
	return c;
}

static int
recv_text(pbp_child *c, char *out, size_t size)
{
	pbp_channel *ch = pbp_child_channel(c);
	pbptest_Text t;
	uint32_t type;

	if (pbp_channel_recv_msg(ch, &type, &t, sizeof t) != 0)
		return failed("recv: %s", pbp_channel_errmsg(ch));
	if (type != pbptest_Type_TEXT)
		return failed("recv: type %u, expected a Text", (unsigned)type);
	snprintf(out, size, "%s", t.text);
	return 1;
}

/* Waits for the child (5 s at most) and checks how it ended: exited with
 * code (signal 0), or killed by signal; then frees it. */
static int
expect_end(pbp_child *c, int code, int sig, const char *str)
{
	pbp_exit_status st;
	char buf[128];
	int rc = pbp_child_wait(c, 5000, &st), ok = 0;

	if (rc != 0)
		failed("pbp_child_wait: %s", pbp_strerror(rc));
	else if (sig == 0 && (!st.exited || st.code != code))
		failed("expected exit %d, got: %s", code, pbp_exit_status_str(&st, buf, sizeof buf));
	else if (sig != 0 && st.signal != sig)
		failed("expected signal %d, got: %s", sig, pbp_exit_status_str(&st, buf, sizeof buf));
	else if (str != NULL && strcmp(pbp_exit_status_str(&st, buf, sizeof buf), str) != 0)
		failed("status string '%s', expected '%s'", buf, str);
	else
		ok = 1;
	pbp_child_free(c);
	return ok;
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* ---- the checks ---------------------------------------------------------- */

/* fds of ours without FD_CLOEXEC, low and high, must not reach the child. */
static int
child_gets_exactly_fds_0_to_4(void)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	char *envp[] = { "PBPTEST_VAR=from-the-parent", NULL };
	int lo = open("/dev/null", O_RDONLY), hi = lo >= 0 ? fcntl(lo, F_DUPFD, 77) : -1;
	const char *want = "fds=0,1,2,3,4,;cwd=/tmp;env=from-the-parent";
	pbp_child *c;
	char got[256];
	int ok = 0;

	if (lo < 0 || hi < 0) {
		failed("setting up inheritable fds: %s", strerror(errno));
		goto out;
	}
	so.envp = envp;
	so.cwd = "/tmp";
	if ((c = spawn("info", NULL, &so)) == NULL)
		goto out;
	if (recv_text(c, got, sizeof got) && strcmp(got, want) != 0)
		failed("the child says '%s', expected '%s' (fds %d and %d leaked?)", got, want, lo, hi);
	if (pbp_child_close(c, 5000, NULL) != 0)
		failed("pbp_child_close: %s", pbp_child_error(c)->msg);
	pbp_child_free(c);
	ok = why[0] == '\0';
out:
	if (lo >= 0)
		close(lo);
	if (hi >= 0)
		close(hi);
	return ok;
}

/* A second child must not hold the first one's pipes, or the first would
 * never see end of stream. */
static int
second_child_does_not_hold_the_firsts_pipes(void)
{
	pbp_child *a = spawn("echo", NULL, NULL), *b = a ? spawn("info", NULL, NULL) : NULL;
	pbp_exit_status st;
	char got[256];
	int ok = 0;

	if (a == NULL || b == NULL)
		goto out;
	if (!recv_text(b, got, sizeof got))
		goto out;
	if (strncmp(got, "fds=0,1,2,3,4,;", 15) != 0) {
		failed("the second child says '%s'", got);
		goto out;
	}
	if (pbp_channel_close_write(pbp_child_channel(a)) != 0 ||
	    pbp_child_wait(a, 5000, &st) != 0) {
		failed("the first child did not see end of stream");
		goto out;
	}
	if (pbp_child_wait(b, 0, &st) != PBP_ETIMEDOUT) {
		failed("the second child is not running any more");
		goto out;
	}
	ok = 1;
out:
	pbp_child_free(a);
	pbp_child_free(b);
	return ok;
}

static int
exec_failure_is_synchronous(void)
{
	const char *argv[] = { "/nonexistent/pbptest-peer", NULL };
	pbp_child *c = NULL;
	pbp_error err;
	int before = count_fds(), rc;

	rc = pbp_child_spawn(&c, "/nonexistent/pbptest-peer", argv, NULL, &err);
	if (rc != PBP_EEXEC)
		return failed("rc %d (%s), expected PBP_EEXEC", rc, pbp_strerror(rc));
	if (strstr(err.msg, "No such file") == NULL)
		return failed("message '%s' does not say ENOENT", err.msg);
	if (count_fds() != before)
		return failed("%d fds before, %d after", before, count_fds());
	return 1;
}

static int
exit_status_comes_back(void)
{
	pbp_child *c = spawn("exit", "7", NULL);

	return c != NULL && expect_end(c, 7, 0, "exited with status 7");
}

/* The names come from sigabbrev_np or lib/os/posix/proc.c's table. */
static int
signals_are_named(void)
{
	static const struct {
		int sig;
		const char *name;
	} cases[] = {
		{ SIGTERM, "TERM" }, { SIGKILL, "KILL" }, { SIGUSR1, "USR1" },
		{ SIGHUP, "HUP" }, { SIGPIPE, "PIPE" },
	};
	char arg[16], want[64];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		pbp_child *c;

		snprintf(arg, sizeof arg, "%d", cases[i].sig);
		snprintf(want, sizeof want, "killed by signal %d (SIG%s)", cases[i].sig, cases[i].name);
		if ((c = spawn("signal", arg, NULL)) == NULL ||
		    !expect_end(c, 0, cases[i].sig, want))
			return 0;
	}
	return 1;
}

static int
wait_has_a_deadline_and_kill_ends_the_child(void)
{
	pbp_child *c = spawn("stubborn", NULL, NULL);
	int rc;

	if (c == NULL)
		return 0;
	if ((rc = pbp_child_wait(c, 100, NULL)) != PBP_ETIMEDOUT) {
		pbp_child_free(c);
		return failed("wait on a running child: rc %d, expected PBP_ETIMEDOUT", rc);
	}
	if ((rc = pbp_child_kill(c, SIGKILL)) != 0) {
		pbp_child_free(c);
		return failed("pbp_child_kill: %s", pbp_strerror(rc));
	}
	return expect_end(c, 0, SIGKILL, "killed by signal 9 (SIGKILL)");
}

/* close: Goodbye, then SIGTERM after the grace time (ignored), then SIGKILL. */
static int
close_escalates_to_sigkill(void)
{
	pbp_child *c = spawn("immortal", NULL, NULL);
	pbp_exit_status st;
	int rc;

	if (c == NULL)
		return 0;
	rc = pbp_child_close(c, 200, &st);
	pbp_child_free(c);
	if (rc != 0)
		return failed("pbp_child_close: %s", pbp_strerror(rc));
	if (st.signal != SIGKILL)
		return failed("the child ended with signal %d, expected SIGKILL", st.signal);
	return 1;
}

static int
cycles_leave_no_fd_and_no_zombie(void)
{
	int before = count_fds(), i;

	for (i = 0; i < 50; i++) {
		pbp_child *c = spawn("echo", NULL, NULL);
		pbp_exit_status st;

		if (c == NULL)
			return 0;
		if (pbp_child_close(c, 5000, &st) != 0 || !st.exited || st.code != 0) {
			pbp_child_free(c);
			return failed("cycle %d: the child did not exit 0", i);
		}
		pbp_child_free(c);
	}
	if (count_fds() != before)
		return failed("%d fds before, %d after", before, count_fds());
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		return failed("a child or zombie is left");
	return 1;
}

#if defined(__linux__) && defined(PR_SET_CHILD_SUBREAPER)
static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts `PEER spawner busy` (a parent that spawns PEER busy and starts
 * a call) with its stdout on a pipe; returns the helper's pid, or 0. */
static pid_t
start_parent(pid_t *parent)
{
	char line[64];
	size_t got = 0;
	ssize_t n;
	int p[2];

	if (pipe(p) != 0 || fcntl(p[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) != 0)
		return (pid_t)failed("pipe: %s", strerror(errno));
	if ((*parent = fork()) == 0) {
		if (dup2(p[1], 1) >= 0)
			execl(peer, peer, "spawner", "busy", "x", "x", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while (*parent > 0 && got + 1 < sizeof line &&
	       (n = read(p[0], line + got, sizeof line - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(line, '\n', got) != NULL)
			break;
	}
	close(p[0]);
	line[got] = '\0';
	if (*parent <= 0 || atoi(line) <= 0)
		return (pid_t)failed("the parent printed no helper pid: '%s'", line);
	return (pid_t)atoi(line);
}

/* The helper is reparented to us (a child subreaper): reap it within 1 s
 * of its parent's SIGKILL.  Every pid signalled is our unreaped child. */
static int
busy_helper_dies_within_1s_of_its_parent(void)
{
	pid_t parent = 0, helper, r = 0;
	int raw = 0, ok = 1;
	long t0;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		return failed("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
	if ((helper = start_parent(&parent)) > 0) {
		kill(parent, SIGKILL);
		waitpid(parent, NULL, 0);
		t0 = now_ms();
		while ((r = waitpid(helper, &raw, WNOHANG)) == 0 && now_ms() - t0 < 1000) {
			struct timespec ms = { 0, 1000000 };

			nanosleep(&ms, NULL);
		}
		if (r != helper) {
			ok = failed("the helper (pid %d) outlived its parent by 1 s", (int)helper);
			kill(helper, SIGKILL);
			waitpid(helper, NULL, 0);
		} else if (!WIFSIGNALED(raw) || WTERMSIG(raw) != SIGKILL) {
			ok = failed("the helper ended with status %#x, expected SIGKILL", raw);
		}
	} else {
		ok = 0;
		if (parent > 0) {
			kill(parent, SIGKILL);
			waitpid(parent, NULL, 0);
		}
	}
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	return ok;
}
#else
static int
busy_helper_dies_within_1s_of_its_parent(void)
{
	printf("xarch-process: (no child subreaper here: the parent-death check only spawns)\n");
	return 1;
}
#endif

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} checks[] = {
#define CHECK(f) { #f, f }
		CHECK(child_gets_exactly_fds_0_to_4),
		CHECK(second_child_does_not_hold_the_firsts_pipes),
		CHECK(exec_failure_is_synchronous),
		CHECK(exit_status_comes_back),
		CHECK(signals_are_named),
		CHECK(wait_has_a_deadline_and_kill_ends_the_child),
		CHECK(close_escalates_to_sigkill),
		CHECK(cycles_leave_no_fd_and_no_zombie),
		CHECK(busy_helper_dies_within_1s_of_its_parent),
#undef CHECK
	};
	unsigned passed = 0, nfailed = 0;
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: xarch-process PEER\n");
		return 2;
	}
	/* Absolute: one check spawns it with another working directory. */
	if ((peer = realpath(argv[1], NULL)) == NULL) {
		fprintf(stderr, "xarch-process: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	alarm(120);
	for (i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		why[0] = '\0';
		if (checks[i].fn() && why[0] == '\0') {
			printf("xarch-process: ok %s\n", checks[i].name);
			passed++;
		} else {
			printf("xarch-process: FAIL %s: %s\n", checks[i].name,
			       why[0] ? why : "(no reason given)");
			nfailed++;
		}
		fflush(stdout);
	}
	printf("xarch-process: %u passed, %u failed\n", passed, nfailed);
	free((char *)peer);
	return nfailed == 0 && passed > 0 ? 0 : 1;
}
