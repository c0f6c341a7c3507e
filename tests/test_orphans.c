/*
 * test_orphans.c: issue 16, no orphans.  A helper busy inside a call is
 * gone within 1 s of its parent's death, however the parent died; with
 * PBP_CHANNEL_OUTLIVE_PARENT it lives on; a parent that died before the
 * helper could watch it fails the helper's handshake, and a stale
 * PBPIPE_PARENT_PID does not; pbp_channel_free() stops the watch thread;
 * PBP_SPAWN_PROCESS_GROUP takes the helper's grandchildren, and never
 * signals the group once the helper is reaped.
 *
 * The tests that kill a parent make this process a child subreaper
 * (Linux), so that orphans are reparented to it and it can reap them
 * with a deadline; the pids it then signals are its own unreaped
 * children, certainly ours.  The intermediate parent is pbptest-peer in
 * mode spawner, exec'd, so nothing but async-signal-safe calls runs
 * between fork and exec here.
 *
 * Threads: the library's parent watch (pthread_create in
 * lib/os/posix/watch.c) runs in this process in the watch-thread tests,
 * and in every helper; scripts/test-tsan finds this file by that name.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "support.h"

#define T(name) Test(orphans, name, .timeout = 60)

extern char **environ;

/* ---- helpers ---------------------------------------------------------------- */

static void
become_subreaper(void)
{
#if defined(__linux__) && defined(PR_SET_CHILD_SUBREAPER)
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0, "prctl: %s", strerror(errno));
#else
	cr_skip_test("needs prctl(PR_SET_CHILD_SUBREAPER) (Linux) to adopt and reap orphans");
#endif
}

static void
nap_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Reaps pid within timeout_ms: 1 with *raw, or 0 if it is still there. */
static int
reap_by(pid_t pid, int timeout_ms, int *raw)
{
	int64_t end = pbp__now_ms() + timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, raw, WNOHANG);

		if (r == pid)
			return 1;
		cr_assert(r == 0, "waitpid(%d): %s", (int)pid, strerror(errno));
		if (pbp__now_ms() >= end)
			return 0;
		nap_ms(1);
	}
}

/* pid is our child and still running (not reaped, not a zombie yet). */
static int
alive(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof si);
	cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT), 0,
	             "waitid(%d): %s", (int)pid, strerror(errno));
	return si.si_pid == 0;
}

/* Kills and reaps pid, our own unreaped child (adopted or not). */
static void
kill_ours(pid_t pid)
{
	int raw;

	cr_assert(alive(pid), "pid %d is not a live child of ours", (int)pid);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert(reap_by(pid, 5000, &raw), "pid %d survived SIGKILL", (int)pid);
}

static void
assert_no_children(void)
{
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child or zombie is left");
	cr_assert_eq(errno, ECHILD);
}

/* Reads what fd brings within timeout_ms, up to its end (or the first
 * newline, if line), into buf. */
