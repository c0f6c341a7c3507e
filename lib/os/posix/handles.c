/*
 * handles.c: the POSIX platform's check of a handle named on a child's
 * command line: an open pipe, FIFO or connected stream socket fd, open in
 * the right direction.  The parsing, the quoting and the pairing checks
 * are portable (lib/api/handles.c).
 */
#define _GNU_SOURCE /* O_PATH */
#include "pbp_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "posix.h"

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

/* A socket must carry a byte stream and be connected. */
static int
check_socket(int fd, const char *role, const char *q, pbp_error *err)
{
	int type = 0, listening = 0;
	socklen_t len = sizeof type;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
		return pbp__seterr(err, PBP_ESYS, errno, "getsockopt(%s handle %s, SO_TYPE): %s",
		                   role, q, strerror(errno));
	/* Datagram and seqpacket sockets keep message boundaries: a read
	 * shorter than a datagram loses the rest of it, and the frame reader
	 * reads in pieces of its own size. */
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
	return 0;
}

int
pbp__os_handle_check(pbp_os_handle fd, int for_write, const char *role, const char *q,
                     pbp__handle_info *info, pbp_error *err)
{
	int fl = fcntl(fd, F_GETFL), mode, rc;
	struct stat st;
	char what[128];

	if (fl < 0)
		return pbp__seterr(err, PBP_EINVAL, errno,
		                   "%s handle %s is not an open file descriptor (%s)", role, q,
		                   strerror(errno));
	if (fl & O_PATH)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s was opened with O_PATH: it names a file but cannot be "
		                   "read or written",
		                   role, q);
	if (fstat(fd, &st) != 0)
		return pbp__seterr(err, PBP_ESYS, errno, "fstat(%s handle %s): %s", role, q,
		                   strerror(errno));
	info->id[0] = (uint64_t)st.st_dev;
	info->id[1] = (uint64_t)st.st_ino;
	info->duplex = S_ISSOCK(st.st_mode);
	if (!S_ISFIFO(st.st_mode) && !info->duplex) {
		describe(fd, st.st_mode, what, sizeof what);
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is %s; it must be a pipe, a FIFO or a stream socket",
		                   role, q, what);
	}
	if (info->duplex && (rc = check_socket(fd, role, q, err)) != 0)
		return rc;
	mode = fl & O_ACCMODE;
	if (for_write && mode == O_RDONLY)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is open for reading only (handles in the wrong order?)",
		                   role, q);
	if (!for_write && mode == O_WRONLY)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "%s handle %s is open for writing only (handles in the wrong order?)",
		                   role, q);
	return 0;
}
