/*
 * trace.c: the frame trace.  When tracing is on, a channel appends every
 * frame it sends or receives to a file, as one record per frame written
 * with one write() on an O_APPEND fd, so a parent and its children can
 * share one trace file.  pbpipe-dump reads it.  Record layout (little
 * endian), also in docs/PROTOCOL.md:
 *
 *   0  4  magic "PBPT"
 *   4  1  record version, 1
 *   5  1  'S' sent or 'R' received
 *   6  2  reserved, 0
 *   8  4  pid of the process that wrote the record
 *  12  8  CLOCK_REALTIME in nanoseconds since the Unix epoch
 *  20  .  the frame as on the wire: varint length, then the body
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "pbp_internal.h"

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int
pbp__trace_open(const char *path, int *fd, pbp_error *err)
{
	int t = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (t < 0)
		return pbp__seterr(err, PBP_ESYS, errno, "trace file '%s': %s", path,
		                   strerror(errno));
	*fd = t;
	return 0;
}

void
pbp__trace_frame(int fd, int dir, const uint8_t *prefix, size_t plen,
                 const uint8_t *rest, size_t rlen)
{
	uint8_t hdr[PBP__TRACE_HEADER];
	struct iovec iov[3];
	struct timespec ts;
	ssize_t w;

	clock_gettime(CLOCK_REALTIME, &ts);
	memcpy(hdr, "PBPT", 4);
	hdr[4] = 1;
	hdr[5] = (uint8_t)dir;
	hdr[6] = hdr[7] = 0;
	put_le(hdr + 8, (uint32_t)getpid(), 4);
	put_le(hdr + 12, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, 8);
	iov[0] = (struct iovec){ hdr, sizeof hdr };
	iov[1] = (struct iovec){ (void *)prefix, plen };
	iov[2] = (struct iovec){ (void *)rest, rlen };
	/* Best effort: a full disk must not break the channel. */
	do
		w = writev(fd, iov, 3);
	while (w < 0 && errno == EINTR);
}
