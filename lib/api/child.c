/*
 * child.c: the parent side of spawning, in portable C over the platform's
 * processes (os.h): the child object, its options, the handshake, the
 * child's lifecycle (wait with a deadline, kill, close, reap), its
 * captured stderr and the death report.  Starting, waiting for and
 * signalling the process itself is the platform's (lib/os/posix/proc.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/os.h"

struct pbp_child {
	pbp__proc *proc;  /* NULL until the process exists */
	uint32_t owner;   /* pbp__os_getpid() of the spawner, for messages;
	                     see not_forked() */
	int reaped;       /* gone: status is final (pbp__proc_wait said so) */
	pbp_exit_status status;
	pbp_channel *ch;
	pbp_error error;
	/* Captured stderr: the platform's reader of the child's stderr pipe
	 * and the last tail_cap bytes read from it.  Drained by whichever
	 * thread waits (both of a duplex channel, or one in pbp_child_*):
	 * the reader serializes its sink calls, and tail_lock keeps the tail
	 * whole for the report. */
	pbp__os_aux *aux;
	int have_lock;
	pbp__mutex tail_lock;
	char *tail;
	size_t tail_cap, tail_len, err_total;
};

/* ---- captured stderr ------------------------------------------------------ */

static void
tail_add(pbp_child *c, const char *p, size_t n)
{
	c->err_total += n;
	if (n >= c->tail_cap) {
		memcpy(c->tail, p + n - c->tail_cap, c->tail_cap);
		c->tail_len = c->tail_cap;
		return;
	}
	if (c->tail_len + n > c->tail_cap) {
		size_t drop = c->tail_len + n - c->tail_cap;

		memmove(c->tail, c->tail + drop, c->tail_len - drop);
		c->tail_len -= drop;
	}
	memcpy(c->tail + c->tail_len, p, n);
	c->tail_len += n;
}

/* The aux's sink: every byte read from the child's stderr, in order. */
static void
stderr_sink(void *arg, const char *p, size_t n)
{
	pbp_child *c = arg;

	if (p == NULL)
		return; /* end of stream: nothing to keep */
	pbp__mutex_lock(&c->tail_lock);
	tail_add(c, p, n);
	pbp__mutex_unlock(&c->tail_lock);
}

const char *
pbp_exit_status_str(const pbp_exit_status *st, char *buf, size_t size)
{
	return pbp__os_exit_status_str(st, buf, size);
}

/* ---- waiting -------------------------------------------------------------- */

/* pbp_child objects inherited through fork() belong to the spawner: in
 * any other process they may only be freed (see pbp_child.h). */
static int
owned(const pbp_child *c)
{
	return c->proc == NULL || pbp__proc_owned(c->proc);
}

static int
not_forked(pbp_child *c, const char *what)
{
	if (owned(c))
		return 0;
	return pbp__seterr(&c->error, PBP_EINVAL, 0,
	                   "%s in a process forked from the spawner (pid %d) of child pid %d: "
	                   "only pbp_child_free is allowed there", what, (int)c->owner,
	                   (int)pbp__proc_pid(c->proc));
}

/* Waits until the child exits or the deadline passes (-1: none; past: just
 * look).  With discard, also reads and discards what the child writes to
 * the channel, so that a child blocked writing to a full pipe can still
 * finish.  Captured stderr is collected meanwhile.  quiet: a timeout
 * leaves c->error alone (a report only looks). */
static int
wait_exit(pbp_child *c, int64_t deadline, pbp__os_io *discard, int quiet)
{
	pbp_exit_status st;
	int rc;

	if (c->reaped)
		return 0;
	rc = pbp__proc_wait(c->proc, c->aux, discard, deadline, &st, &c->error);
	if (rc == PBP_ETIMEDOUT && !quiet)
		return pbp__seterr(&c->error, PBP_ETIMEDOUT, 0, "child pid %d is still running",
		                   (int)pbp__proc_pid(c->proc));
	if (rc != 0)
		return rc;
	/* Gone: every byte it wrote to stderr is in the pipe by now, so the
	 * tail can end with its last words.  Not to the end of the pipe: a
	 * process it started may still hold the write end. */
	c->reaped = 1;
	c->status = st;
	(void)pbp__os_aux_drain(c->aux);
	return 0;
}

/* Ends the child with sig, if it still exists (the platform never
 * signals a process it knows to be gone).  0 or an error in c->error. */
static int
signal_child(pbp_child *c, int sig)
{
	if (c->reaped)
		return 0;
	return pbp__proc_kill(c->proc, sig, &c->error);
}

/* The channel's transport, whose incoming bytes a wait discards. */
static pbp__os_io *
discard_of(pbp_child *c)
{
	return c->ch != NULL ? pbp__channel_os_io(c->ch) : NULL;
}

