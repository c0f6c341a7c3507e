/*
 * pbp_pool.h: supervised helpers.  A pool runs N helper processes behind
 * one call API: each call goes to an idle helper; a helper that crashes,
 * exits or hangs is replaced under a restart policy (exponential backoff,
 * a crash-loop cap); idle helpers are pinged; the application is told of
 * every death and restart with the old helper's death report.  One
 * supervised helper is a pool of size 1.
 *
 *     static const uint32_t safe[] = { demo_Type_ADD };
 *     pbp_pool_options po = PBP_POOL_OPTIONS_INIT;
 *     po.size = 4;
 *     po.path = "/usr/lib/app/helper";
 *     po.argv = (const char *const[]){ "helper", "--serve", NULL };
 *     po.spawn = &so;                  // channel options (types) inside
 *     po.idempotent = safe;            // retried on another helper
 *     po.nidempotent = 1;
 *     po.on_event = log_event;         // deaths, restarts, give-ups
 *     pbp_pool *p;
 *     pbp_error err;
 *     if (pbp_pool_start(&p, &po, &err) != 0)
 *         die(err.msg);
 *     rc = pbp_pool_call(p, demo_Type_ADD, &add, demo_Type_SUM, &sum, 1000);
 *     ...
 *     pbp_pool_free(p);
 *
 * Calls.  The pool encodes a request when the call is made, so a retry
 * sends the same bytes and the request need not outlive the call.  A
 * helper runs one call at a time (it is idle when it has none); calls for
 * which no helper is idle wait in a queue, in order.  A call ends exactly
 * once, with one of:
 *   0             the reply (decoded into resp, or passed to done)
 *   PBP_EREMOTE   the helper answered with an application error
 *   PBP_ETIMEDOUT the call's deadline passed, waiting in the queue or on a
 *                 helper; a helper still busy with it at its deadline is
 *                 declared hung (PBP_POOL_HUNG), killed and replaced (a
 *                 helper found dead with it after its deadline: this too)
 *   PBP_ELOST     the helper died with the call in flight, and the call
 *                 was not retried (its type is not idempotent, or
 *                 max_attempts helpers died with it): it may or may not
 *                 have run
 *   PBP_EDOWN     every helper is down for good (crash-loop cap), so no
 *                 helper will take it
 *   PBP_ECANCELED the pool was freed first (asynchronous calls only)
 *   PBP_ETYPE, PBP_EDECODE, PBP_EENCODE, PBP_EMSGSIZE for bad types and
 *                 payloads, as on a channel.
 * A call whose request type is declared idempotent and whose helper dies
 * under it goes back to the head of the queue and runs on the next idle
 * helper, up to max_attempts helpers in all.  A call whose request the
 * dead helper had certainly not read whole goes back to the head of the
 * queue whatever its type, and that does not count as an attempt: the
 * request could not be written whole, or (Linux) some of it was still
 * unread in the pipe when the helper died.  A call is never retried after
 * its deadline, nor after an application error.
 *
 * Restarts.  A helper is dead when its channel ends or fails in any way
 * (end of stream, Goodbye, a malformed frame, a failed write), when it
 * misses a ping, or when a call's deadline passes while it runs that call
 * (then it is killed: SIGKILL, or the Job's termination on Windows).  The
 * application gets PBP_POOL_DIED or PBP_POOL_HUNG with the death report
 * (pbp_child.h: how the channel ended, the exit status or signal, the
 * stderr tail), and the slot is restarted: at once the first time, then
 * after backoff_initial_ms, doubling up to backoff_max_ms, counting the
 * deaths of that slot within the last crash_window_ms.  The restarted
 * helper is spawned with the same program, arguments and options and
 * handshakes again (PBP_POOL_STARTED).  When a slot has died max_crashes
 * times within crash_window_ms it is given up (PBP_POOL_GAVE_UP) and
 * stays down; when every slot is down, calls fail with PBP_EDOWN.  A
 * failed respawn (PBP_POOL_RESTART_FAILED) counts as a death.  Defaults:
 * immediate, 100 ms, 200 ms, ... up to 10 s; give up after 5 deaths in 3
 * minutes (as VS Code does for its extension host).
 *
 * Health.  The ping is the barrier (pbp_channel_sync_start(), protocol
 * 1.1): the helper's library answers it as soon as its application asks
 * for the next message, so a helper in pbp_channel_serve() answers it with
 * no application code.  An idle helper that has given no sign of life
 * (a reply, a ping's answer) for ping_interval_ms is pinged; one that does
 * not answer within ping_timeout_ms is declared hung, killed and
 * replaced.  Helpers speaking protocol 1.0 are not pinged.
 *
 * Where the work happens.  The pool does its work (sending queued calls,
 * reading replies, restarts, pings, deadlines) inside pbp_pool_call() and
 * pbp_pool_run(), never in a thread of its own and never in a signal
 * handler.  A restart spawns the helper (the exec, as pbp_child_spawn()
 * with PBP_SPAWN_NO_HANDSHAKE) and does not wait for its handshake: the
 * pool reads the new helper's Hello along with the other helpers' replies,
 * so a helper slow to start (up to the handshake deadline) holds up no
 * other; its slot takes calls once the handshake is done (PBP_POOL_STARTED),
 * and a handshake that fails is a failed respawn (PBP_POOL_RESTART_FAILED).
 * pbp_pool_start() alone waits for every handshake.  Event loops (POSIX): poll the fds from
 * pbp_pool_pollfds() with the timeout of pbp_pool_next_timeout(), then
 * call pbp_pool_run(p, 0).  Between those calls the pool does nothing: a
 * helper's death is noticed, and its restart made, on the next one.
 *
 * Messages a helper sends outside a reply (one-way messages) are read and
 * dropped (counted in pbp_pool_stats.dropped).  Streams are not available
 * through a pool.  A pool is not thread-safe: use it from one thread at a
 * time.  Callbacks (done, on_event) run inside pool calls; they may start
 * new asynchronous calls (pbp_pool_call_async(); refused with PBP_EINVAL
 * while pbp_pool_free() ends the calls) and read the pool's state, but
 * must not call pbp_pool_call(), pbp_pool_run() or pbp_pool_free().
 */
