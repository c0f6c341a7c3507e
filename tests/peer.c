/*
 * pbptest-peer: a child program for the spawn tests.  Usage:
 *     pbptest-peer MODE [ARG] WRITE_HANDLE READ_HANDLE
 * Modes:
 *   echo          handshake, send every message back, exit 0 at end of stream
 *   goodbye       like echo, and answer the parent's Goodbye with one of the
 *                 same reason and detail (tests/xarch.c checks what crossed)
 *   exit N        handshake, then exit N at once
 *   early N       exit N before the handshake
 *   silent        never handshake; exit 0 when the read side reaches EOF
 *   garbage       write text instead of a Hello; exit at EOF
 *   midframe      handshake, wait for one message, write half a frame, SIGKILL self
 *   signal N      handshake, then raise signal N
 *   info          handshake, send a Text "fds=0,1,...;cwd=...;env=$PBPTEST_VAR",
 *                 then echo
 *   orphan        handshake, spawn `pbptest-peer echo` as a grandchild, send its
 *                 pid as a Text, then SIGKILL self without cleaning up
 *   stubborn      handshake, then ignore end of stream and sleep (exits on SIGTERM)
 *   immortal      like stubborn, and ignores SIGTERM too
 *   flood N       handshake, then at end of stream send N 255-byte Texts, exit 0
 *   streamsum     handshake; read every stream the parent opens (pbp_stream.h)
 *                 to its end with views, and answer each with a Text
 *                 "BYTES FNV1A64-HEX RC" (RC the read's last code); other
 *                 messages are ignored; exit 0 at end of stream
 *   busy          handshake, serve one message (a call) by sending "busy" and
 *                 sleeping 30 s, then echo it back and echo the rest
 *   forker [1]    handshake, fork a grandchild that closes the channel's fds
 *                 and sleeps, send its pid as a Text, then echo (exit 0 at
 *                 end of stream, leaving the grandchild running); with 1,
 *                 sleep instead of echoing (exits on SIGTERM)
 *   spawner MODE  no channel of its own (the handle arguments are ignored):
 *                 pbp_child_spawn `pbptest-peer MODE` (MODE may start with
 *                 "group-": PBP_SPAWN_PROCESS_GROUP), send it a Text, wait
 *                 for its first answer, print its pid and a newline to
 *                 stdout, then wait for a second answer for ever
 * A mode "outlive-M" is mode M with PBP_CHANNEL_OUTLIVE_PARENT: the helper
 * does not die with its parent.
 * Hostile modes:
 *   oversize      handshake, then declare a frame of 2^31 bytes
 *   lengthonly    handshake, then declare a 100-byte frame, send nothing, wait
 *   spam          handshake, then send frames as fast as possible, forever
 *   closeread     handshake, close the read handle, send one Text, wait for EOF
 *   closewrite    handshake, close the write handle, wait for EOF, exit 0
 *   stdout        write the Hello to stdout instead of the write handle, wait
 *   stderr N      write N bytes of numbered lines to stderr, exit 3 (no handshake)
 *   log N         handshake; for the k-th message, log N lines of 16 bytes
 *                 ("log line 000000\n"...) and then "marker k\n" to stderr,
 *                 then send the message back; at end of stream, N more lines
 *                 and "marker end\n", exit 0.  stderr through stdio, errors
 *                 ignored, as a helper that logs does.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"

#if defined(__GNUC__)
#define PBPTEST_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PBPTEST_PRINTF(a, b)
#endif

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
};

/* The fds open at exec, as the info mode reports them: taken before the
 * channel opens any of its own (the parent watch's pipe and pidfd). */
static char fds_at_exec[160];

static pbp_channel_options
options(void)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	o.types = types;
	o.ntypes = 1;
	o.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	return o;
}

/* The channel, global so that every exit path can free it: the spawn
 * tests run this program under valgrind, which counts what is left. */
static pbp_channel *the_ch;
static int reflect_goodbye; /* mode goodbye */

static void
leave(int code)
{
	pbp_channel_free(the_ch);
	exit(code);
}

static void
die(const char *what, const char *msg)
{
	fprintf(stderr, "pbptest-peer: %s: %s\n", what, msg);
	leave(3);
}

static void
send_text(pbp_channel *ch, const char *s)
{
	pbptest_Text t;

	snprintf(t.text, sizeof t.text, "%s", s);
	if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
		die("send", pbp_channel_errmsg(ch));
}

