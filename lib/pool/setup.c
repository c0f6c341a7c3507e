/*
 * setup.c: a pool's options checked and its state set up, and the calls
 * that only read its state (pbp_pool.h).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pool_impl.h"

static int
fail(pbp_pool *p, int code, const char *what)
{
	return pbp__seterr(&p->error, code, 0, "%s", what);
}

static int
check_options(pbp_pool *p, const pbp_pool_options *o)
{
	const pbp_channel_options *co = o->spawn ? o->spawn->channel : NULL;
	size_t i;

	if (o->version < 1 || o->version > PBP_POOL_OPTIONS_VERSION)
		return fail(p, PBP_EINVAL, "pool options: unknown version (start from "
		            "PBP_POOL_OPTIONS_INIT)");
	if (o->helpers != NULL && o->nhelpers == 0)
		return fail(p, PBP_EINVAL, "pool options: helpers is set but nhelpers is 0");
	if (o->helpers == NULL && o->path == NULL)
		return fail(p, PBP_EINVAL, "pool options: no program (path or helpers)");
	for (i = 0; o->helpers != NULL && i < o->nhelpers; i++)
		if (o->helpers[i].path == NULL)
			return pbp__seterr(&p->error, PBP_EINVAL, 0,
			                   "pool options: helpers[%zu].path is NULL", i);
	if (o->size > PBP_POOL_MAX_HELPERS)
		return pbp__seterr(&p->error, PBP_EINVAL, 0, "pool options: size %zu is over "
		                   "PBP_POOL_MAX_HELPERS (%d)", o->size, PBP_POOL_MAX_HELPERS);
	if (o->spawn != NULL && (o->spawn->flags & PBP_SPAWN_NO_HANDSHAKE))
		return fail(p, PBP_EINVAL, "pool options: PBP_SPAWN_NO_HANDSHAKE: the pool "
		            "makes every handshake itself");
	if (co != NULL && (co->flags & PBP_CHANNEL_DUPLEX))
		return fail(p, PBP_EINVAL, "pool options: PBP_CHANNEL_DUPLEX channels have no calls");
	if (o->max_queued > PBP_POOL_QUEUE_MAX)
		return fail(p, PBP_EINVAL, "pool options: max_queued is over PBP_POOL_QUEUE_MAX");
	if (o->max_crashes > PBP_POOL_MAX_CRASHES && o->max_crashes != PBP_POOL_NEVER_GIVE_UP)
		return pbp__seterr(&p->error, PBP_EINVAL, 0, "pool options: max_crashes %u is over "
		                   "PBP_POOL_MAX_CRASHES (%u)", o->max_crashes, PBP_POOL_MAX_CRASHES);
	if (o->backoff_initial_ms < 0 || o->backoff_max_ms < 0 || o->crash_window_ms < 0 ||
	    o->ping_timeout_ms < 0 || o->close_grace_ms < 0)
		return fail(p, PBP_EINVAL, "pool options: a negative delay (only ping_interval_ms "
		            "may be < 0)");
	if (o->nidempotent > 0 && o->idempotent == NULL)
		return fail(p, PBP_EINVAL, "pool options: nidempotent without idempotent");
	return 0;
}

int
pbp__pool_setup(pbp_pool *p, const pbp_pool_options *o)
{
	size_t i, big = 0;
	int rc;

	if ((rc = check_options(p, o)) != 0)
		return rc;

	p->size = o->size ? o->size : o->helpers ? o->nhelpers : 1;
	if (p->size > PBP_POOL_MAX_HELPERS)
		return pbp__seterr(&p->error, PBP_EINVAL, 0, "pool options: %zu helpers is over "
		                   "PBP_POOL_MAX_HELPERS (%d)", p->size, PBP_POOL_MAX_HELPERS);
	p->backoff_initial_ms = o->backoff_initial_ms ? o->backoff_initial_ms : 100;
	p->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 10000;
	p->max_crashes = o->max_crashes ? o->max_crashes : 5;
	p->crash_window_ms = o->crash_window_ms ? o->crash_window_ms : 180000;
	p->ping_interval_ms = o->ping_interval_ms ? o->ping_interval_ms : 1000;
	p->ping_timeout_ms = o->ping_timeout_ms ? o->ping_timeout_ms : 1000;
	p->max_attempts = o->max_attempts ? o->max_attempts : 3;
	p->q_deadline = -1; /* no queued call */
	p->max_queued = o->max_queued ? o->max_queued : PBP_POOL_QUEUE_DEFAULT;
	p->close_grace_ms = o->close_grace_ms ? o->close_grace_ms : 2000;
	p->on_event = o->on_event;
	p->event_payload = o->event_payload;
	if (o->spawn != NULL) {
		p->spawn = *o->spawn;
		if (o->spawn->channel != NULL)
			p->chopt = *o->spawn->channel;
		else
			p->chopt = (pbp_channel_options)PBP_CHANNEL_OPTIONS_INIT;
	} else {
		p->spawn = (pbp_spawn_options)PBP_SPAWN_OPTIONS_INIT;
		p->chopt = (pbp_channel_options)PBP_CHANNEL_OPTIONS_INIT;
	}
	p->chopt.send_timeout_ms = 0; /* the pool never waits on one helper */
	p->chopt.recv_timeout_ms = 0;
	p->spawn.channel = &p->chopt;
	p->types = p->chopt.types;
	p->ntypes = p->chopt.ntypes;
	for (i = 0; i < p->ntypes; i++)
		if (p->types[i].size > big)
			big = p->types[i].size;
	if (o->nidempotent > 0) {
		p->idem = malloc(o->nidempotent * sizeof *p->idem);
		if (p->idem == NULL)
			return fail(p, PBP_ENOMEM, "out of memory");
		memcpy(p->idem, o->idempotent, o->nidempotent * sizeof *p->idem);
		p->nidem = o->nidempotent;
	}
	p->scratch = calloc(1, big ? big : 1);
	p->slots = calloc(p->size, sizeof *p->slots);
	p->ios = calloc(p->size, sizeof *p->ios);
	p->want_write = calloc(p->size, sizeof *p->want_write);
	p->ready = calloc(p->size, sizeof *p->ready);
	p->report = malloc(sizeof *p->report);
	if (!p->scratch || !p->slots || !p->ios || !p->want_write || !p->ready || !p->report)
		return fail(p, PBP_ENOMEM, "out of memory");
	for (i = 0; i < p->size; i++) {
		const pbp_pool_helper *h = o->helpers ? &o->helpers[i % o->nhelpers] : NULL;

		p->slots[i].path = h ? h->path : o->path;
		p->slots[i].argv = h ? h->argv : o->argv;
	}
	return 0;
}

