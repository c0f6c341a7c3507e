/*
 * channel.c: the channel object and its typed API: construction, options
 * and the end (free, close), the error records and accessors, sends, and
 * receives with their decoding.  The byte engine is stream.c, the control
 * protocol session.c, calls call.c.
 *
 * Receive errors and send errors are tracked apart, so a peer that stops
 * reading (EPIPE) can still be read to the end, and a peer that sends
 * garbage can still be told Goodbye.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "channel_impl.h"

/* ---- construction -------------------------------------------------------- */

static int
check_options(const pbp_channel_options *o, pbp_error *err)
{
	size_t i, j;

	/* A version 1 struct (built against the 1.1 headers) ends before
	 * stream_window, which is then not read. */
	if (o->version != PBP_CHANNEL_OPTIONS_VERSION && o->version != 1)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_channel_options.version is %u, expected 1 to %u "
		                   "(start from PBP_CHANNEL_OPTIONS_INIT)",
		                   o->version, PBP_CHANNEL_OPTIONS_VERSION);
	if (o->version >= 2 && o->stream_window != 0 &&
	    (o->stream_window < PBP_MIN_STREAM_WINDOW || o->stream_window > PBP_MAX_STREAM_WINDOW))
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "stream_window %" PRIu32 " is outside [%u, %u]",
		                   o->stream_window, PBP_MIN_STREAM_WINDOW, PBP_MAX_STREAM_WINDOW);
	if (o->max_frame != 0 &&
	    (o->max_frame < PBP_MIN_MAX_FRAME || o->max_frame > PBP_MAX_MAX_FRAME))
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "max_frame %" PRIu32 " is outside [%u, %u]",
		                   o->max_frame, PBP_MIN_MAX_FRAME, PBP_MAX_MAX_FRAME);
	if (o->flags & ~PBP__CHANNEL_FLAGS)
		return pbp__seterr(err, PBP_EINVAL, 0, "unknown flags 0x%x in options",
		                   o->flags & ~PBP__CHANNEL_FLAGS);
	if (o->ntypes > 0 && o->types == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "ntypes is %zu but types is NULL",
		                   o->ntypes);
	for (i = 0; i < o->ntypes; i++) {
		if (o->types[i].id == 0 || o->types[i].fields == NULL)
			return pbp__seterr(err, PBP_EINVAL, 0,
			                   "types[%zu]: type number 0 or no descriptor", i);
		for (j = 0; j < i; j++)
			if (o->types[j].id == o->types[i].id)
				return pbp__seterr(err, PBP_EINVAL, 0,
				                   "types[%zu] and types[%zu] share type number %" PRIu32,
				                   j, i, o->types[i].id);
	}
	return 0;
}

/* 0 means "do not wait" here as everywhere; < 0 means no deadline. */
static int
opt_timeout(int v)
{
	return v < 0 ? -1 : v;
}

