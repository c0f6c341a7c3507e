/*
 * handles.c: the child side of spawning.  Turns the two handle strings on
 * the command line into a channel, refusing anything that is not an open
 * pipe, FIFO or socket fd in the right direction, with a message that
 * quotes the bad string.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "pbp_internal.h"

/* Which way the fd must be open. */
enum { DIR_WRITE, DIR_READ };

static int
parse_handle(const char *s, const char *role, int *fd, pbp_error *err)
{
	long long v = 0; /* 64 bits even on a 32-bit child: 10 digits fit */
	size_t i;

	if (s == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "the %s handle is missing", role);
	/* Plain decimal only: no sign, no spaces, no hex, at most 10 digits. */
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 10)
			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "%s handle '%.40s' is not a decimal fd number", role, s);
		v = v * 10 + (s[i] - '0');
	}
	if (i == 0)
		return pbp__seterr(err, PBP_EINVAL, 0, "%s handle '' is empty", role);
	if (v > INT_MAX)
		return pbp__seterr(err, PBP_EINVAL, 0, "%s handle '%s' is out of range", role, s);
	*fd = (int)v;
	return 0;
}

static const char *
kind_of(mode_t m)
{
	if (S_ISREG(m))
		return "a regular file";
	if (S_ISCHR(m))
		return "a character device (a terminal?)";
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISBLK(m))
		return "a block device";
	return "not a pipe";
}

static int
check_handle(const char *s, const char *role, int fd, int dir, pbp_error *err)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL), mode;

	if (fl < 0)
		return pbp__seterr(err, PBP_EINVAL, errno,
		                   "%s handle '%s' is not an open file descriptor", role, s);
	if (fstat(fd, &st) != 0)
		return pbp__seterr(err, PBP_ESYS, errno, "fstat(%s handle '%s'): %s", role, s,
		                   strerror(errno));
	if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode))
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle '%s' is %s, not a pipe, FIFO or socket", role, s,
		                   kind_of(st.st_mode));
	mode = fl & O_ACCMODE;
	if (dir == DIR_WRITE && mode == O_RDONLY)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle '%s' is open for reading only (handles in the wrong order?)",
		                   role, s);
	if (dir == DIR_READ && mode == O_WRONLY)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle '%s' is open for writing only (handles in the wrong order?)",
		                   role, s);
	return 0;
}

int
pbp_channel_from_handles(pbp_channel **out, const char *write_handle,
                         const char *read_handle, const pbp_channel_options *opts,
                         pbp_error *err)
{
	int wfd, rfd, rc;
	struct stat st;

	if (out == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "pbp_channel_from_handles: NULL out");
	if ((rc = parse_handle(write_handle, "write", &wfd, err)) != 0 ||
	    (rc = parse_handle(read_handle, "read", &rfd, err)) != 0 ||
	    (rc = check_handle(write_handle, "write", wfd, DIR_WRITE, err)) != 0 ||
	    (rc = check_handle(read_handle, "read", rfd, DIR_READ, err)) != 0)
		return rc;
	if (wfd == rfd && (fstat(wfd, &st) != 0 || !S_ISSOCK(st.st_mode)))
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "write and read handles are both '%s'; only a socket can carry both directions",
		                   write_handle);
	return pbp_channel_from_fds(out, rfd, wfd, opts, err);
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
