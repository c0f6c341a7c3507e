/*
 * channel.c: the channel object.  It owns two fds, a frame reader (the
 * receive buffer) and a fixed write buffer, and keeps the error state:
 * receive errors and send errors are tracked apart, so a peer that stops
 * reading (EPIPE) can still be read to the end, and a peer that sends
 * garbage can still be told Goodbye.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "pbp_internal.h"

#define WBUF_SIZE (64u * 1024u)

enum { ST_NEW = 0, ST_READY = 1 };

struct pbp_channel {
	int rfd, wfd;
	int state;
	int rx_err;          /* sticky receive error (PBP_EOF included) */
	int tx_err;          /* sticky send error */
	pbp_error rx_error;  /* describes rx_err */
	pbp_error tx_error;  /* describes tx_err */
	pbp_error error;     /* the most recent failure */
	pbp__reader rd;
	uint8_t *wbuf;
	size_t wlen;
	const pbp_msgtype *types;
	size_t ntypes;
	uint64_t fingerprint;
	uint32_t max_frame;  /* our own limit */
	uint32_t limit;      /* effective limit, both directions */
	int handshake_timeout_ms;
	pbp_peer_info peer;
	int have_msg;
	pbp_msginfo msg;
};

/* ---- construction -------------------------------------------------------- */

static int
check_options(const pbp_channel_options *o, pbp_error *err)
{
	size_t i, j;

	if (o->version != PBP_CHANNEL_OPTIONS_VERSION)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_channel_options.version is %u, expected %u "
		                   "(start from PBP_CHANNEL_OPTIONS_INIT)",
		                   o->version, PBP_CHANNEL_OPTIONS_VERSION);
	if (o->max_frame != 0 &&
	    (o->max_frame < PBP_MIN_MAX_FRAME || o->max_frame > PBP_MAX_MAX_FRAME))
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "max_frame %" PRIu32 " is outside [%u, %u]",
		                   o->max_frame, PBP_MIN_MAX_FRAME, PBP_MAX_MAX_FRAME);
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

int
pbp_channel_from_fds(pbp_channel **out, int read_fd, int write_fd,
                     const pbp_channel_options *opts, pbp_error *err)
{
	static const pbp_channel_options defaults = PBP_CHANNEL_OPTIONS_INIT;
	pbp_channel *ch;
	int rc;

	if (out == NULL || read_fd < 0 || write_fd < 0)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "pbp_channel_from_fds: NULL out or negative fd (%d, %d)",
		                   read_fd, write_fd);
	if (opts == NULL)
		opts = &defaults;
	rc = check_options(opts, err);
	if (rc != 0)
		return rc;
	rc = pbp__fd_prepare(read_fd, err);
	if (rc == 0 && write_fd != read_fd)
		rc = pbp__fd_prepare(write_fd, err);
	if (rc != 0)
		return rc;

	ch = calloc(1, sizeof *ch);
	if (ch == NULL)
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory allocating a channel");
	ch->rfd = ch->wfd = -1;
	ch->types = opts->types;
	ch->ntypes = opts->ntypes;
	ch->fingerprint = opts->schema_fingerprint;
	ch->max_frame = opts->max_frame ? opts->max_frame : PBP_DEFAULT_MAX_FRAME;
	ch->handshake_timeout_ms = opts->handshake_timeout_ms == 0
		? PBP_DEFAULT_HANDSHAKE_TIMEOUT_MS : opts->handshake_timeout_ms;
	ch->wbuf = malloc(WBUF_SIZE);
	if (ch->wbuf == NULL ||
	    pbp__reader_init(&ch->rd, PBP__HANDSHAKE_MAX_FRAME, PBP__READER_INITIAL_CAP) != 0)
		goto fail;
	/* Only now, when nothing can fail any more, does the channel take
	 * the fds: ownership moves on success only. */
	ch->rfd = read_fd;
	ch->wfd = write_fd;
	*out = ch;
	return 0;
fail:
	pbp_channel_free_keep_fds(ch);
	return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory allocating channel buffers");
}

void
pbp_channel_free_keep_fds(pbp_channel *ch)
{
	if (ch == NULL)
		return;
	pbp__reader_free(&ch->rd);
	free(ch->wbuf);
	free(ch);
}