int
pbp__channel_new_io(pbp_channel **out, const pbp__io_ops *io, void *ctx,
                    const pbp_channel_options *opts, pbp_error *err)
{
	static const pbp_channel_options defaults = PBP_CHANNEL_OPTIONS_INIT;
	pbp_channel *ch;
	int rc;

	if (out == NULL || io == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "NULL out or transport");
	if (opts == NULL)
		opts = &defaults;
	rc = check_options(opts, err);
	if (rc != 0)
		return rc;
	ch = calloc(1, sizeof *ch);
	if (ch == NULL)
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory allocating a channel");
	ch->io = io;
	ch->io_ctx = ctx;
	ch->trace_fd = PBP_OS_HANDLE_INVALID;
	ch->types = opts->types;
	ch->ntypes = opts->ntypes;
	ch->fingerprint = opts->schema_fingerprint;
	ch->max_frame = opts->max_frame ? opts->max_frame : PBP_DEFAULT_MAX_FRAME;
	ch->timeout[PBP_TIMEOUT_HANDSHAKE] = opt_timeout(opts->handshake_timeout_ms);
	ch->timeout[PBP_TIMEOUT_SEND] = opt_timeout(opts->send_timeout_ms);
	ch->timeout[PBP_TIMEOUT_RECV] = opt_timeout(opts->recv_timeout_ms);
	ch->flags = opts->flags;
	ch->spin_us = opts->spin_us > 0 ? opts->spin_us : 0;
	ch->next_id = 1;
	ch->st_next = 1;
	ch->hs_deadline = -1;
	/* A duplex channel accepts no streams (pbp_stream.h). */
	ch->st_window = opts->version >= 2 && opts->stream_window != 0 ? opts->stream_window
	                                                                : PBP_DEFAULT_STREAM_WINDOW;
	if (opts->flags & PBP_CHANNEL_DUPLEX)
		ch->st_window = 0;
	ch->owner_pid = pbp__os_getpid();
	atomic_init(&ch->busy_rx, 0);
	atomic_init(&ch->busy_tx, 0);
	/* In duplex mode the send side keeps its own error record and a lock,
	 * so that one thread can send while another receives. */
	ch->txe = (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->error_tx : &ch->error;
	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		if (pbp__mutex_init(&ch->wlock) != 0) {
			ch->flags &= ~PBP_CHANNEL_DUPLEX;
			pbp_channel_free_keep_fds(ch);
			return pbp__seterr(err, PBP_ESYS, 0, "cannot create a mutex");
		}
		if (pbp__mutex_init(&ch->ack_lock) != 0) {
			pbp__mutex_destroy(&ch->wlock);
			ch->flags &= ~PBP_CHANNEL_DUPLEX;
			pbp_channel_free_keep_fds(ch);
			return pbp__seterr(err, PBP_ESYS, 0, "cannot create a mutex");
		}
	}
	ch->wbuf = malloc(BUF_INITIAL);
	ch->wcap = BUF_INITIAL;
	/* Before the handshake, accept one small frame: a Hello. */
	if (ch->wbuf == NULL ||
	    pbp__reader_init(&ch->rd, PBP__HANDSHAKE_MAX_FRAME, BUF_INITIAL) != 0) {
		pbp_channel_free_keep_fds(ch);
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory allocating channel buffers");
	}
	/* PBPIPE_TRACE=FILE traces every channel of the process (and of its
	 * children, which inherit the environment).  A debugging aid: a path
	 * that cannot be opened must not break the application, so it only
	 * earns one line on stderr. */
	if (getenv("PBPIPE_TRACE") != NULL && *getenv("PBPIPE_TRACE") != '\0') {
		pbp_error terr;

		if (pbp__trace_open(getenv("PBPIPE_TRACE"), &ch->trace_fd, &terr) != 0)
			fprintf(stderr, "pbpipe: PBPIPE_TRACE ignored: %s\n", terr.msg);
	}
	*out = ch;
	return 0;
}

int
pbp_channel_from_os_handles(pbp_channel **out, pbp_os_handle read_handle,
                            pbp_os_handle write_handle, const pbp_channel_options *opts,
                            pbp_error *err)
{
	pbp_channel *ch;
	pbp__os_io *io;
	int rc, size = PBP_DEFAULT_PIPE_SIZE;

	if (out == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "pbp_channel_from_os_handles: NULL out");
	if (read_handle == PBP_OS_HANDLE_INVALID || write_handle == PBP_OS_HANDLE_INVALID)
		return pbp__seterr(err, PBP_EINVAL, 0, "invalid handle given for the %s side",
		                   read_handle == PBP_OS_HANDLE_INVALID ? "read" : "write");
	/* Options first: a bad option must not leave the handles modified. */
	rc = pbp__channel_new_io(&ch, &pbp__os_io_ops, NULL, opts, err);
	if (rc != 0)
		return rc;
	if (opts != NULL && opts->pipe_size != 0)
		size = opts->pipe_size < 0 ? 0 : opts->pipe_size;
	rc = pbp__os_io_open(&io, read_handle, write_handle,
	                     (ch->flags & PBP_CHANNEL_SIGPIPE_HANDLED) ? PBP__OS_IO_SIGPIPE_HANDLED : 0,
	                     size, err);
	if (rc != 0) {
		pbp_channel_free_keep_fds(ch);
		return rc;
	}
	/* Only now, when nothing can fail any more, does the channel take
	 * the handles: ownership moves on success only. */
	ch->osio = io;
	ch->io_ctx = io;
	*out = ch;
	return 0;
}

