/*
 * test_process.c: the child process around a channel, under pressure and
 * under hostile process-wide settings.  Captured stderr that must arrive
 * whole while the parent is in any pbpipe call (issue 12.2) and from two
 * threads of a duplex channel (13.1); a pid reaped elsewhere and recycled,
 * which must never be signalled (13.3); and a fork() of the parent, whose
 * copy of the child object must leave the helper alone (13.4).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

extern char **environ;

#define T(name) Test(process, name, .timeout = 60)

/* ---- captured stderr (issues 12.2 and 13.1) ------------------------------- */

/* 65536 lines of 16 bytes: 1 MiB, sixteen times a default pipe. */
#define BURST_LINES 65536

/* What one burst of the log helper writes: its lines and its marker. */
static size_t
burst_bytes(int lines, const char *marker)
{
	return (size_t)lines * 16 + strlen("marker \n") + strlen(marker);
}

static pbp_child *
spawn_logger(int lines, pbp_channel_options *co, size_t tail)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	char arg[16];
	const char *argv[] = { PBPTEST_PEER, "log", arg, NULL };
	pbp_child *c;
	pbp_error err;

	snprintf(arg, sizeof arg, "%d", lines);
	so.channel = co;
	so.stdout_mode = PBP_STDIO_DEVNULL;
	so.stderr_mode = PBP_STDIO_CAPTURE;
	so.stderr_tail = tail;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	return c;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* The report must count every byte and end with the last line written. */
static void
expect_stderr(pbp_child *c, size_t total, const char *last_line)
{
	static pbp_report r; /* 64 KiB: not on the stack */

	cr_assert_eq(pbp_child_report(c, &r), 0);
	cr_assert_eq(r.stderr_total, total, "the child wrote %zu bytes to stderr, %zu arrived",
	             total, r.stderr_total);
	cr_assert(ends_with(r.stderr_tail, last_line), "tail ends with '%s'",
	          r.stderr_len > 40 ? r.stderr_tail + r.stderr_len - 40 : r.stderr_tail);
}

static void
send_one(pbp_channel *ch, const char *s)
{
	pbptest_Text t;

	snprintf(t.text, sizeof t.text, "%s", s);
	cr_assert_eq(pbp_channel_send(ch, pbptest_Type_TEXT, &t), 0, "send: %s",
	             pbp_channel_errmsg(ch));
}

static void
recv_one(pbp_channel *ch, const char *expect)
{
	uint32_t type;
	pbt_any in;

	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), 0, "recv: %s",
	             pbp_channel_errmsg(ch));
	cr_assert_str_eq(in.text.text, expect);
}

static void
close_ok(pbp_child *c)
{
	pbp_exit_status st;

	cr_assert_eq(pbp_child_close(c, pbt_scale(20000), &st), 0);
	cr_assert(st.exited && st.code == 0, "exited %d code %d signal %d", st.exited, st.code,
	          st.signal);
}

/* A receive without a deadline sleeps in the read of the channel; it must
 * still collect stderr, or a helper logging more than a pipe holds blocks
 * and neither side moves. */
T(issue12_2_stderr_whole_during_recv_without_deadline)
{
	pbp_channel_options co = pbt_options();
	pbp_child *c;

	co.recv_timeout_ms = -1;
	c = spawn_logger(BURST_LINES, &co, 0);
	send_one(pbp_child_channel(c), "a");
	recv_one(pbp_child_channel(c), "a");
	expect_stderr(c, burst_bytes(BURST_LINES, "1"), "\nmarker 1\n");
	close_ok(c);
	expect_stderr(c, burst_bytes(BURST_LINES, "1") + burst_bytes(BURST_LINES, "end"),
	              "\nmarker end\n");
	pbp_child_free(c);
}

T(issue12_2_stderr_whole_during_recv_with_deadline)
{
	pbp_channel_options co = pbt_options();
	pbp_child *c;

	co.recv_timeout_ms = pbt_scale(20000);
	c = spawn_logger(BURST_LINES, &co, 0);
	send_one(pbp_child_channel(c), "a");
	recv_one(pbp_child_channel(c), "a");
	expect_stderr(c, burst_bytes(BURST_LINES, "1"), "\nmarker 1\n");
	close_ok(c);
	pbp_child_free(c);
}