#ifndef PBPIPE_PBP_POOL_H
#define PBPIPE_PBP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <pbpipe/pbp_child.h>
#include <pbpipe/pbp_common.h>
#include <pbpipe/pbp_errors.h>

#ifndef _WIN32
#include <poll.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** A pool of supervised helpers.  Opaque. */
typedef struct pbp_pool pbp_pool;

/** Most helpers in one pool. */
#define PBP_POOL_MAX_HELPERS 256
/** Default and largest number of calls waiting for an idle helper. */
#define PBP_POOL_QUEUE_DEFAULT 4096u
#define PBP_POOL_QUEUE_MAX (1u << 20)

/** The program of one helper slot (pbp_pool_options.helpers): lets a pool
 *  mix programs, a 64-bit and a 32-bit build of a helper for instance. */
typedef struct pbp_pool_helper {
	const char *path;          /**< as for pbp_child_spawn() */
	const char *const *argv;   /**< as for pbp_child_spawn(); may be NULL */
} pbp_pool_helper;

/** What happened to a helper (pbp_pool_event.kind). */
enum pbp_pool_event_kind {
	PBP_POOL_STARTED = 1,        /**< a helper was restarted and completed its
	                                  handshake (not sent for the first start) */
	PBP_POOL_DIED = 2,           /**< a helper died: its channel ended or
	                                  failed (report says how) */
	PBP_POOL_HUNG = 3,           /**< a helper missed a ping or a call's deadline:
	                                  it was killed (report) */
	PBP_POOL_RESTART_FAILED = 4, /**< a respawn failed (exec or handshake;
	                                  report) */
	PBP_POOL_GAVE_UP = 5,        /**< the slot reached the crash-loop cap and
	                                  stays down */
};

