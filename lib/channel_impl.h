/*
 * channel_impl.h: the channel object, shared by the files that implement
 * it, bottom up: stream.c (the byte engine), session.c (the control
 * protocol, the bottom of every receive, the report), channel.c (the
 * object and its typed API) and call.c (calls, the barrier, the inbox of
 * held messages and replies, the serving loop).  Not installed.
 */
#ifndef PBP_CHANNEL_IMPL_H
#define PBP_CHANNEL_IMPL_H

#include <stdatomic.h>

#include <errno.h>
#include <string.h>

#include "pbp_internal.h"
#include "os/os.h"

/* Initial sizes of both buffers, and the slack the receive buffer may hold
 * beyond one largest frame while a blocked send drains incoming data. */
#define BUF_INITIAL (64u * 1024u)
#define RX_SLACK (64u * 1024u)
/* With PBP_CHANNEL_COALESCE, queued frames go out once this much is queued. */
#define COALESCE_MAX (64u * 1024u)
/* A non-blocking send (deadline 0) queues up to this much output. */
#define QUEUE_MAX (1024u * 1024u)

/* Zero-copy sends (pbp_bytes_out): a bytes field at least this large goes
 * out from the caller's memory instead of being copied into the write
 * buffer, and at most this many such fields per frame. */
#define SPLICE_MIN (16u * 1024u)
#define SPLICE_MAX_PER_FRAME 16
/* What a frame reserves in the write buffer before it is encoded (more is
 * grown on demand, so spliced bytes never take room there). */
#define FRAME_RESERVE (64u * 1024u)

/* ST_HELLO: the handshake is under way (pbp_channel_handshake_start()):
 * our Hello is queued, the peer's not yet checked. */
enum { ST_NEW = 0, ST_READY = 1, ST_HELLO = 2 };

/* Queued output that is not in the write buffer: len bytes that go out
 * just before wbuf[at], from the caller's memory while its send runs, or
 * from own, a copy, once the send has returned with them unwritten. */
typedef struct pbp__splice {
	size_t at;
	const uint8_t *data;
	size_t len, done;    /* done: bytes written */
	uint8_t *own;        /* the copy (data points into it), or NULL */
} pbp__splice;

#define PBP__CHANNEL_FLAGS                                                  \
	(PBP_CHANNEL_COALESCE | PBP_CHANNEL_DUPLEX | PBP_CHANNEL_SIGPIPE_HANDLED | \
	 PBP_CHANNEL_OUTLIVE_PARENT)

/* The inbox (held messages and kept replies together) holds at most this
 * many payload bytes, and always at least one message. */
#define INBOX_MAX PBP_INBOX_MAX_BYTES
/* Buffers of held messages and replies larger than this are freed once
 * handed out, so large messages do not pin their memory for ever: the
 * buffers kept for reuse total at most (PBP_MAX_HELD + PBP_MAX_CALLS)
 * times this. */
#define KEEP_MAX (4u * 1024u)

/* An application message kept for later: it arrived while a call or a
 * barrier was waiting for something else.  A marker (sync set) stands for
 * a Sync that arrived after the messages held before it: it is answered
 * once the application has received them and asks for the next one. */
typedef struct pbp__held {
	uint32_t type;
	uint64_t id;
	uint64_t stream;     /* Message.stream: the header of this stream */
	int sync;            /* a Sync marker; id is the Sync's id */
	uint8_t *buf;
	size_t cap, len;
} pbp__held;

enum { CALL_FREE = 0, CALL_WAITING, CALL_DONE, CALL_CANCELLED };

/* An outstanding call and, once it came, its reply. */
typedef struct pbp__call {
	uint64_t id;
	int state;
	uint32_t type;
	uint32_t error_code;
	char errmsg[PBP__ERRMSG_WIRE_MAX + 1];
	uint8_t *buf;
	size_t cap, len;
	int timeout_ms;   /* its own deadline (pbp_channel_call_start_ex), */
	int64_t deadline; /* at this pbp__now_ms(); -1: none */
	pbp_call_done done; /* pbp_channel_call_async(): run by process() */
	void *user;
	uint32_t resp_type;
} pbp__call;

