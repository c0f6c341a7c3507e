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

static long
mem_write(void *ctx, const void *buf, size_t n)
{
	pbt_end *e = ctx;
	pbt_pipe *p = e->out;
	size_t room = p->capacity ? p->capacity - (p->len - p->rpos) : n;

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
	pbt_pipe_put(p, buf, n);
	return (long)n;
}

static int
mem_wait(void *ctx, int events, int64_t deadline)
{
	pbt_end *e = ctx;
	int ready = 0;

	(void)deadline;
	e->waits++;
	if ((events & PBP__IO_READ) && (e->in->len > e->in->rpos || e->in->wclosed))
		ready |= PBP__IO_READ;
	if ((events & PBP__IO_WRITE) &&
	    (e->out->rclosed || !e->out->capacity || e->out->len - e->out->rpos < e->out->capacity))
		ready |= PBP__IO_WRITE;
	return ready; /* 0: nothing can change while we wait, so: timed out */
}

static int
mem_close_write(void *ctx)
{
	pbt_end *e = ctx;

	e->out->wclosed = 1;
	return 0;
}

const pbp__io_ops pbt_mem_io = { mem_read, mem_write, mem_wait, mem_close_write, NULL };
