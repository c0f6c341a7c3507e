/*
 * pbp_errors.h: error codes and error records.
 *
 * Every int-returning pbpipe function returns 0 on success or one of the
 * negative PBP_E* codes below.  The code says what kind of thing went
 * wrong; the object involved keeps a pbp_error record with a one-line
 * message that says exactly what (for example both fingerprints of a
 * schema mismatch) and, for PBP_ESYS/PBP_EPIPE/PBP_EEXEC, the errno.
 */
#ifndef PBPIPE_PBP_ERRORS_H
#define PBPIPE_PBP_ERRORS_H

#include <pbpipe/pbp_common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Error codes.  All are negative; 0 means success. */
enum pbp_errcode {
	PBP_OK = 0,
	/** The peer closed its write side between frames, or sent Goodbye:
	 *  a normal end of stream, not a fault. */
	PBP_EOF = -1,
	/** End of stream inside a frame header, a frame body or before the
	 *  handshake completed. */
	PBP_ETRUNC = -2,
	/** The peer broke the protocol with valid protobuf: bad magic, an
	 *  incompatible version, a different schema fingerprint, an envelope
	 *  with no body or two, message type 0, or an unexpected control
	 *  message. */
	PBP_EPROTO = -3,
	/** A frame is larger than the negotiated limit.  (A full queue of
	 *  this side is PBP_ELIMIT.) */
	PBP_EMSGSIZE = -4,
	/** Bytes that are not valid protobuf: a frame from the peer that is
	 *  not a valid envelope (sticky: the peer is broken), or an
	 *  application payload that does not decode as the given message type
	 *  (that call only).  nanopb's message is kept in the error record. */
	PBP_EDECODE = -5,
	/** nanopb could not encode a message; its message is kept. */
	PBP_EENCODE = -6,
	/** A deadline passed. */
	PBP_ETIMEDOUT = -7,
	/** An OS call failed; errno is kept in the error record. */
	PBP_ESYS = -8,
	/** Out of memory. */
	PBP_ENOMEM = -9,
	/** Bad argument, or a call that is not valid in the current state. */
	PBP_EINVAL = -10,
	/** The peer is gone: a write found no reader (EPIPE). */
	PBP_EPIPE = -11,
	/** An application message of a type the channel has no descriptor
	 *  for.  The frame has been consumed; the channel stays usable. */
	PBP_ETYPE = -12,
	/** The child program could not be executed; errno is kept. */
	PBP_EEXEC = -13,
	/** Would block: a non-blocking call (deadline 0) could do nothing now.
	 *  Poll the channel's fd and call again. */
	PBP_EAGAIN = -14,
	/** The peer answered a call with an application error: its code is in
	 *  pbp_error.remote_code and its message in pbp_error.msg. */
	PBP_EREMOTE = -15,
	/** The stream ended (end of stream, Goodbye, or the peer died) while
	 *  calls or a barrier were still waiting for their answers: they will
	 *  never come.  The message says how many went unanswered.  Sticky for
	 *  receiving, like PBP_EOF. */
	PBP_EUNANSWERED = -16,
	/** A bound of this side was reached: PBP_MAX_CALLS calls outstanding,
	 *  or the inbox (messages held and replies kept while a call or a
	 *  barrier waits) is full.  Nothing was lost or consumed; not sticky:
	 *  receive held messages or finish calls, then try again. */
	PBP_ELIMIT = -17,
	/** Streams (pbp_stream.h): the reader cancelled the stream.  Its code
	 *  is in pbp_error.remote_code and its message in pbp_error.msg.
	 *  Sticky for that stream only. */
	PBP_ECANCELED = -18,
	/** Streams (pbp_stream.h): the peer does not accept streams (it speaks
	 *  protocol 1.0 or 1.1, or its Hello.stream_window is 0). */
	PBP_ENOTSUP = -19,
	/** Pools (pbp_pool.h): the helper died while the call was in flight
	 *  and the call was not retried; it may or may not have run. */
	PBP_ELOST = -20,
	/** Pools (pbp_pool.h): every helper of the pool is down for good (the
	 *  crash-loop cap was reached), so no helper will take the call. */
	PBP_EDOWN = -21,
};

/** Size of the message buffer in a pbp_error record. */
#define PBP_ERRMSG_SIZE 256

/**
 * An error record: the code, the errno where one applies, and a message.
 *
 * Objects keep one internally (see pbp_channel_error()); constructors that
 * can fail before an object exists take an optional `pbp_error *` to fill.
 * The message is written without allocating, so even PBP_ENOMEM is
 * described.
 */
typedef struct pbp_error {
	int code;                   /**< a PBP_E* code, or 0 */
	int sys_errno;              /**< errno for PBP_ESYS, PBP_EPIPE, PBP_EEXEC; else 0 */
	unsigned int remote_code;   /**< the peer's error code for PBP_EREMOTE; else 0 */
	char msg[PBP_ERRMSG_SIZE];  /**< NUL-terminated one-line message */
} pbp_error;

/**
 * Returns a fixed, static description of an error code, such as
 * "truncated frame" for PBP_ETRUNC.  Unknown codes give "unknown error".
 * Never returns NULL.  Thread-safe.
 */
PBP_API const char *pbp_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_ERRORS_H */