/* The buffers of running handlers (serve.c), one block per nesting depth,
 * sized for the largest struct of the table in use. */
struct pbp__handlers {
	void *s[PBP_MAX_NESTING];
	size_t hsize;
};

/* A request being handled (serve.c): where its payload lies, so that
 * the handler's own calls on the channel, which may move or free that
 * memory, first take it over (pbp__ch_unpin). */
typedef struct pbp__pin {
	const uint8_t *data;
	size_t len;
	uint8_t *taken;      /* the memory taken over, freed after the handler */
} pbp__pin;

/* Streams (1.2, streams.c).  An incoming stream: opened by the peer. */
enum { IN_FREE = 0, IN_OPEN, IN_ENDED, IN_DONE };

typedef struct pbp__instream {
	uint64_t id;
	int state;           /* IN_*: ENDED once its StreamEnd came, DONE once
	                        the application has read that end */
	uint32_t end_code;   /* the StreamEnd's error_code */
	char end_msg[PBP__ERRMSG_WIRE_MAX + 1]; /* its message, as valid UTF-8 */
	uint64_t received;   /* chunk bytes received in all */
	uint64_t allowed;    /* what the peer may send in all: window + grants */
	uint64_t ungranted;  /* bytes consumed since the last grant */
	uint8_t *buf;        /* buffered chunk bytes: buf[off..off+len) */
	size_t cap, off, len;
	const uint8_t *view; /* a chunk in the receive buffer, handed out next */
	size_t view_len;
	uint64_t seq;        /* when it finished (which record to reuse) */
} pbp__instream;

/* A stream this side opened. */
typedef struct pbp__outstream {
	uint64_t id;         /* 0: a free slot */
	int cancelled;       /* the reader sent StreamCancel */
	uint32_t code;       /* its error_code and message */
	char msg[PBP__ERRMSG_WIRE_MAX + 1];
	uint64_t sent;       /* chunk bytes sent (queued) */
	uint64_t allowed;    /* the reader's window + its credits */
	uint64_t seq;        /* when it was cancelled */
} pbp__outstream;

/* Slots per direction: PBP_MAX_STREAMS live, as many finished (ended
 * incoming streams whose end stays repeatable, cancelled own ones whose
 * PBP_ECANCELED stays sticky). */
#define STREAM_SLOTS (2 * PBP_MAX_STREAMS)

typedef struct pbp__streams {
	pbp__instream in[STREAM_SLOTS];
	pbp__outstream out[STREAM_SLOTS];
	size_t nlive_in, nlive_out;
	uint64_t seq;
} pbp__streams;

