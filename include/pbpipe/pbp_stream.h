/*
 * pbp_stream.h: streams (protocol 1.2): a sequence of bytes larger than
 * any frame, sent in chunks, in either direction, several at once,
 * interleaved with messages and calls, with a bounded window per stream
 * (backpressure), a deadline per chunk, cancellation by the reader, and an
 * explicit end or abort by the writer.
 *
 * A stream begins with a header: an ordinary application message (type and
 * payload) that the reader receives with pbp_channel_recv() or
 * pbp_channel_recv_msg(), marked with the stream's id (pbp_msginfo.stream,
 * or pbp_channel_last_stream()).  Writer side:
 *
 *     uint64_t s;
 *     size_t done;
 *     if (pbp_stream_open(ch, DEMO_UPLOAD, &hdr, &s) != 0) ...
 *     while (have_more)
 *         if (pbp_stream_write(ch, s, buf, len, &done) != 0) ... // done: what went
 *     rc = pbp_stream_end(ch, s);        // or pbp_stream_abort(ch, s, 7, "disk full")
 *
 * Reader side:
 *
 *     pbp_msginfo mi;
 *     rc = pbp_channel_recv(ch, &mi);    // mi.stream != 0: a stream's header
 *     while ((rc = pbp_stream_read(ch, mi.stream, buf, sizeof buf, &n)) == 0)
 *         consume(buf, n);
 *     // rc: PBP_EOF at the clean end, PBP_EREMOTE when the writer aborted
 *
 * Flow control: the reader announces a window W (pbp_channel_options.
 * stream_window, default 512 KiB) in its Hello; a writer sends at most W
 * bytes of a stream beyond what the reader has granted since, and the
 * reader grants more (StreamCredit) each time its application has
 * consumed W/2 bytes of it.  So a reader that does not read stops the
 * writer after W bytes, and the reader buffers at most W bytes per
 * stream, PBP_MAX_STREAMS * W in all.
 *
 * While a stream call waits (for credit, for a chunk) it keeps reading the
 * channel as calls do (pbp_call.h): application messages are held for
 * pbp_channel_recv(), replies are filed with their calls, and chunks of
 * other streams are buffered with their stream.  pbp_channel_recv(),
 * calls and the barrier in turn buffer chunks and note credit for the
 * streams.  None of this needs a thread.
 *
 * Ids: each side numbers the streams it opens from 1 up; the ids of the
 * two directions are independent (stream 1 from the parent and stream 1
 * from the child are two streams).  A stream id is only valid for the
 * calls of its direction: pbp_stream_write(), pbp_stream_end() and
 * pbp_stream_abort() for streams this side opened, pbp_stream_read(),
 * pbp_stream_read_view() and pbp_stream_cancel() for streams the peer
 * opened; anything else is PBP_EINVAL with a message naming the id.
 *
 * Not in this version: streams on PBP_CHANNEL_DUPLEX channels (every call
 * here returns PBP_EINVAL there, and such a channel announces a window of
 * 0, so peers open none to it).  Threads: as the rest of the channel, one
 * thread at a time.
 *
 * Errors that are not about one stream (PBP_EPROTO from a peer that breaks
 * the stream rules, PBP_EPIPE, PBP_ESYS, ...) are the channel's own sticky
 * errors and come back from every call of that side, as from
 * pbp_channel_send() and pbp_channel_recv().  The peer breaking the
 * stream rules is sticky PBP_EPROTO for receiving: more chunk bytes than
 * the window allows, data or an end for a stream it never opened, an open
 * whose id is not greater than its previous one, stream id 0, a credit
 * that would raise the outstanding credit past 2^32 - 1, a credit or a
 * cancel for a stream this side never opened.
 */
#ifndef PBPIPE_PBP_STREAM_H
#define PBPIPE_PBP_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <pbpipe/pbp_channel.h>
#include <pbpipe/pbp_common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most streams open at once per direction on one channel: this side's
 *  own (pbp_stream_open() returns PBP_ELIMIT beyond), and the peer's
 *  (a 17th open is refused with StreamCancel code
 *  PBP_REMOTE_TOO_MANY_STREAMS, "too many streams", and its header is not
 *  delivered). */
#define PBP_MAX_STREAMS 16
/** Default pbp_channel_options.stream_window: 512 KiB.  Measured
 *  (docs/performance.md, bench=large_stream): a 1 GiB stream reaches
 *  0.97-1.05x a raw pipe with it, both processes on one CPU or on two;
 *  256 KiB stalls across CPUs (0.60x), 1 MiB runs out of cache on one
 *  CPU (0.89-0.90x). */
