/*
 * queue.c: the pool's queue of calls waiting for a helper, and how a call
 * ends (its done callback, or the blocking caller's result).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_impl.h"

/* ---- the queue ---------------------------------------------------------------- */

void
pbp__pool_queue_push(pbp_pool *p, pbp__pcall *c, int front)
{
	c->state = PCALL_QUEUED;
	c->next = NULL;
	if (p->qhead == NULL) {
		p->qhead = p->qtail = c;
	} else if (front) {
		c->next = p->qhead;
		p->qhead = c;
	} else {
		p->qtail->next = c;
		p->qtail = c;
	}
	p->nqueued++;
	if (c->deadline >= 0 && (p->q_deadline < 0 || c->deadline < p->q_deadline))
		p->q_deadline = c->deadline;
}

void
pbp__pool_queue_remove(pbp_pool *p, pbp__pcall *c)
{
	pbp__pcall **pp, *prev = NULL;

	for (pp = &p->qhead; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp != c)
			continue;
		*pp = c->next;
		if (p->qtail == c)
			p->qtail = prev;
		p->nqueued--;
		if (c->deadline >= 0 && c->deadline == p->q_deadline)
			p->q_deadline_stale = 1;
		c->next = NULL;
		return;
	}
}

/* ---- ending calls ---------------------------------------------------------------- */

/* Ends call c with rc (its error in e, its reply in resp): runs its done
 * callback or hands the result to the blocking caller, and frees it. */
void
pbp__pool_end_call(pbp_pool *p, pbp__pcall *c, int rc, const void *resp, const pbp_error *e)
{
	if (rc == 0) {
		p->st.calls_ok++;
	} else {
		p->st.calls_failed++;
		if (rc == PBP_ELOST)
			p->st.calls_lost++;
	}
	p->ncompleted++;
	if (c->blocking != NULL) {
		c->blocking->rc = rc;
		c->blocking->done = 1;
		if (rc != 0 && e != NULL)
			c->blocking->error = *e;
	} else if (c->done != NULL) {
		p->in_cb++;
		c->done(p, c->id, rc, rc == 0 ? resp : NULL, rc == 0 ? NULL : e, c->payload);
		p->in_cb--;
	}
	free(c->req);
	free(c);
}

void
pbp__pool_end_call_msg(pbp_pool *p, pbp__pcall *c, int rc, const char *fmt, ...)
{
	pbp_error e;
	va_list ap;

	memset(&e, 0, sizeof e);
	e.code = rc;
	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof e.msg, fmt, ap);
	va_end(ap);
	pbp__pool_end_call(p, c, rc, NULL, &e);
}
