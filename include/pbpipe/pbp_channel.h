/*
 * pbp_channel.h: a typed, framed, bidirectional channel over two fds.
 *
 * A channel reads frames from one fd and writes frames to another: two
 * pipes, the two directions of one socketpair, or anything else that moves
 * bytes in order.  Each frame is a protobuf varint length followed by one
 * pbpipe.Envelope (see docs/PROTOCOL.md).  Application messages are the
 * caller's own nanopb messages, identified on the wire by a type number that
 * the caller assigns.
 *
 * Typical use, on both sides:
 *
 *     static const pbp_msgtype types[] = {
 *         PBP_MSGTYPE(DEMO_GREETING, demo_Greeting),
 *     };
 *     pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
 *     o.types = types;
 *     o.ntypes = 1;
 *     o.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
 *     pbp_channel *ch;
 *     pbp_error err;
 *     if (pbp_channel_from_fds(&ch, rfd, wfd, &o, &err) != 0)
 *         die(err.msg);
 *     if (pbp_channel_handshake(ch) != 0)
 *         die(pbp_channel_errmsg(ch));
 *     demo_Greeting g = {"Hello"};
 *     rc = pbp_channel_send(ch, DEMO_GREETING, &g);
 *     ...
 *     union { demo_Greeting g; } in;
 *     uint32_t type;
 *     while ((rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in)) == 0)
 *         handle(type, &in);
 *     if (rc != PBP_EOF)
 *         die(pbp_channel_errmsg(ch));
 *     pbp_channel_free(ch);
 *
 * Threads: a channel is not thread-safe; use it from one thread at a time,
 * or, with PBP_CHANNEL_DUPLEX, from exactly one sending thread and one
 * receiving thread at once.  Distinct channels are independent.  A call
 * made while another thread is inside a call on the same channel (the same
 * side of it, in duplex mode) fails with PBP_EINVAL and does nothing, so
 * misuse cannot tear the stream; it does not touch the error record, which
 * the other thread owns.
 *
 * fork(): a forked process inherits copies of a channel and its fds, but
 * the conversation stays with the process that created the channel.  In
 * the forked process, call only pbp_channel_free(), pbp_channel_close() or
 * pbp_channel_free_keep_fds(): they write nothing there (checked with
 * getpid()), close the inherited fds and release the memory.  Any other
 * call would interleave bytes with the creator's stream; it is not
 * detected (a getpid() per call would cost a system call).  exec() closes
 * every fd pbpipe made, all being close-on-exec.
 *
 * Event loops: with deadlines of 0 (pbp_channel_set_timeout()), receives
 * and sends never wait: a receive returns PBP_EAGAIN until a whole message
 * is buffered (partial frames stay buffered), and a send queues its frame
 * (up to 1 MiB of queued output, then PBP_EAGAIN) and writes what the pipe
 * takes.  Poll pbp_channel_read_fd() for POLLIN, and pbp_channel_write_fd()
 * for POLLOUT while pbp_channel_pending() is not 0, then call
 * pbp_channel_flush().  One read brings in every frame the pipe holds, and
 * frames already in the channel's buffer do not make the fd readable: after
 * POLLIN, receive (or finish calls) until PBP_EAGAIN, and retry finishing
 * calls whose replies may have come in meanwhile; before sleeping, ask
 * pbp_channel_buffered().  Or let pbp_channel_process() (pbp_call.h) do
 * it: it reads the frames there are, answers the peer's requests with
 * registered handlers and ends asynchronous calls (replies, deadlines)
 * through their callbacks.  The handshake too has a form that never
 * waits: pbp_channel_handshake_start() and pbp_channel_handshake_finish().
 * pbpipe changes no process-wide state:
 * no signal handlers, no signal dispositions.  Writes block SIGPIPE in the
 * calling thread only for the duration of the write, so a departed peer
 * gives PBP_EPIPE instead of killing the process.
 *
 * Errors: a stream error is sticky: the stream is out of sync, and every
 * later call in that direction returns the same code.  Receiving: PBP_EOF,
 * PBP_ETRUNC, PBP_EPROTO, PBP_EMSGSIZE, PBP_EDECODE of an envelope, PBP_ESYS.
 * Sending: PBP_EPIPE, PBP_ESYS.  A failed handshake fails both directions.
 * Other errors fail only the call: PBP_EINVAL, PBP_ETYPE, PBP_ETIMEDOUT
 * (nothing is lost: see pbp_channel_send() and pbp_channel_recv()),
 * PBP_EDECODE of an application payload, and PBP_EMSGSIZE or PBP_EENCODE
 * of a frame we were about to send.  pbp_channel_error() always describes
 * the most recent failure; pbp_channel_report() (pbp_child.h) says how the
 * channel ended.
 */
