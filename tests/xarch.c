/*
 * xarch: the cross-architecture test driver.  Plain C without Criterion, so
 * that it builds in the 32-bit tree too.  Usage:
 *
 *     xarch --expect-bits 32|64 PEER [DEMO_CHILD]
 *
 * PEER is a pbptest-peer (tests/peer.c) and DEMO_CHILD a pbpipe-child
 * (child/main.c), both of the expected width.  xarch spawns them and checks
 * everything that crosses the pipes between the two processes, whatever
 * their widths:
 *
 *   1. PEER echo, with our frame limit (1 MiB) below the peer's (4 MiB):
 *      - the Hello: the peer's pointer_bits (expected on the command line,
 *        and cross-checked against PEER's ELF class), protocol version,
 *        pid, schema fingerprint, its own limit and the effective one;
 *      - every application field type: int32, int64, uint64 and sint64 at
 *        their extremes, fixed64, double and float (infinities, NaN, -0.0,
 *        denormals), bool, a full repeated field, strings up to the bound;
 *        our encoding of each is compared byte for byte with protobuf's
 *        (golden bytes from Python protobuf), so both widths put the same
 *        bytes on the wire;
 *      - correlation ids and type numbers up to 2^64-1 and 2^32-1, opaque
 *        payloads, empty messages;
 *      - callback-encoded bytes of many sizes, up to the largest frame the
 *        effective limit allows (one byte more is PBP_EMSGSIZE and the
 *        channel stays usable);
 *      - the barrier (Sync, SyncAck), with an echo held back while it waits;
 *      - a clean end of stream: we close our write side, the peer exits 0,
 *        we see PBP_EOF without a Goodbye.
 *      Every message comes back through the peer's echo and is compared
 *      byte for byte with what we sent, then decoded and compared field by
 *      field.
 *   2. PEER goodbye, with our limit (8 MiB) above the peer's: the effective
 *      limit is the peer's, a payload at that limit crosses, and our Goodbye
 *      (reason and a 127-byte UTF-8 detail) comes back from the peer with
 *      the same reason and detail.
 *   3. DEMO_CHILD --serve (if given; protocol 1.1 calls): calls whose int64
 *      arguments and results straddle 2^31, 2^32 and 2^63, ten calls
 *      outstanding at once finished in reverse order, an error reply
 *      (PBP_REMOTE_NO_HANDLER, above 2^31) with its message, the barrier,
 *      and a Goodbye that ends the child's serving loop with exit 0.
 *
 * Exits 0 after printing one summary line; on the first failed check,
 * prints one line "xarch: <check>: <what happened>" on stderr and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>
#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"
#ifdef XARCH_HAVE_DEMO
#include "demo.pb.h"
#include "demo_fingerprint.h"
#endif

#define OUR_BITS ((unsigned)(sizeof(void *) * 8))
#define SMALL_LIMIT (1024u * 1024u)
#define LARGE_LIMIT (8u * 1024u * 1024u)

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};

static const char *peer_path;
static unsigned expect_bits;
static pbp_child *the_child;      /* killed and reaped by fail() */
static uint8_t *enc;              /* our own encoding of the message in flight */
static size_t enc_cap;
static unsigned long n_messages;  /* messages that made the round trip */
static unsigned long long n_bytes; /* their payload bytes, one way */
static uint64_t largest[2];        /* largest frame body per session */

static void fail(const char *check, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 2, 3)));

static void
fail(const char *check, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "xarch: %s: ", check);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " [%u-bit xarch, peer %s]\n", OUR_BITS, peer_path);
	pbp_child_free(the_child);
	exit(1);
}

/* ---- encoding and the round trip -------------------------------------- */

static size_t
encode(const pb_msgdesc_t *fields, const void *msg)
{
	pb_ostream_t os = pb_ostream_from_buffer(enc, enc_cap);

	if (!pb_encode(&os, fields, msg))
		fail("encode", "%s", PB_GET_ERROR(&os));
	return os.bytes_written;
}

static void
check_golden(const char *what, size_t n, const char *golden, size_t golden_len)
{
	size_t i;

	for (i = 0; i < n && i < golden_len && enc[i] == (uint8_t)golden[i]; i++)
		;
	if (n != golden_len || i != n)
		fail(what, "our encoding (%zu bytes) differs from protobuf's (%zu bytes) at byte %zu",
		     n, golden_len, i);
}