#ifndef _WIN32
int
pbp_channel_from_fds(pbp_channel **out, int read_fd, int write_fd,
                     const pbp_channel_options *opts, pbp_error *err)
{
	if (out == NULL || read_fd < 0 || write_fd < 0)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_channel_from_fds: NULL out or negative fd (%d, %d)",
		                   read_fd, write_fd);
	return pbp_channel_from_os_handles(out, read_fd, write_fd, opts, err);
}
#endif

int
pbp__channel_watch_parent(pbp_channel *ch, pbp_error *err)
{
	if (ch->flags & PBP_CHANNEL_OUTLIVE_PARENT)
		return 0;
	return pbp__os_watch_start(&ch->watch, err);
}

void
pbp_channel_free_keep_fds(pbp_channel *ch)
{
	if (ch == NULL)
		return;
	/* First: the watch thread is the only other thread this channel
	 * owns, stopped and joined here on every path (free, close). */
	pbp__os_watch_stop(ch->watch);
	pbp__os_close(&ch->trace_fd);
	pbp__calls_cancel_async(ch);
	pbp__calls_free(ch);
	pbp__streams_free(ch);
	if (ch->flags & PBP_CHANNEL_DUPLEX) {
		pbp__mutex_destroy(&ch->wlock);
		pbp__mutex_destroy(&ch->ack_lock);
	}
	(void)pbp__os_io_free(ch->osio, 0);
	pbp__reader_free(&ch->rd);
	pbp__ch_splices_free(ch);
	free(ch->spl);
	free(ch->wbuf);
	free(ch);
}

/* Writes what sends left queued, within the deadline.  Returns 0 when
 * nothing is left, or the error that stopped it with e saying how many
 * bytes were not written. */
static int
drain_output(pbp_channel *ch, int64_t deadline, pbp_error *e)
{
	int rc;

	if (!pbp__ch_out_queued(ch))
		return 0;
	if (ch->tx_err != 0 || ch->wr_closed || ch->state != ST_READY)
		rc = pbp__seterr(e, ch->tx_err ? ch->tx_err : PBP_EPIPE, 0, "%s",
		                 ch->tx_err ? ch->tx_error.msg : "the write side is closed");
	else
		rc = pbp__ch_flush_by(ch, deadline, e);
	if (rc != 0) {
		size_t lost = pbp__ch_queued(ch);
		char why[PBP_ERRMSG_SIZE];

		memcpy(why, e->msg, sizeof why);
		pbp__seterr(e, rc, e->sys_errno, "%zu bytes of queued output were not written: %.180s",
		            lost, why);
	}
	return rc;
}

static void
release_fds(pbp_channel *ch)
{
	(void)pbp__os_io_free(ch->osio, 1);
	ch->osio = NULL;
}

void
pbp_channel_free(pbp_channel *ch)
{
	pbp_error e;
	int linger;

	if (ch == NULL)
		return;
	linger = ch->timeout[PBP_TIMEOUT_SEND];
	if (linger < 0 || linger > PBP_FREE_LINGER_MS)
		linger = PBP_FREE_LINGER_MS;
	/* What sends queued (coalesced, or left by a deadline) goes out first,
	 * within the send deadline; pbp_channel_close() says if it could not.
	 * A copy inherited through fork() sends nothing: its bytes would be
	 * interleaved with the real owner's. */
	if (ch->owner_pid == pbp__os_getpid())
		(void)drain_output(ch, pbp__deadline(linger), &e);
	release_fds(ch);
	pbp_channel_free_keep_fds(ch);
}

int
pbp_channel_close(pbp_channel *ch, int timeout_ms, pbp_error *err)
{
	pbp_error local;
	int rc;

	if (err == NULL)
		err = &local;
	memset(err, 0, sizeof *err);
	if (ch == NULL)
		return 0;
	rc = ch->owner_pid == pbp__os_getpid() ? drain_output(ch, pbp__deadline(timeout_ms), err) : 0;
	release_fds(ch);
	pbp_channel_free_keep_fds(ch);
	return rc;
}
/* ---- errors, accessors --------------------------------------------------- */

void
pbp__ch_timed_out(pbp_channel *ch, const pbp_error *e)
{
	ch->timed_out = 1;
	ch->timeout_error = *e;
}