#define PBP_DEFAULT_STREAM_WINDOW (512u * 1024u)
/** Smallest and largest stream_window an option may set. */
#define PBP_MIN_STREAM_WINDOW 256u
#define PBP_MAX_STREAM_WINDOW (1024u * 1024u * 1024u)
/** Largest chunk pbp_stream_write() sends: 256 KiB.  Chunks are also at
 *  most the frame limit minus 32 bytes, and at most the peer's window. */
#define PBP_STREAM_CHUNK_MAX (256u * 1024u)

/**
 * Opens a stream to the peer: sends its header, the message msg of the
 * registered `type` (encoded as pbp_channel_send() does; NULL: an empty
 * payload), marked with a new stream id.
 *
 * @param type       a registered application type (the header's)
 * @param msg        the header message, or NULL for an empty payload
 * @param[out] stream  the new stream's id, set on success and on
 *                     PBP_ETIMEDOUT, else left alone
 * @return 0; PBP_ENOTSUP (the peer speaks protocol 1.0 or 1.1, or accepts
 *         no streams: nothing was sent); PBP_ELIMIT (PBP_MAX_STREAMS
 *         streams of this side are open: end one first); PBP_EINVAL (NULL
 *         stream, a duplex channel, no handshake yet, the write side
 *         closed); PBP_ETYPE; otherwise as pbp_channel_send(): on
 *         PBP_ETIMEDOUT the header stays queued and the stream is open.
 *
 * Deadline: the send timeout.  The library keeps no pointer into msg.
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_open(pbp_channel *ch, uint32_t type, const void *msg,
                                            uint64_t *stream);

/**
 * Sends len bytes of data on a stream this side opened, as chunks of at
 * most PBP_STREAM_CHUNK_MAX bytes (less with a small frame limit or a
 * small peer window), each when the peer's window allows it.  While it
 * waits for credit it reads incoming frames (held, filed or buffered as
 * described at the top of this file).
 *
 * @param stream  an id from pbp_stream_open()
 * @param data    the bytes (may be NULL when len is 0)
 * @param[out] done  if not NULL: the bytes accepted (written, or queued to
 *                   be written by the next send, flush or receive), set
 *                   on every return, so after a failure the application
 *                   knows exactly which bytes went: data[0..*done)
 * @return 0 when all len bytes were accepted (with a send timeout of 0:
 *         when at least one byte was; *done says how many);
 *         PBP_ETIMEDOUT (one send timeout passed without progress: no
 *         credit came, or a chunk could not be written; the stream stays
 *         usable, write the rest later); PBP_EAGAIN (send timeout 0: not
 *         even one byte could be accepted now: no credit, or 1 MiB of
 *         output already queued); PBP_ECANCELED (the reader cancelled the stream:
 *         pbp_error.remote_code and msg carry its code and message; sticky
 *         for this stream until pbp_stream_end() or pbp_stream_abort());
 *         PBP_ETRUNC (the peer's side of the channel ended while waiting
 *         for credit, which can then never come); PBP_EINVAL (not an open
 *         stream of this side: unknown, the peer's, ended or aborted;
 *         NULL data with len > 0); PBP_ELIMIT (waiting for credit, the
 *         inbox of held messages filled up: receive some, then write the
 *         rest); the channel's send and receive errors.
 *
 * Deadlines: each chunk has its own send timeout, counted from when the
 * previous chunk was accepted, so a slow but live reader never times out a
 * long write; a stalled one does, one send timeout after the last
 * progress.  With a send timeout of 0 the call never waits: it accepts
 * what the window and the output queue (1 MiB) take now.
 *
 * Two sides that write streams at each other, one thread each, must also
 * read: a write waits for credit, which the other side grants only as its
 * application consumes.  Interleave writes and reads with deadlines of 0
 * (pbp_channel_set_timeout()), or read on another channel's thread.
 *
 * Ownership: chunks of 16 KiB or more go out from data itself, not
 * copied (zero-copy, as pbp_bytes_out() sends); before the call returns,
 * whatever part of them is still unwritten is copied into memory the
 * channel owns, so data may be reused as soon as the call returns.
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_write(pbp_channel *ch, uint64_t stream, const void *data,
                                             size_t len, size_t *done);

/**
 * Ends a stream this side opened, cleanly (StreamEnd, code 0): the
 * reader's pbp_stream_read() returns PBP_EOF after the data.  The stream
 * id is then no longer valid here.  Output is flushed within the send
 * deadline.
 *
 * @return 0; PBP_ECANCELED (the reader had cancelled it: nothing was
 *         sent; the id is released all the same); PBP_EINVAL (not an open
 *         stream of this side); PBP_ETIMEDOUT (the End stays queued and
 *         goes out with the next send, flush or receive; the id is
 *         released); the channel's send errors.
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_end(pbp_channel *ch, uint64_t stream);

/**
 * Aborts a stream this side opened: StreamEnd with a nonzero code and a
 * message (sent as valid UTF-8, cut to 127 bytes at a character boundary,
 * as error replies are); the reader's pbp_stream_read() returns
 * PBP_EREMOTE with them.  The id is then no longer valid here.
 *
 * @param code     nonzero application code (0 is PBP_EINVAL)
 * @param message  a C string, or NULL for none
 * @return as pbp_stream_end().
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_abort(pbp_channel *ch, uint64_t stream, uint32_t code,
                                             const char *message);

/**
 * Reads the next bytes of an incoming stream (one the peer opened, whose
 * header this side received) into buf.
 *
 * @param stream  the id of the header's pbp_msginfo.stream
 * @param buf     where to copy the bytes
 * @param cap     room in buf (at least 1)
 * @param[out] n  bytes copied: 1..cap on success (what is buffered, or
 *                the next chunk: possibly fewer than cap), 0 otherwise
 * @return 0; PBP_EOF at the clean end (repeatable); PBP_EREMOTE (the
 *         writer aborted: pbp_error.remote_code and msg carry its code
 *         and message; repeatable); PBP_ETRUNC (the channel ended: end of
 *         stream, Goodbye or the peer died, before the stream's end);
 *         PBP_ETIMEDOUT (no chunk came within the receive timeout, which
 *         applies to each call; PBP_EAGAIN for a timeout of 0); PBP_EINVAL
 *         (not an incoming stream of this channel, or one cancelled, or
 *         cap 0); PBP_ELIMIT (the inbox of held messages is full: receive
 *         some, then read again); the channel's sticky receive errors.
 *
 * Data already buffered comes first, then the end or the error.  The
 * repeated PBP_EOF / PBP_EREMOTE of a finished stream is kept for the
 * PBP_MAX_STREAMS streams that finished last; older ids are PBP_EINVAL.
 * Consuming bytes grants the writer more credit (StreamCredit, queued and
 * written as far as the pipe takes it at once: a read never blocks on
 * writing).  Releases the message of the last pbp_channel_recv().
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_read(pbp_channel *ch, uint64_t stream, void *buf,
                                            size_t cap, size_t *n);

/**
 * pbp_stream_read() without a copy: the next piece of the stream's data,
 * in place.  When the stream's next chunk arrives while this call waits
 * for it, *data points into the channel's receive buffer (no copy at
 * all); bytes that arrived earlier come from the stream's own buffer.
 *
 * @param[out] data  the bytes, valid until the next call on this channel
 *                   (any pbp_channel_*, pbp_stream_* or pbp_call.h call)
 *                   or its free; NULL unless 0 is returned
 * @param[out] n     their count (at least 1 on success), else 0
 * @return as pbp_stream_read().
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_read_view(pbp_channel *ch, uint64_t stream,
                                                 const void **data, size_t *n);

/**
 * Cancels an incoming stream: its buffered bytes are freed, and the
 * writer is told to stop (StreamCancel with code and message; its
 * pbp_stream_write() returns PBP_ECANCELED with them).  The id is then no
 * longer valid here; chunks already in flight are dropped.  Allowed after
 * the stream ended too (it then only releases the id and sends nothing).
 *
 * @param code     nonzero application code (0 is PBP_EINVAL)
 * @param message  a C string (sent as valid UTF-8, at most 127 bytes), or
 *                 NULL for none
 * @return 0; PBP_EINVAL (not an incoming stream of this channel, code 0);
 *         PBP_ETIMEDOUT (the cancel stays queued; the id is released all
 *         the same); the channel's send errors.  Deadline: the send
 *         timeout.
 */
PBP_API PBP_WARN_UNUSED int pbp_stream_cancel(pbp_channel *ch, uint64_t stream, uint32_t code,
                                              const char *message);

/**
 * The stream id of the message last received by pbp_channel_recv() or
 * pbp_channel_recv_msg(): nonzero when that message is the header of an
 * incoming stream (the same as pbp_msginfo.stream), else 0.  For
 * recv_msg users, who get no pbp_msginfo.  0 for NULL.
 */
PBP_API uint64_t pbp_channel_last_stream(const pbp_channel *ch);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_STREAM_H */
