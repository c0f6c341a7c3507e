/*
 * pbp_internal.h: declarations shared between lib/ modules (not installed).
 *
 * Modules:
 *   errors.c     error records and pbp_strerror
 *   frame.c      the pure frame codec: varints, the frame reader, envelope
 *                encode/decode.  Never touches an fd.
 *   io.c         thin OS layer: non-blocking fd loops with deadlines,
 *                EINTR, EAGAIN, SIGPIPE.
 *   handshake.c  Hello construction and validation (pure).
 *   utf8.c       UTF-8 sanitising of the strings pbpipe sends (pure).
 *   channel.c    the channel object: buffers, send/receive, half-close.
 */
#ifndef PBP_INTERNAL_H
#define PBP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <pbpipe/pbpipe.h>

#include "pbpipe.pb.h"

#if defined(__MINGW32__)
/* mingw: "printf" means msvcrt's formats (no %zu); Windows builds use
 * mingw's C99 printf (__USE_MINGW_ANSI_STDIO, set by CMakeLists.txt). */
#define PBP__PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#elif defined(__GNUC__)
#define PBP__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PBP__PRINTF(a, b)
#endif

/* ---- errors.c ---------------------------------------------------------- */

/* Fills err (if not NULL) and returns code, so callers can write
 * `return pbp__seterr(...)`.  Never allocates. */
int pbp__seterr(pbp_error *err, int code, int sys_errno, const char *fmt, ...)
	PBP__PRINTF(4, 5);
/* The same with a message that needs no formatting: a copy, for paths
 * that fail often (a non-blocking receive with nothing there). */
int pbp__seterr_str(pbp_error *err, int code, const char *msg);

/* ---- frame.c: the pure codec ------------------------------------------- */

/* Longest varint for a 32-bit and a 64-bit value. */
#define PBP__VARINT32_MAX 5
#define PBP__VARINT64_MAX 10
/* Largest header pbp__message_header() writes: frame length, envelope tag
 * and length, type, id, reply_to, error code, error message (127 bytes),
 * payload tag and length. */
#define PBP__MSG_HEADER_MAX 200
/* Longest error message a reply carries, in bytes: the encoder cuts a
 * longer one (at a character boundary), the decoder rejects a longer one
 * (PBP_EDECODE), as nanopb does for Goodbye.detail (max_size 128). */
#define PBP__ERRMSG_WIRE_MAX 127
/* Largest frame accepted before the handshake has set the real limit: a
 * Hello is at most pbpipe_Hello_size + 2 bytes today; the slack leaves room
 * for fields a later minor version may add. */
#define PBP__HANDSHAKE_MAX_FRAME 1024u

size_t pbp__varint_size(uint64_t v);
uint8_t *pbp__put_varint(uint8_t *p, uint64_t v);

/* Parses a frame length prefix from p[0..n).  Returns 1 and sets *len and
 * *hdrlen when complete, 0 when more bytes are needed, PBP_EPROTO when the
 * varint is longer than 5 bytes or its value does not fit 32 bits. */
int pbp__frame_length(const uint8_t *p, size_t n, uint32_t *len, size_t *hdrlen);

/* Writes the frame length prefix and the envelope bytes that precede an
 * application payload of payload_len bytes.  Returns the header length (at
 * most PBP__MSG_HEADER_MAX) and sets *body_len to the envelope length,
 * which is what the frame limit applies to.  Returns 0 if payload_len is so
 * large that the body would not fit 32 bits. */
size_t pbp__message_header(uint8_t *out, uint32_t type, uint64_t id,
                           size_t payload_len, uint64_t *body_len);

/* The reply fields of a Message (protocol 1.1), and the stream it opens
 * (1.2). */
typedef struct pbp__reply {
	uint64_t reply_to;       /* 0: not a reply */
	uint32_t error_code;     /* 0: a result, not an error */
	const char *error_msg;   /* with error_code, a C string (NULL: none).
	                            Sent as pbp__utf8_copy() makes it: valid
	                            UTF-8 (U+FFFD for what is not), at most
	                            PBP__ERRMSG_WIRE_MAX bytes, cut at a
	                            character boundary */
	uint64_t stream;         /* Message.stream (1.2): 0, or the id of the
	                            stream this message opens */
} pbp__reply;