/* The helper logs both bursts while the parent sits in pbp_child_wait. */
T(issue12_2_stderr_whole_during_child_wait)
{
	pbp_channel_options co = pbt_options();
	pbp_exit_status st;
	pbp_child *c;

	c = spawn_logger(BURST_LINES, &co, 0);
	send_one(pbp_child_channel(c), "a");
	cr_assert_eq(pbp_channel_close_write(pbp_child_channel(c)), 0);
	cr_assert_eq(pbp_child_wait(c, pbt_scale(20000), &st), 0);
	cr_assert(st.exited && st.code == 0, "exited %d code %d signal %d", st.exited, st.code,
	          st.signal);
	expect_stderr(c, burst_bytes(BURST_LINES, "1") + burst_bytes(BURST_LINES, "end"),
	              "\nmarker end\n");
	pbp_child_free(c);
}

/* ... and while it sits in pbp_child_close. */
T(issue12_2_stderr_whole_during_child_close)
{
	pbp_channel_options co = pbt_options();
	pbp_child *c;

	c = spawn_logger(BURST_LINES, &co, PBP_STDERR_TAIL_MAX);
	send_one(pbp_child_channel(c), "a");
	close_ok(c);
	expect_stderr(c, burst_bytes(BURST_LINES, "1") + burst_bytes(BURST_LINES, "end"),
	              "\nmarker end\n");
	pbp_child_free(c);
}

#define DUPLEX_MSGS 8000
#define DUPLEX_LINES 16

static void *
duplex_sender(void *arg)
{
	pbp_channel *ch = arg;
	pbptest_Text t;
	int i;

	memset(t.text, 'd', sizeof t.text - 1);
	t.text[sizeof t.text - 1] = '\0';
	for (i = 0; i < DUPLEX_MSGS; i++)
		if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
			return (void *)(intptr_t)(i + 1);
	return NULL;
}

/* One thread sends while another receives: both wait in the transport
 * (the sender too: 2 MiB is more than the pipe holds), so both collect
 * the helper's stderr, into one small tail. */
T(issue13_1_duplex_capture_from_two_threads)
{
	pbp_channel_options co = pbt_options();
	size_t total = 0;
	pbp_channel *ch;
	pthread_t th;
	pbp_child *c;
	char k[16], d[sizeof ((pbptest_Text *)0)->text];
	int i;

	co.flags = PBP_CHANNEL_DUPLEX;
	c = spawn_logger(DUPLEX_LINES, &co, 100);
	ch = pbp_child_channel(c);
	th = pbt_spawn_thread(duplex_sender, ch);
	memset(d, 'd', sizeof d - 1);
	d[sizeof d - 1] = '\0';
	for (i = 0; i < DUPLEX_MSGS; i++) {
		recv_one(ch, d);
		snprintf(k, sizeof k, "%d", i + 1);
		total += burst_bytes(DUPLEX_LINES, k);
	}
	cr_assert_null(pbt_join(th), "a send failed: %s", pbp_channel_send_error(ch)->msg);
	close_ok(c);
	expect_stderr(c, total + burst_bytes(DUPLEX_LINES, "end"), "\nmarker end\n");
	pbp_child_free(c);
}

/* ---- a pid reaped elsewhere (issue 13.3) ---------------------------------- */

enum reaping {
	REAP_IGNORE,    /* SIGCHLD set to SIG_IGN: the kernel reaps */
	REAP_NOCLDWAIT, /* SA_NOCLDWAIT: the kernel reaps */
	REAP_HANDLER,   /* the application's SIGCHLD handler calls waitpid(-1) */
};

static void
reaper(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

/* Changes SIGCHLD handling in this test's worker process only. */
static void
set_reaping(enum reaping how)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = how == REAP_IGNORE ? SIG_IGN : how == REAP_HANDLER ? reaper : SIG_DFL;
	sa.sa_flags = how == REAP_NOCLDWAIT ? SA_NOCLDWAIT : how == REAP_HANDLER ? SA_RESTART : 0;
	cr_assert_eq(sigaction(SIGCHLD, &sa, NULL), 0);
}

static void
restore_reaping(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGCHLD, &sa, NULL), 0);
}

/* Waits until pid names no process at all (reaped, not a zombie). */
static int
gone(pid_t pid)
{
	int i;

	for (i = 0; i < 5000; i++) {
		if (kill(pid, 0) != 0 && errno == ESRCH)
			return 1;
		usleep(1000);
	}
	return 0;
}

static void
require_pid_control(void)
{
	int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		cr_skip_test("NOT RUN: pid reuse needs a writable /proc/sys/kernel/ns_last_pid "
		             "(root in the pid namespace): %s", strerror(errno));
	close(fd);
}

