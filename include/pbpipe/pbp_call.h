/*
 * pbp_call.h: calls (request/response with deadlines), the barrier, and a
 * serving loop for the child side.  Protocol 1.1 (docs/PROTOCOL.md).
 *
 * Parent side:
 *
 *     calc_Sum sum;
 *     rc = pbp_channel_call(ch, calc_Type_ADD, &add, calc_Type_SUM, &sum, 1000);
 *     if (rc == PBP_EREMOTE)      // the child answered with an error
 *         fprintf(stderr, "%u: %s\n", pbp_channel_error(ch)->remote_code,
 *                 pbp_channel_errmsg(ch));
 *
 *     // several at once; replies may arrive in any order
 *     uint64_t a, b;
 *     pbp_channel_call_start(ch, calc_Type_ADD, &x, &a);
 *     pbp_channel_call_start(ch, calc_Type_ADD, &y, &b);
 *     pbp_channel_call_finish(ch, b, calc_Type_SUM, &sum_b, 1000);
 *     pbp_channel_call_finish(ch, a, calc_Type_SUM, &sum_a, 1000);
 *
 * Child side:
 *
 *     static int add(const void *req, void *resp, pbp_reply_error *e, void *payload) {
 *         const calc_Add *a = req;
 *         ((calc_Sum *)resp)->value = a->a + a->b;
 *         return 0;                  // or an error code, with e->message
 *     }
 *     static const pbp_handler handlers[] = {
 *         { calc_Type_ADD, calc_Type_SUM, add, NULL },
 *     };
 *     rc = pbp_channel_serve(ch, handlers, 1);   // until end of stream
 *
 * A request is a Message with a nonzero correlation id; its reply is a
 * Message whose reply_to is that id, carrying either a result or an
 * application error (code and message).  Messages that arrive while a call
 * or a barrier waits (the peer's own requests, one-way messages) are held,
 * in order, for pbp_channel_recv().  Not for PBP_CHANNEL_DUPLEX channels.
 */
#ifndef PBPIPE_PBP_CALL_H
#define PBPIPE_PBP_CALL_H

#include <stdint.h>

#include <pbpipe/pbp_channel.h>
#include <pbpipe/pbp_common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most calls outstanding at once on one channel. */
#define PBP_MAX_CALLS 4096
/** Most messages held for pbp_channel_recv() while calls or a barrier wait. */
#define PBP_MAX_HELD 4096
/** Most payload bytes held for pbp_channel_recv() and kept as replies not
 *  yet finished, together (an empty inbox always takes one message of any
 *  size within the frame limit): 16 MiB. */
#define PBP_INBOX_MAX_BYTES (16u * 1024u * 1024u)

/** Error codes pbp_channel_serve() answers with on its own (the range from
 *  0xffff0000 is reserved for pbpipe; applications use smaller codes). */
#define PBP_REMOTE_NO_HANDLER 0xffff0001u   /**< no handler for the type */
#define PBP_REMOTE_BAD_REQUEST 0xffff0002u  /**< the request did not decode */
#define PBP_REMOTE_FAILED 0xffff0003u       /**< a handler returned < 0 */
#define PBP_REMOTE_TOO_MANY_STREAMS 0xffff0004u /**< StreamCancel: the reader
                                                     had PBP_MAX_STREAMS
                                                     incoming streams open */
#define PBP_REMOTE_STREAM_NOT_ACCEPTED 0xffff0005u /**< StreamCancel from
                                                        pbp_channel_serve(),
                                                        which reads no
                                                        streams */
#define PBP_REMOTE_TOO_DEEP 0xffff0006u /**< PBP_MAX_NESTING handlers were
                                             running already */

/**
 * Sends a request of a registered type with a new correlation id.
 * @param[out] id  the call's id, for pbp_channel_call_finish()
 * @return as pbp_channel_send(); PBP_ELIMIT when PBP_MAX_CALLS calls are
 *         outstanding.  Nothing is outstanding on failure.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_call_start(pbp_channel *ch, uint32_t req_type,
                                                   const void *req, uint64_t *id);

/**
 * pbp_channel_call_start() for a call with a deadline of its own, kept by
 * the library: from timeout_ms after this call (< 0: none; 0 is refused,
 * PBP_EINVAL), every pbp_channel_call_finish() of it that finds no reply
 * ends it with PBP_ETIMEDOUT (the call is over; a late reply is dropped),
 * and no finish waits past it.  pbp_channel_next_timeout() says when the
 * earliest such deadline is due.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_call_start_ex(pbp_channel *ch, uint32_t req_type,
                                                      const void *req, int timeout_ms,
                                                      uint64_t *id);

/**
 * Milliseconds until the earliest deadline of an outstanding call started
 * with pbp_channel_call_start_ex(): the timeout for an event loop's
 * poll(), after which it finishes its calls (those past their deadline
 * end with PBP_ETIMEDOUT).  0: one is due now; -1: none (or NULL).
 * The deadline of a handshake under way (pbp_channel_handshake_start()) counts too.
 */