/** An event passed to pbp_pool_options.on_event. */
typedef struct pbp_pool_event {
	int kind;                  /**< enum pbp_pool_event_kind */
	size_t slot;               /**< which helper, 0 .. size - 1 */
	pbp_pid pid;               /**< the helper's pid (STARTED: the new one) */
	unsigned int deaths;       /**< deaths of this slot within crash_window_ms,
	                                this one included (0 for STARTED) */
	uint64_t restarts;         /**< restarts of this slot so far */
	int restart_in_ms;         /**< DIED, HUNG, RESTART_FAILED: when the
	                                restart is due (0: now); -1: given up */
	int64_t restart_latency_us; /**< STARTED: from the death being noticed to
	                                the new helper's handshake, backoff
	                                included */
	const pbp_report *report;  /**< DIED, HUNG, RESTART_FAILED: the death
	                                report; NULL otherwise.  Valid during
	                                the callback only. */
} pbp_pool_event;

/** Current version of pbp_pool_options. */
#define PBP_POOL_OPTIONS_VERSION 1

/** Pool options.  Start from PBP_POOL_OPTIONS_INIT.  A value of 0 in a
 *  numeric field means its default (below). */
typedef struct pbp_pool_options {
	unsigned int version;      /**< PBP_POOL_OPTIONS_VERSION */
	size_t size;               /**< helpers, 1 .. PBP_POOL_MAX_HELPERS;
	                                0: nhelpers if helpers is set, else 1 */
	const char *path;          /**< the program of every slot ... */
	const char *const *argv;   /**< ... and its argv (may be NULL) */
	const pbp_pool_helper *helpers; /**< or one per slot: slot i runs
	                                helpers[i % nhelpers] (path is then
	                                ignored) */
	size_t nhelpers;
	const pbp_spawn_options *spawn; /**< for every helper (channel options
	                                inside: types, fingerprint, deadlines);
	                                NULL: defaults.  PBP_SPAWN_NO_HANDSHAKE
	                                is refused; report is ignored */
	int backoff_initial_ms;    /**< delay before the second restart within
	                                the crash window (the first is at once);
	                                doubles per death; default 100 */
	int backoff_max_ms;        /**< largest delay; default 10000 */
	unsigned int max_crashes;  /**< give a slot up after this many deaths
	                                within crash_window_ms; default 5, at
	                                most PBP_POOL_MAX_CRASHES;
	                                PBP_POOL_NEVER_GIVE_UP: never */
	int crash_window_ms;       /**< default 180000 (3 minutes) */
	int ping_interval_ms;      /**< ping a helper idle and silent this long;
	                                default 1000; < 0: never ping */
	int ping_timeout_ms;       /**< a ping's deadline; default 1000 */
	const uint32_t *idempotent; /**< request types that may run twice: a
	                                call of one is retried on another helper
	                                when its helper dies under it */
	size_t nidempotent;
	unsigned int max_attempts; /**< helpers an idempotent call is tried on,
	                                in all (helpers that never read it
	                                not counted); default 3 */
	size_t max_queued;         /**< calls waiting for a helper; default
	                                PBP_POOL_QUEUE_DEFAULT, at most
	                                PBP_POOL_QUEUE_MAX; then PBP_ELIMIT */
	int close_grace_ms;        /**< pbp_pool_free(): how long each helper
	                                has to exit after Goodbye before SIGTERM,
	                                and again before SIGKILL; default 2000 */
	void (*on_event)(pbp_pool *p, const pbp_pool_event *ev, void *payload);
	void *event_payload;       /**< passed to on_event */
} pbp_pool_options;

