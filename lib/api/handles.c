/*
 * handles.c: the child side of spawning.  Turns the two handle strings on
 * the command line into a channel, refusing anything the channel could not
 * use: a handle must be an open pipe, FIFO or connected stream socket fd,
 * open in the right direction, and the two must not be one pipe talking
 * to itself.  Every message quotes the bad string and says what is wrong.
 */
#define _GNU_SOURCE /* O_PATH */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/posix/posix.h" /* moving to lib/os/posix/handles.c */

/* Which way the fd must be open. */
enum { DIR_WRITE, DIR_READ };

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
parse_handle(const char *s, const char *role, int *fd, pbp_error *err)
{
	long long v = 0; /* 64 bits even on a 32-bit child */
	char q[200];
	size_t i;

	if (s == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "the %s handle is missing (NULL)", role);
	if (s[0] == '\0')
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle '' is empty; expected a decimal fd number", role);
	/* Plain decimal only: no sign, no spaces, no hex prefix. */
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9') {
			unsigned char c = (unsigned char)s[i];

			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "%s handle %s is not a decimal fd number: character %zu is %s%c%s"
			                   " (0x%02x); only the digits 0-9 may appear",
			                   role, quote(q, sizeof q, s), i + 1,
			                   c >= 0x20 && c < 0x7f ? "'" : "",
			                   c >= 0x20 && c < 0x7f ? (char)c : '?',
			                   c >= 0x20 && c < 0x7f ? "'" : "", c);
		}
		if (v <= INT_MAX)
			v = v * 10 + (s[i] - '0');
	}
	if (v > INT_MAX)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is out of range: an fd number is at most %d", role,
		                   quote(q, sizeof q, s), INT_MAX);
	*fd = (int)v;
	return 0;
}

/* What a checked handle is, for the pairing checks. */
typedef struct handle {
	struct stat st;
	int socket; /* a (stream) socket */
} handle;

/* Names what an fd of mode m is, when it is none of the accepted kinds. */
static void
describe(int fd, mode_t m, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	if (S_ISREG(m)) {
		snprintf(buf, size, "a regular file");
	} else if (S_ISDIR(m)) {
		snprintf(buf, size, "a directory");
	} else if (S_ISCHR(m)) {
		snprintf(buf, size, "%s", isatty(fd) ? "a terminal" : "a character device");
	} else if (S_ISBLK(m)) {
		snprintf(buf, size, "a block device");
	} else if (S_ISLNK(m)) {
		snprintf(buf, size, "a symbolic link");
	} else {
		/* eventfd, epoll, timerfd, signalfd, pidfd...: no file type;
		 * the kernel names them in /proc. */
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		n = readlink(path, buf, size - 1);
		if (n > 0) {
			buf[n] = '\0';
		} else {
			snprintf(buf, size, "of file type 0%o", (unsigned)(m & S_IFMT));
		}
	}
}

static int
check_handle(const char *s, const char *role, int fd, int dir, handle *h, pbp_error *err)
{
	int fl = fcntl(fd, F_GETFL), mode, type = 0, listening = 0;
	socklen_t len;
	char q[200], what[128];

	quote(q, sizeof q, s);
	if (fl < 0)
		return pbp__seterr(err, PBP_EINVAL, errno,
		                   "%s handle %s is not an open file descriptor (%s)", role, q,
		                   strerror(errno));
	if (fl & O_PATH)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s was opened with O_PATH: it names a file but cannot be "
		                   "read or written",
		                   role, q);
	if (fstat(fd, &h->st) != 0)
		return pbp__seterr(err, PBP_ESYS, errno, "fstat(%s handle %s): %s", role, q,
		                   strerror(errno));
	h->socket = S_ISSOCK(h->st.st_mode);
	if (!S_ISFIFO(h->st.st_mode) && !h->socket) {
		describe(fd, h->st.st_mode, what, sizeof what);
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is %s; it must be a pipe, a FIFO or a stream socket",
		                   role, q, what);
	}
	if (h->socket) {
		len = sizeof type;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
			return pbp__seterr(err, PBP_ESYS, errno, "getsockopt(%s handle %s, SO_TYPE): %s",
			                   role, q, strerror(errno));
		/* Datagram and seqpacket sockets keep message boundaries: a
		 * read shorter than a datagram loses the rest of it, and the
		 * frame reader reads in pieces of its own size. */
		if (type != SOCK_STREAM)
			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "%s handle %s is a %s socket; only a stream socket "
			                   "(SOCK_STREAM) carries a byte stream",
			                   role, q,
			                   type == SOCK_DGRAM       ? "datagram (SOCK_DGRAM)"
			                   : type == SOCK_SEQPACKET ? "seqpacket (SOCK_SEQPACKET)"
			                   : type == SOCK_RAW       ? "raw (SOCK_RAW)"
			                                            : "non-stream");
		len = sizeof listening;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening)
			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "%s handle %s is a listening socket; it must be a connected one",
			                   role, q);
	}
	mode = fl & O_ACCMODE;
	if (dir == DIR_WRITE && mode == O_RDONLY)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is open for reading only (handles in the wrong order?)",
		                   role, q);
	if (dir == DIR_READ && mode == O_WRONLY)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is open for writing only (handles in the wrong order?)",
		                   role, q);
	return 0;
}

int
pbp_channel_from_handles(pbp_channel **out, const char *write_handle,
                         const char *read_handle, const pbp_channel_options *opts,
                         pbp_error *err)
{
	int wfd, rfd, rc;
	handle w, r;
	char qw[200], qr[200];

	if (out == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "pbp_channel_from_handles: NULL out");
	*out = NULL;
	if ((rc = parse_handle(write_handle, "write", &wfd, err)) != 0 ||
	    (rc = parse_handle(read_handle, "read", &rfd, err)) != 0 ||
	    (rc = check_handle(write_handle, "write", wfd, DIR_WRITE, &w, err)) != 0 ||
	    (rc = check_handle(read_handle, "read", rfd, DIR_READ, &r, err)) != 0)
		return rc;
	quote(qw, sizeof qw, write_handle);
	quote(qr, sizeof qr, read_handle);
	/* One stream socket carries both directions, as one fd or as two fds
	 * for it.  One pipe or FIFO for both would read back what it writes:
	 * the same fd twice, the two ends of one pipe (both have the pipe's
	 * inode), or one FIFO opened twice. */
	if (w.st.st_dev == r.st.st_dev && w.st.st_ino == r.st.st_ino && !w.socket) {
		if (wfd == rfd)
			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "write and read handles are both %s, a pipe or FIFO; only a "
			                   "stream socket can carry both directions",
			                   qw);
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "write handle %s and read handle %s are the same pipe or FIFO "
		                   "(inode %llu): the channel would read back what it writes",
		                   qw, qr, (unsigned long long)w.st.st_ino);
	}
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