int
pbp_child_wait(pbp_child *c, int timeout_ms, pbp_exit_status *out)
{
	int rc;

	if (c == NULL)
		return PBP_EINVAL;
	if ((rc = not_forked(c, "pbp_child_wait")) != 0)
		return rc;
	rc = wait_exit(c, pbp__deadline(timeout_ms), NULL, 0);
	if (rc == 0 && out != NULL)
		*out = c->status;
	return rc;
}

int
pbp_child_kill(pbp_child *c, int sig)
{
	int rc;

	if (c == NULL)
		return PBP_EINVAL;
	if ((rc = not_forked(c, "pbp_child_kill")) != 0)
		return rc;
	return signal_child(c, sig);
}

/* Goodbye, then the write side closed and grace_ms to exit while what it
 * sends is discarded; then the polite signal, grace_ms more; then the
 * one that cannot be refused. */
int
pbp_child_close(pbp_child *c, int grace_ms, pbp_exit_status *out)
{
	int rc;

	if (c == NULL)
		return PBP_EINVAL;
	if ((rc = not_forked(c, "pbp_child_close")) != 0)
		return rc;
	if (!c->reaped) {
		/* Goodbye is best effort: the child may be gone or not reading. */
		(void)pbp__channel_goodbye_by(c->ch, PBP_GOODBYE_DONE, NULL,
		                              pbp__deadline(grace_ms), 1);
		rc = wait_exit(c, pbp__deadline(grace_ms), discard_of(c), 0);
		if (rc == PBP_ETIMEDOUT) {
			(void)signal_child(c, pbp__os_sigterm());
			rc = wait_exit(c, pbp__deadline(grace_ms), discard_of(c), 0);
		}
		if (rc == PBP_ETIMEDOUT) {
			(void)signal_child(c, pbp__os_sigkill());
			rc = wait_exit(c, -1, discard_of(c), 0);
		}
		if (rc != 0)
			return rc;
	}
	if (out != NULL)
		*out = c->status;
	return 0;
}

/* ---- the report ----------------------------------------------------------- */

/* Fills the child half of a report: its fate and captured stderr.
 * Reaps the child if it has exited, without blocking. */
static void
report_child(pbp_child *c, pbp_report *r)
{
	(void)wait_exit(c, pbp__now_ms(), NULL, 1);
	r->pid = pbp__proc_pid(c->proc);
	if (!c->reaped)
		r->fate = PBP_FATE_RUNNING;
	else if (c->status.unknown)
		r->fate = PBP_FATE_UNKNOWN;
	else
		r->fate = c->status.exited ? PBP_FATE_EXITED : PBP_FATE_SIGNALED;
	r->status = c->status;
	(void)pbp__os_aux_drain(c->aux);
	pbp__mutex_lock(&c->tail_lock);
	r->stderr_len = c->tail_len;
	r->stderr_total = c->err_total;
	if (c->tail_len > 0)
		memcpy(r->stderr_tail, c->tail, c->tail_len);
	r->stderr_tail[c->tail_len] = '\0';
	pbp__mutex_unlock(&c->tail_lock);
}

int
pbp_child_report(pbp_child *c, pbp_report *out)
{
	int rc;

	if (c == NULL || out == NULL)
		return PBP_EINVAL;
	if ((rc = not_forked(c, "pbp_child_report")) != 0)
		return rc;
	if (c->ch != NULL)
		(void)pbp_channel_report(c->ch, out);
	else
		memset(out, 0, sizeof *out);
	report_child(c, out);
	return 0;
}


static const char *
end_str(int end)
{
	static const char *const names[] = {
		"open", "clean end of stream", "the peer said Goodbye", "truncated frame",
		"malformed frame", "oversize frame", "handshake failed", "deadline passed",
		"peer gone", "I/O error", "exec failed", "stream ended with calls unanswered",
	};

	return end >= 0 && end <= PBP_END_UNANSWERED ? names[end] : "unknown";
}

const char *
pbp_report_str(const pbp_report *r, char *buf, size_t size)
{
	char how[96];
	size_t n;

	if (buf == NULL || size == 0)
		return buf;
	if (r == NULL) {
		snprintf(buf, size, "no report");
		return buf;
	}
	n = (size_t)snprintf(buf, size, "%s", end_str(r->end));
	if (n < size && r->error != 0 && r->message[0] != '\0')
		n += (size_t)snprintf(buf + n, size - n, " (%s)", r->message);
	else if (n < size && r->end == PBP_END_GOODBYE)
		n += (size_t)snprintf(buf + n, size - n, " (reason %d%s%s)", r->goodbye_reason,
		                      r->goodbye_detail[0] ? ": " : "", r->goodbye_detail);
	if (n < size && r->fate != PBP_FATE_NONE && r->fate != PBP_FATE_EXEC_FAILED)
		snprintf(buf + n, size - n, "; child pid %d %s", (int)r->pid,
		         pbp_exit_status_str(&r->status, how, sizeof how));
	return buf;
}