static int
echo(pbp_channel *ch)
{
	pbp_msginfo mi;
	int rc;

	while ((rc = pbp_channel_recv(ch, &mi)) == 0)
		if (pbp_channel_send_raw(ch, mi.type, mi.id, mi.payload, mi.size) != 0)
			die("echo", pbp_channel_errmsg(ch));
	if (rc != PBP_EOF)
		die("recv", pbp_channel_errmsg(ch));
	if (reflect_goodbye) {
		pbp_peer_info pi;

		if (pbp_channel_peer(ch, &pi) == 0 && pi.goodbye_received &&
		    pbp_channel_goodbye(ch, pi.goodbye_reason, pi.goodbye_detail) != 0)
			die("goodbye", pbp_channel_errmsg(ch));
	}
	pbp_channel_free(ch);
	return 0;
}

static void
wait_eof(int fd)
{
	char b[256];

	while (read(fd, b, sizeof b) != 0)
		usleep(1000);
}

/* Mode log: n numbered lines of 16 bytes, then a marker line. */
static void
log_burst(int n, const char *fmt, ...) PBPTEST_PRINTF(2, 3);

static void
log_burst(int n, const char *fmt, ...)
{
	va_list ap;
	int i;

	for (i = 0; i < n; i++)
		fprintf(stderr, "log line %06d\n", i % 1000000);
	fputs("marker ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
}

static void
list_fds(void)
{
	size_t n = 0;
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	int self = dirfd(dir);
	struct rlimit rl;

	n += (size_t)snprintf(fds_at_exec + n, sizeof fds_at_exec - n, "fds=");
	/* valgrind keeps its own fds above the limit it reports: skip those. */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = RLIM_INFINITY;
	while ((d = readdir(dir)) != NULL)
		if (d->d_name[0] != '.' && atoi(d->d_name) != self &&
		    (rlim_t)atoi(d->d_name) < rl.rlim_cur && n < sizeof fds_at_exec)
			n += (size_t)snprintf(fds_at_exec + n, sizeof fds_at_exec - n, "%s,",
			                      d->d_name);
	closedir(dir);
}

static void
info(pbp_channel *ch)
{
	char buf[512], cwd[128];

	if (getcwd(cwd, sizeof cwd) == NULL)
		strcpy(cwd, "?");
	snprintf(buf, sizeof buf, "%s;cwd=%s;env=%s", fds_at_exec, cwd,
	         getenv("PBPTEST_VAR") ? getenv("PBPTEST_VAR") : "(unset)");
	send_text(ch, buf);
}

static void
recv_or_die(pbp_channel *ch, pbp_msginfo *mi)
{
	if (pbp_channel_recv(ch, mi) != 0)
		die("recv", pbp_channel_errmsg(ch));
}

/* Mode spawner: a parent inside a call, for the tests of issue 16. */
static int
spawner(const char *path, const char *mode)
{
	pbp_channel_options o = options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *av[] = { path, NULL, NULL };
	pbp_child *c;
	pbp_msginfo mi;
	pbp_error err;

	if (strncmp(mode, "group-", 6) == 0) {
		so.flags |= PBP_SPAWN_PROCESS_GROUP;
		mode += 6;
	}
	av[1] = mode;
	so.channel = &o;
	if (pbp_child_spawn(&c, path, av, &so, &err) != 0)
		die("spawn", err.msg);
	the_ch = NULL;
	send_text(pbp_child_channel(c), "serve this");
	recv_or_die(pbp_child_channel(c), &mi);
	printf("%d\n", (int)pbp_child_pid(c));
	fflush(stdout);
	recv_or_die(pbp_child_channel(c), &mi);
	pbp_child_free(c);
	return 0;
}

static void
busy(pbp_channel *ch)
{
	pbp_msginfo mi;
	unsigned left = 30;

	recv_or_die(ch, &mi);
	send_text(ch, "busy");
	while (left > 0)
		left = sleep(left);
	send_text(ch, "done");
}

static void
forker(pbp_channel *ch)
{
	char buf[32];
	pid_t gc = fork();

	if (gc < 0)
		die("fork", "failed");
	if (gc == 0) {
		/* Nothing of the test's either (a runner may wait for the end
		 * of our stdout), and gone in a minute if a failed test left
		 * it behind. */
		int null = open("/dev/null", O_WRONLY);

		close(pbp_channel_read_fd(ch));
		close(pbp_channel_write_fd(ch));
		dup2(null, 1);
		dup2(null, 2);
		alarm(60);
		for (;;)
			pause();
	}
	snprintf(buf, sizeof buf, "%d", (int)gc);
	send_text(ch, buf);
}

int
main(int argc, char **argv)
{
	pbp_channel_options o = options();
	const char *mode = argc > 1 ? argv[1] : "";
	int arg = argc >= 5 ? atoi(argv[2]) : 0;
	pbp_channel *ch;
	pbp_msginfo mi;
	pbp_error err;

	if (argc < 4)
		die("usage", "pbptest-peer MODE [ARG] WRITE_HANDLE READ_HANDLE");
	if (strcmp(mode, "early") == 0)
		return arg;
	if (strcmp(mode, "spawner") == 0)
		return spawner(argv[0], argv[2]);
	if (strncmp(mode, "outlive-", 8) == 0) {
		o.flags |= PBP_CHANNEL_OUTLIVE_PARENT;
		mode += 8;
	}
	/* The log and stderr tests count every byte of our stderr, and
	 * valgrind writes its warning about the watch's pidfd_open (a system
	 * call it does not know) there: no watch in those modes. */
	if (strcmp(mode, "log") == 0 || strcmp(mode, "stderr") == 0)
		o.flags |= PBP_CHANNEL_OUTLIVE_PARENT;
	list_fds();
	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0)
		die("handles", err.msg);
	the_ch = ch;
	if (strcmp(mode, "stderr") == 0) {
		char line[32];
		int i, n;

		for (i = 0; arg > 0; i++, arg -= n) {
			n = snprintf(line, sizeof line, "stderr line %d\n", i);
			if (n > arg)
				n = arg;
			if (write(2, line, (size_t)n) < 0)
				return 4;
		}
		pbp_channel_free(ch);
		return 3;
	}
	if (strcmp(mode, "stdout") == 0) {
		/* A helper that speaks its protocol on the wrong fd. */
		int rfd = pbp_channel_read_fd(ch);
		pbp_channel *wrong;

		pbp_channel_free_keep_fds(ch);
		the_ch = NULL;
		if (pbp_channel_from_fds(&wrong, rfd, 1, &o, &err) != 0)
			die("stdout", err.msg);
		if (pbp_channel_handshake(wrong) != 0)
			fprintf(stderr, "pbptest-peer: %s\n", pbp_channel_errmsg(wrong));
		wait_eof(rfd);
		pbp_channel_free(wrong);
		return 0;
	}
	if (strcmp(mode, "silent") == 0) {
		wait_eof(pbp_channel_read_fd(ch));
		pbp_channel_free(ch);
		return 0;
	}
	if (strcmp(mode, "garbage") == 0) {
		static const char junk[] = "SYNC\nHello from Process B!\nEND\n"
		                           "SYNC\nHello from Process B!\nEND\n"
		                           "SYNC\nHello from Process B!\nEND\n";
		if (write(pbp_channel_write_fd(ch), junk, sizeof junk - 1) < 0)
			return 4;
		wait_eof(pbp_channel_read_fd(ch));
		pbp_channel_free(ch);
		return 0;
	}
	if (pbp_channel_handshake(ch) != 0)
		die("handshake", pbp_channel_errmsg(ch));
	reflect_goodbye = strcmp(mode, "goodbye") == 0;
	if (strcmp(mode, "echo") == 0 || reflect_goodbye)
		return echo(ch);
	if (strcmp(mode, "exit") == 0)
		leave(arg);
	if (strcmp(mode, "busy") == 0) {
		busy(ch);
		return echo(ch);
	}
	if (strcmp(mode, "forker") == 0) {
		forker(ch);
		while (arg != 0) /* stubborn: ignores end of stream */
			pause();
		return echo(ch);
	}
	if (strcmp(mode, "signal") == 0) {
		raise(arg);
		return 5;
	}
	if (strcmp(mode, "midframe") == 0) {
		/* A frame declaring 100 body bytes, of which 3 arrive. */
		static const unsigned char half[] = { 100, 0x1a, 0x62, 0x08 };

		if (pbp_channel_recv(ch, &mi) != 0)
			die("recv", pbp_channel_errmsg(ch));
		if (write(pbp_channel_write_fd(ch), half, sizeof half) < 0)
			return 4;
		raise(SIGKILL);
	}
	if (strcmp(mode, "info") == 0) {
		info(ch);
		return echo(ch);
	}
	if (strcmp(mode, "orphan") == 0) {
		pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
		/* The grandchild outlives us, and sees end of stream. */
		const char *av[] = { argv[0], "outlive-echo", NULL };
		pbp_child *gc;
		char buf[32];

		so.channel = &o;
		/* argv[0] is our path (the tests pass it): /proc/self/exe
		 * would name valgrind's tool under valgrind. */
		if (pbp_child_spawn(&gc, argv[0], av, &so, &err) != 0)
			die("spawn", err.msg);
		snprintf(buf, sizeof buf, "%d", (int)pbp_child_pid(gc));
		send_text(ch, buf);
		/* Wait until the parent has read the pid, then die abruptly. */
		if (pbp_channel_recv(ch, &mi) != 0)
			die("recv", pbp_channel_errmsg(ch));
		raise(SIGKILL);
	}
	if (strcmp(mode, "stubborn") == 0 || strcmp(mode, "immortal") == 0) {
		if (strcmp(mode, "immortal") == 0)
			signal(SIGTERM, SIG_IGN);
		send_text(ch, "ready");
		for (;;)
			pause();
	}
	if (strcmp(mode, "oversize") == 0 || strcmp(mode, "lengthonly") == 0) {
		static const unsigned char huge[] = { 0x80, 0x80, 0x80, 0x80, 0x08 };
		static const unsigned char hundred[] = { 100 };
		int big = strcmp(mode, "oversize") == 0;

		if (write(pbp_channel_write_fd(ch), big ? huge : hundred,
		          big ? sizeof huge : sizeof hundred) < 0)
			return 4;
		wait_eof(pbp_channel_read_fd(ch));
		pbp_channel_free(ch);
		return 0;
	}
	if (strcmp(mode, "spam") == 0) {
		pbptest_Text t = { "spam" };

		while (pbp_channel_send(ch, pbptest_Type_TEXT, &t) == 0)
			;
		pbp_channel_free(ch);
		return 0;
	}
	if (strcmp(mode, "closeread") == 0) {
		int rfd = pbp_channel_read_fd(ch);

		close(rfd);
		send_text(ch, "reading nothing");
		pause();
		return 0;
	}
	if (strcmp(mode, "closewrite") == 0) {
		if (pbp_channel_close_write(ch) != 0)
			return 4;
		wait_eof(pbp_channel_read_fd(ch));
		pbp_channel_free(ch);
		return 0;
	}
	if (strcmp(mode, "flood") == 0) {
		pbptest_Text t;
		int i;

		memset(t.text, 'f', sizeof t.text - 1);
		t.text[sizeof t.text - 1] = '\0';
		while (pbp_channel_recv(ch, &mi) == 0)
			;
		for (i = 0; i < arg; i++)
			if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
				die("flood", pbp_channel_errmsg(ch));
		pbp_channel_free(ch);
		return 0;
	}
	if (strcmp(mode, "streamsum") == 0) {
		int rc;

		while ((rc = pbp_channel_recv(ch, &mi)) == 0) {
			unsigned long long h = 14695981039346656037ull, total = 0;
			uint64_t s = mi.stream;
			const void *p;
			char line[96];
			size_t n, i;

			if (s == 0)
				continue;
			while ((rc = pbp_stream_read_view(ch, s, &p, &n)) == 0) {
				for (i = 0; i < n; i++) {
					h ^= ((const unsigned char *)p)[i];
					h *= 1099511628211ull;
				}
				total += n;
			}
			snprintf(line, sizeof line, "%llu %016llx %d", total, h, rc);
			send_text(ch, line);
		}
		if (rc != PBP_EOF)
			die("recv", pbp_channel_errmsg(ch));
		leave(0);
	}
	if (strcmp(mode, "log") == 0) {
		unsigned k = 0;
		int rc;

		while ((rc = pbp_channel_recv(ch, &mi)) == 0) {
			log_burst(arg, "%u", ++k);
			if (pbp_channel_send_raw(ch, mi.type, mi.id, mi.payload, mi.size) != 0)
				die("log", pbp_channel_errmsg(ch));
		}
		if (rc != PBP_EOF)
			die("recv", pbp_channel_errmsg(ch));
		log_burst(arg, "%s", "end");
		leave(0);
	}
	die("mode", mode);
	return 3;
}
