/*
 * handles.c: the child side of spawning.  Turns the two handle strings on
 * the command line into a channel, refusing anything the channel could not
 * use: a handle must be an open pipe, FIFO or connected stream socket
 * (checked by the platform, pbp__os_handle_check), open in the right
 * direction, and the two must not be one pipe talking to itself.  Every
 * message quotes the bad string and says what is wrong.
 */
#include <stdio.h>
#include <string.h>

#include "os/os.h"

/* A handle string as it appears in messages: quoted, at most 40
 * characters, anything unprintable as \xNN. */
static const char *
quote(char *buf, size_t size, const char *s)
{
	size_t i, n = 0;

	buf[n++] = '\'';
	for (i = 0; s[i] != '\0' && n + 8 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 40) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
			buf[n++] = (char)c;
		else
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
	}
	buf[n++] = '\'';
	buf[n] = '\0';
	return buf;
}

static int
parse_handle(const char *s, const char *role, pbp_os_handle *h, pbp_error *err)
{
	uint64_t v = 0, max = pbp__os_handle_max(); /* 64 bits even on a 32-bit child */
	char q[200];
	size_t i;

	if (s == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "the %s handle is missing (NULL)", role);
	if (s[0] == '\0')
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle '' is empty; expected a decimal " PBP__OS_HANDLE_NOUN
		                   " number",
		                   role);
	/* Plain decimal only: no sign, no spaces, no hex prefix. */
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9') {
			unsigned char c = (unsigned char)s[i];

			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "%s handle %s is not a decimal " PBP__OS_HANDLE_NOUN
			                   " number: character %zu is %s%c%s (0x%02x); only the digits"
			                   " 0-9 may appear",
			                   role, quote(q, sizeof q, s), i + 1,
			                   c >= 0x20 && c < 0x7f ? "'" : "",
			                   c >= 0x20 && c < 0x7f ? (char)c : '?',
			                   c >= 0x20 && c < 0x7f ? "'" : "", c);
		}
		if (v <= max)
			v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is out of range: " PBP__OS_A_HANDLE
		                   " number is at most %llu",
		                   role, quote(q, sizeof q, s), (unsigned long long)max);
	*h = pbp__os_handle_from_u64(v);
	return 0;
}

static int
check_handle(const char *s, const char *role, pbp_os_handle h, int for_write,
             pbp__handle_info *info, pbp_error *err)
{
	char q[200];

	return pbp__os_handle_check(h, for_write, role, quote(q, sizeof q, s), info, err);
}

int
pbp_channel_from_handles(pbp_channel **out, const char *write_handle,
                         const char *read_handle, const pbp_channel_options *opts,
                         pbp_error *err)
{
	pbp_os_handle wh, rh;
	pbp__handle_info w, r;
	char qw[200], qr[200];
	int rc;

	if (out == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "pbp_channel_from_handles: NULL out");
	*out = NULL;
	if ((rc = parse_handle(write_handle, "write", &wh, err)) != 0 ||
	    (rc = parse_handle(read_handle, "read", &rh, err)) != 0 ||
	    (rc = check_handle(write_handle, "write", wh, 1, &w, err)) != 0 ||
	    (rc = check_handle(read_handle, "read", rh, 0, &r, err)) != 0)
		return rc;
	quote(qw, sizeof qw, write_handle);
	quote(qr, sizeof qr, read_handle);
	/* One stream socket carries both directions, as one handle or as two
	 * for it.  One pipe or FIFO for both would read back what it writes:
	 * the same handle twice, the two ends of one pipe (both have the
	 * pipe's identity), or one FIFO opened twice. */
	if (!w.duplex && wh == rh)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "write and read handles are both %s, a pipe or FIFO; only a "
		                   "stream socket can carry both directions",
		                   qw);
	if (!w.duplex && (w.id[0] != 0 || w.id[1] != 0) && w.id[0] == r.id[0] &&
	    w.id[1] == r.id[1])
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "write handle %s and read handle %s are the same pipe or FIFO "
		                   "(inode %llu): the channel would read back what it writes",
		                   qw, qr, (unsigned long long)w.id[1]);
	if ((rc = pbp_channel_from_os_handles(out, rh, wh, opts, err)) != 0)
		return rc;
	/* The helper side: watch the parent, so that a helper busy inside a
	 * call is gone as soon as its parent is (issue 16).  On failure the
	 * handles go back to the caller, as from pbp_channel_from_fds(). */
	if ((rc = pbp__channel_watch_parent(*out, err)) != 0) {
		pbp_channel_free_keep_fds(*out);
		*out = NULL;
	}
	return rc;
}

int
pbp_channel_from_argv(pbp_channel **out, int argc, char *const *argv,
                      const pbp_channel_options *opts, pbp_error *err)
{
	if (argc < 3 || argv == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "expected two handle arguments (WRITE_FD READ_FD), got %d",
		                   argc > 0 ? argc - 1 : 0);
	return pbp_channel_from_handles(out, argv[argc - 2], argv[argc - 1], opts, err);
}