void
pbp_channel_free(pbp_channel *ch)
{
	if (ch == NULL)
		return;
	if (ch->wfd == ch->rfd)
		ch->wfd = -1; /* one socket for both directions: close it once */
	pbp__close(&ch->wfd);
	pbp__close(&ch->rfd);
	pbp_channel_free_keep_fds(ch);
}

/* ---- error helpers ------------------------------------------------------- */

/* Records a failure of the current call only. */
static int
fail(pbp_channel *ch, int code, const char *fmt, const char *arg)
{
	return pbp__seterr(&ch->error, code, 0, fmt, arg);
}

/* Makes the error now in ch->error sticky for receiving. */
static int
rx_fail(pbp_channel *ch, int code)
{
	ch->error.code = code;
	ch->rx_err = code;
	ch->rx_error = ch->error;
	return code;
}

static int
tx_fail(pbp_channel *ch, int code)
{
	ch->error.code = code;
	ch->tx_err = code;
	ch->tx_error = ch->error;
	return code;
}

/* Returns the sticky error again, re-describing it as the latest. */
static int
rx_again(pbp_channel *ch)
{
	ch->error = ch->rx_error;
	return ch->rx_err;
}

static int
tx_again(pbp_channel *ch)
{
	ch->error = ch->tx_error;
	return ch->tx_err;
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

int
pbp_channel_read_fd(const pbp_channel *ch)
{
	return ch->rfd;
}

int
pbp_channel_write_fd(const pbp_channel *ch)
{
	return ch->wfd;
}

int
pbp_channel_peer(const pbp_channel *ch, pbp_peer_info *out)
{
	if (ch == NULL || out == NULL)
		return PBP_EINVAL;
	*out = ch->peer;
	return 0;
}

/* ---- sending ------------------------------------------------------------- */

/* Checks that sending is possible now. */
static int
tx_ready(pbp_channel *ch)
{
	if (ch->tx_err != 0)
		return tx_again(ch);
	if (ch->state != ST_READY)
		return fail(ch, PBP_EINVAL, "%s", "send before a successful handshake");
	if (ch->wfd < 0)
		return fail(ch, PBP_EINVAL, "%s", "send after the write side was closed");
	return 0;
}

/* Writes out the write buffer. */
static int
flush(pbp_channel *ch, int64_t deadline)
{
	size_t done;
	int rc;

	if (ch->wlen == 0)
		return 0;
	rc = pbp__write_all(ch->wfd, ch->wbuf, ch->wlen, deadline, &done, &ch->error);
	ch->wlen = 0;
	return rc == 0 ? 0 : tx_fail(ch, rc);
}

/* nanopb output callback for frames larger than the write buffer: fill the
 * buffer, write it out when full, repeat.  Memory stays at WBUF_SIZE. */
static bool
stream_out(pb_ostream_t *os, const pb_byte_t *buf, size_t count)
{
	pbp_channel *ch = os->state;

	while (count > 0) {
		size_t room = WBUF_SIZE - ch->wlen;

		if (room == 0) {
			if (flush(ch, -1) != 0)
				return false;
			room = WBUF_SIZE;
		}
		if (room > count)
			room = count;
		memcpy(ch->wbuf + ch->wlen, buf, room);
		ch->wlen += room;
		buf += room;
		count -= room;
	}
	return true;
}

/* Writes the envelope header for a payload of psize bytes into the write
 * buffer, after checking the frame against the limit. */
static int
put_header(pbp_channel *ch, uint32_t type, uint64_t id, size_t psize)
{
	uint8_t hdr[PBP__MSG_HEADER_MAX];
	uint64_t body;
	size_t hlen = pbp__message_header(hdr, type, id, psize, &body);

	if (hlen == 0 || body > ch->limit)
		return pbp__seterr(&ch->error, PBP_EMSGSIZE, 0,
		                   "a frame of %zu payload bytes exceeds the limit of %" PRIu32 " bytes",
		                   psize, ch->limit);
	if (type == 0)
		return fail(ch, PBP_EINVAL, "%s", "message type 0 is reserved");
	memcpy(ch->wbuf, hdr, hlen);
	ch->wlen = hlen;
	return 0;
}

int
pbp_channel_send_ex(pbp_channel *ch, uint32_t type, uint64_t id,
                    const pb_msgdesc_t *fields, const void *msg)
{
	size_t psize;
	pb_ostream_t os;
	int rc;

	if (ch == NULL || fields == NULL || msg == NULL)
		return ch ? fail(ch, PBP_EINVAL, "%s", "send: NULL descriptor or message") : PBP_EINVAL;
	rc = tx_ready(ch);
	if (rc != 0)
		return rc;
	if (!pb_get_encoded_size(&psize, fields, msg))
		return pbp__seterr(&ch->error, PBP_EENCODE, 0, "sizing message type %" PRIu32 ": %s",
		                   type, "nanopb refused (a callback failed or a field is invalid)");
	rc = put_header(ch, type, id, psize);
	if (rc != 0)
		return rc;
	if (ch->wlen + psize <= WBUF_SIZE) {
		/* The common case: the frame fits, encode straight into the
		 * buffer and write it with one write(). */
		os = pb_ostream_from_buffer(ch->wbuf + ch->wlen, psize);
		if (!pb_encode(&os, fields, msg) || os.bytes_written != psize) {
			ch->wlen = 0; /* nothing was written: the stream is intact */
			return pbp__seterr(&ch->error, PBP_EENCODE, 0,
			                   "encoding message type %" PRIu32 ": %s", type,
			                   os.errmsg ? os.errmsg : "callbacks wrote a different size");
		}
		ch->wlen += psize;
		return flush(ch, -1);
	}
	os.callback = stream_out;
	os.state = ch;
	os.max_size = psize;
	os.bytes_written = 0;
	os.errmsg = NULL;
	if (!pb_encode(&os, fields, msg) || os.bytes_written != psize) {
		ch->wlen = 0;
		if (ch->tx_err != 0)
			return tx_again(ch); /* the write itself failed */
		pbp__seterr(&ch->error, PBP_EENCODE, 0,
		            "encoding message type %" PRIu32 " (part of the frame already sent): %s",
		            type, os.errmsg ? os.errmsg : "callbacks wrote a different size");
		return tx_fail(ch, PBP_EENCODE);
	}
	return flush(ch, -1);
}

static const pbp_msgtype *
find_type(const pbp_channel *ch, uint32_t type)
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
	t = find_type(ch, type);
	if (t == NULL)
		return pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                   "send: no descriptor registered for message type %" PRIu32, type);
	return pbp_channel_send_ex(ch, type, 0, t->fields, msg);
}

