/*
 * slot.c: the life of a pool's slot: deaths counted within the crash
 * window, the backoff, the events the application is told of, spawning a
 * helper, and restarting one without stopping the others: a restarted
 * helper is only started here (SLOT_STARTING), and its handshake goes on
 * in the pool's work, with the other helpers' replies.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_impl.h"

/* For calls whose failure changes nothing here. */
static void
ignore(int rc)
{
	(void)rc;
}

/* Deaths of slot s within the crash window, now included. */
static unsigned int
count_deaths(pbp_pool *p, pbp__slot *s, int64_t now)
{
	unsigned int i, n = 0;

	s->death_at[s->ndeaths++ % PBP__DEATH_RING] = now;
	for (i = 0; i < PBP__DEATH_RING && i < s->ndeaths; i++)
		if (now - s->death_at[i] < p->crash_window_ms)
			n++;
	return n;
}

/* The delay before the restart after the k-th death within the window. */
static int
backoff(const pbp_pool *p, unsigned int k)
{
	int64_t d;

	if (k <= 1)
		return 0;
	if (k - 2 >= 30)
		return p->backoff_max_ms;
	d = (int64_t)p->backoff_initial_ms << (k - 2);
	return d > p->backoff_max_ms ? p->backoff_max_ms : (int)d;
}

void
pbp__pool_emit(pbp_pool *p, int kind, size_t slot, pbp_pid pid, unsigned int deaths, int restart_in,
     int64_t latency_us, const pbp_report *r)
{
	pbp_pool_event ev;

	p->nevents++;
	if (p->on_event == NULL)
		return;
	memset(&ev, 0, sizeof ev);
	ev.kind = kind;
	ev.slot = slot;
	ev.pid = pid;
	ev.deaths = deaths;
	ev.restarts = p->slots[slot].restarts;
	ev.restart_in_ms = restart_in;
	ev.restart_latency_us = latency_us;
	ev.report = r;
	p->in_cb++;
	p->on_event(p, &ev, p->event_payload);
	p->in_cb--;
}


/* Fails every queued call once no slot can ever run it. */
void
pbp__pool_fail_queue_if_down(pbp_pool *p)
{
	pbp__pcall *c;

	if (p->ndown < p->size)
		return;
	while ((c = p->qhead) != NULL) {
		pbp__pool_queue_remove(p, c);
		pbp__pool_end_call_msg(p, c, PBP_EDOWN, "every helper of the pool is down (crash-loop cap: "
		             "%u deaths within %d ms)", p->max_crashes, p->crash_window_ms);
	}
}

/* Counts a death of slot s (its helper gone or never started) and
 * schedules its restart, or gives the slot up.  Returns the delay, -1 when
 * given up. */
int
pbp__pool_schedule_restart(pbp_pool *p, pbp__slot *s, int64_t now, unsigned int *deaths)
{
	unsigned int k = count_deaths(p, s, now);

	*deaths = k;
	if (p->max_crashes != PBP_POOL_NEVER_GIVE_UP && k >= p->max_crashes) {
		s->state = SLOT_DOWN;
		p->ndown++;
		return -1;
	}
	s->state = SLOT_RESTARTING;
	s->restart_at = now + backoff(p, k);
	return backoff(p, k);
}


/* Slot s's helper has completed its handshake: it takes calls. */
static void
slot_live(pbp_pool *p, pbp__slot *s)
{
	pbp_peer_info peer;

	/* The pool never blocks on a helper's channel (deadlines 0). */
	ignore(pbp__os_io_read_nonblocking(pbp__channel_os_io(s->ch)));
	s->pingable = pbp_channel_peer(s->ch, &peer) == 0 && peer.minor >= 1;
	s->state = SLOT_LIVE;
	s->ping = 0;
	s->alive_at = pbp__now_ms();
	p->nlive++;
}

/* Spawns slot s's helper: with its handshake (the pool's start), or
 * (restart) only started, SLOT_STARTING until slot_handshake() sees its
 * Hello, so the other helpers go on meanwhile.  0, or the spawn's error
 * with p->report filled. */
int
pbp__slot_spawn(pbp_pool *p, pbp__slot *s, int restart, pbp_error *err)
{
	pbp_spawn_options so = p->spawn;
	int rc;

	so.report = p->report;
	if (restart)
		so.flags |= PBP_SPAWN_NO_HANDSHAKE;
	rc = pbp_child_spawn(&s->child, s->path, s->argv, &so, err);
	if (rc != 0)
		return rc;
	s->ch = pbp_child_channel(s->child);
	if (!restart) {
		slot_live(p, s);
		return 0;
	}
	s->state = SLOT_STARTING;
	if ((rc = pbp_channel_handshake_start(s->ch)) != 0) {
		*err = *pbp_channel_error(s->ch);
		(void)pbp_child_report(s->child, p->report);
		pbp_child_free(s->child);
		s->child = NULL;
		s->ch = NULL;
	}
	return rc;
}

/* A restart failed (spawn or handshake: p->report says how): counts as a
 * death, and the next restart is scheduled, or the slot given up. */
static void
restart_failed(pbp_pool *p, pbp__slot *s)
{
	size_t i = (size_t)(s - p->slots);
	unsigned int deaths;
	int delay;

	delay = pbp__pool_schedule_restart(p, s, pbp__now_ms(), &deaths);
	pbp__pool_emit(p, PBP_POOL_RESTART_FAILED, i, 0, deaths, delay, 0, p->report);
	if (delay < 0) {
		pbp__pool_emit(p, PBP_POOL_GAVE_UP, i, 0, deaths, -1, 0, NULL);
		pbp__pool_fail_queue_if_down(p);
	}
}

void
pbp__slot_restart(pbp_pool *p, pbp__slot *s)
{
	pbp_error e;

	if (pbp__slot_spawn(p, s, 1, &e) != 0)
		restart_failed(p, s);
}

/* Slot s is SLOT_STARTING: goes on with its handshake, without waiting. */
void
pbp__slot_handshake(pbp_pool *p, pbp__slot *s)
{
	size_t i = (size_t)(s - p->slots);
	int rc = pbp_channel_handshake_finish(s->ch, 0);

	if (rc == PBP_EAGAIN)
		return;
	if (rc == 0) {
		slot_live(p, s);
		s->restarts++;
		p->st.restarts++;
		pbp__pool_emit(p, PBP_POOL_STARTED, i, pbp_child_pid(s->child), 0, 0,
		     (pbp__now_ns() - s->died_ns) / 1000, NULL);
		return;
	}
	/* The handshake failed: the report says how the helper ended. */
	if (pbp_child_wait(s->child, PBP__EXIT_MS, NULL) == PBP_ETIMEDOUT)
		ignore(pbp_child_kill(s->child, pbp__os_sigkill()));
	(void)pbp_child_report(s->child, p->report);
	pbp_child_free(s->child);
	s->child = NULL;
	s->ch = NULL;
	restart_failed(p, s);
}
