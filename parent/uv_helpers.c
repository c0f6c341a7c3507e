/*
 * pbpipe-uv: 16 helpers driven from one libuv loop (docs/event-loops.md).
 * The pbpipe side (calls, nested calls, the kill and the restart) is
 * loop_common.c; this file is only the libuv glue:
 *
 *   - a uv_poll_t on each helper's read fd (UV_READABLE), and one on its
 *     write fd (UV_WRITABLE) started only while output is queued;
 *   - a uv_timer_t armed for the earliest deadline;
 *   - a uv_prepare_t, which libuv runs just before it sleeps: it handles
 *     input already buffered in a channel (which makes no fd readable),
 *     then sets the write watches and the timer for the sleep.
 *
 *   pbpipe-uv [--helpers N] [--calls N] [--kill-after N] [--slow-start-ms MS]
 *             [--timeout-ms MS] [--helper PATH]
 */
/* uv.h needs POSIX declared (pthread_rwlock_t with -std=c11). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "loop_common.h"

/* One helper's two fds in the loop.  Freed once both handles are closed
 * (uv_close() completes in a later loop iteration). */
struct uv_watch {
	struct loop_slot *slot;
	uv_poll_t rd, wr;
	int writing;            /* wr is started */
	int open;               /* handles not closed yet */
};

struct uv_glue {
	uv_loop_t loop;
	uv_timer_t timer;
	uv_prepare_t prepare;
	struct loop_run *run;
};

/* Readable, writable, or an error on the fd (status < 0): the channel
 * finds out which. */
static void
on_fd(uv_poll_t *h, int status, int events)
{
	struct uv_watch *w = h->data;

	(void)events;
	if (status < 0 && h == &w->wr)
		w->writing = 0; /* libuv stopped the handle */
	loop_slot_event(w->slot);
}

static void
on_timer(uv_timer_t *t)
{
	struct uv_glue *g = t->data;

	loop_run_tick(g->run);
}

/* Before libuv sleeps in epoll_wait(). */
static void
before_sleep(uv_prepare_t *p)
{
	struct uv_glue *g = p->data;
	struct uv_watch *w;
	int i, n = loop_run_size(g->run);

	/* Input a channel holds makes no fd readable: handle it now. */
	for (i = 0; i < n; i++)
		if (loop_slot_buffered(loop_run_slot(g->run, i)))
			loop_slot_event(loop_run_slot(g->run, i));
	for (i = 0; i < n; i++) {
		w = loop_slot_user(loop_run_slot(g->run, i));
		if (w == NULL)
			continue;
		if (loop_slot_wants_write(w->slot) && !w->writing) {
			uv_poll_start(&w->wr, UV_WRITABLE, on_fd);
			w->writing = 1;
		} else if (!loop_slot_wants_write(w->slot) && w->writing) {
			uv_poll_stop(&w->wr);
			w->writing = 0;
		}
	}
	if (loop_run_over(g->run))
		uv_stop(&g->loop); /* libuv does not sleep then */
	else
		uv_timer_start(&g->timer, on_timer, (uint64_t)loop_run_timeout(g->run), 0);
}

static void
watch(struct loop_slot *s, void *payload)
{
	struct uv_glue *g = payload;
	struct uv_watch *w = loop_alloc(sizeof *w);

	w->slot = s;
	if (uv_poll_init(&g->loop, &w->rd, loop_slot_read_fd(s)) != 0 ||
	    uv_poll_init(&g->loop, &w->wr, loop_slot_write_fd(s)) != 0) {
		fprintf(stderr, "pbpipe-uv: uv_poll_init failed\n");
		exit(1);
	}
	w->rd.data = w->wr.data = w;
	w->open = 2;
	uv_poll_start(&w->rd, UV_READABLE, on_fd);
	loop_slot_set_user(s, w);
}

static void
on_closed(uv_handle_t *h)
{
	struct uv_watch *w = h->data;

	if (--w->open == 0)
		free(w);
}

/* uv_close() takes the fds out of epoll at once, so the library may close
 * them right after this returns, and a new helper's fds may get the same
 * numbers. */
static void
unwatch(struct loop_slot *s, void *payload)
{
	struct uv_watch *w = loop_slot_user(s);

	(void)payload;
	uv_close((uv_handle_t *)&w->rd, on_closed);
	uv_close((uv_handle_t *)&w->wr, on_closed);
}

int
main(int argc, char **argv)
{
	static struct uv_glue g;
	static const struct loop_glue glue = { "pbpipe-uv", watch, unwatch, &g };
	int rc;

	if ((g.run = loop_run_new(argc, argv, &glue)) == NULL || uv_loop_init(&g.loop) != 0) {
		fprintf(stderr, "pbpipe-uv: cannot start (out of memory?)\n");
		return 1;
	}
	uv_timer_init(&g.loop, &g.timer);
	uv_prepare_init(&g.loop, &g.prepare);
	g.timer.data = g.prepare.data = &g;
	uv_prepare_start(&g.prepare, before_sleep);
	if (loop_run_start(g.run) == 0)
		uv_run(&g.loop, UV_RUN_DEFAULT);
	rc = loop_run_finish(g.run);
	uv_close((uv_handle_t *)&g.timer, NULL);
	uv_close((uv_handle_t *)&g.prepare, NULL);
	uv_run(&g.loop, UV_RUN_DEFAULT); /* the close callbacks */
	if (uv_loop_close(&g.loop) != 0)
		fprintf(stderr, "pbpipe-uv: handles left open\n");
	return rc;
}