struct pbp_channel {
	const pbp__io_ops *io;
	void *io_ctx;
	pbp__os_io *osio;    /* the platform transport (io_ctx), or NULL */
	int state;
	int rx_err;          /* sticky receive error (PBP_EOF included) */
	int tx_err;          /* sticky send error */
	int rx_eof;          /* the transport reported end of stream */
	int rx_drained;      /* the last read emptied the pipe */
	int wr_closed;
	int wr_closing;      /* Goodbye is queued behind output a deadline left:
	                        the write side closes once the last byte is out */
	pbp_error rx_error;  /* describes rx_err */
	pbp_error tx_error;  /* describes tx_err */
	pbp_error error;     /* the most recent failure (receive side in duplex) */
	pbp_error error_tx;  /* duplex: the most recent send-side failure */
	pbp_error *txe;      /* where send-side failures go: &error or &error_tx */
	pbp__mutex wlock;     /* duplex: serialises the write side */
	pbp__reader rd;
	uint8_t *wbuf;
	size_t wcap, woff, wlen; /* wbuf[woff..wlen) is queued output */
	pbp__splice *spl;    /* spl[spl_head..nspl): spliced output, in order */
	size_t spl_head, nspl, spl_cap;
	const pbp_msgtype *types;
	size_t ntypes;
	uint64_t fingerprint;
	uint32_t max_frame;  /* our own limit */
	uint32_t limit;      /* effective limit, both directions */
	int timeout[3];      /* by PBP_TIMEOUT_*: ms, < 0 for none */
	unsigned int flags;  /* PBP_CHANNEL_* */
	pbp_os_handle trace_fd; /* frame trace (trace.c), or PBP_OS_HANDLE_INVALID */
	int spin_us;         /* low-latency receive, 0: off */
	pbp_peer_info peer;
	int have_msg;
	pbp_msginfo msg;
	/* call.c */
	uint64_t next_id;    /* correlation ids of our calls */
	pbp__call *calls;
	size_t ncalls;       /* slots in use or free, up to PBP_MAX_CALLS */
	pbp__held *queue;    /* ring of held messages */
	size_t qhead, qlen, qcap;
	pbp__held cur;       /* the held message handed out last */
	uint8_t *last_reply; /* a large reply decoded last: views point into it */
	size_t inbox_bytes;  /* payload bytes held or kept as replies */
	size_t nwaiting;     /* calls waiting for their reply */
	uint64_t sync_id;    /* the barrier we wait for, 0: none */
	int sync_acked;
	/* A SyncAck owed to the peer, written by the next flush (whichever
	 * thread does it, in duplex mode: see ack_lock). */
	int ack_pending;
	uint64_t ack_id;
	pbp__mutex ack_lock; /* duplex: guards ack_pending and ack_id */
	/* The last deadline that passed, until a later call succeeds: the
	 * report describes the channel as it is now. */
	int timed_out;
	pbp_error timeout_error;
	/* Misuse check: the thread inside a call on this channel (without
	 * PBP_CHANNEL_DUPLEX: any call; with it: the receiving side), and in
	 * duplex mode the sending side. */
	atomic_int busy_rx, busy_tx;
	uint32_t owner_pid;  /* the process that made the channel (fork) */
	/* Streams (streams.c), allocated on first use. */
	pbp__streams *st;
	uint32_t st_window;  /* ours, as announced in our Hello (0: none) */
	uint64_t st_next;    /* the id of the next stream we open */
	uint64_t st_peer_last; /* the highest id the peer opened */
	uint64_t st_wait;    /* the incoming stream a read waits for, or 0 */
	uint64_t st_wait_out; /* the own stream a write waits for, or 0 */
	uint64_t st_redo;    /* a stream's header put back (inbox full) */
	uint64_t last_stream; /* pbp_msginfo.stream of the last receive */
	/* The helper's watch on its parent (pbp_channel_from_handles()), or
	 * NULL; the handshake checks the start-of-life race with it. */
	pbp__os_watch *watch;
	/* Handlers (serve.c): the table, whether it answers every request
	 * (pbp_channel_serve()), how many run, the request of the innermost
	 * one while its memory is still the receive path's, their buffers;
	 * and whether pbp_channel_process() runs (call.c). */
	const pbp_handler *handlers;
	size_t nhandlers;
	int answer_all;
	int depth;
	pbp__pin *pin;
	struct pbp__handlers *hs;
	int in_process;
	/* The handshake in two steps (session.c): its deadline, kept by the
	 * library (pbp__now_ms(); -1: none), and the handshake timeout it
	 * was started with. */
	int64_t hs_deadline;
	int hs_timeout;
};

/* ---- errors (inline, for channel.c, session.c and stream.c) --------------- */

/* Records a failure of the current call only. */
static inline int
pbp__ch_fail(pbp_channel *ch, int code, const char *msg)
{
	return pbp__seterr(&ch->error, code, 0, "%s", msg);
}

/* Makes the error now in ch->error sticky for receiving. */
static inline int
pbp__ch_rx_fail(pbp_channel *ch, int code)
{
	ch->error.code = code;
	ch->rx_err = code;
	ch->rx_error = ch->error;
	return code;
}

/* Makes the error now in *ch->txe sticky for sending. */
static inline int
pbp__ch_tx_fail(pbp_channel *ch, int code)
{
	ch->txe->code = code;
	ch->tx_err = code;
	ch->tx_error = *ch->txe;
	return code;
}

