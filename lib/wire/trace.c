/*
 * trace.c: the frame trace.  When tracing is on, a channel appends every
 * frame it sends or receives to a file, as one record per frame written
 * with one write in append mode (os.h: pbp__os_file_append), so a parent and its children can
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
#include <string.h>

#include "pbp_internal.h"
#include "os/os.h"

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int
pbp__trace_open(const char *path, pbp_os_handle *h, pbp_error *err)
{
	return pbp__os_file_append_open(path, h, err);
}

void
pbp__trace_pieces(pbp_os_handle h, int dir, const struct pbp__piece *frame, int n)
{
	uint8_t hdr[PBP__TRACE_HEADER];
	pbp__piece pieces[PBP__TRACE_MAX_PIECES + 1];
	int i;

	if (n > PBP__TRACE_MAX_PIECES)
		return;
	memcpy(hdr, "PBPT", 4);
	hdr[4] = 1;
	hdr[5] = (uint8_t)dir;
	hdr[6] = hdr[7] = 0;
	put_le(hdr + 8, pbp__os_getpid(), 4);
	put_le(hdr + 12, pbp__os_realtime_ns(), 8);
	pieces[0] = (pbp__piece){ hdr, sizeof hdr };
	for (i = 0; i < n; i++)
		pieces[i + 1] = frame[i];
	/* Best effort: a full disk must not break the channel. */
	pbp__os_file_append(h, pieces, n + 1);
}

void
pbp__trace_frame(pbp_os_handle h, int dir, const uint8_t *prefix, size_t plen,
                 const uint8_t *rest, size_t rlen)
{
	pbp__piece pieces[2] = { { prefix, plen }, { rest, rlen } };

	pbp__trace_pieces(h, dir, pieces, 2);
}