PBP_API int pbp_channel_next_timeout(const pbp_channel *ch);

/**
 * Waits for the reply to call `id` and decodes it into resp, which must
 * have room for the registered struct of resp_type.  Replies to other
 * calls and other messages that arrive meanwhile are kept for later.
 *
 * @param timeout_ms  deadline for this wait (< 0: none, 0: do not wait)
 * @return 0 (the call is over); PBP_EREMOTE (the peer answered with an
 *         error: remote_code and msg in pbp_channel_error(); the call is
 *         over); PBP_ETYPE (the reply is not of resp_type; over);
 *         PBP_EDECODE (over); PBP_ETIMEDOUT or PBP_EAGAIN (no reply yet:
 *         the call stays outstanding; finish or cancel it later), but
 *         PBP_ETIMEDOUT with the call over once its own deadline
 *         (pbp_channel_call_start_ex()) has passed;
 *         PBP_ELIMIT (the inbox is full: the next message was left unread;
 *         receive held messages or finish other calls, then finish this one
 *         again); PBP_EINVAL (no such outstanding call); PBP_EPROTO (a reply
 *         to an id this side never used arrived: not sticky);
 *         PBP_EUNANSWERED (the stream ended first; sticky); stream errors.
 *
 * Frames that arrive meanwhile count against timeout_ms.  A late reply to
 * a call that was cancelled or timed out, or a second reply to the same
 * call, is dropped (the first one stands).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_call_finish(pbp_channel *ch, uint64_t id,
                                                    uint32_t resp_type, void *resp,
                                                    int timeout_ms);

/** pbp_channel_call_start() then pbp_channel_call_finish(); a call that
 *  fails in any way (a deadline included) is cancelled. */
PBP_API PBP_WARN_UNUSED int pbp_channel_call(pbp_channel *ch, uint32_t req_type,
                                             const void *req, uint32_t resp_type,
                                             void *resp, int timeout_ms);

/** Gives up on an outstanding call: its slot is free at once, and its
 *  reply, if it still comes, is dropped (recognised by its id: ids only
 *  grow).  PBP_EINVAL if no such call is outstanding. */
PBP_API int pbp_channel_call_cancel(pbp_channel *ch, uint64_t id);

/**
 * Answers the request with correlation id request_id (pbp_msginfo.id of a
 * received message) with a message of a registered type.
 * @return as pbp_channel_send(); PBP_EINVAL if request_id is 0.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_reply(pbp_channel *ch, uint64_t request_id,
                                              uint32_t type, const void *msg);

/**
 * Answers a request with an application error: a nonzero code and a
 * message (cut to 127 bytes).  request_type is the request's type number.
 * @return as pbp_channel_send(); PBP_EINVAL if request_id or code is 0,
 *         or if the peer speaks protocol 1.0 (it would take the error reply
 *         for an empty result; pbp_channel_serve() then sends nothing).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_reply_error(pbp_channel *ch, uint64_t request_id,
                                                    uint32_t request_type, uint32_t code,
                                                    const char *message);

/**
 * The barrier (replaces SYNC + WaitForPipeDrain): returns once the peer
 * has received and processed every frame sent before it, that is, once
 * the peer's application has been handed every message sent before it
 * and asks for more: the peer answers at once if it holds none of them,
 * and otherwise when its pbp_channel_recv() has returned the last of them
 * and is called again (a peer waiting inside a call holds what arrives).
 * Messages that arrive meanwhile are held for pbp_channel_recv().
 *
 * @return 0; PBP_ETIMEDOUT (the peer did not get there in time; a later
 *         answer is ignored); PBP_EAGAIN (timeout_ms 0 and no answer yet);
 *         PBP_EINVAL (the peer speaks protocol 1.0, which has no barrier);
 *         PBP_ELIMIT (as for pbp_channel_call_finish()); PBP_EUNANSWERED;
 *         send and stream errors.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_sync(pbp_channel *ch, int timeout_ms);

/**
 * The barrier in two steps, for event loops and health pings: sends the
 * barrier and returns without waiting for its answer.  A barrier started
 * earlier and not yet answered is given up (its answer, if it comes, is
 * ignored).
 * @return 0 (the barrier is sent or queued); PBP_EINVAL (duplex, or the
 *         peer speaks protocol 1.0); send and stream errors.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_sync_start(pbp_channel *ch);

/**
 * Waits up to timeout_ms (0: only reads what is there) for the answer to
 * the barrier pbp_channel_sync_start() sent.  Messages that arrive
 * meanwhile are held for pbp_channel_recv(), replies filed with their
 * calls.
 * @return 0 (answered: the barrier is over); PBP_EAGAIN (timeout_ms 0 and
 *         no answer yet) or PBP_ETIMEDOUT (it stays pending: call again
 *         or start another); PBP_EINVAL (no barrier pending); PBP_ELIMIT;
 *         PBP_EUNANSWERED; stream errors.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_sync_finish(pbp_channel *ch, int timeout_ms);

/** What a handler fills to answer with an error instead of a result. */
typedef struct pbp_reply_error {
	uint32_t code;      /**< nonzero; defaults to the handler's return value */
	char message[128];  /**< NUL-terminated, at most 127 bytes are sent */
} pbp_reply_error;

