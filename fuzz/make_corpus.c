/*
 * make_corpus.c: writes the seed corpora of the fuzz harnesses from frames
 * our own encoder produces.
 *
 * Usage: make_corpus OUTDIR
 * Writes OUTDIR/{frame,handshake,message,envelope_diff}/seed-* (the directories must
 * exist).  Seeds are deterministic, so regenerating them into
 * fuzz/corpora changes no file unless the encoder changed.  Other files
 * there (crash-* regression inputs, libFuzzer finds) are left alone.
 * See docs/fuzzing.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_encode.h>

#include "fuzzapp_fingerprint.h"
#include "pbp_internal.h"
#include "pbpfuzz.pb.h"
#include "pbptest.pb.h"

static const char *outdir;
static int failures;

/* A growable byte buffer. */
typedef struct bytes {
	uint8_t *p;
	size_t n, cap;
} bytes;

/* Makes room for n more bytes. */
static void
reserve(bytes *b, size_t n)
{
	if (b->n + n > b->cap) {
		size_t ncap = b->cap ? b->cap : 256;

		while (ncap < b->n + n)
			ncap *= 2;
		b->p = realloc(b->p, ncap);
		if (b->p == NULL) {
			fprintf(stderr, "make_corpus: out of memory\n");
			exit(1);
		}
		b->cap = ncap;
	}
}

static void
put(bytes *b, const void *data, size_t n)
{
	reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->n, data, n);
	b->n += n;
}

static void
put_bytes(bytes *b, const bytes *src)
{
	put(b, src->p, src->n);
}

static void
reset(bytes *b)
{
	b->n = 0;
}

static void
write_seed(const char *harness, const char *name, const uint8_t *ctl, size_t nctl,
           const uint8_t *data, size_t n)
{
	char path[1024];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s/seed-%s", outdir, harness, name);
	fp = fopen(path, "wb");
	if (fp == NULL || (nctl > 0 && fwrite(ctl, 1, nctl, fp) != nctl) ||
	    (n > 0 && fwrite(data, 1, n, fp) != n)) {
		perror(path);
		failures++;
	}
	if (fp != NULL && fclose(fp) != 0) {
		perror(path);
		failures++;
	}
}

/* ---- frames, as the library writes them ---------------------------------- */

static void
control(bytes *out, const pbpipe_Envelope *env)
{
	uint8_t buf[PBP__HANDSHAKE_MAX_FRAME];
	size_t written;
	pbp_error err;

	if (pbp__control_encode(buf, sizeof buf, env, &written, &err) != 0) {
		fprintf(stderr, "make_corpus: %s\n", err.msg);
		exit(1);
	}
	put(out, buf, written);
}

/* Our Hello with a fixed pid, so that seeds do not change from run to run. */
static pbpipe_Envelope
hello_env(uint32_t max_frame, uint64_t fingerprint)
{
	pbpipe_Envelope env;

	pbp__hello_make(&env, max_frame, fingerprint, PBP_DEFAULT_STREAM_WINDOW);
	env.body.hello.pid = 4242;
	env.body.hello.pointer_bits = 64;
	return env;
}

static void
hello(bytes *out, uint32_t max_frame, uint64_t fingerprint)
{
	pbpipe_Envelope env = hello_env(max_frame, fingerprint);

	control(out, &env);
}

static void
goodbye(bytes *out, pbpipe_Goodbye_Reason reason, const char *detail)
{
	pbpipe_Envelope env;

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_goodbye_tag;
	env.body.goodbye.reason = reason;
	snprintf(env.body.goodbye.detail, sizeof env.body.goodbye.detail, "%s", detail);
	control(out, &env);
}

static void
app(bytes *out, uint32_t type, uint64_t id, const bytes *payload)
{
	uint8_t hdr[PBP__MSG_HEADER_MAX];
	uint64_t body_len;
	size_t h = pbp__message_header(hdr, type, id, payload->n, &body_len);

	put(out, hdr, h);
	put_bytes(out, payload);
}

/* A reply (protocol 1.1): reply_to, and an error code and message. */
static void
reply(bytes *out, uint32_t type, uint64_t id, uint64_t reply_to, uint32_t code,
      const char *msg, const bytes *payload)
{
	uint8_t hdr[PBP__MSG_HEADER_MAX];
	uint64_t body_len;
	pbp__reply r;
	size_t h;

	r.reply_to = reply_to;
	r.error_code = code;
	r.error_msg = msg;
	r.stream = 0;
	h = pbp__message_header_ex(hdr, type, id, &r, payload->n, &body_len);
	put(out, hdr, h);
	put_bytes(out, payload);
}