#ifndef _WIN32
size_t
pbp_pool_pollfds(const pbp_pool *p, struct pollfd *fds, size_t n)
{
	size_t i, k = 0;

	if (p == NULL)
		return 0;
	for (i = 0; i < p->size; i++) {
		const pbp__slot *s = &p->slots[i];

		if (s->state != SLOT_LIVE && s->state != SLOT_STARTING)
			continue;
		if (k < n) {
			fds[k].fd = pbp_channel_read_fd(s->ch);
			fds[k].events = POLLIN;
			fds[k].revents = 0;
		}
		k++;
		if (pbp_channel_pending(s->ch) > 0) {
			if (k < n) {
				fds[k].fd = pbp_channel_write_fd(s->ch);
				fds[k].events = POLLOUT;
				fds[k].revents = 0;
			}
			k++;
		}
	}
	return k;
}
#endif

int
pbp_pool_stats_get(const pbp_pool *p, pbp_pool_stats *out)
{
	size_t i;

	if (p == NULL || out == NULL)
		return PBP_EINVAL;
	*out = p->st;
	out->size = p->size;
	out->live = p->nlive;
	out->down = p->ndown;
	out->queued = p->nqueued;
	out->in_flight = p->ninflight;
	out->idle = out->restarting = 0;
	for (i = 0; i < p->size; i++) {
		out->idle += pbp__slot_idle(&p->slots[i]);
		out->restarting += p->slots[i].state == SLOT_RESTARTING ||
		                   p->slots[i].state == SLOT_STARTING;
	}
	return 0;
}

pbp_child *
pbp_pool_child(pbp_pool *p, size_t slot)
{
	if (p == NULL || slot >= p->size || p->slots[slot].state != SLOT_LIVE)
		return NULL;
	return p->slots[slot].child;
}

const pbp_error *
pbp_pool_error(const pbp_pool *p)
{
	return p ? &p->error : NULL;
}