static size_t
read_for(int fd, char *buf, size_t size, int timeout_ms, int line)
{
	int64_t end = pbp__now_ms() + timeout_ms;
	size_t n = 0;

	while (n + 1 < size) {
		struct pollfd p = { fd, POLLIN, 0 };
		int64_t left = end - pbp__now_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		r = read(fd, buf + n, size - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (line && memchr(buf, '\n', n) != NULL)
			break;
	}
	buf[n] = '\0';
	return n;
}

/* Starts `pbptest-peer spawner MODE` with its stdout on a pipe: a parent
 * that spawns a helper in MODE, starts a call, and prints the helper's
 * pid once the helper has answered (is busy serving it). */
static pid_t
start_parent(const char *mode, pid_t *helper)
{
	char line[64];
	int p[2];
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (dup2(p[1], 1) < 0)
			_exit(126);
		execl(PBPTEST_PEER, PBPTEST_PEER, "spawner", mode, "x", "x", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	read_for(p[0], line, sizeof line, pbt_scale(10000), 1);
	close(p[0]);
	*helper = (pid_t)atoi(line);
	cr_assert_gt(*helper, 0, "the parent printed no helper pid: '%s'", line);
	return pid;
}

/* Kills the parent with sig and returns how long the helper took to be
 * gone, in ms, or -1 if it is still there after timeout_ms. */
static double
parent_death_latency(pid_t parent, pid_t helper, int sig, int timeout_ms, int *raw)
{
	int64_t t0, t1;
	int praw;

	t0 = pbp__now_ns();
	cr_assert_eq(kill(parent, sig), 0);
	cr_assert(reap_by(parent, 5000, &praw), "the parent survived signal %d", sig);
	cr_assert(WIFSIGNALED(praw) && WTERMSIG(praw) == sig, "parent status %#x", praw);
	if (!reap_by(helper, timeout_ms, raw))
		return -1;
	t1 = pbp__now_ns();
	return (double)(t1 - t0) / 1e6;
}

static void
helper_dies_with_its_parent(int sig)
{
	pid_t parent, helper;
	double ms;
	int raw = 0;

	become_subreaper();
	parent = start_parent("busy", &helper);
	ms = parent_death_latency(parent, helper, sig, pbt_scale(1000), &raw);
	cr_assert_geq(ms, 0, "the helper (pid %d) outlived its parent by more than %d ms",
	              (int)helper, pbt_scale(1000));
	cr_assert(WIFSIGNALED(raw) && WTERMSIG(raw) == SIGKILL, "helper status %#x", raw);
	fprintf(stderr, "orphans: parent killed by signal %d -> helper gone in %.2f ms\n", sig,
	        ms);
	assert_no_children();
}

/* Our environment without PBPIPE_PARENT_PID, plus PBPIPE_PARENT_PID=pid
 * (entry holds it).  Built before fork, in static memory: the forked
 * child only execs or _exits, and leaks nothing under valgrind. */
static char **
env_naming(char *entry, size_t size, pid_t pid)
{
	static char *v[1024];
	size_t n = 0, k = 0, i;

	while (environ[n] != NULL)
		n++;
	cr_assert_lt(n + 2, sizeof v / sizeof v[0]);
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], "PBPIPE_PARENT_PID=", 18) != 0)
			v[k++] = environ[i];
	snprintf(entry, size, "PBPIPE_PARENT_PID=%d", (int)pid);
	v[k++] = entry;
	v[k] = NULL;
	return v;
}

/* In a forked child: puts wfd, rfd and efd (-1: keep stderr) on 3, 4 and
 * 2 and execs `pbptest-peer echo 3 4` with envp.  Async-signal-safe. */
static void
exec_echo_peer(int wfd, int rfd, int efd, char **envp)
{
	static char *const argv[] = { (char *)PBPTEST_PEER, (char *)"echo", (char *)"3",
		                      (char *)"4", NULL };
	int w = fcntl(wfd, F_DUPFD, 20), r = fcntl(rfd, F_DUPFD, 20);
	int e = efd >= 0 ? fcntl(efd, F_DUPFD, 20) : -1;

	if (w < 0 || r < 0 || dup2(w, 3) < 0 || dup2(r, 4) < 0 || (efd >= 0 && dup2(e, 2) < 0))
		_exit(126);
	execve(PBPTEST_PEER, argv, envp);
	_exit(127);
}

static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;

	cr_assert_not_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* ---- the parent dies --------------------------------------------------------- */

T(busy_helper_is_gone_within_1s_of_its_parents_sigkill)
{
	helper_dies_with_its_parent(SIGKILL);
}

T(busy_helper_is_gone_within_1s_of_its_parents_sigterm)
{
	helper_dies_with_its_parent(SIGTERM);
}

T(outlive_parent_flag_keeps_the_helper_alive)
{
	pid_t parent, helper;
	int raw = 0;

	become_subreaper();
	parent = start_parent("outlive-busy", &helper);
	cr_assert_lt(parent_death_latency(parent, helper, SIGKILL, pbt_scale(1500), &raw), 0,
	             "the helper died with its parent despite PBP_CHANNEL_OUTLIVE_PARENT "
	             "(status %#x)",
	             raw);
	/* Reparented to us, still busy in its call. */
	cr_assert(alive(helper));
	kill_ours(helper);
	assert_no_children();
}