/* Sends payload[0..n) raw with type and id, receives the echo, and checks
 * that type, id and every payload byte came back unchanged. */
static void
expect_echo(pbp_channel *ch, const char *what, uint32_t type, uint64_t id,
            const uint8_t *payload, size_t n)
{
	pbp_msginfo mi;
	size_t i;
	int rc;

	rc = pbp_channel_recv(ch, &mi);
	if (rc != 0)
		fail(what, "receiving the echo: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	if (mi.type != type || mi.id != id)
		fail(what, "echo has type %" PRIu32 " id %" PRIu64 ", sent type %" PRIu32
		     " id %" PRIu64, mi.type, mi.id, type, id);
	if (mi.size != n)
		fail(what, "echo has %zu payload bytes, sent %zu", mi.size, n);
	for (i = 0; i < n && ((const uint8_t *)mi.payload)[i] == payload[i]; i++)
		;
	if (i != n)
		fail(what, "echoed payload differs from ours at byte %zu of %zu", i, n);
	n_messages++;
	n_bytes += n;
}

/* Encodes msg, checks it against golden bytes if given, sends it with
 * pbp_channel_send_ex() and checks the echo byte for byte.  The message
 * stays received, so the caller can pbp_channel_decode() it. */
static void
roundtrip(pbp_channel *ch, const char *what, uint32_t type, uint64_t id,
          const pb_msgdesc_t *fields, const void *msg, const char *golden,
          size_t golden_len)
{
	size_t n = encode(fields, msg);
	int rc;

	if (golden != NULL)
		check_golden(what, n, golden, golden_len);
	rc = pbp_channel_send_ex(ch, type, id, fields, msg);
	if (rc != 0)
		fail(what, "send: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	expect_echo(ch, what, type, id, enc, n);
}

static void
decode(pbp_channel *ch, const char *what, const pb_msgdesc_t *fields, void *msg)
{
	int rc = pbp_channel_decode(ch, fields, msg);

	if (rc != 0)
		fail(what, "decoding the echo: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
}

/* ---- the handshake ---------------------------------------------------- */

/* The width PEER was built for, from its ELF header: 32, 64, or 0. */
static unsigned
elf_bits(const char *path)
{
	unsigned char h[5];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, h, sizeof h) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof h || memcmp(h, "\177ELF", 4) != 0)
		return 0;
	return h[4] == 1 ? 32 : h[4] == 2 ? 64 : 0;
}

/* Spawns `path mode` with a channel of the given types and limit. */
static pbp_child *
spawn_ex(const char *path, const char *mode, const pbp_msgtype *ts, size_t nts,
         uint64_t fingerprint, uint32_t max_frame)
{
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { path, mode, NULL };
	pbp_error err;
	pbp_child *c;

	co.types = ts;
	co.ntypes = nts;
	co.schema_fingerprint = fingerprint;
	co.max_frame = max_frame;
	co.recv_timeout_ms = 20000; /* a hang fails the test instead of ctest */
	co.send_timeout_ms = 20000;
	so.channel = &co;
	if (pbp_child_spawn(&c, path, argv, &so, &err) != 0)
		fail("spawn", "%s %s: %s", path, mode, err.msg);
	the_child = c;
	return c;
}

static pbp_child *
spawn(const char *mode, uint32_t max_frame)
{
	return spawn_ex(peer_path, mode, types, sizeof types / sizeof types[0],
	                PBPTEST_SCHEMA_FINGERPRINT, max_frame);
}

static void
check_hello_ex(pbp_child *c, uint32_t ours, uint64_t fingerprint)
{
	uint32_t effective = ours < PBP_DEFAULT_MAX_FRAME ? ours : PBP_DEFAULT_MAX_FRAME;
	pbp_peer_info pi;

	if (pbp_channel_peer(pbp_child_channel(c), &pi) != 0)
		fail("hello", "pbp_channel_peer failed");
	if (pi.pointer_bits != expect_bits)
		fail("hello", "peer says pointer_bits %" PRIu32 ", expected %u", pi.pointer_bits,
		     expect_bits);
	if (pi.major != PBP_PROTOCOL_MAJOR || pi.minor != PBP_PROTOCOL_MINOR)
		fail("hello", "peer speaks %" PRIu32 ".%" PRIu32 ", we speak %d.%d", pi.major,
		     pi.minor, PBP_PROTOCOL_MAJOR, PBP_PROTOCOL_MINOR);
	if ((pid_t)pi.pid != pbp_child_pid(c))
		fail("hello", "peer says pid %" PRIu32 ", we spawned %d", pi.pid,
		     (int)pbp_child_pid(c));
	if (pi.schema_fingerprint != fingerprint)
		fail("hello", "peer fingerprint %016" PRIx64 ", ours %016" PRIx64,
		     pi.schema_fingerprint, fingerprint);
	if (pi.max_frame != PBP_DEFAULT_MAX_FRAME)
		fail("hello", "peer's max_frame %" PRIu32 ", expected its default %u",
		     pi.max_frame, PBP_DEFAULT_MAX_FRAME);
	if (pi.effective_max_frame != effective)
		fail("hello", "effective max_frame %" PRIu32 " (ours %" PRIu32 ", peer's %" PRIu32
		     "), expected %" PRIu32, pi.effective_max_frame, ours, pi.max_frame, effective);
}

static void
check_hello(pbp_child *c, uint32_t ours)
{
	check_hello_ex(c, ours, PBPTEST_SCHEMA_FINGERPRINT);
}

/* ---- application messages --------------------------------------------- */

static void
check_text(pbp_channel *ch, const char *s, uint64_t id, const char *golden, size_t glen)
{
	pbptest_Text t, back;

	memset(&t, 0, sizeof t);
	snprintf(t.text, sizeof t.text, "%s", s);
	roundtrip(ch, "Text", pbptest_Type_TEXT, id, pbptest_Text_fields, &t, golden, glen);
	decode(ch, "Text", pbptest_Text_fields, &back);
	if (strcmp(back.text, t.text) != 0)
		fail("Text", "decoded \"%s\", sent \"%s\"", back.text, t.text);
}

#define SAME(field) (memcmp(&a->field, &b->field, sizeof a->field) == 0)

/* The first field that differs (doubles and floats bit for bit), or NULL. */
static const char *
numbers_diff(const pbptest_Numbers *a, const pbptest_Numbers *b)
{
	pb_size_t i;

	if (!SAME(i32))
		return "i32";
	if (!SAME(i64))
		return "i64";
	if (!SAME(u64))
		return "u64";
	if (!SAME(s64))
		return "s64";
	if (!SAME(d))
		return "d";
	if (!SAME(f))
		return "f";
	if (a->b != b->b)
		return "b";
	if (!SAME(fx))
		return "fx";
	if (a->list_count != b->list_count)
		return "list_count";
	for (i = 0; i < a->list_count; i++)
		if (a->list[i] != b->list[i])
			return "list";
	return NULL;
}

static void
check_numbers(pbp_channel *ch, const char *what, const pbptest_Numbers *n, uint64_t id,
              const char *golden, size_t glen)
{
	pbptest_Numbers back;
	const char *diff;

	roundtrip(ch, what, pbptest_Type_NUMBERS, id, pbptest_Numbers_fields, n, golden, glen);
	decode(ch, what, pbptest_Numbers_fields, &back);
	diff = numbers_diff(n, &back);
	if (diff != NULL)
		fail(what, "field %s decoded differently", diff);
}

static double
double_bits(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof d);
	return d;
}