#ifndef PBPIPE_PBP_CHANNEL_H
#define PBPIPE_PBP_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include <pb.h>

#include <pbpipe/pbp_common.h>
#include <pbpipe/pbp_errors.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An open channel.  Opaque; create with pbp_channel_from_fds(). */
typedef struct pbp_channel pbp_channel;

/** Default largest frame body a channel accepts: 4 MiB. */
#define PBP_DEFAULT_MAX_FRAME (4u * 1024u * 1024u)
/** Smallest max_frame an option may set. */
#define PBP_MIN_MAX_FRAME 256u
/** Largest max_frame an option may set: 1 GiB. */
#define PBP_MAX_MAX_FRAME (1024u * 1024u * 1024u)
/** Default handshake deadline in milliseconds. */
#define PBP_DEFAULT_HANDSHAKE_TIMEOUT_MS 5000
/**
 * A timeout of "no deadline".  Every timeout in pbpipe, in options and in
 * calls alike, means the same: < 0 (PBP_NO_DEADLINE) waits as long as it
 * takes, 0 does not wait at all (only what can be done now), and > 0 is a
 * deadline in milliseconds from the start of the call.
 */
#define PBP_NO_DEADLINE (-1)

/**
 * One application message type: the wire type number, the nanopb
 * descriptor, and the size of the generated struct.  Build entries with
 * PBP_MSGTYPE().  Type numbers must be nonzero and distinct.
 */
typedef struct pbp_msgtype {
	uint32_t id;                /**< wire type number, nonzero */
	const pb_msgdesc_t *fields; /**< nanopb descriptor, e.g. demo_Greeting_fields */
	size_t size;                /**< sizeof the generated struct */
	const char *name;           /**< name used in error messages */
} pbp_msgtype;

/** A pbp_msgtype for the nanopb message struct `msg` with wire number `id`. */
#define PBP_MSGTYPE(id, msg) { (id), msg##_fields, sizeof(msg), #msg }

/** Current version of pbp_channel_options. */
#define PBP_CHANNEL_OPTIONS_VERSION 2

/**
 * Channel options.  Always start from PBP_CHANNEL_OPTIONS_INIT so that
 * fields added in later versions get their defaults.
 */
typedef struct pbp_channel_options {
	unsigned int version;        /**< PBP_CHANNEL_OPTIONS_VERSION */
	const pbp_msgtype *types;    /**< application types; may be NULL.  The
	                                  array must outlive the channel. */
	size_t ntypes;               /**< number of entries in types */
	uint64_t schema_fingerprint; /**< must equal the peer's; see
	                                  pbpipe_add_proto_library(FINGERPRINT) */
	uint32_t max_frame;          /**< largest frame body accepted; 0 means
	                                  PBP_DEFAULT_MAX_FRAME */
	int handshake_timeout_ms;    /**< deadline of the handshake; default
	                                  PBP_DEFAULT_HANDSHAKE_TIMEOUT_MS */
	int send_timeout_ms;         /**< deadline of each send; default
	                                  PBP_NO_DEADLINE; 0: never wait (queue) */
	int recv_timeout_ms;         /**< deadline of each receive; default
	                                  PBP_NO_DEADLINE; 0: never wait */
	unsigned int flags;          /**< PBP_CHANNEL_* flags */
	int spin_us;                 /**< low-latency receive: before sleeping,
	                                  poll for up to this many microseconds
	                                  (burns CPU; see docs/performance.md);
	                                  0: off.  Tuned and measured on Linux
	                                  only; elsewhere it works the same way
	                                  but is untested for speed */
	int pipe_size;               /**< Linux only (F_SETPIPE_SZ on pipe fds;
	                                  ignored elsewhere): 0 means
	                                  PBP_DEFAULT_PIPE_SIZE, < 0 leaves the
	                                  kernel's size; failure is not an error */
	/* Since version 2 (a version 1 struct ends above, and gets the
	 * default): */
	uint32_t stream_window;      /**< streams (pbp_stream.h): the bytes of
	                                  each incoming stream buffered before
	                                  more are granted, sent as
	                                  Hello.stream_window; 0 means
	                                  PBP_DEFAULT_STREAM_WINDOW; otherwise
	                                  within [256, 1 GiB], else
	                                  PBP_EINVAL.  A PBP_CHANNEL_DUPLEX
	                                  channel sends 0 (accepts no
	                                  streams) whatever this says */
} pbp_channel_options;