/* Records a send-side failure of the current call only. */
static inline int
pbp__ch_tx_failmsg(pbp_channel *ch, int code, const char *msg)
{
	return pbp__seterr(ch->txe, code, 0, "%s", msg);
}

/* Returns a sticky error again, re-describing it as the latest. */
static inline int
pbp__ch_rx_again(pbp_channel *ch)
{
	ch->error = ch->rx_error;
	return ch->rx_err;
}

static inline int
pbp__ch_tx_again(pbp_channel *ch)
{
	*ch->txe = ch->tx_error;
	return ch->tx_err;
}

static inline int
pbp__ch_sys_error(pbp_error *e, long neg_errno, const char *what)
{
	int en = (int)-neg_errno;

	if (en == EPIPE)
		return pbp__seterr(e, PBP_EPIPE, EPIPE, "%s: the peer has closed its read side",
		                   what);
	return pbp__seterr(e, PBP_ESYS, en, "%s: %s", what, strerror(en));
}

/* inbox.c: takes over the memory of the request a handler is handling
 * (ch->pin), so that the handler's views stay valid while its own call
 * reads.  0, or PBP_ENOMEM (in ch->error). */
int pbp__ch_unpin(pbp_channel *ch);

/* Misuse check around a public call: 0, or PBP_EINVAL when another thread
 * is inside a call on the same side of this channel (the error record is
 * left alone: that thread owns it).  tx: the call sends only. */
static inline int
pbp__ch_enter(pbp_channel *ch, int tx)
{
	atomic_int *b = tx && (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->busy_tx : &ch->busy_rx;

	/* One atomic exchange per call: cheap, and it turns two threads
	 * tearing each other's frames into an error. */
	if (atomic_exchange_explicit(b, 1, memory_order_acquire) != 0)
		return PBP_EINVAL;
	/* Inside a handler: the request's memory is taken over before this
	 * call may move it. */
	if (ch->pin != NULL && pbp__ch_unpin(ch) != 0) {
		atomic_store_explicit(b, 0, memory_order_release);
		return PBP_ENOMEM;
	}
	return 0;
}

static inline void
pbp__ch_leave(pbp_channel *ch, int tx)
{
	atomic_int *b = tx && (ch->flags & PBP_CHANNEL_DUPLEX) ? &ch->busy_tx : &ch->busy_rx;

	atomic_store_explicit(b, 0, memory_order_release);
}

/* Checks that sending is possible now. */
static inline int
pbp__ch_tx_ready(pbp_channel *ch)
{
	if (ch->tx_err != 0)
		return pbp__ch_tx_again(ch);
	if (ch->state != ST_READY)
		return pbp__ch_tx_failmsg(ch, PBP_EINVAL, "send before a successful handshake");
	if (ch->wr_closed)
		return pbp__ch_tx_failmsg(ch, PBP_EINVAL, "send after the write side was closed");
	if (ch->wr_closing)
		return pbp__ch_tx_failmsg(ch, PBP_EINVAL, "send after Goodbye");
	return 0;
}

/* Enters a public call (pbp__ch_enter), or returns from it with PBP_EINVAL. */
#define PBP__ENTER(ch, tx)                                                    \
	do {                                                                  \
		int pbp__enter_rc = pbp__ch_enter((ch), (tx));                \
		if (pbp__enter_rc != 0)                                       \
			return pbp__enter_rc;                                 \
	} while (0)

/* Past the deadline?  Frames the caller does not wait for count against
 * it, so a peer that floods them cannot hold a call past its deadline. */
static inline int
pbp__ch_past(int64_t deadline)
{
	return deadline >= 0 && pbp__now_ms() > deadline;
}

/* ---- stream.c: the byte engine -------------------------------------------- */

void pbp__ch_tx_lock_duplex(pbp_channel *ch);
void pbp__ch_tx_unlock_duplex(pbp_channel *ch);
int pbp__ch_ack_owed_duplex(pbp_channel *ch);

/* The write side's lock in duplex mode (no-ops otherwise, inline: these
 * are on every send's path); unlocking also hands over a SyncAck the
 * receiving thread owes. */
static inline void
pbp__ch_tx_lock(pbp_channel *ch)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		pbp__ch_tx_lock_duplex(ch);
}

