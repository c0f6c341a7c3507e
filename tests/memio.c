#include "memio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
pbt_pipe_init(pbt_pipe *p, size_t capacity)
{
	memset(p, 0, sizeof *p);
	p->capacity = capacity;
}

void
pbt_pipe_free(pbt_pipe *p)
{
	free(p->buf);
	p->buf = NULL;
}

void
pbt_pipe_put(pbt_pipe *p, const void *data, size_t n)
{
	if (n == 0)
		return;
	if (p->len + n > p->cap) {
		size_t ncap = (p->len + n) * 2;

		p->buf = realloc(p->buf, ncap);
		if (p->buf == NULL)
			abort();
		p->cap = ncap;
	}
	memcpy(p->buf + p->len, data, n);
	p->len += n;
}

/* How far a transfer starting at stream offset pos may go. */
static size_t
clamp(const pbt_end *e, size_t pos, size_t n)
{
	if (e->max_chunk != 0 && n > e->max_chunk)
		n = e->max_chunk;
	if (e->split != 0 && pos < e->split && pos + n > e->split)
		n = e->split - pos;
	return n;
}

static long
mem_read(void *ctx, void *buf, size_t n)
{
	pbt_end *e = ctx;
	pbt_pipe *p = e->in;
	size_t avail = p->len - p->rpos;

	e->reads++;
	if (e->split != 0 && p->rpos == e->split && !e->eagain_r_done && avail > 0) {
		e->eagain_r_done = 1;
		return -EAGAIN;
	}
	if (avail == 0)
		return p->wclosed ? 0 : -EAGAIN;
	n = clamp(e, p->rpos, n < avail ? n : avail);
	memcpy(buf, p->buf + p->rpos, n);
	p->rpos += n;
	return (long)n;
}

/* One gather write of the xfer's pieces, as writev() does: the faults
 * apply to their total, which may end inside any piece. */
static long
mem_write(void *ctx, const pbp__xfer *x)
{
	pbt_end *e = ctx;
	pbt_pipe *p = e->out;
	size_t n = x->out_len, room = p->capacity ? p->capacity - (p->len - p->rpos) : n, left;
	int i;

	e->writes++;
	if (p->rclosed)
		return -EPIPE;
	if (e->fail_at != 0 && p->len >= e->fail_at)
		return -EIO;
	if (e->split != 0 && p->len == e->split && !e->eagain_w_done) {
		e->eagain_w_done = 1;
		return -EAGAIN;
	}
	if (e->fail_at != 0 && p->len + n > e->fail_at)
		n = e->fail_at - p->len;
	n = clamp(e, p->len, n < room ? n : room);
	if (n == 0)
		return -EAGAIN;
	for (i = 0, left = n; i < x->nout && left > 0; i++) {
		size_t k = x->out[i].n < left ? x->out[i].n : left;

		pbt_pipe_put(p, x->out[i].p, k);
		left -= k;
	}
	return (long)n;
}

/* Whether a read or a write could do anything now (the memory pipes do
 * not change while we wait: nothing ready means the deadline passed). */
static int
mem_ready(pbt_end *e, const pbp__xfer *x)
{
	if (x->in_cap > 0 && (e->in->len > e->in->rpos || e->in->wclosed))
		return 1;
	return x->out_len > 0 &&
	       (e->out->rclosed || !e->out->capacity || e->out->len - e->out->rpos < e->out->capacity);
}

static int
mem_xfer(void *ctx, pbp__xfer *x, int64_t deadline)
{
	pbt_end *e = ctx;

	(void)deadline;
	for (;;) {
		if (x->out_len > 0) {
			long w = mem_write(e, x);

			if (w > 0)
				x->written = (size_t)w;
			else if (w != -EAGAIN)
				x->werr = (int)-w;
		}
		if (x->in_cap > 0) {
			long r = mem_read(e, x->in, x->in_cap);

			if (r > 0)
				x->nread = (size_t)r;
			else if (r == 0)
				x->eof = 1;
			else if (r != -EAGAIN)
				x->rerr = (int)-r;
		}
		if (x->written || x->werr || x->nread || x->eof || x->rerr)
			return 1;
		e->waits++;
		if (!mem_ready(e, x))
			return 0; /* timed out */
	}
}

static int
mem_close_write(void *ctx)
{
	pbt_end *e = ctx;

	e->out->wclosed = 1;
	return 0;
}

const pbp__io_ops pbt_mem_io = { mem_xfer, mem_close_write };