/* After a failed handshake: find out how the child ended (or end it), so
 * the message can say, and so nothing is left behind. */
static void
handshake_failed(pbp_child *c, pbp_error *err)
{
	char how[80];
	size_t len;
	int pid = (int)pbp__proc_pid(c->proc);

	/* A child that closed its pipes is usually exiting; give it a moment. */
	if (wait_exit(c, pbp__deadline(250), NULL, 0) != 0) {
		(void)signal_child(c, pbp__os_sigkill());
		(void)wait_exit(c, -1, NULL, 0);
		snprintf(how, sizeof how, "; child pid %d did not exit and was killed", pid);
	} else {
		len = (size_t)snprintf(how, sizeof how, "; child pid %d ", pid);
		pbp_exit_status_str(&c->status, how + len, sizeof how - len);
	}
	if (err != NULL) {
		len = strlen(err->msg);
		if (len < sizeof err->msg - 1)
			snprintf(err->msg + len, sizeof err->msg - len, "%s", how);
	}
}

/* ---- spawning ------------------------------------------------------------- */


static int
check_spawn_options(const pbp_spawn_options *o, pbp_error *err)
{
	if (o->version != PBP_SPAWN_OPTIONS_VERSION)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_spawn_options.version is %u, expected %u", o->version,
		                   PBP_SPAWN_OPTIONS_VERSION);
	if (o->stdout_mode != PBP_STDIO_INHERIT && o->stdout_mode != PBP_STDIO_DEVNULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "stdout_mode %d is not valid", o->stdout_mode);
	if (o->stderr_mode < PBP_STDIO_INHERIT || o->stderr_mode > PBP_STDIO_CAPTURE)
		return pbp__seterr(err, PBP_EINVAL, 0, "stderr_mode %d is not valid", o->stderr_mode);
	if (o->stderr_tail > PBP_STDERR_TAIL_MAX)
		return pbp__seterr(err, PBP_EINVAL, 0, "stderr_tail %zu is over %u", o->stderr_tail,
		                   PBP_STDERR_TAIL_MAX);
	return 0;
}

static pbp_child *
child_new(const pbp_spawn_options *o)
{
	pbp_child *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->owner = pbp__os_getpid();
	if (pbp__mutex_init(&c->tail_lock) != 0) {
		free(c);
		return NULL;
	}
	c->have_lock = 1;
	if (o->stderr_mode == PBP_STDIO_CAPTURE) {
		c->tail_cap = o->stderr_tail ? o->stderr_tail : PBP_STDERR_TAIL_DEFAULT;
		c->tail = malloc(c->tail_cap);
		if (c->tail == NULL) {
			pbp__mutex_destroy(&c->tail_lock);
			free(c);
			return NULL;
		}
	}
	return c;
}

static void
child_destroy(pbp_child *c)
{
	if (c == NULL)
		return;
	/* Frees and closes only: pbp_channel_free sends nothing, so this is
	 * also what a forked copy may do. */
	pbp_channel_free(c->ch);
	/* In a forked copy the lock may have been held by a thread that the
	 * fork did not copy: leave it alone there. */
	if (c->have_lock && owned(c))
		pbp__mutex_destroy(&c->tail_lock);
	pbp__os_aux_free(c->aux);
	pbp__proc_free(c->proc);
	free(c->tail);
	free(c);
}

/* What the platform needs to start the child, from the options. */
static void
spawn_req(pbp__spawn_req *rq, const char *path, const char *const *argv,
          const pbp_spawn_options *o)
{
	const pbp_channel_options *co = o->channel;

	memset(rq, 0, sizeof *rq);
	rq->path = path;
	rq->argv = argv;
	rq->envp = o->envp;
	rq->cwd = o->cwd;
	rq->stdout_mode = o->stdout_mode;
	rq->stderr_mode = o->stderr_mode;
	rq->new_group = (o->flags & PBP_SPAWN_PROCESS_GROUP) != 0;
	/* As pbp_channel_from_os_handles() will ask of the channel's pipes. */
	rq->pipe_size = PBP_DEFAULT_PIPE_SIZE;
	if (co != NULL && co->pipe_size != 0)
		rq->pipe_size = co->pipe_size < 0 ? 0 : co->pipe_size;
}

/* Fills the report of a spawn that failed before the process existed. */
static void
report_unstarted(pbp_report *r, int rc, const pbp_error *err)
{
	if (r == NULL)
		return;
	memset(r, 0, sizeof *r);
	r->end = rc == PBP_EEXEC ? PBP_END_EXEC : PBP_END_IO;
	r->fate = rc == PBP_EEXEC ? PBP_FATE_EXEC_FAILED : PBP_FATE_NONE;
	r->error = rc;
	memcpy(r->message, err->msg, sizeof r->message);
}