void
pbp__ch_succeeded(pbp_channel *ch)
{
	ch->timed_out = 0;
}

pbp__os_io *
pbp__channel_os_io(pbp_channel *ch)
{
	return ch->osio;
}

const pbp_error *
pbp_channel_error(const pbp_channel *ch)
{
	return &ch->error;
}

const char *
pbp_channel_errmsg(const pbp_channel *ch)
{
	return ch->error.msg;
}

const pbp_error *
pbp_channel_send_error(const pbp_channel *ch)
{
	return ch->txe;
}

#ifndef _WIN32
int
pbp_channel_read_fd(const pbp_channel *ch)
{
	return ch->osio != NULL ? pbp__os_io_read_handle(ch->osio) : -1;
}

int
pbp_channel_write_fd(const pbp_channel *ch)
{
	return ch->osio != NULL ? pbp__os_io_write_handle(ch->osio) : -1;
}
#endif

int
pbp_channel_peer(const pbp_channel *ch, pbp_peer_info *out)
{
	if (ch == NULL || out == NULL)
		return PBP_EINVAL;
	*out = ch->peer;
	return 0;
}

int
pbp_channel_set_trace(pbp_channel *ch, const char *path)
{
	pbp_os_handle fd = PBP_OS_HANDLE_INVALID;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	if (path != NULL && (rc = pbp__trace_open(path, &fd, &ch->error)) != 0)
		return rc;
	pbp__os_close(&ch->trace_fd);
	ch->trace_fd = fd;
	return 0;
}

int
pbp_channel_set_timeout(pbp_channel *ch, int which, int timeout_ms)
{
	if (ch == NULL || which < PBP_TIMEOUT_SEND || which > PBP_TIMEOUT_HANDSHAKE)
		return ch ? pbp__ch_fail(ch, PBP_EINVAL, "set_timeout: unknown timeout") : PBP_EINVAL;
	ch->timeout[which] = timeout_ms < 0 ? -1 : timeout_ms;
	return 0;
}

size_t
pbp_channel_pending(const pbp_channel *ch)
{
	return ch ? pbp__ch_queued(ch) : 0;
}

int
pbp__channel_recv_ready(const pbp_channel *ch)
{
	return ch->rx_err != 0 || ch->qlen > 0 || pbp__reader_ready(&ch->rd);
}

int
pbp_channel_buffered(const pbp_channel *ch)
{
	size_t i;

	if (ch == NULL)
		return 0;
	if (pbp__channel_recv_ready(ch))
		return 1;
	for (i = 0; i < ch->ncalls; i++)
		if (ch->calls[i].state == CALL_DONE)
			return 1;
	return 0;
}
/* ---- sending ------------------------------------------------------------- */

/* Before queueing a frame of n bytes: output already queued goes first
 * when it must.  Blocking sends keep at most one earlier frame queued (a
 * send that timed out), coalescing ones up to COALESCE_MAX, non-blocking
 * ones (deadline 0) up to QUEUE_MAX, after which they say PBP_EAGAIN. */