static inline void
pbp__ch_tx_unlock(pbp_channel *ch)
{
	if (ch->flags & PBP_CHANNEL_DUPLEX)
		pbp__ch_tx_unlock_duplex(ch);
}

/* Bytes of queued output: in the write buffer and spliced. */
static inline size_t
pbp__ch_queued(const pbp_channel *ch)
{
	size_t n = ch->wlen - ch->woff, i;

	for (i = ch->spl_head; i < ch->nspl; i++)
		n += ch->spl[i].len - ch->spl[i].done;
	return n;
}

/* Output queued, or a SyncAck owed. */
static inline int
pbp__ch_out_queued(pbp_channel *ch)
{
	if (ch->wlen > ch->woff || ch->spl_head < ch->nspl)
		return 1;
	return (ch->flags & PBP_CHANNEL_DUPLEX) ? pbp__ch_ack_owed_duplex(ch) : ch->ack_pending;
}

/* Whether a waiting receive should write queued output: not in duplex mode
 * (the sending thread owns it), nor once sending has failed. */
static inline int
pbp__ch_rx_pushes(pbp_channel *ch)
{
	return !(ch->flags & PBP_CHANNEL_DUPLEX) && ch->tx_err == 0 && !ch->wr_closed &&
	       pbp__ch_out_queued(ch);
}

/* Reads until a whole frame is buffered, then decodes its envelope: 0 with
 * *f filled, or an error for the caller to make sticky (not PBP_ETIMEDOUT:
 * a partial frame stays buffered).  While it waits it writes queued
 * output. */
int pbp__ch_read_frame(pbp_channel *ch, pbp__frame *f, int64_t deadline);
/* Writes queued output (and an owed SyncAck) until the transport is full:
 * 0 all written, 1 the rest would block, or a sticky send error in e. */
int pbp__ch_write_some(pbp_channel *ch, pbp_error *e);
/* Writes all queued output within the deadline, reading meanwhile: 0,
 * PBP_ETIMEDOUT (the rest stays queued), or a sticky send error in e. */
int pbp__ch_flush_by(pbp_channel *ch, int64_t deadline, pbp_error *e);
/* Appends a control frame (Hello, Goodbye, Sync) to the queued output. */
int pbp__ch_queue_control(pbp_channel *ch, const pbpipe_Envelope *env, pbp_error *e);
/* Makes room for n more bytes of output after what is queued. */
int pbp__ch_tx_reserve(pbp_channel *ch, size_t n);
/* Encodes (fields, msg), psize bytes by the sizing pass, behind the hlen
 * bytes of header at hdr, as one frame queued after what is queued;
 * bytes fields of pbp_bytes_out() are spliced (pbp__ch_splice).  The
 * frame is traced whole.  0, PBP_EENCODE or PBP_ENOMEM (in *ch->txe);
 * on failure nothing was queued. */
int pbp__ch_encode_frame(pbp_channel *ch, uint32_t type, const uint8_t *hdr, size_t hlen,
                         const pb_msgdesc_t *fields, const void *msg, size_t psize);
/* From pbp_bytes_out()'s encoder, after the field's tag and length: when
 * stream is a channel's frame (pbp__ch_encode_frame) and n is large,
 * records the n bytes at data as spliced output, counts them as written
 * and returns 1.  0: not spliced (the caller writes them); -1: out of
 * memory (the encode fails). */
int pbp__ch_splice(pb_ostream_t *stream, const void *data, size_t n);
/* Queues one frame made of the hlen bytes at hdr followed by n bytes of
 * data (a stream's chunk, a raw payload): data of SPLICE_MIN bytes or more is spliced,
 * written from the caller's memory (pbp__ch_own_splices() before the
 * call returns), unless it lies in the receive buffer.  The frame is
 * traced whole.  0 or PBP_ENOMEM (in *ch->txe); on failure nothing was
 * queued. */