/**
 * One request type a serving loop answers.  fn gets the decoded request
 * and a zeroed response struct; it returns 0 to send the response, or a
 * positive application error code (with err->message) to send an error
 * reply instead.  Requests without a correlation id (one-way messages) get
 * no reply.
 */
typedef struct pbp_handler {
	uint32_t request_type;   /**< registered request type */
	uint32_t response_type;  /**< registered response type */
	int (*fn)(const void *request, void *response, pbp_reply_error *err, void *payload);
	void *payload;           /**< passed to fn */
} pbp_handler;

/** Most handlers (pbp_channel_set_handlers(), pbp_channel_serve()) running
 *  inside one another on one channel: a request that arrives while this
 *  many run is answered with PBP_REMOTE_TOO_DEEP. */
#define PBP_MAX_NESTING 16

/**
 * Registers handlers that answer the peer's requests while this side
 * waits on the channel, so that either side may call the other while it
 * answers a call (nested calls, callbacks), without deadlock.
 *
 * A message of a type in the table that arrives while a call or a barrier
 * of this side waits (pbp_channel_call(), pbp_channel_call_finish(),
 * pbp_channel_sync(), pbp_channel_sync_finish()), or that
 * pbp_channel_process() reads, is decoded and handed to its handler at
 * once, as pbp_channel_serve() does (request views, error replies and
 * PBP_REMOTE_BAD_REQUEST alike), and a request (nonzero correlation id)
 * is answered with what the handler returns.  It is not held for
 * pbp_channel_recv(), so it may be handled before messages held earlier.
 * pbp_channel_recv() itself runs no handler: a message it returns is the
 * application's, whatever its type.  Messages of other types are held as
 * before, and headers of streams are never handed to a handler.
 *
 * A request answered while a call or the barrier waits counts against
 * that wait's deadline, and its reply is sent within it (whatever the
 * send deadline), so a peer that sends requests and reads nothing cannot
 * hold the wait past it.
 *
 * Re-entrancy: a handler runs in the thread that waits, inside the
 * pbpipe call that read the request.  It may use the channel like any
 * code (send, call the peer, finish or start other calls, receive), and a
 * request that arrives while it waits in a call of its own is handled in
 * turn, up to PBP_MAX_NESTING handlers deep (deeper requests get the
 * error reply PBP_REMOTE_TOO_DEEP; one-way messages are held).  Views of
 * the request (pbp_bytes_of()) stay valid until the handler returns, even
 * across its own calls on the channel.  A handler must not free or close
 * the channel, start a barrier while one waits, or change the handler
 * table (PBP_EINVAL for the last two); a call it ends (finish, cancel)
 * is over for the code that waited on it, whose finish then returns
 * PBP_EINVAL.
 *
 * @param handlers  the table (must stay valid until replaced or the
 *                  channel is freed); NULL with n 0 removes it
 * @return 0; PBP_EINVAL (a handler's types are not registered, or it has
 *         no fn; a duplex channel; called from a handler); PBP_ENOMEM.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_set_handlers(pbp_channel *ch,
                                                     const pbp_handler *handlers,
                                                     size_t n);

/**
 * How an asynchronous call ended (pbp_channel_call_async()).  rc is 0
 * with resp the decoded reply (a struct of the call's resp_type, valid
 * until done returns), or an error with resp NULL and the reason in
 * pbp_channel_error(ch): PBP_EREMOTE (the peer answered with an error:
 * remote_code), PBP_ETYPE, PBP_EDECODE, PBP_ETIMEDOUT (its deadline
 * passed), PBP_ECANCELED (the channel is being freed: only
 * pbp_channel_error() may be used then), or the error that ended the
 * stream (PBP_EUNANSWERED, ...).  done may use the channel as a handler
 * may (pbp_channel_set_handlers()), start calls included, but not free it.
 */