static void *
spawn_echo_thread(void *arg)
{
	static pbp_channel_options co;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "echo", NULL };
	pbp_error err;

	co = pbt_options();
	so.channel = &co;
	if (pbp_child_spawn((pbp_child **)arg, PBPTEST_PEER, argv, &so, &err) != 0)
		*(pbp_child **)arg = NULL;
	return NULL;
}

/* The watch is on the parent process, not on the thread that spawned the
 * helper (which PR_SET_PDEATHSIG would be): that thread may end. */
T(helper_outlives_the_thread_that_spawned_it)
{
	pbptest_Text t = { "after the thread" };
	pbp_exit_status st;
	pbp_child *c = NULL;
	char got[256];
	uint32_t type;
	pbt_any in;

	pbt_join(pbt_spawn_thread(spawn_echo_thread, &c));
	cr_assert_not_null(c, "spawn from a thread failed");
	nap_ms(300);
	cr_assert_eq(pbp_child_wait(c, 0, &st), PBP_ETIMEDOUT, "the helper died with the thread");
	cr_assert_eq(pbp_channel_send(pbp_child_channel(c), pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(pbp_child_channel(c), &type, &in, sizeof in), 0, "%s",
	             pbp_channel_errmsg(pbp_child_channel(c)));
	snprintf(got, sizeof got, "%s", in.text.text);
	cr_assert_str_eq(got, "after the thread");
	cr_assert_eq(pbp_child_close(c, pbt_scale(5000), &st), 0);
	cr_assert(st.exited && st.code == 0, "the helper %s", st.exited ? "exited non-zero" : "was killed");
	pbp_child_free(c);
}

/* The spawner died before the helper armed its watch: the helper's
 * PBPIPE_PARENT_PID and the Hello it reads name the spawner, which is not
 * its parent and is gone.  Staged without waiting for a reparenting: the
 * spawner is a process of ours already reaped (its pid names nobody), and
 * its Hello is written here; the helper's parent is this process. */
T(parent_gone_before_the_watch_fails_the_helpers_handshake)
{
	pbp_channel_options o = pbt_options();
	int a[2], b[2], e[2], raw;
	char entry[48], msg[1024], **envp;
	static uint8_t hello[PBP__HANDSHAKE_MAX_FRAME];
	pbpipe_Envelope env;
	size_t n = 0;
	pid_t gone, g;

	gone = fork();
	cr_assert_geq(gone, 0);
	if (gone == 0)
		_exit(0);
	cr_assert(reap_by(gone, 5000, &raw));
	envp = env_naming(entry, sizeof entry, gone);
	pbp__hello_make(&env, o.max_frame ? o.max_frame : PBP_DEFAULT_MAX_FRAME,
	                o.schema_fingerprint, PBP_DEFAULT_STREAM_WINDOW);
	env.body.hello.pid = (uint32_t)gone;
	cr_assert_eq(pbp__control_encode(hello, sizeof hello, &env, &n, NULL), 0);
	cr_assert_eq(pipe2(a, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(b, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(e, O_CLOEXEC), 0);
	g = fork();
	cr_assert_geq(g, 0);
	if (g == 0)
		exec_echo_peer(b[1], a[0], e[1], envp);
	close(a[0]);
	close(b[1]);
	close(e[1]);
	cr_assert_eq(write(a[1], hello, n), (ssize_t)n);
	/* Up to the helper's end (b[0] stays open: its Hello goes out). */
	read_for(e[0], msg, sizeof msg, pbt_scale(5000), 0);
	close(e[0]);
	close(a[1]);
	close(b[0]);
	cr_assert(reap_by(g, pbt_scale(5000), &raw), "the helper did not end");
	cr_assert(strstr(msg, "handshake: the parent process is gone") != NULL,
	          "the helper said: '%s'", msg);
	cr_assert(WIFEXITED(raw) && WEXITSTATUS(raw) != 0, "status %#x", raw);
}

/* A wrapper that forks rather than execs between the spawner and the
 * helper (sh -c 'helper; exit'): the helper's parent is the wrapper, not
 * the spawner its PBPIPE_PARENT_PID names, but the spawner is alive, so
 * this is not the start-of-life race: the helper talks. */
T(a_forking_wrapper_is_not_the_race)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { "sh", "-c", "\"$0\" echo \"$@\"; exit $?", PBPTEST_PEER, NULL };
	pbptest_Text t = { "through a wrapper" };
	pbp_exit_status st;
	pbp_child *c;
	pbp_error err;
	uint32_t type;
	pbt_any in;
	char got[256];

	co.recv_timeout_ms = pbt_scale(5000);
	so.channel = &co;
	cr_assert_eq(pbp_child_spawn(&c, "/bin/sh", argv, &so, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_send(pbp_child_channel(c), pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(pbp_child_channel(c), &type, &in, sizeof in), 0, "%s",
	             pbp_channel_errmsg(pbp_child_channel(c)));
	snprintf(got, sizeof got, "%s", in.text.text);
	cr_assert_str_eq(got, "through a wrapper");
	cr_assert_eq(pbp_child_close(c, pbt_scale(5000), &st), 0);
	cr_assert(st.exited && st.code == 0, "the helper %s", st.exited ? "exited non-zero" : "was killed");
	pbp_child_free(c);
}

/* A process started by other means inherits PBPIPE_PARENT_PID naming
 * someone else (here: our own parent): its handshake with us, its real
 * parent, goes on. */
T(stale_parent_pid_naming_someone_else_changes_nothing)
{
	pbp_channel_options o = pbt_options();
	int a[2], b[2], raw;
	char entry[48], got[256], **envp = env_naming(entry, sizeof entry, getppid());
	pbptest_Text t = { "still here" };
	pbp_channel *ch;
	pbp_error err;
	uint32_t type;
	pbt_any in;
	pid_t g;

	cr_assert_eq(pipe2(a, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(b, O_CLOEXEC), 0);
	g = fork();
	cr_assert_geq(g, 0);
	if (g == 0)
		exec_echo_peer(b[1], a[0], -1, envp);
	close(a[0]);
	close(b[1]);
	o.recv_timeout_ms = pbt_scale(5000);
	o.handshake_timeout_ms = pbt_scale(5000);
	cr_assert_eq(pbp_channel_from_fds(&ch, b[0], a[1], &o, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_handshake(ch), 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_channel_send(ch, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), 0, "%s",
	             pbp_channel_errmsg(ch));
	snprintf(got, sizeof got, "%s", in.text.text);
	cr_assert_str_eq(got, "still here");
	pbp_channel_free(ch);
	cr_assert(reap_by(g, pbt_scale(5000), &raw));
	cr_assert(WIFEXITED(raw) && WEXITSTATUS(raw) == 0, "status %#x", raw);
}

T(the_start_of_life_decision)
{
	/* env, Hello pid, parent recorded at arming */
	cr_assert_eq(pbp__parent_gone_early("100", 100, 100), 0, "the normal case");
	cr_assert_eq(pbp__parent_gone_early("100", 100, 1), 1, "spawner gone, init adopted us");
	cr_assert_eq(pbp__parent_gone_early("100", 100, 77), 1, "spawner gone, a subreaper");
	cr_assert_eq(pbp__parent_gone_early("55", 100, 100), 0, "stale variable");
	cr_assert_eq(pbp__parent_gone_early("55", 100, 1), 0, "stale, and orphaned");
	cr_assert_eq(pbp__parent_gone_early(NULL, 100, 1), 0, "no variable");
	cr_assert_eq(pbp__parent_gone_early("", 100, 1), 0, "empty");
	cr_assert_eq(pbp__parent_gone_early("100", 100, 0), 0, "no parent visible");
	cr_assert_eq(pbp__parent_gone_early("+100", 100, 1), 0, "not plain decimal");
	cr_assert_eq(pbp__parent_gone_early("100 ", 100, 1), 0, "not plain decimal");
	cr_assert_eq(pbp__parent_gone_early("4294967396", 100, 1), 0, "wraps to 100");
}

/* ---- the watch thread ---------------------------------------------------------- */

static void
from_handles(pbp_channel **ch, int fds[4], unsigned int flags)
{
	pbp_channel_options o = pbt_options();
	char w[16], r[16];
	pbp_error err;

	o.flags |= flags;
	snprintf(w, sizeof w, "%d", fds[1]);
	snprintf(r, sizeof r, "%d", fds[2]);
	cr_assert_eq(pbp_channel_from_handles(ch, w, r, &o, &err), 0, "%s", err.msg);
}

/* Waits up to timeout_ms for this process to have n threads. */
static int
tasks_drop_to(int n, int timeout_ms)
{
	int64_t end = pbp__now_ms() + timeout_ms;

	while (count_entries("/proc/self/task") != n) {
		if (pbp__now_ms() >= end)
			return 0;
		nap_ms(1);
	}
	return 1;
}

T(free_and_close_stop_and_join_the_watch_thread)
{
	int threads, fds[4], i, nfds;
	pbp_channel *ch;
	pbp_error err;

	/* A first round starts whatever a runtime starts with the first
	 * thread (ThreadSanitizer's background thread). */
	pbt_pipes(fds);
	from_handles(&ch, fds, 0);
	pbp_channel_free(ch);
	close(fds[0]);
	close(fds[3]);
	threads = count_entries("/proc/self/task");
	for (i = 0; i < 3; i++) {
		pbt_pipes(fds);
		nfds = count_entries("/proc/self/fd");
		from_handles(&ch, fds, 0);
		cr_assert_eq(count_entries("/proc/self/task"), threads + 1, "no watch thread");
		if (i == 1)
			cr_assert_eq(pbp_channel_close(ch, 0, &err), 0, "%s", err.msg);
		else if (i == 2)
			pbp_channel_free_keep_fds(ch);
		else
			pbp_channel_free(ch);
		/* pthread_join returns when the thread's tid is cleared, a
		 * little before the kernel drops its /proc entry. */
		cr_assert(tasks_drop_to(threads, 2000), "the watch thread is left");
		/* The channel's two fds go (except with keep_fds), and the
		 * watch's pipe and pidfd with them. */
		cr_assert_eq(count_entries("/proc/self/fd"), nfds - (i == 2 ? 0 : 2));
		if (i == 2) {
			close(fds[1]);
			close(fds[2]);
		}
		close(fds[0]);
		close(fds[3]);
	}
}

T(outlive_flag_and_generic_constructors_start_no_thread)
{
	int threads = count_entries("/proc/self/task"), fds[4];
	pbp_channel_options o = pbt_options();
	pbp_channel *ch;
	pbp_error err;

	pbt_pipes(fds);
	from_handles(&ch, fds, PBP_CHANNEL_OUTLIVE_PARENT);
	cr_assert_eq(count_entries("/proc/self/task"), threads);
	pbp_channel_free(ch);
	cr_assert_eq(pbp_channel_from_fds(&ch, fds[0], fds[3], &o, &err), 0, "%s", err.msg);
	cr_assert_eq(count_entries("/proc/self/task"), threads);
	pbp_channel_free(ch);
}

/* ---- the process tree ------------------------------------------------------------ */

/* Spawns `pbptest-peer forker [1]` (with flags; stubborn "1": the
 * helper then ignores end of stream) and returns the grandchild it
 * forked. */
static pbp_child *
spawn_forker(unsigned int flags, const char *stubborn, pid_t *gc)
{
	pbp_channel_options co = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "forker", stubborn, NULL };
	pbp_child *c;
	pbp_error err;
	uint32_t type;
	pbt_any in;

	co.recv_timeout_ms = pbt_scale(5000);
	so.channel = &co;
	so.flags = flags;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_recv_msg(pbp_child_channel(c), &type, &in, sizeof in), 0, "%s",
	             pbp_channel_errmsg(pbp_child_channel(c)));
	*gc = (pid_t)atoi(in.text.text);
	cr_assert_gt(*gc, 0);
	return c;
}

T(process_group_kill_takes_the_grandchild)
{
	pbp_exit_status st;
	pid_t gc;
	pbp_child *c;
	int raw = 0;

	become_subreaper();
	c = spawn_forker(PBP_SPAWN_PROCESS_GROUP, NULL, &gc);
	cr_assert_eq(getpgid(pbp_child_pid(c)), pbp_child_pid(c), "the helper leads no group");
	cr_assert_eq(getpgid(gc), pbp_child_pid(c));
	cr_assert_eq(pbp_child_kill(c, SIGKILL), 0, "%s", pbp_child_error(c)->msg);
	cr_assert_eq(pbp_child_wait(c, pbt_scale(5000), &st), 0);
	cr_assert_eq(st.signal, SIGKILL);
	cr_assert(reap_by(gc, pbt_scale(2000), &raw), "the grandchild survived");
	cr_assert(WIFSIGNALED(raw) && WTERMSIG(raw) == SIGKILL, "status %#x", raw);
	pbp_child_free(c);
	assert_no_children();
}

T(process_group_close_escalation_takes_the_grandchild)
{
	pbp_exit_status st;
	pid_t gc;
	pbp_child *c;
	int raw = 0;

	become_subreaper();
	/* A helper that ignores Goodbye and end of stream: close escalates
	 * to SIGTERM, which goes to the whole group. */
	c = spawn_forker(PBP_SPAWN_PROCESS_GROUP, "1", &gc);
	cr_assert_eq(pbp_child_close(c, 200, &st), 0);
	cr_assert_eq(st.signal, SIGTERM);
	cr_assert(reap_by(gc, pbt_scale(2000), &raw), "the grandchild survived");
	cr_assert(WIFSIGNALED(raw) && WTERMSIG(raw) == SIGTERM, "status %#x", raw);
	pbp_child_free(c);
	assert_no_children();
}

T(without_process_group_kill_spares_the_grandchild)
{
	pbp_exit_status st;
	pid_t gc;
	pbp_child *c;

	become_subreaper();
	c = spawn_forker(0, NULL, &gc);
	cr_assert_neq(getpgid(pbp_child_pid(c)), pbp_child_pid(c));
	cr_assert_eq(pbp_child_kill(c, SIGKILL), 0);
	cr_assert_eq(pbp_child_wait(c, pbt_scale(5000), &st), 0);
	cr_assert_eq(st.signal, SIGKILL);
	nap_ms(200);
	cr_assert(alive(gc), "the grandchild died with the helper");
	kill_ours(gc);
	pbp_child_free(c);
	assert_no_children();
}

T(no_group_signal_once_the_helper_is_reaped)
{
	pbp_exit_status st;
	pid_t gc;
	pbp_child *c;

	become_subreaper();
	c = spawn_forker(PBP_SPAWN_PROCESS_GROUP, NULL, &gc);
	/* Goodbye, end of stream: the helper exits 0 by itself and is
	 * reaped; its grandchild stays in the group it led. */
	cr_assert_eq(pbp_child_close(c, pbt_scale(5000), &st), 0);
	cr_assert(st.exited && st.code == 0, "helper exited %d, signal %d", st.code, st.signal);
	cr_assert_eq(getpgid(gc), pbp_child_pid(c), "the group still exists");
	cr_assert_eq(pbp_child_kill(c, SIGKILL), 0);
	nap_ms(200);
	cr_assert(alive(gc), "the group was signalled after its leader was reaped");
	kill_ours(gc);
	pbp_child_free(c);
	assert_no_children();
}
