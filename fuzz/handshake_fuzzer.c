/*
 * handshake_fuzzer.c: the peer's first frame, as pbp_channel_handshake()
 * sees it: envelope decoding (pbp__frame_decode) and the Hello check
 * (pbp__hello_check).
 *
 * Input: one control byte, then one envelope body (a frame without its
 * length prefix).
 *   byte 0  bits 0-2  our max_frame: 256, 1024, 65536, the default
 *                     (4 MiB), the largest (1 GiB), or the peer's
 *                     max_frame minus one, itself, plus one (clamped to
 *                     the range an option may hold)
 *           bits 3-4  our fingerprint: the peer's, the peer's with one bit
 *                     flipped, the fuzz schema's, or 0
 * Each Hello is also checked against two fixed choices: (default, the
 * peer's fingerprint) and (256, the fuzz schema's fingerprint).
 *
 * Invariants:
 *   - decoding keeps pbp__frame_decode's contract (fuzz_checks.h);
 *   - framed with a length prefix and read by a reader at the handshake
 *     limit, the body comes out whole, or PBP_EMSGSIZE if it is longer
 *     than PBP__HANDSHAKE_MAX_FRAME;
 *   - pbp__hello_check returns 0 exactly when the magic, the major
 *     version and the fingerprint match and the peer's max_frame is at
 *     least PBP_MIN_MAX_FRAME, and (protocol 1.2) a peer of minor 2 or
 *     more sends a stream_window of 0 or at least PBP_MIN_STREAM_WINDOW;
 *     then effective_max_frame is
 *     min(ours, peer's), at least PBP_MIN_MAX_FRAME, the other peer
 *     fields are copied (stream_window only from a minor of 2 or more,
 *     else 0); otherwise it returns PBP_EPROTO with a message;
 *   - a decoded Hello re-encodes (pbp__control_encode) within the
 *     handshake limit and decodes to the same fields; so do the other
 *     kinds (fuzz_roundtrip_frame).
 */
#include <string.h>

#include "fuzz_checks.h"
#include "fuzzapp_fingerprint.h"

static uint32_t
clamp_max_frame(uint64_t v)
{
	if (v < PBP_MIN_MAX_FRAME)
		return PBP_MIN_MAX_FRAME;
	if (v > PBP_MAX_MAX_FRAME)
		return PBP_MAX_MAX_FRAME;
	return (uint32_t)v;
}

static void
check_hello(const pbpipe_Hello *h, uint32_t ours, uint64_t fingerprint)
{
	pbp_peer_info peer;
	pbp_error err;
	int ok, rc;

	memset(&peer, 0xa5, sizeof peer);
	memset(&err, 0, sizeof err);
	rc = pbp__hello_check(h, ours, fingerprint, &peer, &err);
	ok = h->magic == PBP__MAGIC && h->major == PBP_PROTOCOL_MAJOR &&
	     h->schema_fingerprint == fingerprint && h->max_frame >= PBP_MIN_MAX_FRAME &&
	     (h->minor < 2 || h->stream_window == 0 || h->stream_window >= PBP_MIN_STREAM_WINDOW);
	FUZZ_CHECK(rc == 0 || rc == PBP_EPROTO, "pbp__hello_check returned %d", rc);
	FUZZ_CHECK((rc == 0) == (ok != 0),
	           "rc %d for magic 0x%08x major %u fingerprint %llx (ours %llx) max_frame %u",
	           rc, (unsigned)h->magic, (unsigned)h->major,
	           (unsigned long long)h->schema_fingerprint,
	           (unsigned long long)fingerprint, (unsigned)h->max_frame);
	if (rc != 0) {
		fuzz_check_error(rc, &err);
		return;
	}
	FUZZ_CHECK(peer.effective_max_frame ==
	           (h->max_frame < ours ? h->max_frame : ours),
	           "effective %u, ours %u, peer's %u", (unsigned)peer.effective_max_frame,
	           (unsigned)ours, (unsigned)h->max_frame);
	FUZZ_CHECK(peer.effective_max_frame >= PBP_MIN_MAX_FRAME,
	           "effective limit %u below the minimum", (unsigned)peer.effective_max_frame);
	FUZZ_CHECK(peer.major == h->major && peer.minor == h->minor && peer.pid == h->pid &&
	           peer.pointer_bits == h->pointer_bits && peer.max_frame == h->max_frame &&
	           peer.schema_fingerprint == h->schema_fingerprint &&
	           peer.stream_window == (h->minor >= 2 ? h->stream_window : 0),
	           "peer info does not match the Hello");
}

/* The body behind a length prefix, through a reader with the limit a
 * channel has before the handshake. */
static void
check_handshake_read(const uint8_t *body, size_t len)
{
	uint8_t prefix[PBP__VARINT64_MAX];
	size_t plen = (size_t)(pbp__put_varint(prefix, len) - prefix);
	const uint8_t *got;
	size_t glen;
	pbp__reader r;
	int rc;

	if (pbp__reader_init(&r, PBP__HANDSHAKE_MAX_FRAME, PBP__READER_INITIAL_CAP) != 0)
		return;
	if (pbp__reader_feed(&r, prefix, plen) == 0 && pbp__reader_feed(&r, body, len) == 0) {
		pbp__reader_set_eof(&r);
		rc = pbp__reader_next(&r, &got, &glen);
		if (len > PBP__HANDSHAKE_MAX_FRAME) {
			FUZZ_CHECK(rc == PBP_EMSGSIZE, "%zu-byte first frame: %d", len, rc);
		} else {
			FUZZ_CHECK(rc == 1 && glen == len && memcmp(got, body, len) == 0,
			           "first frame not returned whole (%d)", rc);
			FUZZ_CHECK(pbp__reader_next(&r, &got, &glen) == PBP_EOF,
			           "no end of stream after the only frame");
		}
	}
	pbp__reader_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *body;
	size_t len;
	pbp__frame f;
	int rc;

	if (size < 1)
		return 0;
	len = size - 1;
	body = fuzz_dup(data + 1, len);
	if (body == NULL)
		return 0;
	check_handshake_read(body, len);
	rc = fuzz_decode_frame(body, len, &f);
	if (rc == 0 && f.kind == PBP__FRAME_HELLO) {
		const pbpipe_Hello *h = &f.hello;
		const uint32_t ours[8] = {
			PBP_MIN_MAX_FRAME, PBP__HANDSHAKE_MAX_FRAME, 65536,
			PBP_DEFAULT_MAX_FRAME, PBP_MAX_MAX_FRAME,
			clamp_max_frame((uint64_t)h->max_frame - 1),
			clamp_max_frame(h->max_frame),
			clamp_max_frame((uint64_t)h->max_frame + 1),
		};
		const uint64_t fps[4] = {
			h->schema_fingerprint, h->schema_fingerprint ^ 1u,
			FUZZAPP_SCHEMA_FINGERPRINT, 0,
		};

		check_hello(h, ours[data[0] & 7], fps[(data[0] >> 3) & 3]);
		check_hello(h, PBP_DEFAULT_MAX_FRAME, h->schema_fingerprint);
		check_hello(h, PBP_MIN_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
		fuzz_roundtrip_frame(&f);
	} else if (rc == 0) {
		fuzz_roundtrip_frame(&f);
	}
	free(body);
	return 0;
}