/* pbp__message_header() with reply fields (r may be NULL). */
size_t pbp__message_header_ex(uint8_t *out, uint32_t type, uint64_t id,
                              const pbp__reply *r, size_t payload_len,
                              uint64_t *body_len);

/* Encodes a control envelope (Hello, Goodbye, Sync, SyncAck) as a whole
 * frame into out[0..cap).  A Goodbye detail is sent as pbp__utf8_copy()
 * makes it (valid UTF-8, at most 127 bytes, never half a character),
 * whatever env holds.  Sets *written.  Returns 0 or PBP_EENCODE. */
int pbp__control_encode(uint8_t *out, size_t cap, const pbpipe_Envelope *env,
                        size_t *written, pbp_error *err);

enum pbp__frame_kind {
	PBP__FRAME_HELLO = 1,
	PBP__FRAME_GOODBYE = 2,
	PBP__FRAME_MESSAGE = 3,
	PBP__FRAME_SYNC = 4,
	PBP__FRAME_SYNC_ACK = 5,
	PBP__FRAME_STREAM_DATA = 6,   /* 1.2 */
	PBP__FRAME_STREAM_END = 7,    /* 1.2 */
	PBP__FRAME_STREAM_CREDIT = 8, /* 1.2 */
	PBP__FRAME_STREAM_CANCEL = 9, /* 1.2 */
};

/* Largest header pbp__stream_data_header() writes: frame length, envelope
 * tag and length, stream (tag and 10 bytes), chunk tag and length. */
#define PBP__DATA_HEADER_MAX 28
/* Writes the frame length prefix and the envelope bytes of a StreamData
 * frame up to its chunk bytes, which follow.  Returns the header length
 * and sets *body_len to the envelope length (the frame limit's). */
size_t pbp__stream_data_header(uint8_t *out, uint64_t stream, size_t chunk_len,
                               uint64_t *body_len);

/* A decoded envelope.  payload points into the decoded body. */
typedef struct pbp__frame {
	int kind;
	uint32_t type;
	uint64_t id;
	const uint8_t *payload;
	size_t payload_len;
	uint64_t reply_to;       /* Message.reply_to (1.1) */
	uint32_t error_code;     /* Message.error_code (1.1) */
	const char *error_msg;   /* Message.error_message, not NUL-terminated,
	                            as received: not checked for UTF-8, may
	                            hold NUL bytes */
	size_t error_len;        /* at most PBP__ERRMSG_WIRE_MAX */
	uint64_t sync_id;        /* Sync.id or SyncAck.id (1.1) */
	/* 1.2: Message.stream of a Message; the stream of a StreamData,
	 * StreamEnd, StreamCredit or StreamCancel. */
	uint64_t stream;
	/* StreamData.chunk (in place), StreamCredit.bytes; StreamEnd and
	 * StreamCancel use error_code, error_msg and error_len. */
	const uint8_t *chunk;
	size_t chunk_len;
	uint32_t credit;
	/* Last, and set only in a Hello or a Goodbye (pb_decode gives every
	 * field its default): pbp__frame_decode clears the fields above. */
	pbpipe_Hello hello;
	pbpipe_Goodbye goodbye;
} pbp__frame;

/* Decodes one envelope body, by the rules of docs/PROTOCOL.md section 3.
 * Returns 0, PBP_EDECODE or PBP_EPROTO.  PBP_EDECODE: something anywhere
 * in the body breaks the wire rules (a key or length over 5 bytes or 32
 * bits, field number 0, a varint over 10 bytes, wire type 3, 4, 6 or 7, a
 * length past the end, a known field of the wrong wire type, a 32-bit
 * field over 32 bits, a string over its bound); it takes precedence over
 * PBP_EPROTO: the body is well-formed, but holds no body field, more than
 * one, a Message of type 0, or a Message whose stream (1.2) is nonzero
 * with a nonzero id or reply_to.  StreamData, StreamEnd, StreamCredit and
 * StreamCancel (1.2) follow the same rules (their strings at most 127
 * bytes); stream id 0 in them is the session's to refuse.  Unknown
 * fields are skipped, so later
 * minor versions can add some.  fuzz/envelope_diff_fuzzer.c checks that
 * this agrees with nanopb's decoding of pbpipe.Envelope plus those
 * rules. */