/** Initializer for pbp_channel_options: every field at its default. */
#define PBP_CHANNEL_OPTIONS_INIT                                              \
	{ PBP_CHANNEL_OPTIONS_VERSION, NULL, 0, 0, 0,                         \
	  PBP_DEFAULT_HANDSHAKE_TIMEOUT_MS, PBP_NO_DEADLINE, PBP_NO_DEADLINE, \
	  0, 0, 0, 0 }

/**
 * Write coalescing: a send queues its frame and returns; queued frames go
 * out in one write() when 64 KiB are queued, on pbp_channel_flush(), before
 * a receive waits for data, and on Goodbye or close_write.  For streams of
 * small messages; request/response never stalls, because receiving
 * flushes first.
 */
#define PBP_CHANNEL_COALESCE 0x1u

/**
 * Duplex: one thread may send while another receives on the same channel.
 * Sends then never read (the receiving thread does), receives never write
 * queued output (except answering a barrier, under a lock), and the send
 * side keeps its own error record: read it with pbp_channel_send_error()
 * in the sending thread, and pbp_channel_error() in the receiving thread.
 * Calls and the barrier (pbp_call.h) must not be used on a duplex channel.
 */
#define PBP_CHANNEL_DUPLEX 0x2u

/**
 * The application ignores SIGPIPE (SIG_IGN) or blocks it in every thread
 * that sends on this channel, so pbpipe need not block it around each
 * write: two system calls fewer per write.  Without this flag pbpipe
 * blocks SIGPIPE in the calling thread for the duration of each write and
 * restores the mask, so a departed peer gives PBP_EPIPE, never a signal.
 */
#define PBP_CHANNEL_SIGPIPE_HANDLED 0x4u

/**
 * Helper side: let this helper outlive its parent.  Without this flag,
 * pbp_channel_from_handles() and pbp_channel_from_argv() (pbp_child.h)
 * start a thread that watches the process that started the helper and
 * ends the helper with SIGKILL once that parent is gone, however it died
 * (SIGKILL included), within about 100 ms (at once on Linux >= 5.3,
 * through a pidfd of the parent; elsewhere getppid() is looked at every
 * 100 ms).  So a helper busy inside a long call, reading nothing, is no
 * orphan.  The thread blocks every signal and is stopped and joined by
 * pbp_channel_free() and pbp_channel_close(); it changes nothing
 * process-wide.  It watches the helper's direct parent: a wrapper started
 * in between (sh -c, ssh, env) is watched in the spawner's place.
 * With this flag there is no thread and no start-of-life check (see
 * pbp_channel_handshake()).  pbp_channel_from_fds() and
 * pbp_channel_from_os_handles() never watch, with or without it.
 * Windows: no thread either way: the Job object pbp_child_spawn() puts
 * the helper in kills it with its parent, flag or not (docs/windows.md).
 */
#define PBP_CHANNEL_OUTLIVE_PARENT 0x8u

/** Pipe capacity pbpipe asks for by default (F_SETPIPE_SZ): 1 MiB.
 *  Measured (docs/performance.md): 64 KiB frames stream 4x faster across
 *  CPUs through 256 KiB or 1 MiB pipes than through the kernel's 64 KiB,
 *  and on one CPU 1 MiB reaches 0.94-0.95x raw where 256 KiB gives
 *  0.83-0.91x.  Unprivileged processes share fs.pipe-user-pages-soft
 *  (64 MiB): with many channels, ask for less (pbpipe-fanout uses 64 KiB). */
#define PBP_DEFAULT_PIPE_SIZE (1024 * 1024)

/** Which deadline pbp_channel_set_timeout() changes. */
enum pbp_timeout_kind {
	PBP_TIMEOUT_SEND = 0,      /**< each send, flush, Goodbye, close_write */
	PBP_TIMEOUT_RECV = 1,      /**< each receive */
	PBP_TIMEOUT_HANDSHAKE = 2, /**< the handshake as a whole */
};