/* Starts `sleep 30`, with the pid after `after` if nothing else takes it
 * first.  Its stdio is /dev/null, so that if this test dies first, the
 * orphan holds no pipe of the test runner. */
static pid_t
spawn_decoy(pid_t after)
{
	const char *argv[] = { "sleep", "30", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char num[16];
	pid_t pid = -1;
	int fd, n;

	fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "ns_last_pid: %s", strerror(errno));
	n = snprintf(num, sizeof num, "%d", (int)after);
	cr_assert_eq(write(fd, num, (size_t)n), n, "ns_last_pid: %s", strerror(errno));
	close(fd);
	sigemptyset(&none);
	sigfillset(&all);
	cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
	cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
	cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0), 0);
	cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0), 0);
	cr_assert_eq(posix_spawn_file_actions_addclosefrom_np(&fa, 3), 0);
	cr_assert_eq(posix_spawnattr_init(&attr), 0);
	cr_assert_eq(posix_spawnattr_setsigmask(&attr, &none), 0);
	cr_assert_eq(posix_spawnattr_setsigdefault(&attr, &all), 0);
	cr_assert_eq(posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
	             0);
	cr_assert_eq(posix_spawnp(&pid, "sleep", &fa, &attr, (char *const *)argv, environ), 0);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

struct reuse {
	pbp_child *c;  /* its process is gone, reaped by someone else */
	pid_t decoy;   /* an unrelated process that now has the child's pid */
	int decoy_fd;  /* a pidfd of the decoy, or -1 without pidfds (valgrind
	                  3.19 has none: the library then takes its fallback) */
};

static void
decoy_end(struct reuse *r)
{
	if (r->decoy_fd >= 0) {
		(void)pidfd_send_signal(r->decoy_fd, SIGKILL, NULL, 0);
		close(r->decoy_fd);
		r->decoy_fd = -1;
	} else if (r->decoy > 0) {
		/* Checked alive just before: the pid is still the decoy's. */
		(void)kill(r->decoy, SIGKILL);
	}
}

/* A helper that handshakes and exits; once someone other than pbpipe has
 * reaped it, a decoy takes its pid.  pbpipe has not looked at the child
 * since the handshake, so it cannot know. */
static void
reuse_setup(struct reuse *r, enum reaping how)
{
	int attempt;

	require_pid_control();
	set_reaping(how);
	for (attempt = 0; attempt < 20; attempt++) {
		pbp_channel_options co = pbt_options();
		pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
		const char *argv[] = { PBPTEST_PEER, "exit", "0", NULL };
		pbp_error err;
		pid_t pid;

		so.channel = &co;
		cr_assert_eq(pbp_child_spawn(&r->c, PBPTEST_PEER, argv, &so, &err), 0, "%s",
		             err.msg);
		pid = pbp_child_pid(r->c);
		cr_assert(gone(pid), "child pid %d was not reaped by the kernel or the handler",
		          (int)pid);
		r->decoy = spawn_decoy(pid - 1);
		r->decoy_fd = pidfd_open(r->decoy, 0);
		cr_assert(r->decoy_fd >= 0 || errno == ENOSYS, "pidfd_open: %s", strerror(errno));
		if (r->decoy == pid)
			return;
		/* Another process took the pid first: try again. */
		decoy_end(r);
		pbp_child_free(r->c);
	}
	cr_assert_fail("no decoy got a recycled pid in 20 attempts");
}

static int
decoy_alive(const struct reuse *r)
{
	struct pollfd p = { .fd = r->decoy_fd, .events = POLLIN };
	char path[64], buf[256], *state;
	FILE *f;
	size_t n;

	/* A pidfd turns readable when its process exits. */
	if (r->decoy_fd >= 0)
		return poll(&p, 1, 200) == 0;
	/* Without one: the decoy is an unreaped child of ours, so its pid
	 * cannot be recycled; see that it is there and not a zombie. */
	usleep(200000);
	snprintf(path, sizeof path, "/proc/%d/stat", (int)r->decoy);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	state = strrchr(buf, ')');
	return state != NULL && state[1] == ' ' && state[2] != 'Z';
}

static void
reuse_done(struct reuse *r)
{
	decoy_end(r);
	restore_reaping();
	(void)waitpid(r->decoy, NULL, 0); /* ECHILD if the kernel reaped it */
}