int
pbp_channel_send_raw(pbp_channel *ch, uint32_t type, uint64_t id,
                     const void *payload, size_t size)
{
	int rc;

	if (ch == NULL || (payload == NULL && size > 0))
		return ch ? fail(ch, PBP_EINVAL, "%s", "send_raw: NULL payload") : PBP_EINVAL;
	rc = tx_ready(ch);
	if (rc == 0)
		rc = put_header(ch, type, id, size);
	if (rc != 0)
		return rc;
	if (ch->wlen + size <= WBUF_SIZE) {
		memcpy(ch->wbuf + ch->wlen, payload, size);
		ch->wlen += size;
		return flush(ch, -1);
	}
	/* Too big to copy: write the header, then the payload in place. */
	rc = flush(ch, -1);
	if (rc == 0) {
		size_t done;

		rc = pbp__write_all(ch->wfd, payload, size, -1, &done, &ch->error);
		if (rc != 0)
			rc = tx_fail(ch, rc);
	}
	return rc;
}

/* Sends one control frame (Hello or Goodbye). */
static int
send_control(pbp_channel *ch, const pbpipe_Envelope *env, int64_t deadline)
{
	size_t n;
	int rc = pbp__control_encode(ch->wbuf, WBUF_SIZE, env, &n, &ch->error);

	if (rc != 0)
		return tx_fail(ch, rc);
	ch->wlen = n;
	return flush(ch, deadline);
}

int
pbp_channel_close_write(pbp_channel *ch)
{
	int e;

	if (ch == NULL)
		return PBP_EINVAL;
	if (ch->wfd == ch->rfd) {
		/* One socket carries both directions: keep it for reading. */
		if (ch->wfd >= 0 && shutdown(ch->wfd, SHUT_WR) != 0 && errno != ENOTCONN)
			e = errno;
		else
			e = 0;
		ch->wfd = -1;
	} else {
		e = pbp__close(&ch->wfd);
	}
	if (e != 0)
		return pbp__seterr(&ch->error, PBP_ESYS, e, "closing the write side: %s",
		                   strerror(e));
	return 0;
}