static int
make_room(pbp_channel *ch, size_t n)
{
	size_t queued = pbp__ch_queued(ch);
	int nonblock = ch->timeout[PBP_TIMEOUT_SEND] == 0, rc;

	if (queued == 0)
		return 0;
	if (nonblock) {
		if (queued + n <= QUEUE_MAX)
			return 0;
		rc = pbp__ch_write_some(ch, ch->txe);
		if (rc == 1 && pbp__ch_queued(ch) + n > QUEUE_MAX)
			return pbp__seterr(ch->txe, PBP_EAGAIN, 0,
			                   "%zu bytes already queued: poll for writing, then flush",
			                   pbp__ch_queued(ch));
		return rc == 1 ? 0 : rc;
	}
	if ((ch->flags & PBP_CHANNEL_COALESCE) && queued + n <= COALESCE_MAX)
		return 0;
	return pbp__ch_flush_by(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
}

/* Queues one application frame: payload encoded by nanopb from (fields,
 * msg), or copied from msg (size bytes) when fields is NULL. */
static int
queue_message(pbp_channel *ch, uint32_t type, uint64_t id, const pbp__reply *r,
              const pb_msgdesc_t *fields, const void *msg, size_t psize)
{
	uint8_t hdr[PBP__MSG_HEADER_MAX];
	uint64_t body;
	size_t hlen;
	int rc;

	if (type == 0)
		return pbp__ch_tx_failmsg(ch, PBP_EINVAL, "message type 0 is reserved");
	hlen = pbp__message_header_ex(hdr, type, id, r, psize, &body);
	if (hlen == 0 || body > ch->limit)
		return pbp__seterr(ch->txe, PBP_EMSGSIZE, 0,
		                   "a message of %zu bytes does not fit the frame limit of %" PRIu32
		                   " bytes", psize, ch->limit);
	if ((rc = make_room(ch, hlen + psize)) != 0)
		return rc;
	/* A raw payload of 16 KiB or more is spliced, as a stream's chunk is:
	 * written from the caller's memory, not copied.  When coalescing, one
	 * under COALESCE_MAX is copied: it may go out with the next frames,
	 * where a spliced one is written at once. */
	if (fields == NULL && !((ch->flags & PBP_CHANNEL_COALESCE) && psize < COALESCE_MAX))
		return pbp__ch_queue_data(ch, hdr, hlen, msg, psize);
	/* An encoded message reserves at most FRAME_RESERVE and grows the
	 * buffer as it goes: its pbp_bytes_out() fields may be spliced. */
	if ((rc = pbp__ch_tx_reserve(ch, hlen + (fields != NULL && psize > FRAME_RESERVE
	                                         ? FRAME_RESERVE : psize))) != 0)
		return rc;
	if (fields != NULL)
		return pbp__ch_encode_frame(ch, type, hdr, hlen, fields, msg, psize);
	memcpy(ch->wbuf + ch->wlen, hdr, hlen);
	if (psize > 0)
		memcpy(ch->wbuf + ch->wlen + hlen, msg, psize);
	if (ch->trace_fd != PBP_OS_HANDLE_INVALID)
		pbp__trace_frame(ch->trace_fd, 'S', ch->wbuf + ch->wlen, hlen + psize, NULL, 0);
	ch->wlen += hlen + psize;
	return 0;
}

/* Records the outcome of a blocking send for the report (the receiving
 * thread owns that record in duplex mode). */
static int
tx_outcome(pbp_channel *ch, int rc)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		return rc;
	if (rc == 0)
		pbp__ch_succeeded(ch);
	else if (rc == PBP_ETIMEDOUT)
		pbp__ch_timed_out(ch, ch->txe);
	return rc;
}

/* After a frame is queued: write it now, unless coalescing and there is
 * room for more.  A non-blocking send succeeds once the frame is queued.
 * A frame with spliced bytes is written at once (coalescing or not), and
 * what the deadline leaves of the caller's bytes is copied before the
 * send returns: the caller may reuse its memory then. */
static int
send_done(pbp_channel *ch)
{
	int spliced = pbp__ch_spliced(ch), rc;

	if (!spliced && (ch->flags & PBP_CHANNEL_COALESCE) && pbp__ch_queued(ch) < COALESCE_MAX)
		return 0;
	if (ch->timeout[PBP_TIMEOUT_SEND] == 0) {
		rc = pbp__ch_write_some(ch, ch->txe);
		if (rc == 1)
			rc = 0;
	} else {
		rc = pbp__ch_flush_by(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]), ch->txe);
	}
	if (spliced && pbp__ch_spliced(ch) && pbp__ch_own_splices(ch) != 0)
		rc = PBP_ENOMEM;
	return rc;
}

int
pbp__channel_failed(const pbp_channel *ch)
{
	return ch->rx_err != 0 || ch->tx_err != 0;
}