int pbp__ch_queue_data(pbp_channel *ch, const uint8_t *hdr, size_t hlen, const void *data,
                       size_t n);
/* Whether spliced output still points at a caller's memory. */
int pbp__ch_spliced(const pbp_channel *ch);
/* Copies the spliced output still in a caller's memory into memory the
 * channel owns: before a send returns.  0, or PBP_ENOMEM (made sticky:
 * the frame cannot be completed). */
int pbp__ch_own_splices(pbp_channel *ch);
/* Frees the spliced output (the channel's end). */
void pbp__ch_splices_free(pbp_channel *ch);
/* Closes the write side now: what is still queued is discarded.  0, or
 * the errno of a close that failed (the handle is closed anyway). */
int pbp__ch_close_write_now(pbp_channel *ch);


/* ---- channel.c and session.c, for call.c ----------------------------------- */


/* Outcome of pbp__ch_next: besides 0 (an application message) and errors. */
#define PBP__PROGRESS 1

/* Reads the next frame and handles what is not for the caller: answers
 * Sync (at once, or behind held messages), notes the SyncAck we wait for
 * and files replies to our calls (both return PBP__PROGRESS, so the
 * caller checks what it waits for), drops late replies to calls that are
 * over, records Goodbye (PBP_EOF, or PBP_EUNANSWERED while calls wait).
 * Returns 0 with *f an application message that is not a reply.  Control
 * frames count against the deadline.  Errors are made sticky, except
 * PBP_ETIMEDOUT, PBP_ELIMIT (the frame was put back) and PBP_EPROTO for a
 * reply to an id we never used. */
int pbp__ch_next(pbp_channel *ch, pbp__frame *f, int64_t deadline);
/* Writes queued output within the deadline (pbp_channel_flush() without
 * the misuse check). */
int pbp__ch_flush(pbp_channel *ch, int64_t deadline);
/* Notes that a blocking call passed its deadline, or that one succeeded. */
void pbp__ch_timed_out(pbp_channel *ch, const pbp_error *e);
void pbp__ch_succeeded(pbp_channel *ch);
/* Checks the receive side is usable. */
int pbp__ch_rx_ready(pbp_channel *ch);
/* Sends an application frame: payload from nanopb (fields, msg) or raw
 * bytes (fields NULL, msg the bytes, size). */
int pbp__ch_send(pbp_channel *ch, uint32_t type, uint64_t id, const pbp__reply *r,
                 const pb_msgdesc_t *fields, const void *msg, size_t size);
/* Sends a Sync. */
int pbp__ch_send_sync(pbp_channel *ch, uint64_t id, int64_t deadline);
/* Owes the peer a SyncAck for Sync id; it goes out with the next write. */
void pbp__ch_owe_ack(pbp_channel *ch, uint64_t id);
const pbp_msgtype *pbp__ch_find_type(const pbp_channel *ch, uint32_t type);

/* ---- inbox.c: calls outstanding, replies kept, messages held --------------- */

/* The outstanding call with this id (waiting or answered), or NULL. */
pbp__call *pbp__inbox_call(pbp_channel *ch, uint64_t id);
/* A free call slot, or NULL with ch->error set (PBP_ELIMIT, PBP_ENOMEM). */
pbp__call *pbp__inbox_slot(pbp_channel *ch);
/* Ends a call: its slot is free again and a reply it kept leaves the
 * inbox. */
void pbp__inbox_end(pbp_channel *ch, pbp__call *c);

/* A reply arrived: file it with its call.  Returns PBP__PROGRESS if it
 * was filed, 0 if it was dropped (a late or second reply to a call of
 * ours), PBP_EPROTO (not sticky) for an id we never used, PBP_ELIMIT when
 * the inbox is full (nothing changed), PBP_ENOMEM. */
int pbp__calls_file_reply(pbp_channel *ch, const pbp__frame *f);
/* Holds an application message (or, f NULL, a Sync marker for sync_id)
 * for pbp_channel_recv().  0, PBP_ELIMIT (nothing changed), PBP_ENOMEM. */