/** Reasons carried by a Goodbye frame (pbpipe.Goodbye.Reason). */
enum pbp_goodbye_reason {
	PBP_GOODBYE_UNSPECIFIED = 0,
	PBP_GOODBYE_DONE = 1,
	PBP_GOODBYE_ERROR = 2,
	PBP_GOODBYE_SHUTDOWN = 3,
};

/** What the peer said about itself in its Hello, and how it left. */
typedef struct pbp_peer_info {
	uint32_t major;              /**< peer's protocol major version */
	uint32_t minor;              /**< peer's protocol minor version */
	uint32_t pid;                /**< peer's process id, as it reported it */
	uint32_t pointer_bits;       /**< 32 or 64, as the peer reported it */
	uint32_t max_frame;          /**< the peer's own limit */
	uint32_t effective_max_frame;/**< the limit in force: min of both */
	uint64_t schema_fingerprint; /**< the peer's fingerprint */
	int goodbye_received;        /**< 1 once a Goodbye arrived */
	int goodbye_reason;          /**< its pbp_goodbye_reason */
	char goodbye_detail[128];    /**< its detail text, NUL-terminated */
	uint32_t stream_window;      /**< since protocol 1.2: the peer's
	                                  Hello.stream_window (0: it accepts no
	                                  streams; always 0 for a 1.0 or 1.1
	                                  peer) */
} pbp_peer_info;

/** An application message as received by pbp_channel_recv(). */
typedef struct pbp_msginfo {
	uint32_t type;         /**< the wire type number */
	uint64_t id;           /**< the correlation id, 0 when unused */
	const void *payload;   /**< the encoded message; valid until the next
	                            call on this channel (any pbp_channel_* or
	                            pbp_call.h call), or its free */
	size_t size;           /**< payload size in bytes */
	uint64_t stream;       /**< nonzero: this message is the header of an
	                            incoming stream with this id, to read with
	                            pbp_stream_read() (pbp_stream.h) */
} pbp_msginfo;