typedef void (*pbp_call_done)(pbp_channel *ch, uint64_t id, int rc, void *resp,
                              void *user);

/**
 * Starts a call whose outcome goes to a callback, for event loops: the
 * request is sent as pbp_channel_call_start() sends it (queued if the
 * pipe is full and the send deadline is 0), and done runs exactly once,
 * from pbp_channel_process() (or pbp_channel_free()), never from this
 * function: when its reply has come, when its deadline has passed
 * (timeout_ms from now: the library keeps it, pbp_channel_next_timeout()
 * counts it; < 0: none; 0 is refused), or when the stream has ended.
 * pbp_channel_call_finish() refuses such a call (PBP_EINVAL);
 * pbp_channel_call_cancel() ends it without running done.
 *
 * @param[out] id  the call's id (may be NULL)
 * @return as pbp_channel_call_start(); PBP_EINVAL (NULL done, timeout_ms
 *         0, resp_type not registered).  On failure done never runs.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_call_async(pbp_channel *ch, uint32_t req_type,
                                                   const void *req, uint32_t resp_type,
                                                   int timeout_ms, pbp_call_done done,
                                                   void *user, uint64_t *id);

/**
 * Does what is due on the channel without waiting, for an event loop to
 * call when the read fd is readable, the write fd writable (while
 * pbp_channel_pending()), or pbp_channel_next_timeout() has passed: writes
 * queued output as far as the pipe takes it, reads the frames there are
 * (up to 1024 per call, so that a peer that floods frames cannot keep the
 * loop here), answers requests with the registered handlers
 * (pbp_channel_set_handlers()), whose replies never wait (as with a send
 * deadline of 0), and barriers, and ends asynchronous calls whose reply
 * has come, whose deadline has passed or whose stream has ended, running
 * their done.  Messages for no handler are held for pbp_channel_recv()
 * (with a receive deadline of 0, it hands them out without waiting).
 * After it returns, pbp_channel_buffered() is 0 unless such messages are
 * held or the 1024 frames were reached: then call it again.
 *
 * @return the number of messages held for pbp_channel_recv() (>= 0); once
 *         none is held, the sticky receive error that ended the stream
 *         (PBP_EOF: a clean end; every asynchronous call has ended then);
 *         PBP_ELIMIT (the inbox is full: receive held messages);
 *         PBP_EINVAL (no handshake yet, duplex, or called from a handler
 *         or done).  A send error while answering ends nothing here: the
 *         next send reports it.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_process(pbp_channel *ch);

/**
 * Child side: receives requests and answers them with the handler for
 * their type, until the peer ends the stream.  A type without a handler or
 * a request that does not decode gets an error reply
 * (PBP_REMOTE_NO_HANDLER, PBP_REMOTE_BAD_REQUEST), and serving goes on.
 * Bytes and string fields that nanopb leaves to callbacks (no max_size)
 * are received as views (pbp_bytes.h): the handler reads one with
 * pbp_bytes_of(&request->field), valid until the handler returns (up to
 * 32 such fields per request, in submessages too).  A response field may
 * be sent with pbp_bytes_out() from memory that stays valid after the
 * handler returns (the reply is sent then); a view of the request is not
 * such memory: copy it.  Other callback fields (repeated, submessages,
 * beyond 32) cannot be received here: a request carrying one gets a
 * PBP_REMOTE_BAD_REQUEST reply whose message names the field number, and
 * the handler does not run.  A stray reply (to an id this side never
 * used) is skipped.  A stream opened to this side (pbp_stream.h) is not
 * read: its header message goes to no handler, and the stream is
 * cancelled at once with StreamCancel code PBP_REMOTE_STREAM_NOT_ACCEPTED
 * ("stream not accepted"); serving goes on.
 * While it serves, the table is the channel's handler table
 * (pbp_channel_set_handlers()), so a handler may call the peer and have
 * the peer's requests meanwhile answered from the same table, up to
 * PBP_MAX_NESTING deep; a request of a type without a handler is then
 * answered PBP_REMOTE_NO_HANDLER at once, and the earlier table comes
 * back when serving ends.
 * @return 0 at a clean end of stream (or Goodbye); a stream or send error
 *         otherwise; PBP_EINVAL for a handler whose types are not
 *         registered, or when called from a handler; PBP_ENOMEM.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_serve(pbp_channel *ch, const pbp_handler *handlers,
                                              size_t nhandlers);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_CALL_H */
