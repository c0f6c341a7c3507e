/*
 * handshake.c: building and checking Hello.  Pure; channel.c does the I/O.
 *
 * Both sides send a Hello first and then read the peer's (nng does the
 * same), so neither waits for the other to speak and the exchange takes
 * one round trip.  Each side checks the peer's Hello on its own, with the
 * same rules, so a mismatch fails on both sides.
 */
#include <inttypes.h>
#include <string.h>

#include "pbp_internal.h"
#include "os/os.h"

void
pbp__hello_make(pbpipe_Envelope *env, uint32_t max_frame, uint64_t fingerprint,
                uint32_t stream_window)
{
	memset(env, 0, sizeof *env);
	env->which_body = pbpipe_Envelope_hello_tag;
	env->body.hello.magic = PBP__MAGIC;
	env->body.hello.major = PBP_PROTOCOL_MAJOR;
	env->body.hello.minor = PBP_PROTOCOL_MINOR;
	env->body.hello.pid = pbp__os_getpid();
	env->body.hello.pointer_bits = (uint32_t)(sizeof(void *) * 8);
	env->body.hello.max_frame = max_frame;
	env->body.hello.schema_fingerprint = fingerprint;
	env->body.hello.stream_window = stream_window;
}

int
pbp__hello_check(const pbpipe_Hello *h, uint32_t our_max_frame,
                 uint64_t our_fingerprint, pbp_peer_info *peer, pbp_error *err)
{
	if (h->magic != PBP__MAGIC)
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "bad magic in peer's Hello: expected 0x%08" PRIx32
		                   ", got 0x%08" PRIx32,
		                   (uint32_t)PBP__MAGIC, h->magic);
	if (h->major != PBP_PROTOCOL_MAJOR)
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "incompatible protocol version: ours %u.%u, peer's %" PRIu32 ".%" PRIu32,
		                   PBP_PROTOCOL_MAJOR, PBP_PROTOCOL_MINOR, h->major, h->minor);
	if (h->schema_fingerprint != our_fingerprint)
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "schema fingerprint mismatch: ours 0x%016" PRIx64
		                   ", peer's 0x%016" PRIx64 " (built from different .proto files?)",
		                   our_fingerprint, h->schema_fingerprint);
	if (h->max_frame < PBP_MIN_MAX_FRAME)
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "peer's frame limit %" PRIu32 " is below the minimum %u",
		                   h->max_frame, PBP_MIN_MAX_FRAME);
	/* 1.0 and 1.1 peers know no streams: whatever field 8 holds there is
	 * not a window. */
	if (h->minor >= 2 && h->stream_window != 0 && h->stream_window < PBP_MIN_STREAM_WINDOW)
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "peer's stream window %" PRIu32 " is below the minimum %u",
		                   h->stream_window, PBP_MIN_STREAM_WINDOW);
	peer->stream_window = h->minor >= 2 ? h->stream_window : 0;
	peer->major = h->major;
	peer->minor = h->minor;
	peer->pid = h->pid;
	peer->pointer_bits = h->pointer_bits;
	peer->max_frame = h->max_frame;
	peer->schema_fingerprint = h->schema_fingerprint;
	peer->effective_max_frame = h->max_frame < our_max_frame ? h->max_frame : our_max_frame;
	return 0;
}

/*
 * The start-of-life race of the parent watch (issue 16): a parent that
 * died before the helper armed its watch leaves the helper with a reaper
 * for a parent, and the watch would watch the reaper.  pbp_child_spawn()
 * writes its pid into the child's environment; once the Hello names the
 * peer, the two tell what happened:
 *
 *   - the variable names the Hello's pid: the peer is the process that
 *     spawned us through pbpipe.  If that is not the parent recorded when
 *     the watch was armed, either the spawner was gone by then, or a
 *     wrapper that forks rather than execs stands between (sh -c
 *     'helper; more'): 1 here, and the session fails the handshake only
 *     when that pid is gone too (os.h, pbp__os_pid_gone).
 *   - the variable names someone else (a grandchild started by other
 *     means inherits a stale one), or is missing or not a plain decimal
 *     pid: no verdict, the watch watches our direct parent.
 *
 * No parent visible (recorded 0: another pid namespace, or Windows,
 * where the Job object leaves no such window) gives no verdict.  Behind a
 * forking wrapper the watch watches the wrapper, not the spawner (README,
 * "When the parent dies").  Returns 1 when the spawner is not our
 * parent.
 */
int
pbp__parent_gone_early(const char *env, uint32_t hello_pid, uint32_t recorded_ppid)
{
	uint64_t v = 0;
	size_t i;

	if (env == NULL || env[0] == '\0' || recorded_ppid == 0 || hello_pid == 0)
		return 0;
	for (i = 0; env[i] != '\0'; i++) {
		if (env[i] < '0' || env[i] > '9' || i >= 10)
			return 0;
		v = v * 10 + (uint64_t)(env[i] - '0');
	}
	return v == hello_pid && v != recorded_ppid;
}
