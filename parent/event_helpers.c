/*
 * pbpipe-event: 16 helpers driven from one libevent event_base
 * (docs/event-loops.md).  The pbpipe side (calls, nested calls, the kill
 * and the restart) is loop_common.c; this file is only the libevent glue:
 *
 *   - a persistent EV_READ event on each helper's read fd, and an EV_WRITE
 *     one on its write fd, added only while output is queued;
 *   - a timer event for the earliest deadline;
 *   - after every callback, settle(): libevent 2.1 has no hook that runs
 *     before it sleeps, so a channel that still holds buffered input
 *     (which makes no fd readable) gets its read event activated by hand
 *     (event_active()), the write event follows the queue, and the timer
 *     is armed again.
 *
 *   pbpipe-event [--helpers N] [--calls N] [--kill-after N] [--slow-start-ms MS]
 *                [--timeout-ms MS] [--helper PATH]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include <event2/event.h>

#include "loop_common.h"

struct ev_glue;

/* One helper's two fds in the event_base. */
struct ev_watch {
	struct ev_glue *g;
	struct loop_slot *slot;
	struct event *rd, *wr;
	int writing;            /* wr is added */
};

struct ev_glue {
	struct event_base *base;
	struct event *timer;
	struct loop_run *run;
};

/* After the callbacks of slot w: buffered input, the write event. */
static void
settle(struct ev_watch *w)
{
	if (w == NULL)
		return;
	if (loop_slot_buffered(w->slot))
		event_active(w->rd, EV_READ, 0);
	if (loop_slot_wants_write(w->slot) != w->writing) {
		w->writing = !w->writing;
		if (w->writing ? event_add(w->wr, NULL) : event_del(w->wr)) {
			fprintf(stderr, "pbpipe-event: event_add/event_del failed\n");
			exit(1);
		}
	}
}

/* The timer for the earliest deadline, or the end of the loop. */
static void
rearm(struct ev_glue *g)
{
	int ms = loop_run_timeout(g->run);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (loop_run_over(g->run))
		event_base_loopbreak(g->base);
	else
		evtimer_add(g->timer, &tv);
}

static void
on_fd(evutil_socket_t fd, short what, void *arg)
{
	struct ev_watch *w = arg;

	(void)fd;
	(void)what;
	struct ev_glue *g = w->g;
	struct loop_slot *s = w->slot;

	loop_slot_event(s);
	settle(loop_slot_user(s)); /* a restart replaces w */
	rearm(g);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ev_glue *g = arg;
	int i;

	(void)fd;
	(void)what;
	loop_run_tick(g->run);
	for (i = 0; i < loop_run_size(g->run); i++)
		settle(loop_slot_user(loop_run_slot(g->run, i)));
	rearm(g);
}

static void
watch(struct loop_slot *s, void *payload)
{
	struct ev_glue *g = payload;
	struct ev_watch *w = loop_alloc(sizeof *w);

	w->g = g;
	w->slot = s;
	w->rd = event_new(g->base, loop_slot_read_fd(s), EV_READ | EV_PERSIST, on_fd, w);
	w->wr = event_new(g->base, loop_slot_write_fd(s), EV_WRITE | EV_PERSIST, on_fd, w);
	if (w->rd == NULL || w->wr == NULL || event_add(w->rd, NULL) != 0) {
		fprintf(stderr, "pbpipe-event: event_new/event_add failed\n");
		exit(1);
	}
	loop_slot_set_user(s, w);
	settle(w);
}

/* event_free() deletes the events (also from a callback of theirs), so
 * the library may close the fds right after this returns. */
static void
unwatch(struct loop_slot *s, void *payload)
{
	struct ev_watch *w = loop_slot_user(s);

	(void)payload;
	event_free(w->rd);
	event_free(w->wr);
	free(w);
}

int
main(int argc, char **argv)
{
	static struct ev_glue g;
	static const struct loop_glue glue = { "pbpipe-event", watch, unwatch, &g };
	int rc = 1;

	g.base = event_base_new();
	g.run = loop_run_new(argc, argv, &glue);
	g.timer = g.base != NULL ? evtimer_new(g.base, on_timer, &g) : NULL;
	if (g.run == NULL || g.timer == NULL) {
		fprintf(stderr, "pbpipe-event: cannot start (out of memory?)\n");
		return 1;
	}
	if (loop_run_start(g.run) == 0) {
		rearm(&g);
		event_base_dispatch(g.base);
	}
	rc = loop_run_finish(g.run);
	event_free(g.timer);
	event_base_free(g.base);
	return rc;
}
