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
 * @return 0 at a clean end of stream (or Goodbye); a stream or send error
 *         otherwise; PBP_EINVAL for a handler whose types are not
 *         registered; PBP_ENOMEM.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_serve(pbp_channel *ch, const pbp_handler *handlers,
                                              size_t nhandlers);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_CALL_H */