static void
reused_kill(enum reaping how)
{
	struct reuse r;

	reuse_setup(&r, how);
	cr_assert_eq(pbp_child_kill(r.c, SIGKILL), 0);
	cr_assert(decoy_alive(&r), "pbp_child_kill signalled pid %d, no longer its child",
	          (int)r.decoy);
	pbp_child_free(r.c);
	cr_assert(decoy_alive(&r), "pbp_child_free signalled pid %d", (int)r.decoy);
	reuse_done(&r);
}

static void
reused_close(enum reaping how)
{
	pbp_exit_status st;
	struct reuse r;
	char how_s[96];

	reuse_setup(&r, how);
	cr_assert_eq(pbp_child_close(r.c, 100, &st), 0);
	cr_assert(decoy_alive(&r), "pbp_child_close signalled pid %d, no longer its child",
	          (int)r.decoy);
	cr_assert_str_eq(pbp_exit_status_str(&st, how_s, sizeof how_s),
	                 "exit status unknown (reaped elsewhere)");
	cr_assert_eq(st.unknown, 1);
	cr_assert_eq(st.exited, 0);
	cr_assert_eq(st.signal, 0);
	/* The decoy is a child of this process: pbpipe must not reap it. */
	{
		siginfo_t si;

		memset(&si, 0, sizeof si);
		cr_assert_eq(waitid(P_PID, (id_t)r.decoy, &si, WEXITED | WNOHANG | WNOWAIT), 0);
		cr_assert_eq(si.si_pid, 0, "the decoy was reaped");
	}
	pbp_child_free(r.c);
	cr_assert(decoy_alive(&r), "pbp_child_free signalled pid %d", (int)r.decoy);
	reuse_done(&r);
}

static void
reused_free(enum reaping how)
{
	struct reuse r;

	reuse_setup(&r, how);
	pbp_child_free(r.c);
	cr_assert(decoy_alive(&r), "pbp_child_free signalled pid %d, no longer its child",
	          (int)r.decoy);
	reuse_done(&r);
}

T(issue13_3_kill_spares_a_recycled_pid_sigchld_ignored) { reused_kill(REAP_IGNORE); }
T(issue13_3_kill_spares_a_recycled_pid_nocldwait) { reused_kill(REAP_NOCLDWAIT); }
T(issue13_3_kill_spares_a_recycled_pid_app_reaper) { reused_kill(REAP_HANDLER); }
T(issue13_3_close_spares_a_recycled_pid_sigchld_ignored) { reused_close(REAP_IGNORE); }
T(issue13_3_close_spares_a_recycled_pid_nocldwait) { reused_close(REAP_NOCLDWAIT); }
T(issue13_3_close_spares_a_recycled_pid_app_reaper) { reused_close(REAP_HANDLER); }
T(issue13_3_free_spares_a_recycled_pid_sigchld_ignored) { reused_free(REAP_IGNORE); }
T(issue13_3_free_spares_a_recycled_pid_nocldwait) { reused_free(REAP_NOCLDWAIT); }
T(issue13_3_free_spares_a_recycled_pid_app_reaper) { reused_free(REAP_HANDLER); }

/* Without pid reuse: the status of a child reaped elsewhere is unknown,
 * said so, and stays so. */
static void
status_unknown(enum reaping how)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "exit", "5", NULL };
	static pbp_report r;
	pbp_exit_status st;
	pbp_child *c;
	pbp_error err;
	char line[512];

	set_reaping(how);
	so.channel = &co;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	cr_assert(gone(pbp_child_pid(c)));
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert_eq(st.unknown, 1);
	cr_assert_eq(st.exited, 0, "no invented exit");
	cr_assert_eq(pbp_child_wait(c, 0, &st), 0, "the same answer again");
	cr_assert_eq(st.unknown, 1);
	cr_assert_eq(pbp_child_report(c, &r), 0);
	cr_assert_eq(r.fate, PBP_FATE_UNKNOWN);
	cr_assert_neq(strstr(pbp_report_str(&r, line, sizeof line),
	                     "exit status unknown (reaped elsewhere)"), NULL, "%s", line);
	cr_assert_eq(pbp_child_kill(c, SIGTERM), 0);
	cr_assert_eq(pbp_child_close(c, 100, &st), 0);
	cr_assert_eq(st.unknown, 1);
	pbp_child_free(c);
	restore_reaping();
}

T(issue13_3_status_unknown_sigchld_ignored) { status_unknown(REAP_IGNORE); }
T(issue13_3_status_unknown_nocldwait) { status_unknown(REAP_NOCLDWAIT); }
T(issue13_3_status_unknown_app_reaper) { status_unknown(REAP_HANDLER); }