/** pbp_pool_options.max_crashes: restart for ever. */
#define PBP_POOL_NEVER_GIVE_UP 0xffffffffu
/** The largest max_crashes other than PBP_POOL_NEVER_GIVE_UP (the deaths a
 *  slot remembers). */
#define PBP_POOL_MAX_CRASHES 64u

/** Initializer for pbp_pool_options: every field at its default. */
#define PBP_POOL_OPTIONS_INIT                                                  \
	{ PBP_POOL_OPTIONS_VERSION, 0, NULL, NULL, NULL, 0, NULL, 0, 0, 0, 0, 0, 0, \
	  NULL, 0, 0, 0, 0, NULL, NULL }

/**
 * Starts the pool: spawns every helper and completes each handshake.
 *
 * @param[out] out  the pool, set only on success
 * @param[out] err  filled on failure if not NULL; for a helper that could
 *                  not start, the message names its slot and says why, as
 *                  pbp_child_spawn() would
 * @return 0; PBP_EINVAL (bad options: the message names the field); any
 *         error of pbp_child_spawn() for the first helper that failed to
 *         start (then every helper already started is closed and reaped:
 *         nothing is left behind); PBP_ENOMEM.
 */
PBP_API PBP_WARN_UNUSED int pbp_pool_start(pbp_pool **out, const pbp_pool_options *opts,
                                           pbp_error *err);

/**
 * Makes a call on the next idle helper and waits for it to end, doing the
 * pool's other work meanwhile (other calls' replies, restarts, pings).
 *
 * @param req_type   a request type registered in the channel options
 * @param req        the request (encoded before anything waits)
 * @param resp_type  the registered type of the reply
 * @param[out] resp  room for the registered struct of resp_type
 * @param timeout_ms the call's deadline, queue included (< 0: none; 0 is
 *                   refused with PBP_EINVAL: a helper still running a call
 *                   at its deadline is declared hung and killed)
 * @return 0 or a code from the list at the top of this file; the message
 *         (and, for PBP_EREMOTE, remote_code) is in pbp_pool_error().
 *         PBP_ELIMIT if the queue is full; PBP_EINVAL for a NULL argument
 *         or when called from a callback.
 */
PBP_API PBP_WARN_UNUSED int pbp_pool_call(pbp_pool *p, uint32_t req_type, const void *req,
                                          uint32_t resp_type, void *resp, int timeout_ms);

/**
 * How an asynchronous call ended: called exactly once, from inside
 * pbp_pool_run(), pbp_pool_call() or pbp_pool_free(), never from
 * pbp_pool_call_async() itself.
 * @param id    the call's id from pbp_pool_call_async()
 * @param rc    0 or a code from the list at the top of this file
 * @param resp  with rc 0: the decoded reply, valid during the callback only
 *              (copy what you keep); NULL otherwise
 * @param err   what went wrong (code, message, remote_code), or NULL with rc 0
 */
typedef void (*pbp_pool_done_fn)(pbp_pool *p, uint64_t id, int rc, const void *resp,
                                 const pbp_error *err, void *payload);

/**
 * Starts a call without waiting: it is encoded, then sent to an idle
 * helper if there is one (writing what the pipe takes without blocking) or
 * queued.  A send that fails (the helper died unnoticed) leaves the call
 * queued, first in line, and the helper's death for the next pool call.
 * done runs when it ends.
 * @param timeout_ms  the call's deadline from now (< 0: none; 0: refused,
 *                    as for pbp_pool_call())
 * @param[out] id     its id (may be NULL); ids only grow and are never 0
 * @return 0 (done will be called); PBP_ETYPE, PBP_EENCODE, PBP_EMSGSIZE,
 *         PBP_ELIMIT (queue full), PBP_EDOWN (every helper is down),
 *         PBP_EINVAL, PBP_ENOMEM: then done is not called.
 */