int
pbp_channel_goodbye(pbp_channel *ch, int reason, const char *detail)
{
	return pbp__channel_goodbye_by(ch, reason, detail, -1);
}

int
pbp__channel_goodbye_by(pbp_channel *ch, int reason, const char *detail,
                        int64_t deadline)
{
	pbpipe_Envelope env;
	int rc, rc2;

	if (ch == NULL)
		return PBP_EINVAL;
	rc = tx_ready(ch);
	if (rc == 0) {
		memset(&env, 0, sizeof env);
		env.which_body = pbpipe_Envelope_goodbye_tag;
		env.body.goodbye.reason = (pbpipe_Goodbye_Reason)reason;
		if (detail != NULL) {
			strncpy(env.body.goodbye.detail, detail, sizeof env.body.goodbye.detail - 1);
		}
		rc = send_control(ch, &env, deadline);
	}
	rc2 = pbp_channel_close_write(ch);
	return rc != 0 ? rc : rc2;
}

/* ---- receiving ----------------------------------------------------------- */

/* Reads until a whole frame is buffered, then decodes its envelope.
 * Returns 0 with *f filled, or an error that the caller makes sticky. */
static int
read_frame(pbp_channel *ch, pbp__frame *f, int64_t deadline)
{
	const uint8_t *body;
	size_t len, got;
	uint8_t *space;
	int rc;

	for (;;) {
		rc = pbp__reader_next(&ch->rd, &body, &len);
		if (rc == 1)
			return pbp__frame_decode(body, len, f, &ch->error);
		if (rc < 0) {
			if (rc != PBP_EOF)
				ch->error = ch->rd.error;
			return rc;
		}
		rc = pbp__reader_space(&ch->rd, &space, &got);
		if (rc != 0)
			return pbp__seterr(&ch->error, PBP_ENOMEM, 0,
			                   "out of memory growing the receive buffer");
		rc = pbp__read_some(ch->rfd, space, got, deadline, &got, &ch->error);
		if (rc == PBP_EOF)
			pbp__reader_set_eof(&ch->rd);
		else if (rc != 0)
			return rc;
		else
			pbp__reader_commit(&ch->rd, got);
	}
}

int
pbp_channel_handshake(pbp_channel *ch)
{
	int64_t deadline;
	pbpipe_Envelope env;
	pbp__frame f;
	int rc;

	if (ch == NULL)
		return PBP_EINVAL;
	if (ch->state != ST_NEW)
		return fail(ch, PBP_EINVAL, "%s", "handshake already done");
	if (ch->rx_err != 0)
		return rx_again(ch);
	deadline = pbp__deadline(ch->handshake_timeout_ms);
	pbp__hello_make(&env, ch->max_frame, ch->fingerprint);
	rc = send_control(ch, &env, deadline);
	if (rc != 0)
		goto failed;
	rc = read_frame(ch, &f, deadline);
	if (rc == PBP_EOF)
		rc = pbp__seterr(&ch->error, PBP_ETRUNC, 0,
		                 "the peer closed the stream before sending its Hello");
	else if (rc == PBP_ETIMEDOUT)
		rc = pbp__seterr(&ch->error, PBP_ETIMEDOUT, 0,
		                 "no Hello from the peer within %d ms", ch->handshake_timeout_ms);
	else if (rc == 0 && f.kind == PBP__FRAME_GOODBYE)
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                 "the peer said Goodbye (reason %d: %s) instead of Hello",
		                 (int)f.goodbye.reason, f.goodbye.detail);
	else if (rc == 0 && f.kind != PBP__FRAME_HELLO)
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0,
		                 "the peer's first frame is an application message, not Hello");
	else if (rc == 0)
		rc = pbp__hello_check(&f.hello, ch->max_frame, ch->fingerprint, &ch->peer,
		                      &ch->error);
	if (rc != 0)
		goto failed;
	/* Both sides compute the same minimum and hold each other to it. */
	ch->limit = ch->peer.effective_max_frame;
	ch->rd.limit = ch->limit;
	ch->state = ST_READY;
	return 0;
