/*
 * pool_impl.h: the pool object (pool.c).  Not installed.
 */
#ifndef PBP_POOL_IMPL_H
#define PBP_POOL_IMPL_H

#include <stdarg.h>

#include <pbpipe/pbpipe.h>

#include "pbp_internal.h"
#include "os/os.h"

/* Deaths remembered per slot for the crash window (the cap and the
 * backoff's exponent count at most this many). */
#define PBP__DEATH_RING PBP_POOL_MAX_CRASHES
/* How long a dead helper has to exit on its own before it is killed, and
 * how long a killed one is waited for. */
#define PBP__EXIT_MS 200
#define PBP__REAP_MS 5000

/* SLOT_STARTING: a restarted helper runs, its handshake under way (the
 * pool waits for its Hello with the others' replies). */
enum { SLOT_LIVE = 1, SLOT_RESTARTING, SLOT_DOWN, SLOT_STARTING };
enum { PCALL_QUEUED = 1, PCALL_FLIGHT };

/* Where a blocking pbp_pool_call() waits for its result. */
typedef struct pbp__blocking {
	void *resp;
	int done, rc;
	pbp_error error;
} pbp__blocking;

/* A call: its encoded request, deadline and attempts. */
typedef struct pbp__pcall {
	struct pbp__pcall *next; /* in the queue */
	uint64_t id, cid;        /* the pool's id; the channel's while in flight */
	uint32_t req_type, resp_type;
	uint8_t *req;
	size_t req_len;
	int timeout_ms;
	int64_t deadline;        /* pbp__now_ms() clock; -1: none */
	unsigned int attempts;   /* helpers it was sent to (unread sends not counted) */
	int idempotent, state;
	int resend;              /* back in the queue after its helper died */
	size_t slot;
	pbp_pool_done_fn done;
	void *payload;
	pbp__blocking *blocking; /* a blocking call's waiter, or NULL */
} pbp__pcall;

typedef struct pbp__slot {
	const char *path;
	const char *const *argv;
	int state;
	pbp_child *child;
	pbp_channel *ch;
	pbp__pcall *cur;         /* the call it runs, or NULL: idle */
	int pingable, ping;
	int64_t ping_deadline, alive_at, restart_at;
	int64_t died_ns;
	int64_t death_at[PBP__DEATH_RING];
	unsigned int ndeaths;
	uint64_t restarts;
} pbp__slot;

struct pbp_pool {
	size_t size;
	pbp__slot *slots;
	pbp_spawn_options spawn;
	pbp_channel_options chopt;
	const pbp_msgtype *types;
	size_t ntypes;
	uint32_t *idem;
	size_t nidem;
	int backoff_initial_ms, backoff_max_ms, crash_window_ms;
	int ping_interval_ms, ping_timeout_ms, close_grace_ms;
	unsigned int max_crashes, max_attempts;
	size_t max_queued;
	void (*on_event)(pbp_pool *, const pbp_pool_event *, void *);
	void *event_payload;
	pbp__pcall *qhead, *qtail;
	size_t nqueued, ninflight, nlive, ndown, rr;
	int64_t q_deadline;     /* the earliest deadline of a queued call, or -1 */
	int q_deadline_stale;   /* a call with that deadline left the queue */
	uint64_t next_id, ncompleted;
	uint64_t nevents;       /* events so far (emitted or not): pbp_pool_run() returns */
	int in_cb;
	int closing;             /* in pbp_pool_free() */
	void *scratch;           /* an asynchronous call's decoded reply */
	pbp_report *report;
	struct pbp__os_io **ios; /* pool_work()'s wait set */
	int *want_write, *ready;
	pbp_pool_stats st;
	pbp_error error;
};

static inline int
pbp__slot_idle(const pbp__slot *s)
{
	return s->state == SLOT_LIVE && s->cur == NULL;
}

/* Checks the options and fills p from them (setup.c): its policy, the
 * helpers' spawn options, the slots' programs; allocates its arrays. */
/* slot.c: the life of a slot. */
/* Tells the application (on_event) of an event of slot `slot`. */
void pbp__pool_emit(pbp_pool *p, int kind, size_t slot, pbp_pid pid, unsigned int deaths,
                    int restart_in, int64_t latency_us, const pbp_report *r);
/* Fails every queued call once no slot can ever run it. */
void pbp__pool_fail_queue_if_down(pbp_pool *p);
/* Counts a death of slot s and schedules its restart, or gives the slot
 * up: the delay, -1 when given up (*deaths: within the window). */
int pbp__pool_schedule_restart(pbp_pool *p, pbp__slot *s, int64_t now, unsigned int *deaths);
/* Spawns slot s's helper: handshaken (restart 0) or started, its
 * handshake under way (SLOT_STARTING).  0, or an error (p->report). */
int pbp__slot_spawn(pbp_pool *p, pbp__slot *s, int restart, pbp_error *err);
/* Restarts slot s (its restart is due). */
void pbp__slot_restart(pbp_pool *p, pbp__slot *s);
/* Goes on with a SLOT_STARTING slot's handshake, without waiting. */
void pbp__slot_handshake(pbp_pool *p, pbp__slot *s);

int pbp__pool_setup(pbp_pool *p, const pbp_pool_options *o);

/* queue.c: the FIFO of calls waiting for a helper (front: a retry goes
 * first; the queue's earliest deadline kept up to date) ... */
void pbp__pool_queue_push(pbp_pool *p, pbp__pcall *c, int front);
void pbp__pool_queue_remove(pbp_pool *p, pbp__pcall *c);
/* ... and ending a call with rc (its error in e, its reply in resp): its
 * done callback, or the blocking caller's result; frees it. */
void pbp__pool_end_call(pbp_pool *p, pbp__pcall *c, int rc, const void *resp,
                        const pbp_error *e);
void pbp__pool_end_call_msg(pbp_pool *p, pbp__pcall *c, int rc, const char *fmt, ...)
	PBP__PRINTF(4, 5);

#endif /* PBP_POOL_IMPL_H */
