/*
 * loop_common.h: the pbpipe side of the event-loop examples, pbpipe-uv
 * (uv_helpers.c, libuv) and pbpipe-event (event_helpers.c, libevent), so
 * that each example is only its event loop's glue (docs/event-loops.md).
 *
 * A run spawns --helpers N pbpipe-loop-helper processes and makes --calls
 * Work calls among them, LOOP_IN_FLIGHT per helper at a time, each one
 * asynchronous (pbp_channel_call_async()).  To answer a Work a helper
 * calls the parent back (Lookup), which answers inside
 * pbp_channel_process() with the handler it registered
 * (pbp_channel_set_handlers()).  Nothing blocks: the channels have send
 * and receive deadlines of 0, and the handshakes run in two steps
 * (pbp_channel_handshake_start(), then pbp_channel_handshake_finish(ch, 0)
 * on each event).  With --kill-after K one helper is killed (SIGKILL)
 * after K calls have ended; the run notices the end of its stream, spawns
 * a replacement whose handshake takes --slow-start-ms, and re-issues
 * there the calls the dead one had in flight, while the other helpers go
 * on.
 *
 * What the glue does:
 *   - watch(s): start watching loop_slot_read_fd(s) for readability (and
 *     loop_slot_write_fd(s) for writability while loop_slot_wants_write(s));
 *     unwatch(s): stop watching both, which are closed right after it
 *     returns (loop_slot_user(s) is NULL then).  Both are called from loop_run_start(), loop_slot_event()
 *     (a restart) and loop_run_finish();
 *   - on every event of a slot's fds: loop_slot_event(s);
 *   - a timer of loop_run_timeout() ms that calls loop_run_tick();
 *   - before the loop sleeps: loop_slot_event(s) for every slot that is
 *     loop_slot_buffered() (buffered input makes no fd readable), then
 *     the write watches and the timer again, and stop once
 *     loop_run_over();
 *   - at the end: loop_run_finish(), whose return value is the exit
 *     status.
 */
#ifndef PBPIPE_LOOP_COMMON_H
#define PBPIPE_LOOP_COMMON_H

#include <stddef.h>

/** Calls in flight per helper. */
#define LOOP_IN_FLIGHT 2

struct loop_run;
struct loop_slot;

/** What the run asks of the event loop. */
struct loop_glue {
	const char *prog; /**< the program's name, for messages */
	void (*watch)(struct loop_slot *s, void *payload);
	void (*unwatch)(struct loop_slot *s, void *payload);
	void *payload;    /**< passed to both */
};

/** Parses the options (exits 2 with a usage message on bad ones) and
 *  prepares a run; spawns nothing yet.  glue must outlive the run. */
struct loop_run *loop_run_new(int argc, char **argv, const struct loop_glue *glue);

/** Spawns the helpers and starts their handshakes, calling watch() for
 *  each.  0, or -1 with a message printed (loop_run_finish() then). */
int loop_run_start(struct loop_run *r);

/** The number of slots (helpers), and slot i of them. */
int loop_run_size(const struct loop_run *r);
struct loop_slot *loop_run_slot(const struct loop_run *r, int i);

/** Slot s's number (0 to loop_run_size() - 1), its helper's fds, whether
 *  output is queued (watch the write fd), and whether input is buffered
 *  (call loop_slot_event() before sleeping). */
int loop_slot_index(const struct loop_slot *s);
int loop_slot_read_fd(const struct loop_slot *s);
int loop_slot_write_fd(const struct loop_slot *s);
int loop_slot_wants_write(const struct loop_slot *s);
int loop_slot_buffered(const struct loop_slot *s);

/** Zeroed memory, or the program exits 1 ("out of memory"). */
void *loop_alloc(size_t size);

/** A pointer the glue keeps with slot s, such as its watchers (NULL at
 *  first). */
void loop_slot_set_user(struct loop_slot *s, void *user);
void *loop_slot_user(const struct loop_slot *s);

/** Does what is due on slot s: the next step of its handshake, or
 *  pbp_channel_process(); restarts its helper if its stream ended. */
void loop_slot_event(struct loop_slot *s);

/** Milliseconds until the earliest deadline: of a call, of a handshake,
 *  or of the run (--timeout-ms); >= 0. */
int loop_run_timeout(const struct loop_run *r);

/** The timer fired: loop_slot_event() for every slot with a deadline due,
 *  and the run's own deadline. */
void loop_run_tick(struct loop_run *r);

/** 1 once the run is over: every call ended and no restart under way, or
 *  a failure, or the run's deadline. */
int loop_run_over(const struct loop_run *r);

/** Ends every helper (unwatch(), Goodbye, close), prints the summary line
 *  and frees the run.  Returns the exit status: 0 only if every call
 *  ended with the right result through its nested call, none was lost
 *  and, with --kill-after, exactly one helper was restarted. */
int loop_run_finish(struct loop_run *r);

#endif /* PBPIPE_LOOP_COMMON_H */