PBP_API PBP_WARN_UNUSED int pbp_pool_call_async(pbp_pool *p, uint32_t req_type,
                                                const void *req, uint32_t resp_type,
                                                int timeout_ms, pbp_pool_done_fn done,
                                                void *payload, uint64_t *id);

/**
 * Does the pool's work: handles whatever is ready (replies and their done
 * callbacks, deaths, restarts that are due, pings, deadlines, queued
 * calls) and returns once a call has ended or an event (on_event) has
 * happened, or once timeout_ms has passed (0: one look, no wait).  With
 * timeout_ms < 0 it waits for a call to end while calls are queued or in
 * flight; with none, it does one round of work, waiting until a helper's
 * fd is ready or the next timer (pbp_pool_next_timeout()) is due.
 * @return the number of calls that ended (>= 0); PBP_EINVAL when called
 *         from a callback.
 */
PBP_API PBP_WARN_UNUSED int pbp_pool_run(pbp_pool *p, int timeout_ms);

/** Milliseconds until the pool has work due without any fd becoming
 *  ready (a deadline, a ping, a restart): the timeout for the application's
 *  poll().  0: call pbp_pool_run() now; -1: nothing is due. */
PBP_API int pbp_pool_next_timeout(const pbp_pool *p);

#ifndef _WIN32
/**
 * POSIX: fills fds[0 .. n) with what an event loop should poll for the
 * pool: each live or starting helper's read fd (POLLIN) and, while its output is
 * queued, write fd (POLLOUT).  revents is zeroed.  Returns the number of
 * entries the pool needs, which may be larger than n (then only n were
 * filled): at most 2 * size.  The set changes when helpers are restarted:
 * get it again before each poll().
 */
PBP_API size_t pbp_pool_pollfds(const pbp_pool *p, struct pollfd *fds, size_t n);
#endif

/** Counters and the current state of a pool. */
typedef struct pbp_pool_stats {
	size_t size;           /**< slots */
	size_t live;           /**< helpers running and handshaken */
	size_t idle;           /**< of those, without a call */
	size_t restarting;     /**< slots waiting for their restart, or for
	                            the handshake of the restarted helper */
	size_t down;           /**< slots given up */
	size_t queued;         /**< calls waiting for a helper */
	size_t in_flight;      /**< calls on a helper */
	uint64_t calls_ok;     /**< calls that ended with 0 */
	uint64_t calls_failed; /**< calls that ended with any error */
	uint64_t calls_lost;   /**< of those, PBP_ELOST */
	uint64_t retries;      /**< calls sent again after their helper died */
	uint64_t deaths;       /**< PBP_POOL_DIED + PBP_POOL_HUNG events */
	uint64_t hung;         /**< PBP_POOL_HUNG events */
	uint64_t restarts;     /**< successful restarts */
	uint64_t pings;        /**< pings answered */
	uint64_t dropped;      /**< messages a helper sent outside a reply */
} pbp_pool_stats;

/** Fills out with the pool's counters and state.  @return 0, PBP_EINVAL. */
PBP_API int pbp_pool_stats_get(const pbp_pool *p, pbp_pool_stats *out);

/**
 * The helper in slot `slot`, or NULL while it is down or restarting.  For
 * inspection (pid, report) and for pbp_child_kill(): the pool notices a
 * killed helper like any other death.  Do not free or close it, and do not
 * use its channel.  Valid until the next pool call.
 */
PBP_API pbp_child *pbp_pool_child(pbp_pool *p, size_t slot);

/** The error record of the pool's most recent failure. */
PBP_API const pbp_error *pbp_pool_error(const pbp_pool *p);

/**
 * Ends every helper (Goodbye, then pbp_child_close() with close_grace_ms)
 * and frees the pool.  Asynchronous calls that have not ended end first
 * with PBP_ECANCELED.  NULL is a no-op.
 */
PBP_API void pbp_pool_free(pbp_pool *p);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_POOL_H */