static float
float_bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

static void
numbers(pbp_channel *ch)
{
	/* Golden encodings from Python protobuf 3.21 (SerializeToString). */
	static const char g_min[] =
		"\x08\x80\x80\x80\x80\xf8\xff\xff\xff\xff\x01\x10\x80\x80\x80\x80\x80\x80"
		"\x80\x80\x80\x01\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x20\xff\xff"
		"\xff\xff\xff\xff\xff\xff\xff\x01\x29\xff\xff\xff\xff\xff\xff\xef\xff\x35"
		"\xff\xff\x7f\x7f\x38\x01\x41\xef\xcd\xab\x89\x67\x45\x23\x01\x4a\x1b\x80"
		"\x80\x80\x80\xf8\xff\xff\xff\xff\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff"
		"\x01\x00\x01\xff\xff\xff\xff\x07";
	static const char g_max[] =
		"\x08\xff\xff\xff\xff\x07\x10\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x18\x80"
		"\x80\x80\x80\x80\x80\x80\x80\x80\x01\x20\xfe\xff\xff\xff\xff\xff\xff\xff"
		"\xff\x01\x29\x01\x00\x00\x00\x00\x00\x00\x00\x35\x00\x00\x00\x80\x41\xff"
		"\xff\xff\xff\xff\xff\xff\xff\x4a\x58\xf8\xff\xff\xff\xff\xff\xff\xff\xff"
		"\x01\xf9\xff\xff\xff\xff\xff\xff\xff\xff\x01\xfa\xff\xff\xff\xff\xff\xff"
		"\xff\xff\x01\xfb\xff\xff\xff\xff\xff\xff\xff\xff\x01\xfc\xff\xff\xff\xff"
		"\xff\xff\xff\xff\x01\xfd\xff\xff\xff\xff\xff\xff\xff\xff\x01\xfe\xff\xff"
		"\xff\xff\xff\xff\xff\xff\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00"
		"\x01\x02\x03\x04\x05\x06\x07";
	static const char g_special[] =
		"\x20\x01\x29\x00\x00\x00\x00\x00\x00\xf0\xff\x35\x00\x00\xc0\x7f";
	pbptest_Numbers n;
	int i;

	/* Minimums: negative int32s are sign-extended to 10-byte varints,
	 * which a 32-bit encoder must do too. */
	memset(&n, 0, sizeof n);
	n.i32 = INT32_MIN;
	n.i64 = INT64_MIN;
	n.u64 = UINT64_MAX;
	n.s64 = INT64_MIN;
	n.d = -DBL_MAX;
	n.f = FLT_MAX;
	n.b = true;
	n.fx = UINT64_C(0x0123456789abcdef);
	n.list_count = 5;
	n.list[0] = INT32_MIN;
	n.list[1] = -1;
	n.list[2] = 0;
	n.list[3] = 1;
	n.list[4] = INT32_MAX;
	check_numbers(ch, "Numbers (minimums)", &n, 0, g_min, sizeof g_min - 1);

	/* Maximums, a denormal, -0.0 (sent: its bits are not zero), a full
	 * repeated field, and a correlation id above 2^32. */
	memset(&n, 0, sizeof n);
	n.i32 = INT32_MAX;
	n.i64 = INT64_MAX;
	n.u64 = UINT64_C(1) << 63;
	n.s64 = INT64_MAX;
	n.d = double_bits(1); /* the smallest denormal */
	n.f = -0.0f;
	n.b = false;
	n.fx = UINT64_MAX;
	n.list_count = 16;
	for (i = 0; i < 16; i++)
		n.list[i] = i - 8;
	check_numbers(ch, "Numbers (maximums)", &n, UINT64_C(0x100000000), g_max, sizeof g_max - 1);

	/* Infinity, NaN, zigzag -1. */
	memset(&n, 0, sizeof n);
	n.s64 = -1;
	n.d = -INFINITY;
	n.f = float_bits(0x7fc00000u); /* the quiet NaN Python writes */
	check_numbers(ch, "Numbers (inf, NaN)", &n, UINT64_MAX, g_special, sizeof g_special - 1);

	/* All defaults: an empty payload. */
	memset(&n, 0, sizeof n);
	check_numbers(ch, "Numbers (defaults)", &n, 0, "", 0);
}