int
pbp__ch_send(pbp_channel *ch, uint32_t type, uint64_t id, const pbp__reply *r,
             const pb_msgdesc_t *fields, const void *msg, size_t size)
{
	int rc;

	pbp__ch_tx_lock(ch);
	rc = pbp__ch_tx_ready(ch);
	if (rc == 0 && fields != NULL && !pb_get_encoded_size(&size, fields, msg))
		rc = pbp__seterr(ch->txe, PBP_EENCODE, 0,
		                 "sizing message type %" PRIu32 ": a callback failed or a field is invalid",
		                 type);
	if (rc == 0) {
		if (!(ch->flags & PBP_CHANNEL_DUPLEX))
			ch->have_msg = 0; /* the send may move the receive buffer */
		rc = queue_message(ch, type, id, r, fields, msg, size);
	}
	if (rc == 0)
		rc = send_done(ch);
	rc = tx_outcome(ch, rc);
	pbp__ch_tx_unlock(ch);
	return rc;
}

int
pbp_channel_send_ex(pbp_channel *ch, uint32_t type, uint64_t id,
                    const pb_msgdesc_t *fields, const void *msg)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 1);
	if (fields == NULL || msg == NULL)
		rc = pbp__ch_tx_failmsg(ch, PBP_EINVAL, "send: NULL descriptor or message");
	else
		rc = pbp__ch_send(ch, type, id, NULL, fields, msg, 0);
	pbp__ch_leave(ch, 1);
	return rc;
}

const pbp_msgtype *
pbp__ch_find_type(const pbp_channel *ch, uint32_t type)
{
	size_t i;

	for (i = 0; i < ch->ntypes; i++)
		if (ch->types[i].id == type)
			return &ch->types[i];
	return NULL;
}

int
pbp_channel_send(pbp_channel *ch, uint32_t type, const void *msg)
{
	const pbp_msgtype *t;

	if (ch == NULL)
		return PBP_EINVAL;
	t = pbp__ch_find_type(ch, type);
	if (t == NULL) {
		int rc;

		PBP__ENTER(ch, 1);
		rc = pbp__seterr(ch->txe, PBP_ETYPE, 0,
		                 "send: no descriptor registered for message type %" PRIu32, type);
		pbp__ch_leave(ch, 1);
		return rc;
	}
	return pbp_channel_send_ex(ch, type, 0, t->fields, msg);
}

int
pbp_channel_send_raw(pbp_channel *ch, uint32_t type, uint64_t id,
                     const void *payload, size_t size)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 1);
	if (payload == NULL && size > 0)
		rc = pbp__ch_tx_failmsg(ch, PBP_EINVAL, "send_raw: NULL payload");
	else
		rc = pbp__ch_send(ch, type, id, NULL, NULL, payload, size);
	pbp__ch_leave(ch, 1);
	return rc;
}

int
pbp_channel_flush(pbp_channel *ch)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 1);
	if (!(ch->flags & PBP_CHANNEL_DUPLEX))
		ch->have_msg = 0; /* a blocked flush reads into the receive buffer */
	rc = pbp__ch_flush(ch, pbp__deadline(ch->timeout[PBP_TIMEOUT_SEND]));
	if (rc == PBP_ETIMEDOUT && ch->timeout[PBP_TIMEOUT_SEND] == 0)
		rc = pbp__seterr(ch->txe, PBP_EAGAIN, 0, "%zu bytes still queued",
		                 pbp__ch_queued(ch));
	pbp__ch_leave(ch, 1);
	return rc;
}

/* ---- receiving ----------------------------------------------------------- */

/* Hands out held entries in order; a Sync marker among them is answered
 * as it is reached.  Returns 1 with ch->cur a held message. */
static int
next_held(pbp_channel *ch)
{
	while (pbp__held_pop(ch)) {
		if (!ch->cur.sync)
			return 1;
		pbp__ch_owe_ack(ch, ch->cur.id);
	}
	return 0;
}

static int
recv_timed_out(pbp_channel *ch)
{
	if (ch->timeout[PBP_TIMEOUT_RECV] == 0 && pbp__reader_pending(&ch->rd) == 0)
		return pbp__seterr_str(&ch->error, PBP_EAGAIN, "no whole message yet (0 bytes buffered)");
	if (ch->timeout[PBP_TIMEOUT_RECV] == 0)
		return pbp__seterr(&ch->error, PBP_EAGAIN, 0, "no whole message yet (%zu bytes buffered)",
		                   pbp__reader_pending(&ch->rd));
	pbp__ch_timed_out(ch, &ch->error);
	return PBP_ETIMEDOUT;
}