/**
 * Creates a channel that reads frames from read_handle and writes them to
 * write_handle, on any platform.  No I/O happens here; call
 * pbp_channel_handshake() next.
 *
 * POSIX: the handles are fds, and this is pbp_channel_from_fds().
 * Windows: they are pipe HANDLEs; the channel reads and writes them with
 * overlapped I/O when they were opened for it (as pbp_child_spawn() makes
 * them), which gives every call its deadline; a handle opened without
 * FILE_FLAG_OVERLAPPED (CreatePipe's) works too, but there a blocked
 * read or write waits past its deadline (see README, Platforms).
 *
 * @param[out] out     the new channel, set only on success
 * @param read_handle  handle to read from
 * @param write_handle handle to write to; may equal read_handle for a socket
 * @param opts         options, or NULL for all defaults
 * @param[out] err     filled on failure if not NULL
 * @return 0, PBP_EINVAL (PBP_OS_HANDLE_INVALID, bad option, duplicate or
 *         zero type number), PBP_ESYS, PBP_ENOMEM.
 *
 * Ownership: on success the channel owns both handles; pbp_channel_free()
 * closes them.  On failure the caller keeps them.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_from_os_handles(pbp_channel **out,
                                                        pbp_os_handle read_handle,
                                                        pbp_os_handle write_handle,
                                                        const pbp_channel_options *opts,
                                                        pbp_error *err);

#ifndef _WIN32
/**
 * POSIX: creates a channel that reads frames from read_fd and writes them
 * to write_fd.  No I/O happens here; call pbp_channel_handshake() next.
 *
 * @param[out] out  the new channel, set only on success
 * @param read_fd   fd to read from (a pipe read end, a socket, ...)
 * @param write_fd  fd to write to; may equal read_fd for a socket
 * @param opts      options, or NULL for all defaults
 * @param[out] err  filled on failure if not NULL
 * @return 0, PBP_EINVAL (negative fd, bad option, duplicate or zero type
 *         number), PBP_ESYS (fcntl failed), PBP_ENOMEM.
 *
 * Ownership: on success the channel owns both fds; pbp_channel_free()
 * closes them.  On failure the caller keeps them, unchanged.  The channel
 * sets FD_CLOEXEC on both fds and O_NONBLOCK on the write fd (or on the one
 * socket used for both directions), so share that open file description
 * with no one that relies on blocking mode.  The read fd keeps its mode.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_from_fds(pbp_channel **out, int read_fd,
                                                 int write_fd,
                                                 const pbp_channel_options *opts,
                                                 pbp_error *err);
#endif

/**
 * Exchanges Hello frames with the peer: sends ours, then reads and checks
 * the peer's, within the handshake deadline.  Must succeed before any
 * send or receive.
 *
 * @return 0; PBP_ETIMEDOUT (deadline passed); PBP_ETRUNC (the peer closed
 *         before its Hello was complete); PBP_EPROTO (not a Hello, bad
 *         magic, a different major version or schema fingerprint: the
 *         message names both values; a peer frame limit under 256);
 *         PBP_EDECODE (the first frame is not valid protobuf);
 *         PBP_EMSGSIZE (the first frame is larger than any Hello may be,
 *         1024 bytes); PBP_EPIPE, PBP_ESYS.  Every error is sticky.
 *
 * A helper whose parent died before it could watch it (a channel from
 * pbp_channel_from_handles() without PBP_CHANNEL_OUTLIVE_PARENT): when
 * the environment's PBPIPE_PARENT_PID, which pbp_child_spawn() sets,
 * names the peer's pid (the peer is the process that spawned us) but
 * that pid was not our parent when the watch was armed, the spawner was
 * already gone then, and the handshake fails with PBP_EPIPE ("the parent
 * process is gone: ...").  A stale variable, inherited by a process
 * started by other means, names someone else than its peer and changes
 * nothing.  POSIX only (Windows has no such window).
 *
 * Blocks for at most the handshake deadline.  It is
 * pbp_channel_handshake_start() (unless started already) then
 * pbp_channel_handshake_finish(ch, -1): with a handshake deadline of 0 it
 * never waits, and returns PBP_EAGAIN (not sticky) while the peer's Hello
 * is not complete; calling it again continues the same handshake.
 * Calling it after it succeeded is PBP_EINVAL.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_handshake(pbp_channel *ch);

/**
 * The handshake in two steps, for event loops: queues our Hello and
 * writes what the pipe takes now, without waiting.  Records the
 * handshake's deadline, kept by the library: the handshake timeout
 * (PBP_TIMEOUT_HANDSHAKE) from now; none for a timeout < 0, and none for
 * 0 either (the application keeps its own).  While the handshake is
 * under way, pbp_channel_next_timeout() (pbp_call.h) counts that
 * deadline, and pbp_channel_buffered() says 1 once the peer's whole
 * Hello is buffered.  Then poll pbp_channel_read_fd() for POLLIN (and
 * pbp_channel_write_fd() for POLLOUT while pbp_channel_pending() is not
 * 0) and call pbp_channel_handshake_finish(ch, 0) until it returns
 * something else than PBP_EAGAIN.
 *
 * @return 0 (started); PBP_EINVAL (started already, or done);
 *         PBP_ENOMEM, PBP_ESYS (sticky, as a failed handshake).  A peer
 *         that is gone (PBP_EPIPE on the write) is reported by
 *         pbp_channel_handshake_finish(), after what the peer may have
 *         written before it went.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_handshake_start(pbp_channel *ch);

/**
 * Finishes the handshake pbp_channel_handshake_start() began: writes the
 * rest of our Hello, reads the peer's and checks it, as
 * pbp_channel_handshake() does (the same checks and errors).
 *
 * @param timeout_ms  how long to wait (< 0: up to the handshake deadline,
 *                    and not at all with a handshake timeout of 0; 0: do
 *                    not wait); never past the handshake deadline
 * @return 0 (done: the channel is ready); PBP_EAGAIN (timeout_ms 0 and
 *         the peer's Hello is not complete yet, or ours not written: not
 *         sticky, a partial Hello stays buffered; call again when the
 *         read fd is readable); PBP_ETIMEDOUT, not sticky when only
 *         timeout_ms passed, and sticky (the handshake failed) once the
 *         handshake deadline has passed; PBP_EINVAL (not started, or done
 *         already); the errors of pbp_channel_handshake(), all sticky.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_handshake_finish(pbp_channel *ch, int timeout_ms);

/**
 * Encodes msg with the descriptor registered for `type` and sends it as one
 * frame with correlation id 0.
 *
 * @return 0; PBP_ETYPE (no such type in the options); PBP_EMSGSIZE (the
 *         frame would exceed the negotiated limit; nothing was sent);
 *         PBP_EENCODE (nanopb refused; nothing was sent); PBP_ETIMEDOUT
 *         (the send deadline passed: the frame, or the rest of it, stays
 *         queued and goes out first with the next send, flush, receive
 *         or close_write: do not send it again); PBP_EPIPE (the peer has
 *         gone; sticky for sending, receiving still works); PBP_ESYS;
 *         PBP_ENOMEM; PBP_EINVAL (no handshake yet, or the write side was
 *         closed).
 *
 * The frame is encoded whole into the channel's write buffer (which grows
 * to the largest frame sent and is kept, unless it grew more than 1 MiB
 * past its initial 64 KiB: then it goes back once written), then written,
 * usually with one write().  Blocks until it is written or the send deadline passes; while
 * the pipe is full it keeps reading incoming frames into the receive buffer
 * (bounded by the frame limit plus 64 KiB), so two peers sending large
 * frames to each other at once do not deadlock.  Releases the message of
 * the last pbp_channel_recv().  The library keeps no pointer into msg.
 *
 * Bytes fields set with pbp_bytes_out() (pbp_bytes.h) of 16 KiB or more
 * are not copied into the write buffer: they are written from the
 * caller's memory, between the pieces of the frame around them (up to 16
 * such fields per frame; 3 while a trace is on).  Such a send returns
 * only once those bytes are written, even with PBP_CHANNEL_COALESCE;
 * when the send deadline passes first (or at once, for a deadline of 0)
 * the part not yet written is copied into memory the channel owns, so the
 * caller may reuse its memory as soon as the send returns, whatever it
 * returned.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_send(pbp_channel *ch, uint32_t type,
                                             const void *msg);

/**
 * Like pbp_channel_send(), with an explicit correlation id and descriptor:
 * `type` need not be registered.  `fields` may describe messages with
 * callback fields for large data; nanopb calls their encode callbacks twice
 * (once to size the frame, once to write it), and both passes must produce
 * the same bytes, or the call fails with PBP_EENCODE and the channel is
 * failed (part of a frame may be on the wire).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_send_ex(pbp_channel *ch, uint32_t type,
                                                uint64_t id,
                                                const pb_msgdesc_t *fields,
                                                const void *msg);

/**
 * Sends an already encoded application payload of `size` bytes as one frame.
 * Errors as for pbp_channel_send_ex(), without PBP_EENCODE.  A payload of
 * 16 KiB or more is not copied into the write buffer: it is written from
 * the caller's memory, and the send returns as a send with pbp_bytes_out()
 * fields does (pbp_channel_send(): once it is written, or with what is
 * left of it copied).  With PBP_CHANNEL_COALESCE, a payload under 64 KiB
 * is copied, so that it may go out together with the next frames.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_send_raw(pbp_channel *ch, uint32_t type,
                                                 uint64_t id, const void *payload,
                                                 size_t size);

/**
 * Writes out output still queued by a send that timed out.  0 when nothing
 * is queued.  Errors as for pbp_channel_send_ex().  Blocks up to the send
 * deadline.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_flush(pbp_channel *ch);

/** Bytes of output queued and not yet written (after a send timed out). */
PBP_API size_t pbp_channel_pending(const pbp_channel *ch);