/* A child that dies before the handshake, reaped by the kernel: the
 * error says its status is unknown, not that it was killed. */
T(issue13_3_failed_handshake_child_reaped_elsewhere)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "early", "3", NULL };
	static pbp_report r;
	pbp_child *c = NULL;
	pbp_error err;
	int rc;

	set_reaping(REAP_IGNORE);
	so.channel = &co;
	so.report = &r;
	rc = pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err);
	cr_assert(rc == PBP_ETRUNC || rc == PBP_EPIPE, "rc %d: %s", rc, err.msg);
	cr_assert_neq(strstr(err.msg, "exit status unknown (reaped elsewhere)"), NULL, "%s",
	              err.msg);
	cr_assert_null(strstr(err.msg, "killed"), "%s", err.msg);
	cr_assert_eq(r.fate, PBP_FATE_UNKNOWN);
	restore_reaping();
}

/* ---- fork() in the application (issue 13.4) ------------------------------- */

/* The forked copy may only free its inherited child object: that closes
 * its copies of the pipes and touches neither the process nor the
 * conversation.  The spawner's helper goes on answering, and sees end of
 * stream when the spawner closes its side, though the fork is still
 * alive. */
T(issue13_4_forked_copy_frees_without_touching_the_helper)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "echo", NULL };
	int up[2], down[2], raw = 0;
	pbp_exit_status st;
	pbp_child *c;
	pbp_error err;
	char b;
	pid_t f;

	so.channel = &co;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	cr_assert_eq(pipe2(up, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(down, O_CLOEXEC), 0);
	f = fork();
	cr_assert_geq(f, 0);
	if (f == 0) {
		/* The forked process: never return into the test runner. */
		pbp_report *r = malloc(sizeof *r);
		int bad = 0;

		bad |= pbp_child_wait(c, 0, &st) != PBP_EINVAL;
		bad |= (pbp_child_kill(c, SIGKILL) != PBP_EINVAL) << 1;
		bad |= (pbp_child_close(c, 0, &st) != PBP_EINVAL) << 2;
		bad |= (r == NULL || pbp_child_report(c, r) != PBP_EINVAL) << 3;
		bad |= (strstr(pbp_child_error(c)->msg, "fork") == NULL) << 4;
		bad |= (pbp_child_channel(c) != NULL) << 5;
		free(r);
		pbp_child_free(c);
		close(up[0]);
		close(down[1]);
		if (write(up[1], "", 1) != 1)
			bad |= 1 << 6;
		while (read(down[0], &b, 1) > 0)
			;
		_exit(bad);
	}
	close(up[1]);
	close(down[0]);
	cr_assert_eq(read(up[0], &b, 1), 1, "the fork did not finish pbp_child_free");
	cr_assert_eq(pbp_channel_set_timeout(pbp_child_channel(c), PBP_TIMEOUT_RECV, 5000), 0);
	send_one(pbp_child_channel(c), "still there");
	recv_one(pbp_child_channel(c), "still there");
	/* End of stream reaches the helper: the fork holds no write end. */
	cr_assert_eq(pbp_channel_close_write(pbp_child_channel(c)), 0);
	cr_assert_eq(pbp_child_wait(c, pbt_scale(5000), &st), 0,
	             "the helper did not see end of stream");
	cr_assert(st.exited && st.code == 0, "exited %d code %d signal %d", st.exited, st.code,
	          st.signal);
	close(down[1]);
	close(up[0]);
	cr_assert_eq(waitpid(f, &raw, 0), f);
	cr_assert(WIFEXITED(raw) && WEXITSTATUS(raw) == 0, "the fork's checks: status %#x", raw);
	pbp_child_free(c);
}

/* With SIGCHLD at its default, a child that exited is a zombie until
 * pbpipe reaps it: signalling it is harmless and must not make its status
 * unknown. */
T(issue13_3_kill_of_a_zombie_keeps_its_status)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "exit", "5", NULL };
	pbp_exit_status st;
	siginfo_t si;
	pbp_child *c;
	pbp_error err;

	so.channel = &co;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	memset(&si, 0, sizeof si);
	cr_assert_eq(waitid(P_PID, (id_t)pbp_child_pid(c), &si, WEXITED | WNOWAIT), 0);
	cr_assert_eq(pbp_child_kill(c, SIGKILL), 0);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert_eq(st.unknown, 0);
	cr_assert(st.exited && st.code == 5, "exited %d code %d signal %d", st.exited, st.code,
	          st.signal);
	pbp_child_free(c);
}