static int
recv_raw(pbp_channel *ch, pbp_msginfo *out)
{
	int64_t deadline;
	pbp__frame f;
	int rc;

	ch->have_msg = 0;
	ch->last_stream = 0;
	/* Messages held while a call or a barrier waited come first. */
	if (next_held(ch)) {
		ch->msg = (pbp_msginfo){ ch->cur.type, ch->cur.id, ch->cur.buf, ch->cur.len,
		                         ch->cur.stream };
		ch->last_stream = ch->cur.stream;
		ch->have_msg = 1;
		*out = ch->msg;
		return 0;
	}
	pbp__inbox_trim(ch);
	rc = pbp__ch_rx_ready(ch);
	if (rc != 0)
		return rc;
	deadline = pbp__deadline(ch->timeout[PBP_TIMEOUT_RECV]);
	/* Output still queued (coalesced, or a send that timed out) goes out
	 * now as far as the pipe takes it, and the rest while we wait: the
	 * peer may be waiting for it before it answers.  A send error does
	 * not stop receiving what the peer sent before it left.  In duplex
	 * mode the sending thread owns the output. */
	if (pbp__ch_rx_pushes(ch)) {
		pbp_error e;

		(void)pbp__ch_write_some(ch, &e);
	}
	while ((rc = pbp__ch_next(ch, &f, deadline)) == PBP__PROGRESS)
		if (pbp__ch_past(deadline))
			return recv_timed_out(ch);
	if (rc == PBP_ETIMEDOUT)
		return recv_timed_out(ch);
	if (rc != 0)
		return rc;
	pbp__ch_succeeded(ch);
	ch->msg = (pbp_msginfo){ f.type, f.id, f.payload, f.payload_len, f.stream };
	ch->last_stream = f.stream;
	ch->have_msg = 1;
	*out = ch->msg;
	return 0;
}

int
pbp_channel_recv(pbp_channel *ch, pbp_msginfo *out)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	rc = out == NULL ? pbp__ch_fail(ch, PBP_EINVAL, "recv: NULL out") : recv_raw(ch, out);
	pbp__ch_leave(ch, 0);
	return rc;
}

static int
decode(pbp_channel *ch, const pb_msgdesc_t *fields, void *msg)
{
	pb_istream_t is;

	if (fields == NULL || msg == NULL)
		return pbp__ch_fail(ch, PBP_EINVAL, "decode: NULL descriptor or message");
	if (!ch->have_msg)
		return pbp__ch_fail(ch, PBP_EINVAL,
		            "decode: no message received, or a later call on the channel released it");
	is = pb_istream_from_buffer(ch->msg.payload, ch->msg.size);
	if (!pb_decode(&is, fields, msg))
		return pbp__seterr(&ch->error, PBP_EDECODE, 0,
		                   "decoding message type %" PRIu32 " (%zu bytes): %s",
		                   ch->msg.type, ch->msg.size, PB_GET_ERROR(&is));
	return 0;
}

int
pbp_channel_decode(pbp_channel *ch, const pb_msgdesc_t *fields, void *msg)
{
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	rc = decode(ch, fields, msg);
	pbp__ch_leave(ch, 0);
	return rc;
}

int
pbp_channel_recv_msg(pbp_channel *ch, uint32_t *type, void *msg, size_t msg_size)
{
	const pbp_msgtype *t;
	pbp_msginfo info;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	PBP__ENTER(ch, 0);
	if (type == NULL || msg == NULL)
		rc = pbp__ch_fail(ch, PBP_EINVAL, "recv_msg: NULL argument");
	else
		rc = recv_raw(ch, &info);
	if (rc != 0)
		goto out;
	*type = info.type;
	t = pbp__ch_find_type(ch, info.type);
	if (t == NULL)
		rc = pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                 "received message type %" PRIu32
		                 " (%zu bytes), which has no registered descriptor",
		                 info.type, info.size);
	else if (msg_size < t->size)
		rc = pbp__seterr(&ch->error, PBP_EINVAL, 0,
		                 "recv_msg: buffer of %zu bytes is smaller than %s (%zu bytes)",
		                 msg_size, t->name ? t->name : "the message", t->size);
	else
		rc = decode(ch, t->fields, msg);
out:
	pbp__ch_leave(ch, 0);
	return rc;
}