int pbp__frame_decode(const uint8_t *body, size_t len, pbp__frame *out,
                      pbp_error *err);

/*
 * The frame reader: a buffer that bytes are fed into and whole frames come
 * out of, hiredis-style.  It enforces the frame limit on the declared
 * length before growing for a body, and keeps the first error (sticky).
 */
typedef struct pbp__reader {
	uint8_t *buf;
	size_t cap;
	size_t start;     /* first unconsumed byte */
	size_t end;       /* one past the last byte fed */
	size_t max_cap;   /* pbp__reader_space grows the buffer up to this, or
	                     to what the current frame needs if that is more */
	uint32_t limit;   /* largest body accepted */
	int eof;          /* no more bytes will come */
	int err;          /* sticky error code, or 0 */
	size_t prev_start, prev_end; /* before the last pbp__reader_next() */
	size_t initial_cap; /* what pbp__reader_init() allocated */
	pbp_error error;  /* describes err */
} pbp__reader;

#define PBP__READER_INITIAL_CAP (64u * 1024u)
/* A buffer (the frame reader's, the channel's write buffer) that grew
 * more than this beyond its initial size goes back to that size once it
 * is empty (when: stream.c), so that one large frame does not pin its
 * memory for ever.  A frame whose length is known and that needs more
 * than this is given exactly its size (no doubling). */
#define PBP__BUF_SHRINK_ABOVE (1024u * 1024u)

int pbp__reader_init(pbp__reader *r, uint32_t limit, size_t initial_cap);
void pbp__reader_free(pbp__reader *r);
/* Returns space for more input, as much as is free.  May compact or grow
 * the buffer (up to max_cap, or what the current frame needs), which
 * invalidates pointers from earlier pbp__reader_next() calls.  *n is 0 only
 * when the buffer is full of whole frames up to max_cap.  Returns 0 or
 * PBP_ENOMEM. */
int pbp__reader_space(pbp__reader *r, uint8_t **p, size_t *n);
/* Whether the buffer is empty and grew more than PBP__BUF_SHRINK_ABOVE
 * beyond its initial size. */
static inline int
pbp__reader_idle_large(const pbp__reader *r)
{
	return r->start == r->end && r->cap > r->initial_cap + PBP__BUF_SHRINK_ABOVE;
}
/* If pbp__reader_idle_large(), gives the buffer back: it returns to its
 * initial size (invalidating pointers from pbp__reader_next()).  1 if it
 * did; 0 if there was nothing to do or realloc failed (the buffer is
 * kept). */
int pbp__reader_shrink(pbp__reader *r);
/* Gives the caller the buffer, with every pointer from pbp__reader_next()
 * still valid in it (the caller frees it), and goes on in a new one that
 * holds the bytes not consumed yet.  NULL when out of memory (nothing
 * changed).  The last frame can no longer be put back (unget). */
uint8_t *pbp__reader_detach(pbp__reader *r);
/* Records that n bytes were written at the pointer from pbp__reader_space. */
void pbp__reader_commit(pbp__reader *r, size_t n);
/* Copies data in, growing as needed regardless of max_cap (for tests and
 * fuzzers).  0 or PBP_ENOMEM. */
int pbp__reader_feed(pbp__reader *r, const void *data, size_t n);
/* Marks end of input. */
void pbp__reader_set_eof(pbp__reader *r);
/* Takes the next whole frame body.  Returns 1 with *body and *len set (valid
 * until the next pbp__reader_space), 0 if more input is needed, PBP_EOF at
 * end of input between frames, or a sticky PBP_ETRUNC / PBP_EPROTO /
 * PBP_EMSGSIZE. */
int pbp__reader_next(pbp__reader *r, const uint8_t **body, size_t *len);
/* Puts back the frame the last pbp__reader_next() took, as if it had not
 * been taken.  Only valid right after that call (no space or commit in
 * between). */
void pbp__reader_unget(pbp__reader *r);
/* Bytes fed but not yet taken. */
size_t pbp__reader_pending(const pbp__reader *r);
/* Whether pbp__reader_next() would answer without more input: a whole
 * frame, the end of input, or an error. */
int pbp__reader_ready(const pbp__reader *r);

/* ---- utf8.c (pure) ------------------------------------------------------- */