int pbp__held_push(pbp_channel *ch, const pbp__frame *f, uint64_t sync_id);
/* Pops the oldest held entry into ch->cur.  Returns 1 if there was one. */
int pbp__held_pop(pbp_channel *ch);
/* Frees the large reply decoded last (see pbp__inbox_end). */
void pbp__inbox_release(pbp_channel *ch);
/* Before a call waits on the wire: frees the large reply decoded last and
 * the buffer of a large held message handed out last (the views into
 * either end with that call), so an idle channel keeps neither. */
void pbp__inbox_trim(pbp_channel *ch);
/* Ends every asynchronous call still outstanding with PBP_ECANCELED,
 * running its done (the channel's end). */
void pbp__calls_cancel_async(pbp_channel *ch);
/* Frees everything call.c allocated. */
void pbp__calls_free(pbp_channel *ch);

/* ---- serve.c: handlers ----------------------------------------------------- */

/* Runs the registered handler for a message read while this side waits
 * or serves, and answers a request with its result, within deadline (the
 * wait's; < 0: the send deadline alone).  1: handled (or, for
 * a table that answers every request, answered with an error); 0: not
 * for the table (or no memory for it): the caller holds it; < 0: the
 * answer could not be sent (a send error, also in the channel). */
int pbp__dispatch(pbp_channel *ch, uint32_t type, uint64_t id, const uint8_t *payload,
                  size_t len, int64_t deadline);

/* ---- streams.c: stream state, below the receive path ------------------------ */

/* What pbp__streams_frame() returns besides 0 (a stream's header, for the
 * application), PBP__PROGRESS (data or the end of the stream a read waits
 * for, credit or a cancel for the one a write waits for) and errors:
 * handled, nothing to report (so a flood of such frames cannot hold a
 * call past its deadline: see pbp__ch_next). */
#define PBP__SKIP 2

/* Handles a frame of the stream protocol: a Message opening a stream, or
 * StreamData, StreamEnd, StreamCredit, StreamCancel.  Errors (PBP_EPROTO
 * for a peer breaking the rules, PBP_ENOMEM) are the caller's to make
 * sticky; described in ch->error. */
int pbp__streams_frame(pbp_channel *ch, const pbp__frame *f);
/* The incoming stream with this id (not a free slot), or NULL. */
pbp__instream *pbp__streams_in(pbp_channel *ch, uint64_t id);
/* The own stream with this id, or NULL. */
pbp__outstream *pbp__streams_out(pbp_channel *ch, uint64_t id);
/* A slot for a new own stream (id set, allowed the peer's window), or
 * NULL with ch->error set (PBP_ELIMIT, PBP_ENOMEM). */
pbp__outstream *pbp__streams_new_out(pbp_channel *ch, uint64_t id);
/* Releases an own stream's slot. */
void pbp__streams_drop_out(pbp_channel *ch, pbp__outstream *o);
/* The application consumed n bytes of s: grants credit once it has
 * consumed half the window since the last grant. */
void pbp__streams_consumed(pbp_channel *ch, pbp__instream *s, size_t n);
/* Moves what is left of s's view (a chunk in the receive buffer) into its
 * own buffer: before a read returns with part of a chunk taken.  0 or
 * PBP_ENOMEM. */
int pbp__streams_keep_view(pbp_channel *ch, pbp__instream *s);
/* The application has seen the end of s: frees its buffer, keeps the
 * record (the end is repeatable). */
void pbp__streams_done(pbp_channel *ch, pbp__instream *s);
/* Releases an incoming stream and, if it is still open, tells the writer
 * to stop (StreamCancel code, msg), queued and written as far as the pipe
 * takes it now.  0 or a send error (the slot is released all the same). */
int pbp__streams_cancel(pbp_channel *ch, pbp__instream *s, uint32_t code, const char *msg);
/* Queues StreamEnd for an own stream (code 0: clean).  0 or an error. */
int pbp__streams_queue_end(pbp_channel *ch, uint64_t id, uint32_t code, const char *msg);
/* Frees all stream state. */
void pbp__streams_free(pbp_channel *ch);

#endif /* PBP_CHANNEL_IMPL_H */
