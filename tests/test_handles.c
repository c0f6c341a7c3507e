/*
 * test_handles.c: the child side's handle strings, good and bad in each way.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

#define T(name) Test(handles, name, .timeout = 20)

static void
expect_bad(const char *w, const char *r, const char *needle)
{
	pbp_channel *ch = NULL;
	pbp_error err = { 0 };
	int rc = pbp_channel_from_handles(&ch, w, r, NULL, &err);

	cr_assert_eq(rc, PBP_EINVAL, "'%s' '%s': rc %d (%s)", w ? w : "(null)",
	             r ? r : "(null)", rc, err.msg);
	cr_assert_eq(ch, NULL);
	cr_assert_neq(strstr(err.msg, needle), NULL, "message '%s' lacks '%s'", err.msg, needle);
}

T(not_decimal)
{
	int p[2];
	char r[16];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	snprintf(r, sizeof r, "%d", p[0]);
	expect_bad("", r, "write handle '' is empty");
	expect_bad("abc", r, "write handle 'abc' is not a decimal");
	expect_bad("-1", r, "'-1' is not a decimal");
	expect_bad("+3", r, "'+3' is not a decimal");
	expect_bad(" 3", r, "' 3' is not a decimal");
	expect_bad("3x", r, "'3x' is not a decimal");
	expect_bad("0x3", r, "'0x3' is not a decimal");
	expect_bad("99999999999", r, "'99999999999' is out of range");
	expect_bad("9999999999", r, "'9999999999' is out of range");
	expect_bad(NULL, r, "write handle is missing");
	close(p[0]);
	close(p[1]);
}

T(not_open)
{
	int p[2];
	char w[16];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	snprintf(w, sizeof w, "%d", p[1]);
	expect_bad(w, "987", "read handle '987' is not an open file descriptor");
	close(p[0]);
	close(p[1]);
}

T(not_a_pipe)
{
	int p[2], f = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), d = open("/dev/null", O_RDWR | O_CLOEXEC);
	char w[16], r[16], n[16];

	cr_assert_geq(f, 0);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	snprintf(w, sizeof w, "%d", p[1]);
	snprintf(r, sizeof r, "%d", f);
	snprintf(n, sizeof n, "%d", d);
	expect_bad(w, r, "is a regular file; it must be a pipe, a FIFO or a stream socket");
	expect_bad(n, r, "write handle");
	expect_bad(n, r, "character device");
	close(f);
	close(d);
	close(p[0]);
	close(p[1]);
}

T(wrong_direction)
{
	int p[2];
	char w[16], r[16];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	/* Swapped: the read end given as the write handle. */
	snprintf(w, sizeof w, "%d", p[0]);
	snprintf(r, sizeof r, "%d", p[1]);
	expect_bad(w, r, "open for reading only (handles in the wrong order?)");
	snprintf(w, sizeof w, "%d", p[1]);
	expect_bad(w, w, "open for writing only");
	close(p[0]);
	close(p[1]);
}

T(same_pipe_twice_refused_same_socket_accepted)
{
	int sv[2];
	char s[16];
	pbp_channel *ch = NULL;
	pbp_error err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	snprintf(s, sizeof s, "%d", sv[0]);
	cr_assert_eq(pbp_channel_from_handles(&ch, s, s, NULL, &err), 0, "%s", err.msg);
	pbp_channel_free(ch);
	close(sv[1]);
}