static void
texts(pbp_channel *ch)
{
	static const char g_utf8[] =
		"\x0a\x23\x6e\x61\xc3\xaf\x76\x65\x20\x63\x61\x66\xc3\xa9\x20\xe2\x80\x94"
		"\x20\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\x20\xe2\x9c\x93\x20\xf0\x9f\x99\x82";
	char longest[256];
	pbptest_Empty e;

	check_text(ch, "", 0, "", 0);
	check_text(ch, "Hello from Process A!", 1, NULL, 0);
	check_text(ch, "naïve café — 日本語 ✓ 🙂", UINT64_C(0xffffffff), g_utf8, sizeof g_utf8 - 1);
	check_text(ch, "SYNC\nEND\n\r\t\x01\x7f", UINT64_C(0x8000000000000000), NULL, 0);
	memset(longest, 'z', sizeof longest - 1); /* max_size 256: 255 bytes and NUL */
	longest[sizeof longest - 1] = '\0';
	longest[0] = '<';
	longest[sizeof longest - 2] = '>';
	check_text(ch, longest, 2, NULL, 0);

	memset(&e, 0, sizeof e);
	roundtrip(ch, "Empty", pbptest_Type_EMPTY, 3, pbptest_Empty_fields, &e, "", 0);
}

/* Payloads that are not protobuf at all, under type numbers no one
 * registered, up to 2^32-1: the echo must not care. */