static void
sync_frame(bytes *out, int ack, uint64_t id)
{
	pbpipe_Envelope env;

	memset(&env, 0, sizeof env);
	if (ack) {
		env.which_body = pbpipe_Envelope_sync_ack_tag;
		env.body.sync_ack.id = id;
	} else {
		env.which_body = pbpipe_Envelope_sync_tag;
		env.body.sync.id = id;
	}
	control(out, &env);
}

/* 65 two-byte characters (U+00E9), 130 bytes: a cut at 127 bytes falls
 * inside the 64th character, so the encoder must back off to 126. */
static const char long_utf8[] =
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";

/* The body of a single encoded frame (its length prefix stripped). */
static void
strip_prefix(bytes *out, const bytes *frame)
{
	uint32_t len;
	size_t hdr;

	if (pbp__frame_length(frame->p, frame->n, &len, &hdr) != 1 || hdr + len != frame->n) {
		fprintf(stderr, "make_corpus: not one frame\n");
		exit(1);
	}
	put(out, frame->p + hdr, len);
}

/* ---- application payloads ------------------------------------------------ */

static void
encode(bytes *out, const pb_msgdesc_t *fields, const void *msg)
{
	size_t size;
	pb_ostream_t os;

	if (!pb_get_encoded_size(&size, fields, msg)) {
		fprintf(stderr, "make_corpus: sizing failed\n");
		exit(1);
	}
	reserve(out, size);
	os = pb_ostream_from_buffer(out->p + out->n, size);
	if (!pb_encode(&os, fields, msg)) {
		fprintf(stderr, "make_corpus: %s\n", PB_GET_ERROR(&os));
		exit(1);
	}
	out->n += os.bytes_written;
}

typedef struct blobdata {
	const uint8_t *p;
	size_t n;
} blobdata;

static bool
write_blob(pb_ostream_t *s, const pb_field_t *field, void *const *arg)
{
	const blobdata *d = *arg;

	return pb_encode_tag_for_field(s, field) && pb_encode_string(s, d->p, d->n);
}

static void
text(bytes *out, const char *s)
{
	pbptest_Text m;

	memset(&m, 0, sizeof m);
	snprintf(m.text, sizeof m.text, "%s", s);
	encode(out, pbptest_Text_fields, &m);
}

static void
numbers(bytes *out, int full)
{
	pbptest_Numbers m;
	pb_size_t i;

	memset(&m, 0, sizeof m);
	m.i32 = -5;
	m.i64 = full ? INT64_MIN : 1234567890123;
	m.u64 = full ? UINT64_MAX : 42;
	m.s64 = -77;
	m.d = 3.5;
	m.f = -0.25f;
	m.b = true;
	m.fx = 0x0102030405060708ull;
	m.list_count = full ? 16 : 3;
	for (i = 0; i < m.list_count; i++)
		m.list[i] = (int32_t)i * (i % 2 ? -1000 : 1000);
	encode(out, pbptest_Numbers_fields, &m);
}