T(good_pipes_and_argv)
{
	int p1[2], p2[2];
	char w[16], r[16];
	char *argv[] = { "child", "--flag", w, r, NULL };
	pbp_channel *ch = NULL;
	pbp_error err;

	cr_assert_eq(pipe2(p1, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(p2, O_CLOEXEC), 0);
	snprintf(w, sizeof w, "%d", p1[1]);
	snprintf(r, sizeof r, "%d", p2[0]);
	cr_assert_eq(pbp_channel_from_argv(&ch, 4, argv, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp_channel_write_fd(ch), p1[1]);
	cr_assert_eq(pbp_channel_read_fd(ch), p2[0]);
	pbp_channel_free(ch);
	/* Too few arguments. */
	cr_assert_eq(pbp_channel_from_argv(&ch, 2, argv, NULL, &err), PBP_EINVAL);
	cr_assert_neq(strstr(err.msg, "expected two handle arguments"), NULL, "%s", err.msg);
	close(p1[0]);
	close(p2[1]);
}

/* ---- issue 13.15: fds the channel could not use ------------------------- */

/* A good write handle (a pipe's write end) to pair bad read handles with,
 * and a good read handle for bad write handles. */
typedef struct good {
	int p[2];
	char w[16], r[16];
} good;

static void
good_open(good *g)
{
	cr_assert_eq(pipe2(g->p, O_CLOEXEC), 0);
	snprintf(g->w, sizeof g->w, "%d", g->p[1]);
	snprintf(g->r, sizeof g->r, "%d", g->p[0]);
}

static void
good_close(good *g)
{
	close(g->p[0]);
	close(g->p[1]);
}

static void
fmt(char *buf, int fd)
{
	snprintf(buf, 16, "%d", fd);
}

T(o_path_fifo_refused)
{
	char dir[] = "/tmp/pbp-handles-XXXXXX", path[64], h[16], msg[128];
	good g;
	int fd;

	good_open(&g);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	fd = open(path, O_PATH | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	fmt(h, fd);
	snprintf(msg, sizeof msg, "read handle '%s' was opened with O_PATH", h);
	expect_bad(g.w, h, msg);
	snprintf(msg, sizeof msg, "write handle '%s' was opened with O_PATH", h);
	expect_bad(h, g.r, msg);
	close(fd);
	unlink(path);
	rmdir(dir);
	good_close(&g);
}

T(o_path_regular_file_refused)
{
	good g;
	char h[16];
	char path[] = "/tmp/pbptest-opath-XXXXXX";
	int tmp = mkstemp(path), fd;

	/* A file of our own: valgrind reopens /proc/self/exe behind our back. */
	cr_assert_geq(tmp, 0);
	fd = open(path, O_PATH | O_CLOEXEC);
	unlink(path);
	close(tmp);
	cr_assert_geq(fd, 0);
	good_open(&g);
	fmt(h, fd);
	expect_bad(g.w, h, "was opened with O_PATH: it names a file but cannot be read or written");
	close(fd);
	good_close(&g);
}

T(datagram_and_seqpacket_sockets_refused)
{
	static const int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };
	static const char *const names[] = { "is a datagram (SOCK_DGRAM) socket",
		                             "is a seqpacket (SOCK_SEQPACKET) socket" };
	size_t i;

	for (i = 0; i < 2; i++) {
		int sv[2];
		char h[16];
		good g;

		good_open(&g);
		cr_assert_eq(socketpair(AF_UNIX, types[i] | SOCK_CLOEXEC, 0, sv), 0);
		fmt(h, sv[0]);
		expect_bad(h, h, names[i]);
		expect_bad(g.w, h, names[i]);
		expect_bad(h, g.r, "only a stream socket (SOCK_STREAM) carries a byte stream");
		close(sv[0]);
		close(sv[1]);
		good_close(&g);
	}
}

T(listening_socket_refused)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char h[16];

	cr_assert_geq(s, 0);
	/* Autobind to an abstract address, then listen. */
	cr_assert_eq(bind(s, (struct sockaddr *)&(struct sockaddr){ .sa_family = AF_UNIX },
	                  sizeof(sa_family_t)), 0);
	cr_assert_eq(listen(s, 1), 0);
	fmt(h, s);
	expect_bad(h, h, "is a listening socket");
	close(s);
}

T(both_ends_of_one_pipe_refused)
{
	good g;
	char msg[160];

	good_open(&g);
	snprintf(msg, sizeof msg,
	         "write handle '%s' and read handle '%s' are the same pipe or FIFO", g.w, g.r);
	expect_bad(g.w, g.r, msg);
	expect_bad(g.w, g.r, "the channel would read back what it writes");
	good_close(&g);
}

T(one_fifo_for_both_directions_refused)
{
	char dir[] = "/tmp/pbp-handles-XXXXXX", path[64], h[16], h2[16];
	int fd, fd2;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	fd = open(path, O_RDWR | O_CLOEXEC);
	fd2 = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_geq(fd2, 0);
	fmt(h, fd);
	fmt(h2, fd2);
	expect_bad(h, h, "a pipe or FIFO; only a stream socket can carry both directions");
	expect_bad(h, h2, "are the same pipe or FIFO");
	close(fd);
	close(fd2);
	unlink(path);
	rmdir(dir);
}

T(stream_socket_twice_or_dup_accepted)
{
	int sv[2], d;
	char s[16], s2[16];
	pbp_channel *ch = NULL;
	pbp_error err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	d = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
	cr_assert_geq(d, 0);
	fmt(s, sv[0]);
	fmt(s2, d);
	cr_assert_eq(pbp_channel_from_handles(&ch, s, s2, NULL, &err), 0, "%s", err.msg);
	pbp_channel_free(ch);
	close(d);
	close(sv[1]);
}

T(eventfd_named_precisely)
{
	good g;
	char h[16], msg[128];
	pbp_error err = { 0 };
	pbp_channel *ch = NULL;
	int fd = eventfd(0, EFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	good_open(&g);
	fmt(h, fd);
	snprintf(msg, sizeof msg,
	         "read handle '%s' is anon_inode:[eventfd]; it must be a pipe, a FIFO or a stream socket",
	         h);
	expect_bad(g.w, h, msg);
	cr_assert_eq(pbp_channel_from_handles(&ch, g.w, h, NULL, &err), PBP_EINVAL);
	cr_assert_null(strstr(err.msg, "not a pipe, not a pipe"), "%s", err.msg);
	close(fd);
	good_close(&g);
}

T(regular_file_directory_and_closed_fd_refused)
{
	good g;
	char h[16], msg[128];
	int f = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	int d = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int c = open("/dev/null", O_RDONLY | O_CLOEXEC);

	cr_assert_geq(f, 0);
	cr_assert_geq(d, 0);
	cr_assert_geq(c, 0);
	good_open(&g);
	fmt(h, f);
	snprintf(msg, sizeof msg, "read handle '%s' is a regular file; it must be", h);
	expect_bad(g.w, h, msg);
	fmt(h, d);
	snprintf(msg, sizeof msg, "read handle '%s' is a directory; it must be", h);
	expect_bad(g.w, h, msg);
	fmt(h, c);
	close(c); /* now closed */
	snprintf(msg, sizeof msg, "read handle '%s' is not an open file descriptor", h);
	expect_bad(g.w, h, msg);
	snprintf(msg, sizeof msg, "write handle '%s' is not an open file descriptor", h);
	expect_bad(h, g.r, msg);
	close(f);
	close(d);
	good_close(&g);
}

T(read_only_end_as_write_handle_refused)
{
	good g;
	good g2;
	char msg[128];

	good_open(&g);
	good_open(&g2);
	snprintf(msg, sizeof msg,
	         "write handle '%s' is open for reading only (handles in the wrong order?)", g.r);
	expect_bad(g.r, g2.r, msg);
	good_close(&g);
	good_close(&g2);
}

T(bad_numbers_quoted_and_explained)
{
	good g;

	good_open(&g);
	expect_bad("", g.r, "write handle '' is empty; expected a decimal fd number");
	expect_bad(g.w, "", "read handle '' is empty");
	expect_bad("-3", g.r, "write handle '-3' is not a decimal fd number: character 1 is '-'");
	expect_bad("+3", g.r, "write handle '+3' is not a decimal fd number: character 1 is '+'");
	expect_bad(" 3", g.r, "write handle ' 3' is not a decimal fd number: character 1 is ' '");
	expect_bad("3 ", g.r, "write handle '3 ' is not a decimal fd number: character 2 is ' '");
	expect_bad("3\n", g.r, "write handle '3\\x0a' is not a decimal fd number: character 2");
	expect_bad("\t3", g.r, "(0x09); only the digits 0-9 may appear");
	expect_bad("0x3", g.r, "'0x3' is not a decimal fd number: character 2 is 'x'");
	expect_bad("2147483648", g.r, "write handle '2147483648' is out of range: an fd number is at most 2147483647");
	expect_bad("4294967299", g.r, "'4294967299' is out of range");
	expect_bad("99999999999999999999999", g.r, "'99999999999999999999999' is out of range");
	expect_bad(g.w, "-1", "read handle '-1' is not a decimal fd number");
	expect_bad(NULL, g.r, "the write handle is missing (NULL)");
	expect_bad(g.w, NULL, "the read handle is missing (NULL)");
	good_close(&g);
}