static void
opaque(pbp_channel *ch)
{
	static const uint32_t type_nums[] = { 5, 0x7fffffffu, 0x80000000u, 0xffffffffu };
	uint8_t all[256];
	size_t i;
	int rc;

	for (i = 0; i < sizeof all; i++)
		all[i] = (uint8_t)(255 - i);
	for (i = 0; i < sizeof type_nums / sizeof type_nums[0]; i++) {
		uint64_t id = UINT64_MAX - i;

		rc = pbp_channel_send_raw(ch, type_nums[i], id, all, sizeof all);
		if (rc != 0)
			fail("opaque", "send: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
		expect_echo(ch, "opaque", type_nums[i], id, all, sizeof all);
	}
}

/* ---- large bytes through a callback field ------------------------------ */

struct blob {
	uint32_t seed;
	size_t size; /* encoding: bytes to write; decoding: bytes seen */
	int mismatch;
};

static uint8_t
pattern(uint32_t seed, size_t i)
{
	uint32_t x = seed ^ (uint32_t)(i * 2654435761u);

	x ^= x >> 13;
	return (uint8_t)(x * 0x5bd1e995u >> 24);
}

static bool
blob_encode(pb_ostream_t *os, const pb_field_t *field, void *const *arg)
{
	const struct blob *b = *arg;
	uint8_t chunk[4096];
	size_t i, k, n;

	if (b->size == 0) /* proto3: an empty bytes field is not written */
		return true;
	if (!pb_encode_tag_for_field(os, field) || !pb_encode_varint(os, b->size))
		return false;
	for (i = 0; i < b->size; i += n) {
		n = b->size - i < sizeof chunk ? b->size - i : sizeof chunk;
		for (k = 0; k < n; k++)
			chunk[k] = pattern(b->seed, i + k);
		if (!pb_write(os, chunk, n))
			return false;
	}
	return true;
}

static bool
blob_decode(pb_istream_t *is, const pb_field_t *field, void **arg)
{
	struct blob *b = *arg;
	uint8_t chunk[4096];
	size_t k, n;

	(void)field;
	while (is->bytes_left > 0) {
		n = is->bytes_left < sizeof chunk ? is->bytes_left : sizeof chunk;
		if (!pb_read(is, chunk, n))
			return false;
		for (k = 0; k < n; k++)
			if (chunk[k] != pattern(b->seed, b->size + k))
				b->mismatch = 1;
		b->size += n;
	}
	return true;
}

static size_t
varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Frame body size of a Blob message: an Envelope holding a Message (field
 * 3) with type, id and the payload (pbpipe.proto; docs/PROTOCOL.md). */
static uint64_t
blob_frame_body(uint32_t tag, size_t data, uint64_t id)
{
	uint64_t payload = (tag ? 1 + varint_size(tag) : 0) +
	                   (data ? 1 + varint_size(data) + data : 0);
	uint64_t msg = 1 + varint_size(pbptest_Type_BLOB) + (id ? 1 + varint_size(id) : 0) +
	               (payload ? 1 + varint_size(payload) + payload : 0);

	return 1 + varint_size(msg) + msg;
}

static void
check_blob(pbp_channel *ch, size_t size, uint64_t id)
{
	struct blob src = { (uint32_t)size * 7u + 1u, size, 0 }, sink = { src.seed, 0, 0 };
	pbptest_Blob b, back;
	char what[64];

	snprintf(what, sizeof what, "Blob of %zu bytes", size);
	memset(&b, 0, sizeof b);
	b.tag = src.seed;
	b.data.funcs.encode = blob_encode;
	b.data.arg = &src;
	roundtrip(ch, what, pbptest_Type_BLOB, id, pbptest_Blob_fields, &b, NULL, 0);
	memset(&back, 0, sizeof back);
	back.data.funcs.decode = blob_decode;
	back.data.arg = &sink;
	decode(ch, what, pbptest_Blob_fields, &back);
	if (back.tag != b.tag || sink.size != size || sink.mismatch)
		fail(what, "decoded tag %" PRIu32 " and %zu bytes%s", back.tag, sink.size,
		     sink.mismatch ? ", contents differ" : "");
}

/* Blobs of sizes around varint and 16-bit boundaries, then the largest one
 * the limit allows; one byte more must fail locally with PBP_EMSGSIZE and
 * leave the channel usable. */
static void
blobs(pbp_channel *ch, uint32_t limit)
{
	static const size_t sizes[] = { 0, 1, 127, 128, 16383, 16384, 65535, 65536, 65537, 200000 };
	const uint64_t id = UINT64_C(0xfedcba9876543210);
	struct blob src = { 1, 0, 0 };
	pbptest_Blob b;
	size_t i, max;
	int rc;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		check_blob(ch, sizes[i], i);

	/* Only the tag depends on the seed, so its size is fixed per size. */
	for (max = limit - 64; blob_frame_body((uint32_t)(max + 1) * 7u + 1u, max + 1, id) <= limit;)
		max++;
	check_blob(ch, max, id);
	largest[limit == SMALL_LIMIT ? 0 : 1] = blob_frame_body((uint32_t)max * 7u + 1u, max, id);

	memset(&b, 0, sizeof b);
	src.size = max + 1;
	src.seed = (uint32_t)src.size * 7u + 1u;
	b.tag = src.seed;
	b.data.funcs.encode = blob_encode;
	b.data.arg = &src;
	rc = pbp_channel_send_ex(ch, pbptest_Type_BLOB, id, pbptest_Blob_fields, &b);
	if (rc != PBP_EMSGSIZE)
		fail("frame limit", "a %zu-byte frame body over the %" PRIu32
		     "-byte limit gave %s, expected PBP_EMSGSIZE",
		     (size_t)blob_frame_body(b.tag, src.size, id), limit, pbp_strerror(rc));
	check_text(ch, "still usable after PBP_EMSGSIZE", 9, NULL, 0);
}

/* The barrier: a Text goes out, then a Sync.  The peer echoes the Text and
 * answers the Sync when it asks for its next message; the echo arrives
 * first and is held for the next receive. */
static void
barrier(pbp_channel *ch)
{
	pbptest_Text t;
	size_t n;
	int rc;

	memset(&t, 0, sizeof t);
	snprintf(t.text, sizeof t.text, "before the barrier");
	n = encode(pbptest_Text_fields, &t);
	if ((rc = pbp_channel_send_ex(ch, pbptest_Type_TEXT, 77, pbptest_Text_fields, &t)) != 0)
		fail("barrier", "send: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	if ((rc = pbp_channel_sync(ch, 20000)) != 0)
		fail("barrier", "sync: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	expect_echo(ch, "barrier", pbptest_Type_TEXT, 77, enc, n);
	n_messages++; /* the Sync and its SyncAck */
}

/* ---- the sessions ----------------------------------------------------- */

static void
expect_exit0(pbp_child *c, const char *what)
{
	pbp_exit_status st;
	char how[96];

	if (pbp_child_wait(c, 10000, &st) != 0)
		fail(what, "the child did not exit: %s", pbp_child_error(c)->msg);
	if (!st.exited || st.code != 0)
		fail(what, "the child %s", pbp_exit_status_str(&st, how, sizeof how));
	pbp_child_free(c);
	the_child = NULL;
}

/* Session 1: every message type, and a clean end of stream. */
static void
session_echo(void)
{
	pbp_child *c = spawn("echo", SMALL_LIMIT);
	pbp_channel *ch = pbp_child_channel(c);
	pbp_peer_info pi;
	pbp_msginfo mi;
	int rc;

	check_hello(c, SMALL_LIMIT);
	texts(ch);
	numbers(ch);
	opaque(ch);
	blobs(ch, SMALL_LIMIT);
	barrier(ch);

	if ((rc = pbp_channel_close_write(ch)) != 0)
		fail("end of stream", "close_write: %s", pbp_strerror(rc));
	rc = pbp_channel_recv(ch, &mi);
	if (rc != PBP_EOF)
		fail("end of stream", "expected PBP_EOF, got %s: %s", pbp_strerror(rc),
		     pbp_channel_errmsg(ch));
	if (pbp_channel_peer(ch, &pi) != 0 || pi.goodbye_received)
		fail("end of stream", "a Goodbye arrived where none was sent");
	expect_exit0(c, "end of stream");
}

/* Session 2: the peer's limit is the smaller one; Goodbye both ways. */
static void
session_goodbye(void)
{
	pbp_child *c = spawn("goodbye", LARGE_LIMIT);
	pbp_channel *ch = pbp_child_channel(c);
	char detail[128];
	pbp_peer_info pi;
	pbp_msginfo mi;
	size_t n;
	int rc;

	check_hello(c, LARGE_LIMIT);
	check_text(ch, "limit 4 MiB", 1, NULL, 0);
	blobs(ch, PBP_DEFAULT_MAX_FRAME);

	/* A detail of exactly 127 bytes (the most a Goodbye carries), UTF-8. */
	n = (size_t)snprintf(detail, sizeof detail, "shutdown from a %u-bit parent: ✓ — é ", OUR_BITS);
	memset(detail + n, '.', sizeof detail - 1 - n);
	detail[sizeof detail - 1] = '\0';
	if ((rc = pbp_channel_goodbye(ch, PBP_GOODBYE_SHUTDOWN, detail)) != 0)
		fail("goodbye", "sending: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	rc = pbp_channel_recv(ch, &mi);
	if (rc != PBP_EOF)
		fail("goodbye", "expected the peer's Goodbye (PBP_EOF), got %s: %s",
		     pbp_strerror(rc), pbp_channel_errmsg(ch));
	if (pbp_channel_peer(ch, &pi) != 0 || !pi.goodbye_received)
		fail("goodbye", "the peer ended the stream without a Goodbye");
	if (pi.goodbye_reason != PBP_GOODBYE_SHUTDOWN || strcmp(pi.goodbye_detail, detail) != 0)
		fail("goodbye", "reflected reason %d detail \"%s\", sent %d \"%s\"", pi.goodbye_reason,
		     pi.goodbye_detail, PBP_GOODBYE_SHUTDOWN, detail);
	n_messages += 2;
	expect_exit0(c, "goodbye");
}

#ifdef XARCH_HAVE_DEMO
static uint64_t
sum_of(int64_t a, int64_t b)
{
	return (uint64_t)a + (uint64_t)b; /* no signed overflow here */
}

/* Session 3: calls to pbpipe-child --serve (protocol 1.1). */
static void
session_calls(const char *path)
{
	static const pbp_msgtype demo_types[] = {
		PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
		PBP_MSGTYPE(demo_Type_ADD, demo_Add),
		PBP_MSGTYPE(demo_Type_SUM, demo_Sum),
	};
	static const int64_t args[][2] = {
		{ INT32_MAX, 1 },                     /* 2^31 */
		{ UINT32_MAX, 1 },                    /* 2^32 */
		{ INT64_MAX - 1, 1 },                 /* 2^63 - 1 */
		{ INT64_MIN + 1, -1 },                /* -2^63 */
		{ -1, INT32_MIN },
		{ INT64_C(1) << 40, -(INT64_C(1) << 41) },
	};
	pbp_child *c = spawn_ex(path, "--serve", demo_types, 3, DEMO_SCHEMA_FINGERPRINT, 0);
	pbp_channel *ch = pbp_child_channel(c);
	uint64_t ids[10];
	demo_Greeting g;
	demo_Add a;
	demo_Sum sum;
	pbp_msginfo mi;
	size_t i;
	int rc;

	peer_path = path;
	check_hello_ex(c, PBP_DEFAULT_MAX_FRAME, DEMO_SCHEMA_FINGERPRINT);
	for (i = 0; i < sizeof args / sizeof args[0]; i++) {
		a.a = args[i][0];
		a.b = args[i][1];
		rc = pbp_channel_call(ch, demo_Type_ADD, &a, demo_Type_SUM, &sum, 20000);
		if (rc != 0)
			fail("call", "Add %" PRId64 " %" PRId64 ": %s: %s", a.a, a.b, pbp_strerror(rc),
			     pbp_channel_errmsg(ch));
		if ((uint64_t)sum.value != sum_of(a.a, a.b))
			fail("call", "Add %" PRId64 " %" PRId64 " returned %" PRId64, a.a, a.b, sum.value);
		n_messages += 2;
	}

	/* Ten calls outstanding, finished last first: the replies that come
	 * in meanwhile are kept. */
	for (i = 0; i < 10; i++) {
		a.a = (int64_t)i;
		a.b = (int64_t)i * INT64_C(1000000000000);
		if ((rc = pbp_channel_call_start(ch, demo_Type_ADD, &a, &ids[i])) != 0)
			fail("call_start", "%s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	}
	for (i = 10; i-- > 0;) {
		rc = pbp_channel_call_finish(ch, ids[i], demo_Type_SUM, &sum, 20000);
		if (rc != 0 || (uint64_t)sum.value != sum_of((int64_t)i, (int64_t)i * INT64_C(1000000000000)))
			fail("call_finish", "call %zu (id %" PRIu64 "): %s, value %" PRId64, i, ids[i],
			     rc != 0 ? pbp_channel_errmsg(ch) : "wrong", sum.value);
		n_messages += 2;
	}

	/* No handler for a Greeting: an error reply with pbpipe's code. */
	memset(&g, 0, sizeof g);
	snprintf(g.text, sizeof g.text, "no handler for this");
	rc = pbp_channel_call(ch, demo_Type_GREETING, &g, demo_Type_SUM, &sum, 20000);
	if (rc != PBP_EREMOTE || pbp_channel_error(ch)->remote_code != PBP_REMOTE_NO_HANDLER ||
	    pbp_channel_errmsg(ch)[0] == '\0')
		fail("error reply", "got %s, remote code 0x%x, \"%s\"; expected PBP_EREMOTE 0x%x",
		     pbp_strerror(rc), pbp_channel_error(ch)->remote_code, pbp_channel_errmsg(ch),
		     PBP_REMOTE_NO_HANDLER);
	n_messages += 2;

	if ((rc = pbp_channel_sync(ch, 20000)) != 0)
		fail("barrier", "sync: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	n_messages += 2;

	if ((rc = pbp_channel_goodbye(ch, PBP_GOODBYE_DONE, "calls done")) != 0)
		fail("goodbye", "sending: %s: %s", pbp_strerror(rc), pbp_channel_errmsg(ch));
	rc = pbp_channel_recv(ch, &mi);
	if (rc != PBP_EOF)
		fail("goodbye", "expected PBP_EOF after serving, got %s: %s", pbp_strerror(rc),
		     pbp_channel_errmsg(ch));
	expect_exit0(c, "goodbye");
}
#endif

static void
check_elf(const char *path)
{
	unsigned elf = elf_bits(path);

	if (elf != expect_bits)
		fail("binary", "%s is %s, not %u-bit", path,
		     elf == 32 ? "32-bit" : elf == 64 ? "64-bit" : "not an ELF program", expect_bits);
}

int
main(int argc, char **argv)
{
	const char *demo_child = argc == 5 ? argv[4] : NULL;

	if ((argc != 4 && argc != 5) || strcmp(argv[1], "--expect-bits") != 0 ||
	    (strcmp(argv[2], "32") != 0 && strcmp(argv[2], "64") != 0)) {
		fprintf(stderr, "usage: xarch --expect-bits 32|64 PBPTEST_PEER [PBPIPE_CHILD]\n");
		return 2;
	}
	expect_bits = (unsigned)atoi(argv[2]);
	peer_path = argv[3];
	check_elf(peer_path);
#ifdef XARCH_HAVE_DEMO
	if (demo_child != NULL)
		check_elf(demo_child);
#else
	if (demo_child != NULL)
		fail("usage", "this xarch was built without the demo schema (PBP_BUILD_EXAMPLES=OFF)");
#endif
	enc_cap = PBP_DEFAULT_MAX_FRAME + 64;
	enc = malloc(enc_cap);
	if (enc == NULL)
		fail("setup", "out of memory");

	session_echo();
	session_goodbye();
#ifdef XARCH_HAVE_DEMO
	if (demo_child != NULL)
		session_calls(demo_child);
#endif

	free(enc);
	printf("xarch: %u-bit parent <-> %u-bit children %s%s%s: all checks passed "
	       "(%lu messages, %llu payload bytes each way, frame bodies of %" PRIu64
	       " and %" PRIu64 " bytes at the limits%s)\n",
	       OUR_BITS, expect_bits, argv[3], demo_child ? " and " : "",
	       demo_child ? demo_child : "", n_messages, n_bytes, largest[0], largest[1],
	       demo_child ? ", calls" : "");
	return 0;
}
