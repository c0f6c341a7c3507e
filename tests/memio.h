/*
 * memio.h: an in-memory transport for channels, with fault injection:
 * short reads and writes, EAGAIN at a chosen stream offset, a write
 * failure at a chosen offset.  Single-threaded: xfer() never blocks; when
 * nothing is ready it reports a timeout.
 */
#ifndef PBPTEST_MEMIO_H
#define PBPTEST_MEMIO_H

#include <stddef.h>
#include <stdint.h>

#include "pbp_internal.h"

/* One direction: bytes written and not yet read. */
typedef struct pbt_pipe {
	uint8_t *buf;
	size_t len;       /* bytes written in all */
	size_t rpos;      /* bytes read in all */
	size_t cap;       /* allocated */
	size_t capacity;  /* most unread bytes it holds; 0: unlimited */
	int wclosed;      /* the writer closed: reads then see end of stream */
	int rclosed;      /* the reader closed: writes then fail with EPIPE */
} pbt_pipe;

/* One end: reads from `in`, writes to `out`, with faults. */
typedef struct pbt_end {
	pbt_pipe *in, *out;
	size_t max_chunk;   /* most bytes one read or write moves; 0: no cap */
	size_t split;       /* no read or write crosses this stream offset, and
	                       reaching it yields one -EAGAIN first; 0: none */
	size_t fail_at;     /* writes fail with -EIO once this many bytes are
	                       written; 0: never */
	int eagain_r_done, eagain_w_done;
	long reads, writes, waits;
} pbt_end;

extern const pbp__io_ops pbt_mem_io;

void pbt_pipe_init(pbt_pipe *p, size_t capacity);
void pbt_pipe_free(pbt_pipe *p);
void pbt_pipe_put(pbt_pipe *p, const void *data, size_t n);

#endif