/* Copies the string src[0..srclen) into dst[0..size) as valid UTF-8, for
 * a proto3 string field: it stops at the first NUL byte of src, replaces
 * each ill-formed sequence (the maximal subpart of one, per Unicode 3.9:
 * stray continuation bytes, overlong forms, surrogates, code points over
 * U+10FFFF, a sequence cut short) with U+FFFD (EF BF BD), copies at most
 * size - 1 bytes, never the first bytes of a character (or of U+FFFD)
 * without the rest, and always NUL-terminates (size > 0).  Returns the
 * bytes written without the NUL (strlen(dst)); 0 and nothing written
 * when size is 0.  src may be NULL when srclen is 0; dst and src must not
 * overlap. */
size_t pbp__utf8_copy(char *dst, size_t size, const char *src, size_t srclen);
/* 1 if s[0..n) is well-formed UTF-8 (NUL bytes count as U+0000), else 0. */
int pbp__utf8_valid(const void *s, size_t n);

/* ---- handshake.c (pure) -------------------------------------------------- */

#define PBP__MAGIC 0x50425050u /* "PBPP" */

/* Fills env with our Hello (stream_window: Hello.stream_window, 1.2). */
void pbp__hello_make(pbpipe_Envelope *env, uint32_t max_frame, uint64_t fingerprint,
                     uint32_t stream_window);
/* Checks the peer's Hello against ours.  Returns 0 and fills *peer, or
 * PBP_EPROTO with a message naming both values. */
int pbp__hello_check(const pbpipe_Hello *h, uint32_t our_max_frame,
                     uint64_t our_fingerprint, pbp_peer_info *peer,
                     pbp_error *err);
/* 1 if the helper's parent died before its watch was armed: env is
 * PBPIPE_PARENT_PID (or NULL), hello_pid the peer's, recorded_ppid our
 * parent when the watch was armed (0: unknown).  See handshake.c. */
int pbp__parent_gone_early(const char *env, uint32_t hello_pid, uint32_t recorded_ppid);

/* ---- trace.c ------------------------------------------------------------- */

#define PBP__TRACE_HEADER 20

/* Opens (creates, appends to) a trace file, close-on-exec. */
int pbp__trace_open(const char *path, pbp_os_handle *h, pbp_error *err);
/* Appends one record: the frame is prefix followed by rest (either may be
 * empty).  dir is 'S' or 'R'.  Errors are ignored. */
void pbp__trace_frame(pbp_os_handle h, int dir, const uint8_t *prefix, size_t plen,
                      const uint8_t *rest, size_t rlen);
/* A piece of a frame: n bytes at p (traces, file appends, the transport's
 * gather writes). */
typedef struct pbp__piece { const void *p; size_t n; } pbp__piece;
/* The same for a frame in n pieces, at most PBP__TRACE_MAX_PIECES (more:
 * no record). */
#define PBP__TRACE_MAX_PIECES 7
void pbp__trace_pieces(pbp_os_handle h, int dir, const pbp__piece *frame, int n);

/* ---- channel.c ----------------------------------------------------------- */

/* pbp_channel_goodbye() with a deadline for the write; with discard, what
 * the deadline leaves queued is dropped and the write side closed (also
 * after an earlier Goodbye that is still queued). */
int pbp__channel_goodbye_by(pbp_channel *ch, int reason, const char *detail,
                            int64_t deadline, int discard);
/* Helper side: arms the watch on the parent (api/handles.c), unless the
 * channel has PBP_CHANNEL_OUTLIVE_PARENT.  0 or an error in err. */
int pbp__channel_watch_parent(pbp_channel *ch, pbp_error *err);

/* ---- the clock (os.h) ------------------------------------------------------ */

/* Monotonic clock in milliseconds and in nanoseconds (the platform layer). */
int64_t pbp__now_ms(void);
int64_t pbp__now_ns(void);

/* An absolute deadline timeout_ms from now, or -1 for none (timeout < 0). */
static inline int64_t
pbp__deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : pbp__now_ms() + timeout_ms;
}