static void
blob(bytes *out, uint32_t tag, size_t n)
{
	pbptest_Blob m;
	uint8_t *data = malloc(n > 0 ? n : 1);
	blobdata d;
	size_t i;

	if (data == NULL)
		exit(1);
	for (i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	d.p = data;
	d.n = n;
	memset(&m, 0, sizeof m);
	m.tag = tag;
	m.data.funcs.encode = write_blob;
	m.data.arg = &d;
	encode(out, pbptest_Blob_fields, &m);
	free(data);
}

static void
inner(pbpfuzz_Inner *m, int k)
{
	pb_size_t i;

	memset(m, 0, sizeof *m);
	m->s = -k * 1000;
	m->sf = k;
	snprintf(m->name, sizeof m->name, "inner-%d", k);
	m->vals_count = (pb_size_t)(k % 8 + 1);
	for (i = 0; i < m->vals_count; i++)
		m->vals[i] = (uint32_t)(i * 300u + (unsigned)k);
}

static void
rich(bytes *out, int variant)
{
	static const uint8_t chunk_data[] = "chunk of bytes";
	pbpfuzz_Rich m;
	blobdata d = { chunk_data, sizeof chunk_data - 1 };
	pb_size_t i;

	memset(&m, 0, sizeof m);
	m.has_maybe = true;
	m.maybe = variant ? 0 : -1;
	m.color = pbpfuzz_Color_BLUE;
	m.has_inner = true;
	inner(&m.inner, 1);
	m.inners_count = 3;
	for (i = 0; i < m.inners_count; i++)
		inner(&m.inners[i], (int)i + 2);
	switch (variant) {
	case 0:
		m.which_choice = pbpfuzz_Rich_str_tag;
		snprintf(m.choice.str, sizeof m.choice.str, "oneof string");
		break;
	case 1:
		m.which_choice = pbpfuzz_Rich_sub_tag;
		inner(&m.choice.sub, 9);
		break;
	case 2:
		m.which_choice = pbpfuzz_Rich_num_tag;
		m.choice.num = UINT64_MAX - 1;
		break;
	default:
		m.which_choice = pbpfuzz_Rich_raw_tag;
		m.choice.raw.size = 5;
		memcpy(m.choice.raw.bytes, "\x00\x01\xff\x80\x7f", 5);
		break;
	}
	m.tags_count = 2;
	snprintf(m.tags[0], sizeof m.tags[0], "alpha");
	snprintf(m.tags[1], sizeof m.tags[1], "beta");
	memcpy(m.fixed, "01234567", 8);
	m.floats_count = 4;
	for (i = 0; i < m.floats_count; i++)
		m.floats[i] = (float)i * 1.5f - 2.0f;
	m.sf64 = -123456789012345;
	m.counts_count = 2;
	snprintf(m.counts[0].key, sizeof m.counts[0].key, "one");
	m.counts[0].value = 1;
	snprintf(m.counts[1].key, sizeof m.counts[1].key, "minus");
	m.counts[1].value = -1;
	m.chunks.funcs.encode = write_blob;
	m.chunks.arg = &d;
	encode(out, pbpfuzz_Rich_fields, &m);
}

/* ---- the three corpora --------------------------------------------------- */

/* Frame harness control bytes (see frame_fuzzer.c). */
static const struct {
	const char *name;
	uint8_t ctl[2];
} frame_modes[] = {
	/* chunks of 1 byte, feed, drain each, 64 KiB start, 4 MiB limit */
	{ "feed1", { 0x00 | (0u << 4) | (3u << 6), 15 } },
	/* varying chunks up to 100, pile-up, 16-byte start, limit 1024 */
	{ "pile", { 0x08 | 0x05 | (1u << 4) | (1u << 6), 0x30 | 10 } },
	/* varying chunks up to 1000, space/commit, 1 KiB start, limit 256 */
	{ "space", { 0x08 | 0x06 | (2u << 4) | (2u << 6), 0x50 | 8 } },
	/* chunks up to 16, handshake switch to 4 MiB, 64 KiB start */
	{ "handshake", { 0x08 | 0x04 | (3u << 4) | (3u << 6), 0x20 | 15 } },
	/* chunks of 100, space/commit, drain only when full, limit 256 with
	 * no slack after the handshake: whole frames fill the buffer */
	{ "flush", { 0x05 | (3u << 4) | (2u << 6), 0xc0 | 8 } },
};

static void
frame_seed(const char *stream, const bytes *b)
{
	size_t i;

	for (i = 0; i < sizeof frame_modes / sizeof frame_modes[0]; i++) {
		char name[128];

		snprintf(name, sizeof name, "%s-%s", stream, frame_modes[i].name);
		write_seed("frame", name, frame_modes[i].ctl, 2, b->p, b->n);
	}
}

static void
frame_corpus(void)
{
	bytes s = { 0 }, p = { 0 };
	size_t cut, i;

	frame_seed("empty", &s);

	hello(&s, PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	frame_seed("hello", &s);

	text(&p, "hello, child");
	app(&s, pbptest_Type_TEXT, 1, &p);
	reset(&p);
	numbers(&p, 1);
	app(&s, pbptest_Type_NUMBERS, 2, &p);
	reset(&p);
	app(&s, pbptest_Type_EMPTY, 0, &p);
	blob(&p, 7, 300);
	app(&s, pbptest_Type_BLOB, 3, &p);
	reset(&p);
	text(&p, "answer");
	reply(&s, pbptest_Type_TEXT, 4, 1, 0, NULL, &p);
	reset(&p);
	reply(&s, pbptest_Type_TEXT, 5, 2, 17, "no such thing", &p);
	sync_frame(&s, 0, 6);
	sync_frame(&s, 1, 3);
	goodbye(&s, pbpipe_Goodbye_Reason_DONE, "bye");
	frame_seed("session", &s);

	/* Cut inside the second frame's header... */
	cut = 0;
	{
		uint32_t len;
		size_t hdr;

		if (pbp__frame_length(s.p, s.n, &len, &hdr) == 1)
			cut = hdr + len + 1;
	}
	{
		bytes t = { 0 };

		put(&t, s.p, cut);
		frame_seed("trunc-header", &t);
		/* ... and inside the last frame's body. */
		reset(&t);
		put(&t, s.p, s.n - 2);
		frame_seed("trunc-body", &t);
		free(t.p);
	}

	reset(&s);
	hello(&s, 1024, FUZZAPP_SCHEMA_FINGERPRINT);
	for (i = 0; i < 40; i++) {
		reset(&p);
		if (i % 3 == 1)
			text(&p, "x");
		app(&s, (uint32_t)(i % 5 + 1), i, &p);
	}
	frame_seed("many-small", &s);

	reset(&s);
	reset(&p);
	blob(&p, 1, 6000);
	app(&s, pbptest_Type_BLOB, 99, &p);
	frame_seed("big", &s);

	/* A length far over 256 and 1024 but under 4 MiB, then a few bytes. */
	{
		static const uint8_t over[] = { 0x80, 0x80, 0x80, 0x01, 0x1a, 0x00 };
		static const uint8_t six[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
		static const uint8_t big[] = { 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00 };
		static const uint8_t zeros[] = { 0x00, 0x00, 0x00 };
		/* Non-canonical prefix (0x85 0x00 = 5) around a Message. */
		static const uint8_t noncanon[] = { 0x85, 0x00, 0x1a, 0x03, 0x08, 0x01, 0x10 };
		bytes t = { 0 };

		put(&t, over, sizeof over);
		frame_seed("oversize", &t);
		reset(&t);
		put(&t, six, sizeof six);
		frame_seed("prefix-6-bytes", &t);
		reset(&t);
		put(&t, big, sizeof big);
		frame_seed("prefix-over-32-bits", &t);
		reset(&t);
		put(&t, zeros, sizeof zeros);
		frame_seed("empty-bodies", &t);
		reset(&t);
		put(&t, noncanon, sizeof noncanon);
		frame_seed("noncanonical-prefix", &t);
		free(t.p);
	}
	free(s.p);
	free(p.p);
}

static void
handshake_seed(const char *name, uint8_t ctl, const bytes *frame)
{
	bytes body = { 0 };

	strip_prefix(&body, frame);
	write_seed("handshake", name, &ctl, 1, body.p, body.n);
	free(body.p);
}

static void
handshake_corpus(void)
{
	bytes f = { 0 }, p = { 0 };
	pbpipe_Envelope env;

	hello(&f, PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	handshake_seed("hello", 0x03, &f);
	handshake_seed("hello-own-fingerprint", 0x00 | (2u << 3), &f);

	reset(&f);
	hello(&f, PBP_MIN_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	handshake_seed("hello-min-frame", 0x06, &f);
	reset(&f);
	hello(&f, PBP_MIN_MAX_FRAME - 1, FUZZAPP_SCHEMA_FINGERPRINT);
	handshake_seed("hello-frame-255", 0x05, &f);
	reset(&f);
	hello(&f, UINT32_MAX, FUZZAPP_SCHEMA_FINGERPRINT);
	handshake_seed("hello-frame-max", 0x04, &f);
	reset(&f);
	hello(&f, PBP_DEFAULT_MAX_FRAME, 0);
	handshake_seed("hello-no-fingerprint", 0x1b, &f);

	env = hello_env(PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	env.body.hello.magic ^= 0x01000000u;
	reset(&f);
	control(&f, &env);
	handshake_seed("hello-bad-magic", 0x00, &f);

	env = hello_env(PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	env.body.hello.major = PBP_PROTOCOL_MAJOR + 1;
	reset(&f);
	control(&f, &env);
	handshake_seed("hello-major-2", 0x00, &f);

	env = hello_env(PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	env.body.hello.minor = 9;
	env.body.hello.pointer_bits = 32;
	reset(&f);
	control(&f, &env);
	handshake_seed("hello-minor-9-32bit", 0x07, &f);

	/* A Hello from a later minor version with a field we do not know
	 * (field 8, varint 1) appended inside the Hello. */
	{
		bytes body = { 0 }, g = { 0 };
		uint8_t ctl = 0x06;

		env = hello_env(PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
		reset(&f);
		control(&f, &env);
		strip_prefix(&body, &f);
		/* body = 0a <len> <hello>; grow the Hello by two bytes. */
		body.p[1] = (uint8_t)(body.p[1] + 2);
		put(&body, "\x40\x01", 2);
		put(&g, &ctl, 1);
		put_bytes(&g, &body);
		write_seed("handshake", "hello-unknown-field", NULL, 0, g.p, g.n);
		free(body.p);
		free(g.p);
	}

	reset(&f);
	goodbye(&f, pbpipe_Goodbye_Reason_ERROR, "refusing to talk");
	handshake_seed("goodbye", 0x00, &f);

	reset(&f);
	text(&p, "too early");
	app(&f, pbptest_Type_TEXT, 5, &p);
	handshake_seed("message", 0x00, &f);

	{
		static const uint8_t empty_hello[] = { 0x00, 0x0a, 0x00 };
		static const uint8_t two_bodies[] = { 0x00, 0x0a, 0x00, 0x12, 0x00 };
		static const uint8_t nothing[] = { 0x00 };

		write_seed("handshake", "hello-empty", NULL, 0, empty_hello, sizeof empty_hello);
		write_seed("handshake", "two-bodies", NULL, 0, two_bodies, sizeof two_bodies);
		write_seed("handshake", "no-body", NULL, 0, nothing, sizeof nothing);
	}
	free(f.p);
	free(p.p);
}

static void
message_corpus(void)
{
	static const uint8_t raw = 0x00, env = 0x01;
	bytes p = { 0 }, f = { 0 }, body = { 0 };
	int v;

	text(&p, "hello");
	write_seed("message", "text", &raw, 1, p.p, p.n);
	app(&f, pbptest_Type_TEXT, 1, &p);
	strip_prefix(&body, &f);
	write_seed("message", "env-text", &env, 1, body.p, body.n);

	reset(&p);
	{
		char s[256];

		memset(s, 'a', sizeof s - 1);
		s[sizeof s - 1] = '\0';
		text(&p, s);
	}
	write_seed("message", "text-255", &raw, 1, p.p, p.n);

	reset(&p);
	numbers(&p, 0);
	write_seed("message", "numbers", &raw, 1, p.p, p.n);
	reset(&p);
	numbers(&p, 1);
	write_seed("message", "numbers-full", &raw, 1, p.p, p.n);
	reset(&f);
	reset(&body);
	app(&f, pbptest_Type_NUMBERS, UINT64_MAX, &p);
	strip_prefix(&body, &f);
	write_seed("message", "env-numbers", &env, 1, body.p, body.n);

	reset(&p);
	blob(&p, 3, 0);
	write_seed("message", "blob-empty", &raw, 1, p.p, p.n);
	reset(&p);
	blob(&p, 4, 10);
	write_seed("message", "blob-10", &raw, 1, p.p, p.n);
	reset(&p);
	blob(&p, 5, 1000);
	write_seed("message", "blob-1000", &raw, 1, p.p, p.n);
	reset(&f);
	reset(&body);
	app(&f, UINT32_MAX, 1ull << 40, &p);
	strip_prefix(&body, &f);
	write_seed("message", "env-blob-1000", &env, 1, body.p, body.n);

	reset(&p);
	write_seed("message", "empty", &raw, 1, p.p, p.n);
	reset(&f);
	reset(&body);
	app(&f, pbptest_Type_EMPTY, 0, &p);
	strip_prefix(&body, &f);
	write_seed("message", "env-empty", &env, 1, body.p, body.n);

	for (v = 0; v < 4; v++) {
		char name[32];

		reset(&p);
		rich(&p, v);
		snprintf(name, sizeof name, "rich-%d", v);
		write_seed("message", name, &raw, 1, p.p, p.n);
	}

	reset(&f);
	reset(&body);
	hello(&f, PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	strip_prefix(&body, &f);
	write_seed("message", "env-hello", &env, 1, body.p, body.n);
	/* The same bytes as a payload: decodes as pbpipe.Envelope too. */
	write_seed("message", "hello-as-payload", &raw, 1, body.p, body.n);

	reset(&f);
	reset(&body);
	goodbye(&f, pbpipe_Goodbye_Reason_SHUTDOWN, "asked to stop");
	strip_prefix(&body, &f);
	write_seed("message", "env-goodbye", &env, 1, body.p, body.n);

	reset(&p);
	numbers(&p, 0);
	reset(&f);
	reset(&body);
	reply(&f, pbptest_Type_NUMBERS, 8, 7, 0, NULL, &p);
	strip_prefix(&body, &f);
	write_seed("message", "env-reply", &env, 1, body.p, body.n);

	reset(&p);
	reset(&f);
	reset(&body);
	reply(&f, pbptest_Type_TEXT, 9, 8, 404, "not found", &p);
	strip_prefix(&body, &f);
	write_seed("message", "env-error-reply", &env, 1, body.p, body.n);

	/* An error message of 150 bytes of two-byte characters, built by
	 * hand because our encoder never sends more than 127: re-encoding it
	 * must cut at 126, not inside a character at 127. */
	{
		static const uint8_t pre[] = { 0x08, 0x01, 0x28, 0x05, 0x32 };
		bytes msg = { 0 }, e = { 0 };
		uint8_t hdr[PBP__VARINT64_MAX];
		size_t i;

		put(&msg, pre, sizeof pre);
		i = sizeof long_utf8 - 1 + 20;
		put(&msg, hdr, (size_t)(pbp__put_varint(hdr, i) - hdr));
		put(&msg, long_utf8, sizeof long_utf8 - 1);
		put(&msg, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 20);
		put(&e, "\x1a", 1);
		put(&e, hdr, (size_t)(pbp__put_varint(hdr, msg.n) - hdr));
		put_bytes(&e, &msg);
		write_seed("message", "env-error-long-utf8", &env, 1, e.p, e.n);
		free(msg.p);
		free(e.p);
	}

	reset(&f);
	reset(&body);
	sync_frame(&f, 0, 12345);
	strip_prefix(&body, &f);
	write_seed("message", "env-sync", &env, 1, body.p, body.n);
	reset(&f);
	reset(&body);
	sync_frame(&f, 1, UINT64_MAX);
	strip_prefix(&body, &f);
	write_seed("message", "env-sync-ack", &env, 1, body.p, body.n);

	free(p.p);
	free(f.p);
	free(body.p);
}

/* The differential harness takes bare envelope bodies: every kind as our
 * encoder writes it, and the edge cases of the wire rules (PROTOCOL.md
 * section 3) on both sides of each bound. */
static void
envdiff_seed(const char *name, const void *body, size_t n)
{
	write_seed("envelope_diff", name, NULL, 0, body, n);
}

static void
envdiff_frame(const char *name, const bytes *frame)
{
	bytes body = { 0 };

	strip_prefix(&body, frame);
	envdiff_seed(name, body.p, body.n);
	free(body.p);
}

/* Envelope field tag (LEN) around inner bytes. */
static void
envdiff_wrap(const char *name, uint8_t tag, const void *inner, size_t n)
{
	bytes b = { 0 };
	uint8_t hdr[1 + PBP__VARINT64_MAX];
	size_t h;

	hdr[0] = tag;
	h = (size_t)(pbp__put_varint(hdr + 1, n) - hdr);
	put(&b, hdr, h);
	put(&b, inner, n);
	envdiff_seed(name, b.p, b.n);
	free(b.p);
}

/* A Message with type 1, reply_to 1, error code 5 and an error message of
 * n bytes of c. */
static void
envdiff_errmsg(const char *name, size_t n, uint8_t c)
{
	bytes m = { 0 };
	uint8_t hdr[PBP__VARINT64_MAX];
	uint8_t *text = malloc(n + 1);

	if (text == NULL)
		exit(1);
	memset(text, c, n);
	put(&m, "\x08\x01\x20\x01\x28\x05\x32", 7);
	put(&m, hdr, (size_t)(pbp__put_varint(hdr, n) - hdr));
	put(&m, text, n);
	envdiff_wrap(name, 0x1a, m.p, m.n);
	free(text);
	free(m.p);
}

/* Protocol 1.2: the stream bodies as we send them, and their bounds. */
static void
envdiff_streams(void)
{
	static const pb_size_t tags[] = { pbpipe_Envelope_end_tag, pbpipe_Envelope_credit_tag,
	                                  pbpipe_Envelope_cancel_tag };
	static const char *const names[] = { "stream-end", "stream-credit", "stream-cancel" };
	uint8_t hdr[PBP__MSG_HEADER_MAX], m[4 + 128];
	pbp__reply r = { 0, 0, NULL, 1 };
	bytes f = { 0 };
	uint64_t body;
	size_t h, i;

	h = pbp__message_header_ex(hdr, pbptest_Type_TEXT, 0, &r, 0, &body);
	envdiff_seed("stream-open", hdr + 1, h - 1);
	h = pbp__message_header_ex(hdr, pbptest_Type_TEXT, 9, &r, 0, &body);
	envdiff_seed("stream-open-with-id", hdr + 1, h - 1);
	h = pbp__stream_data_header(hdr, 3, 5, &body);
	put(&f, hdr, h);
	put(&f, "chunk", 5);
	envdiff_frame("stream-data", &f);
	h = pbp__stream_data_header(hdr, 3, 0, &body);
	envdiff_seed("stream-data-empty", hdr + 1, h - 1);
	for (i = 0; i < 3; i++) {
		pbpipe_Envelope env;

		memset(&env, 0, sizeof env);
		env.which_body = tags[i];
		if (tags[i] == pbpipe_Envelope_end_tag) {
			env.body.end.stream = UINT64_MAX;
			env.body.end.error_code = 7;
			strcpy(env.body.end.error_message, "disk full");
		} else if (tags[i] == pbpipe_Envelope_credit_tag) {
			env.body.credit.stream = 2;
			env.body.credit.bytes = UINT32_MAX;
		} else {
			env.body.cancel.stream = 1;
			env.body.cancel.error_code = 0xffff0004u;
			strcpy(env.body.cancel.error_message, "too many streams");
		}
		reset(&f);
		control(&f, &env);
		envdiff_frame(names[i], &f);
	}
	envdiff_wrap("stream-data-chunk-varint", 0x32, "\x08\x01\x10\x05", 4);
	envdiff_wrap("stream-credit-over-32-bits", 0x42, "\x08\x01\x10\x80\x80\x80\x80\x10", 8);
	envdiff_wrap("stream-cancel-code-as-len", 0x4a, "\x08\x01\x12\x00", 4);
	memcpy(m, "\x08\x01\x1a\x7f", 4);
	memset(m + 4, 'm', 127);
	envdiff_wrap("stream-end-msg-127", 0x3a, m, 4 + 127);
	memcpy(m, "\x08\x01\x1a\x80\x01", 5);
	memset(m + 5, 'm', 127);
	envdiff_wrap("stream-end-msg-128", 0x3a, m, 5 + 127);
	free(f.p);
}

static void
envdiff_corpus(void)
{
	bytes f = { 0 }, p = { 0 };

	hello(&f, PBP_DEFAULT_MAX_FRAME, FUZZAPP_SCHEMA_FINGERPRINT);
	envdiff_frame("hello", &f);
	reset(&f);
	goodbye(&f, pbpipe_Goodbye_Reason_DONE, "bye");
	envdiff_frame("goodbye", &f);
	reset(&f);
	text(&p, "hello");
	app(&f, pbptest_Type_TEXT, 300, &p);
	envdiff_frame("message", &f);
	reset(&f);
	reply(&f, pbptest_Type_TEXT, 0, 7, 0, NULL, &p);
	envdiff_frame("reply", &f);
	reset(&f);
	reply(&f, pbptest_Type_TEXT, 0, 7, 42, "no such thing", &p);
	envdiff_frame("error-reply", &f);
	reset(&f);
	sync_frame(&f, 0, 5);
	envdiff_frame("sync", &f);
	reset(&f);
	sync_frame(&f, 1, UINT64_MAX);
	envdiff_frame("sync-ack", &f);

	/* Strings as we send them, whatever the application gave us: valid
	 * UTF-8, at most 127 bytes, never half a character.  Also parsed by
	 * stock protobuf in tests/interop/check_sent_strings.py. */
	{
		static const char ill[] =
			"bad \xff\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 cut \xe2\x82";
		char big[320];
		size_t i;

		reset(&f);
		reply(&f, 2, 0, 7, 42, ill, &p);
		envdiff_frame("sent-errmsg-ill-formed", &f);
		big[0] = 'a';
		for (i = 0; i < 100; i++)
			memcpy(big + 1 + 3 * i, "\xe2\x82\xac", 3);
		big[301] = '\0';
		reset(&f);
		reply(&f, 2, 0, 7, 42, big, &p);
		envdiff_frame("sent-errmsg-long", &f);
		memset(big, 0xfe, 200);
		big[200] = '\0';
		reset(&f);
		reply(&f, 2, 0, 7, 42, big, &p);
		envdiff_frame("sent-errmsg-long-ill-formed", &f);
		reset(&f);
		goodbye(&f, pbpipe_Goodbye_Reason_ERROR, ill);
		envdiff_frame("sent-goodbye-ill-formed", &f);
		/* 'x' and 50 four-byte characters: the detail field holds 127
		 * bytes of them, the last character cut in three. */
		big[0] = 'x';
		for (i = 0; i < 50; i++)
			memcpy(big + 1 + 4 * i, "\xf0\x9f\x98\x80", 4);
		big[201] = '\0';
		reset(&f);
		goodbye(&f, pbpipe_Goodbye_Reason_ERROR, big);
		envdiff_frame("sent-goodbye-cut", &f);
	}

	/* Keys: 5 bytes (padded) is the longest accepted; 6 bytes, or a
	 * 5th byte over 0x0f (a key of 2^32 and more), is a decode error. */
	envdiff_wrap("key-5-bytes", 0x1a, "\x88\x80\x80\x80\x00\x01", 6);
	envdiff_wrap("key-6-bytes", 0x1a, "\x88\x80\x80\x80\x80\x00\x01", 7);
	envdiff_wrap("key-2to32", 0x1a, "\x08\x01\x80\x80\x80\x80\x10\x01", 8);
	envdiff_wrap("key-2to35-1", 0x1a, "\x08\x01\xff\xff\xff\xff\x7f\x01", 8);
	envdiff_seed("envelope-key-sign-extended", "\x2a\x00\x80\x80\x80\x80\x78\x77", 8);
	envdiff_seed("envelope-key-10-bytes",
	             "\x9a\x80\x80\x80\x80\x80\x80\x80\x80\x00\x02\x08\x01", 13);
	/* Lengths: the same 5-byte rule. */
	envdiff_wrap("len-5-bytes", 0x1a, "\x08\x01\x1a\x82\x80\x80\x80\x00\xab\xcd", 10);
	envdiff_wrap("len-6-bytes", 0x1a, "\x08\x01\x1a\x82\x80\x80\x80\x80\x00\xab\xcd", 11);
	envdiff_seed("envelope-len-6-bytes", "\x1a\x82\x80\x80\x80\x80\x00\x08\x01", 9);
	/* Varints: 10 bytes with a last byte of 0 or 1 at most. */
	envdiff_wrap("id-10-bytes", 0x1a,
	             "\x08\x01\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 13);
	envdiff_wrap("id-10th-byte-2", 0x1a,
	             "\x08\x01\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 13);
	envdiff_wrap("type-10-bytes-padded", 0x1a,
	             "\x08\x81\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11);
	envdiff_wrap("type-over-32-bits", 0x1a, "\x08\x80\x80\x80\x80\x10", 6);
	envdiff_wrap("hello-unknown-varint-10", 0x0a,
	             "\x0d\x50\x50\x42\x50\x40\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 16);
	envdiff_wrap("hello-unknown-varint-11", 0x0a,
	             "\x0d\x50\x50\x42\x50\x40\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00", 17);
	envdiff_wrap("goodbye-unknown-varint-11", 0x12,
	             "\x08\x01\x40\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 14);
	envdiff_wrap("sync-key-6-bytes", 0x22, "\x88\x80\x80\x80\x80\x00\x05", 7);
	/* Goodbye.reason is an enum: a negative one is a 10-byte varint. */
	envdiff_wrap("goodbye-reason-minus-1", 0x12,
	             "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
	envdiff_wrap("goodbye-reason-2to32", 0x12, "\x08\x80\x80\x80\x80\x10", 6);
	/* String bounds: 127 bytes accepted, 128 a decode error. */
	envdiff_errmsg("errmsg-127", 127, 'e');
	envdiff_errmsg("errmsg-128", 128, 'e');
	envdiff_errmsg("errmsg-invalid-utf8", 20, 0xff);
	{
		uint8_t g[5 + 128];

		memcpy(g, "\x08\x02\x12\x7f", 4);
		memset(g + 4, 'd', 127);
		envdiff_wrap("goodbye-detail-127", 0x12, g, 4 + 127);
		memcpy(g, "\x08\x02\x12\x80\x01", 5);
		memset(g + 5, 'd', 128);
		envdiff_wrap("goodbye-detail-128", 0x12, g, 5 + 128);
	}
	/* Wire types: payload as a varint, groups, field 0. */
	envdiff_wrap("payload-varint", 0x1a, "\x08\x01\x18\x05", 4);
	envdiff_wrap("message-group", 0x1a, "\x08\x01\x3b\x3c", 4);
	envdiff_wrap("message-field-0", 0x1a, "\x08\x01\x00\x01", 4);
	envdiff_seed("envelope-body-varint", "\x18\x01", 2);
	/* Precedence: a decode error anywhere wins over two bodies or type 0. */
	envdiff_seed("two-bodies", "\x1a\x02\x08\x01\x12\x00", 6);
	envdiff_seed("two-bodies-second-bad", "\x1a\x02\x08\x01\x12\x02\x08", 7);
	envdiff_seed("type-0-then-bad", "\x1a\x00\x38", 3);
	envdiff_seed("type-0", "\x1a\x02\x10\x01", 4);
	envdiff_seed("no-body", "\x50\x01", 2);
	envdiff_seed("empty", "", 0);
	envdiff_streams();
	free(f.p);
	free(p.p);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_corpus OUTDIR (holding frame/ handshake/ message/ envelope_diff/)\n");
		return 2;
	}
	outdir = argv[1];
	frame_corpus();
	handshake_corpus();
	message_corpus();
	envdiff_corpus();
	return failures ? 1 : 0;
}