/**
 * Whether the channel holds input that a receive would act on without
 * reading its fd: a whole frame already read into its buffer, a message
 * held for pbp_channel_recv(), a call's reply kept for its finish, or an
 * end of stream or error already met.  Frames in the buffer do not make
 * the read fd readable: an event loop calls this before it sleeps, and
 * receives (or finishes its calls) first when it says 1.  No system call,
 * no side effect.  With PBP_CHANNEL_DUPLEX, call it from the receiving
 * thread.
 * @return 1 or 0; 0 for NULL.
 */
PBP_API int pbp_channel_buffered(const pbp_channel *ch);

/**
 * Sets a deadline for the following calls of one kind: timeout_ms from the
 * start of each call; 0 means do not wait at all; < 0 (PBP_NO_DEADLINE)
 * means no deadline: the same meaning as in pbp_channel_options.
 * @param which  PBP_TIMEOUT_SEND, PBP_TIMEOUT_RECV or PBP_TIMEOUT_HANDSHAKE
 * @return 0, or PBP_EINVAL for an unknown kind.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_set_timeout(pbp_channel *ch, int which,
                                                    int timeout_ms);

/**
 * Traces every frame this channel sends or receives into the file at
 * `path` (created if needed, appended to), one record per frame with its
 * direction, pid and timestamp; `pbpipe-dump FILE` prints it.  NULL stops
 * tracing.  Setting the environment variable PBPIPE_TRACE=FILE traces every
 * channel created afterwards, in this process and in children that inherit
 * the variable (a path that cannot be opened is reported on stderr and
 * ignored).  A failed trace write is ignored (it never fails a send or
 * receive).  Sent frames are recorded when queued, received ones when
 * complete, with a canonical length prefix.
 * @return 0; PBP_ESYS if the file cannot be opened (tracing unchanged).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_set_trace(pbp_channel *ch, const char *path);

/**
 * Receives the next application message without decoding it.
 * Goodbye frames are recorded (see pbp_channel_peer()) and end the stream.
 *
 * @param[out] out  its type, correlation id and encoded payload
 * @return 0; PBP_EOF (the peer closed between frames or said Goodbye: a
 *         normal end); PBP_ETRUNC (end of stream inside a frame);
 *         PBP_EMSGSIZE (a declared length over the limit, detected before
 *         the body is read or any memory is sized for it); PBP_EDECODE (a
 *         frame that is not valid protobuf); PBP_EPROTO (an envelope with
 *         no body or two, message type 0, a second Hello, a length prefix
 *         over 5 bytes);
 *         PBP_ETIMEDOUT (the receive deadline passed; not sticky: a
 *         partial frame stays buffered for the next call); PBP_ESYS;
 *         PBP_EINVAL (no handshake yet).  Others are sticky.
 *
 * Output still queued (coalesced, or by a send that timed out) is written
 * while it waits.  Blocks until a whole frame has arrived or the receive
 * deadline passes; frames the application does not see (a Sync, replies
 * to calls) count against that deadline.  Reads are buffered: one read()
 * usually brings in several small frames.  The payload stays valid until
 * the next call on the channel.
 *
 * PBP_EUNANSWERED instead of PBP_EOF: the stream ended while calls or a
 * barrier of this side were still waiting (sticky).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_recv(pbp_channel *ch, pbp_msginfo *out);

/**
 * Decodes the message last returned by pbp_channel_recv() into msg (which
 * nanopb initialises first; set callbacks in msg beforehand if `fields` has
 * callback fields).  May be called several times for the same message,
 * until any other call on the channel (which may move the buffer).
 *
 * @return 0; PBP_EDECODE (the payload does not decode as `fields`; the
 *         channel stays usable); PBP_EINVAL (no message received, or a
 *         send or receive since released it).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_decode(pbp_channel *ch,
                                               const pb_msgdesc_t *fields,
                                               void *msg);

/**
 * Receives the next application message and decodes it with the
 * descriptor registered for its type.  Pass a union of every registered
 * message struct as msg.
 *
 * @param[out] type  the type number received (also set on PBP_ETYPE)
 * @param[out] msg   the decoded message; needs msg_size bytes
 * @return as pbp_channel_recv(), plus PBP_ETYPE (no descriptor for the
 *         type: the message is skipped, the channel stays usable),
 *         PBP_EDECODE, and PBP_EINVAL (msg_size is smaller than the
 *         registered struct).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_recv_msg(pbp_channel *ch, uint32_t *type,
                                                 void *msg, size_t msg_size);

/**
 * Sends a Goodbye frame with a reason and an optional detail text
 * (truncated to 127 bytes) behind the output sends queued, then closes
 * the write side.  The peer's receive returns PBP_EOF and it can read the
 * reason with pbp_channel_peer().  This side can still receive.
 *
 * When the send deadline passes first (at once for a deadline of 0, with
 * the pipe full), nothing is lost: the Goodbye stays queued behind that
 * output and the write side is closing: later sends are PBP_EINVAL
 * ("after Goodbye"), pbp_channel_pending() counts what is left, and the
 * write side closes once the last byte is written, by pbp_channel_flush()
 * or any later call that writes queued output (a receive, a call's wait,
 * pbp_channel_close_write(), pbp_channel_close(), pbp_channel_free()).
 *
 * @return 0 (written, the write side closed); PBP_EAGAIN (send deadline
 *         0) or PBP_ETIMEDOUT (it passed): closing, as above; PBP_EPIPE,
 *         PBP_ESYS (the write side is closed at once: nothing more can be
 *         written); PBP_EINVAL (no handshake yet, the write side is
 *         already closed, or Goodbye was said already).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_goodbye(pbp_channel *ch, int reason,
                                                const char *detail);

/**
 * Closes the write side (half-close).  The peer sees PBP_EOF after the
 * frames already sent; this side can still receive.  Later sends return
 * PBP_EINVAL.  Closing twice is a no-op.  Output still queued is written
 * first, within the send deadline.
 *
 * @return 0; PBP_ETIMEDOUT (queued output could not be written in time,
 *         a deadline of 0 included; the write side stays open, and after
 *         pbp_channel_goodbye() still closing); PBP_ESYS if close()
 *         reported an error (the fd is closed anyway).
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_close_write(pbp_channel *ch);

/**
 * Fills out with what the peer announced in its Hello (zeros before the
 * handshake) and whether it said Goodbye.
 * @return 0, or PBP_EINVAL if an argument is NULL.
 */