/* After the process started, something failed: report on it, end it,
 * reap it. */
static void
fail_started(pbp_child *c, const pbp_spawn_options *opts, int rc, pbp_error *err)
{
	if (opts->report != NULL && c->ch != NULL)
		(void)pbp_channel_report(c->ch, opts->report);
	else if (opts->report != NULL)
		memset(opts->report, 0, sizeof *opts->report);
	pbp_channel_free(c->ch); /* end of stream for the child, if it waits */
	c->ch = NULL;
	handshake_failed(c, err);
	if (opts->report != NULL) {
		if (opts->report->end == PBP_END_OPEN) {
			opts->report->end = PBP_END_IO;
			opts->report->error = rc;
			memcpy(opts->report->message, err->msg, sizeof opts->report->message);
		}
		report_child(c, opts->report);
	}
}

int
pbp_child_spawn(pbp_child **out, const char *path, const char *const *argv,
                const pbp_spawn_options *opts, pbp_error *err)
{
	static const pbp_spawn_options defaults = PBP_SPAWN_OPTIONS_INIT;
	pbp_os_handle rd = PBP_OS_HANDLE_INVALID, wr = PBP_OS_HANDLE_INVALID,
	              errrd = PBP_OS_HANDLE_INVALID;
	pbp__spawn_req rq;
	pbp_error local;
	pbp_child *c = NULL;
	int rc;

	if (err == NULL)
		err = &local;
	if (out == NULL || path == NULL || *path == '\0')
		return pbp__seterr(err, PBP_EINVAL, 0, "pbp_child_spawn: NULL out or empty path");
	if (opts == NULL)
		opts = &defaults;
	if ((rc = check_spawn_options(opts, err)) != 0)
		return rc;
	if ((c = child_new(opts)) == NULL) {
		rc = pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory spawning '%s'", path);
		goto fail;
	}
	spawn_req(&rq, path, argv, opts);
	if ((rc = pbp__proc_spawn(&c->proc, &rq, &rd, &wr, &errrd, err)) != 0)
		goto fail;
	if (errrd != PBP_OS_HANDLE_INVALID &&
	    (rc = pbp__os_aux_open(&c->aux, errrd, stderr_sink, c, err)) != 0)
		goto fail_started;
	rc = pbp_channel_from_os_handles(&c->ch, rd, wr, opts->channel, err);
	if (rc != 0)
		goto fail_started;
	rd = wr = PBP_OS_HANDLE_INVALID; /* the channel owns them now */
	if (c->aux != NULL)
		pbp__os_io_set_aux(pbp__channel_os_io(c->ch), c->aux);
	if (!(opts->flags & PBP_SPAWN_NO_HANDSHAKE)) {
		rc = pbp_channel_handshake(c->ch);
		if (rc != 0) {
			*err = *pbp_channel_error(c->ch);
			goto fail_started;
		}
	}
	*out = c;
	return 0;
fail_started:
	/* Our ends of the pipes go first: end of stream for the child. */
	(void)pbp__os_close(&rd);
	(void)pbp__os_close(&wr);
	fail_started(c, opts, rc, err);
	goto cleanup;
fail:
	report_unstarted(opts->report, rc, err);
cleanup:
	child_destroy(c);
	return rc;
}

pbp_channel *
pbp_child_channel(const pbp_child *c)
{
	/* Not to a forked copy: writing to the spawner's conversation from
	 * two processes would interleave frames. */
	return c && owned(c) ? c->ch : NULL;
}

pbp_pid
pbp_child_pid(const pbp_child *c)
{
	return c && c->proc ? pbp__proc_pid(c->proc) : (pbp_pid)-1;
}

pbp_os_handle
pbp_child_exit_handle(const pbp_child *c)
{
	if (c == NULL || c->proc == NULL || c->reaped || !owned(c))
		return PBP_OS_HANDLE_INVALID;
	return pbp__proc_exit_handle(c->proc);
}

const pbp_error *
pbp_child_error(const pbp_child *c)
{
	return &c->error;
}

void
pbp_child_free(pbp_child *c)
{
	int saved = errno;

	if (c == NULL)
		return;
	/* A forked copy neither signals nor waits: the child is the
	 * spawner's.  It closes its copies of the handles, so that the child
	 * still sees end of stream when the spawner closes its own. */
	if (c->proc != NULL && !c->reaped && owned(c)) {
		(void)signal_child(c, pbp__os_sigkill());
		(void)wait_exit(c, -1, NULL, 0);
	}
	child_destroy(c);
	errno = saved;
}