failed:
	/* A failed handshake fails the channel in both directions. */
	rx_fail(ch, rc);
	return tx_fail(ch, rc);
}

static int
rx_ready(pbp_channel *ch)
{
	if (ch->rx_err != 0)
		return rx_again(ch);
	if (ch->state != ST_READY)
		return fail(ch, PBP_EINVAL, "%s", "receive before a successful handshake");
	return 0;
}

int
pbp_channel_recv(pbp_channel *ch, pbp_msginfo *out)
{
	pbp__frame f;
	int rc;

	if (ch == NULL || out == NULL)
		return ch ? fail(ch, PBP_EINVAL, "%s", "recv: NULL out") : PBP_EINVAL;
	ch->have_msg = 0;
	rc = rx_ready(ch);
	if (rc != 0)
		return rc;
	rc = read_frame(ch, &f, -1);
	if (rc == PBP_EOF)
		pbp__seterr(&ch->error, PBP_EOF, 0, "end of stream: the peer closed between frames");
	if (rc == 0 && f.kind == PBP__FRAME_GOODBYE) {
		ch->peer.goodbye_received = 1;
		ch->peer.goodbye_reason = (int)f.goodbye.reason;
		memcpy(ch->peer.goodbye_detail, f.goodbye.detail, sizeof ch->peer.goodbye_detail);
		ch->peer.goodbye_detail[sizeof ch->peer.goodbye_detail - 1] = '\0';
		rc = pbp__seterr(&ch->error, PBP_EOF, 0, "end of stream: the peer said Goodbye (reason %d%s%s)",
		                 (int)f.goodbye.reason, f.goodbye.detail[0] ? ": " : "",
		                 f.goodbye.detail);
	} else if (rc == 0 && f.kind == PBP__FRAME_HELLO) {
		rc = pbp__seterr(&ch->error, PBP_EPROTO, 0, "a second Hello after the handshake");
	}
	if (rc != 0)
		return rx_fail(ch, rc);
	ch->msg.type = f.type;
	ch->msg.id = f.id;
	ch->msg.payload = f.payload;
	ch->msg.size = f.payload_len;
	ch->have_msg = 1;
	*out = ch->msg;
	return 0;
}

int
pbp_channel_decode(pbp_channel *ch, const pb_msgdesc_t *fields, void *msg)
{
	pb_istream_t is;

	if (ch == NULL || fields == NULL || msg == NULL)
		return ch ? fail(ch, PBP_EINVAL, "%s", "decode: NULL descriptor or message") : PBP_EINVAL;
	if (!ch->have_msg)
		return fail(ch, PBP_EINVAL, "%s", "decode: no message received");
	is = pb_istream_from_buffer(ch->msg.payload, ch->msg.size);
	if (!pb_decode(&is, fields, msg))
		return pbp__seterr(&ch->error, PBP_EDECODE, 0,
		                   "decoding message type %" PRIu32 " (%zu bytes): %s",
		                   ch->msg.type, ch->msg.size, PB_GET_ERROR(&is));
	return 0;
}

int
pbp_channel_recv_msg(pbp_channel *ch, uint32_t *type, void *msg, size_t msg_size)
{
	const pbp_msgtype *t;
	pbp_msginfo info;
	int rc;

	if (ch == NULL || type == NULL || msg == NULL)
		return ch ? fail(ch, PBP_EINVAL, "%s", "recv_msg: NULL argument") : PBP_EINVAL;
	rc = pbp_channel_recv(ch, &info);
	if (rc != 0)
		return rc;
	*type = info.type;
	t = find_type(ch, info.type);
	if (t == NULL)
		return pbp__seterr(&ch->error, PBP_ETYPE, 0,
		                   "received message type %" PRIu32 " (%zu bytes), which has no registered descriptor",
		                   info.type, info.size);
	if (msg_size < t->size)
		return pbp__seterr(&ch->error, PBP_EINVAL, 0,
		                   "recv_msg: buffer of %zu bytes is smaller than %s (%zu bytes)",
		                   msg_size, t->name ? t->name : "the message", t->size);
	return pbp_channel_decode(ch, t->fields, msg);
}