PBP_API int pbp_channel_peer(const pbp_channel *ch, pbp_peer_info *out);

/** The error record of the most recent failure on this channel. */
PBP_API const pbp_error *pbp_channel_error(const pbp_channel *ch);

/** The error record of the most recent send-side failure: the same as
 *  pbp_channel_error() unless the channel is PBP_CHANNEL_DUPLEX. */
PBP_API const pbp_error *pbp_channel_send_error(const pbp_channel *ch);

/** Shorthand for pbp_channel_error(ch)->msg; "" if nothing failed yet. */
PBP_API const char *pbp_channel_errmsg(const pbp_channel *ch);

#ifndef _WIN32
/** POSIX: the read and write fds (-1 once closed, or for a channel not
 *  over fds).  For poll(); do not read or write them directly. */
PBP_API int pbp_channel_read_fd(const pbp_channel *ch);
PBP_API int pbp_channel_write_fd(const pbp_channel *ch);
#endif

/**
 * Writes output that sends left queued (PBP_CHANNEL_COALESCE, a send that
 * timed out, a non-blocking send) within timeout_ms, then closes both fds
 * and frees the channel, whatever happened.  Sends nothing else (no
 * Goodbye: call pbp_channel_goodbye() first for that).
 *
 * @param timeout_ms  how long to wait for the peer to take queued output
 *                    (< 0: as long as it takes, 0: only what the pipe
 *                    takes at once)
 * @param[out] err    filled when output was lost, if not NULL
 * @return 0 when every byte every successful send queued was written;
 *         PBP_ETIMEDOUT, PBP_EPIPE or PBP_ESYS when some could not be (the
 *         message says how many bytes), or the sticky send error that had
 *         already stopped sending.  NULL is a no-op that returns 0.
 *
 * In a process that did not create the channel (a fork() of it), writes
 * nothing: the bytes would be interleaved with the creator's.
 */
PBP_API PBP_WARN_UNUSED int pbp_channel_close(pbp_channel *ch, int timeout_ms,
                                              pbp_error *err);

/** The longest pbp_channel_free() waits for the peer to take queued
 *  output: 2000 ms. */
#define PBP_FREE_LINGER_MS 2000

/**
 * pbp_channel_close() for when the outcome does not matter: queued output
 * is written within the send deadline, or PBP_FREE_LINGER_MS if that is
 * longer or there is none (immediately with a send deadline of 0); what is
 * still queued then is discarded without a word.  Use pbp_channel_close()
 * to wait longer or to learn whether everything went out.  NULL is a
 * no-op.
 */
PBP_API void pbp_channel_free(pbp_channel *ch);

/** Frees the channel without closing its fds, which return to the caller
 *  (the write fd still O_NONBLOCK).  Queued output is discarded: check
 *  pbp_channel_pending() first.  NULL is a no-op. */
PBP_API void pbp_channel_free_keep_fds(pbp_channel *ch);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_CHANNEL_H */
