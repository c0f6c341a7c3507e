/*
 * test_handles.c: the child side's handle strings, good and bad in each way.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
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
	expect_bad("99999999999", r, "'99999999999' is not a decimal");
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
	expect_bad(w, r, "is a regular file, not a pipe");
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