/*
 * How a channel moves bytes: one operation, xfer, that moves what it can in
 * both directions and waits until something moved.  The byte engine
 * (stream.c) drives it in one loop, for sends and receives alike, until
 * the condition it waits for holds or the deadline passes.
 *
 * The platform's transport (os.h: pbp__os_io_ops) implements it over pipe
 * handles: on POSIX non-blocking read() and write() with poll(); on Windows
 * overlapped ReadFile and WriteFile on named-pipe handles.  Tests and
 * fuzzers plug in memory transports (tests/memio.c) that inject short
 * reads and writes, "nothing ready" and failures at chosen offsets.
 */
/* The most pieces one xfer offers to write: a frame's header, its
 * spliced bytes and what lies between them, or the ends of two frames. */
#define PBP__XFER_PIECES 8

typedef struct pbp__xfer {
	/* In: */
	pbp__piece out[PBP__XFER_PIECES]; /* bytes to write, in order (first:
	                                     step() clears the rest only) */
	int nout;            /* pieces in out, none empty (0: nothing to write) */
	size_t out_len;      /* their total */
	uint8_t *in;         /* room to read into; */
	size_t in_cap;       /* 0: do not read */
	int in_drained;      /* the last read emptied the pipe: the transport
	                        may wait before it tries to read */
	/* Out (zero on entry): */
	size_t written;      /* bytes of out written */
	size_t nread;        /* bytes read into in */
	int eof;             /* the read side reached end of stream */
	int rerr, werr;      /* errno of a failed read, write (EPIPE: nobody
	                        reads), or 0 */
} pbp__xfer;

typedef struct pbp__io_ops {
	/* Moves bytes: writes from out and reads into in, whatever can move
	 * now, and if nothing could, waits until something can, or the
	 * deadline (pbp__now_ms() clock; -1: none) passes.  A deadline in
	 * the past means "only what is ready now": no waiting.  Returns 1 when
	 * it has something to say (bytes moved, eof, rerr or werr), 0 when the
	 * deadline passed with nothing, or -errno when waiting itself failed.
	 *
	 * The pieces of out are one run of bytes: written counts from the
	 * start of the first and may end inside any of them.  A transport
	 * may write them together (POSIX: one writev(), so a frame whose
	 * bytes are spliced still wakes the reader once) or take fewer
	 * (Windows: what its staging buffer holds).  Bytes offered but not
	 * reported written must be offered again, unchanged, at the start of
	 * out on the next call, however they are cut into pieces then: a
	 * transport may have begun writing them (Windows: an overlapped write
	 * in flight).
	 * Bytes reported written are in the pipe.  in may differ from call to
	 * call.  Two threads may be in xfer at once (PBP_CHANNEL_DUPLEX) when
	 * one offers only in and the other only out; a call that offers no
	 * out leaves a write in flight alone. */
	int (*xfer)(void *ctx, pbp__xfer *x, int64_t deadline);
	/* Closes the write direction.  0 or an errno. */
	int (*close_write)(void *ctx);
} pbp__io_ops;


/* The platform transport under a channel made by pbp_channel_from_fds()
 * or pbp_channel_from_os_handles() (os.h); NULL over a custom transport. */
struct pbp__os_io *pbp__channel_os_io(pbp_channel *ch);
/* 1 once either direction of the channel has failed or ended for good
 * (a sticky error, end of stream included). */
int pbp__channel_failed(const pbp_channel *ch);
/* Whether a receive would find a message or a frame without reading the
 * fd: held messages, a whole frame buffered, an error or end met. */
int pbp__channel_recv_ready(const pbp_channel *ch);
/* pbp_channel_call_start() with a request already encoded (the pool's
 * retries send the same bytes). */
int pbp__channel_call_start_raw(pbp_channel *ch, uint32_t type, const void *payload,
                                size_t len, uint64_t *id);
/* The write buffer's capacity (tests: spliced bytes take no room there). */
size_t pbp__channel_wbuf_cap(const pbp_channel *ch);
/* The receive buffer's capacity (tests: it shrinks after a large frame). */
size_t pbp__channel_rbuf_cap(const pbp_channel *ch);

/* A channel over a custom transport (tests, fuzzers).  The channel does not
 * own ctx; pbp_channel_free() leaves it alone. */
int pbp__channel_new_io(pbp_channel **out, const pbp__io_ops *io, void *ctx,
                        const pbp_channel_options *opts, pbp_error *err);

#endif /* PBP_INTERNAL_H */
