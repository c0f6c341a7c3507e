/*
 * test_frame.c: the pure frame codec (lib/frame.c), on byte arrays only.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support.h"

#define T(name) Test(frame, name, .timeout = 20)

/* Appends a whole application frame to buf; returns its size. */
static size_t
app_frame(uint8_t *buf, uint32_t type, uint64_t id, const void *payload, size_t n)
{
	uint64_t body;
	size_t h = pbp__message_header(buf, type, id, n, &body);

	cr_assert_gt(h, 0);
	memcpy(buf + h, payload, n);
	return h + n;
}

T(varint_round_trip)
{
	static const uint64_t vals[] = { 0, 1, 127, 128, 300, 16383, 16384,
		                         (1u << 21) - 1, 1u << 21, UINT32_MAX };
	size_t i;

	for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		uint8_t b[PBP__VARINT64_MAX];
		uint32_t len;
		size_t hdr, n = (size_t)(pbp__put_varint(b, vals[i]) - b);

		cr_assert_eq(n, pbp__varint_size(vals[i]));
		cr_assert_eq(pbp__frame_length(b, n, &len, &hdr), 1);
		cr_assert_eq(len, vals[i]);
		cr_assert_eq(hdr, n);
		/* Every strict prefix needs more bytes. */
		cr_assert_eq(pbp__frame_length(b, n - 1, &len, &hdr), 0);
	}
}

T(length_prefix_too_long_or_too_big)
{
	static const uint8_t six[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	static const uint8_t big[] = { 0xff, 0xff, 0xff, 0xff, 0x1f }; /* 2^35-1 */
	uint32_t len;
	size_t hdr;

	cr_assert_eq(pbp__frame_length(six, sizeof six, &len, &hdr), PBP_EPROTO);
	cr_assert_eq(pbp__frame_length(big, sizeof big, &len, &hdr), PBP_EPROTO);
}

T(known_bytes_match_the_protobuf_encoding)
{
	/* Envelope{message: Message{type: 1, payload: "ab"}} as any protobuf
	 * library encodes it, with the varint length prefix. */
	static const uint8_t want[] = { 0x08, 0x1a, 0x06, 0x08, 0x01, 0x1a, 0x02, 'a', 'b' };
	/* ... and with id 300 (varint ac 02) and type 150 (96 01). */
	static const uint8_t want2[] = { 0x0c, 0x1a, 0x0a, 0x08, 0x96, 0x01, 0x10, 0xac,
		                         0x02, 0x1a, 0x02, 'a', 'b' };
	/* An empty payload is omitted, as proto3 omits default values. */
	static const uint8_t want3[] = { 0x04, 0x1a, 0x02, 0x08, 0x07 };
	uint8_t buf[64];

	cr_assert_eq(app_frame(buf, 1, 0, "ab", 2), sizeof want);
	cr_assert_arr_eq(buf, want, sizeof want);
	cr_assert_eq(app_frame(buf, 150, 300, "ab", 2), sizeof want2);
	cr_assert_arr_eq(buf, want2, sizeof want2);
	cr_assert_eq(app_frame(buf, 7, 0, "", 0), sizeof want3);
	cr_assert_arr_eq(buf, want3, sizeof want3);
}

T(message_round_trip_through_reader)
{
	static const uint32_t types[] = { 1, 127, 128, UINT32_MAX };
	static const uint64_t ids[] = { 0, 1, 1ull << 40, UINT64_MAX };
	static const size_t sizes[] = { 0, 1, 127, 128, 5000, 70000 };
	pbp__reader r;
	size_t ti, ii, si;
	uint8_t *buf = malloc(80000), *payload = malloc(70000);

	cr_assert_eq(pbp__reader_init(&r, PBP_DEFAULT_MAX_FRAME, 16), 0);
	for (si = 0; si < 70000; si++)
		payload[si] = (uint8_t)(si * 7);
	for (ti = 0; ti < 4; ti++)
		for (ii = 0; ii < 4; ii++)
			for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
				const uint8_t *body;
				size_t blen, n = app_frame(buf, types[ti], ids[ii], payload, sizes[si]);
				pbp__frame f;

				cr_assert_eq(pbp__reader_feed(&r, buf, n), 0);
				cr_assert_eq(pbp__reader_next(&r, &body, &blen), 1);
				cr_assert_eq(pbp__frame_decode(body, blen, &f, NULL), 0);
				cr_assert_eq(f.kind, PBP__FRAME_MESSAGE);
				cr_assert_eq(f.type, types[ti]);
				cr_assert_eq(f.id, ids[ii]);
				cr_assert_eq(f.payload_len, sizes[si]);
				if (sizes[si] > 0)
					cr_assert_arr_eq(f.payload, payload, sizes[si]);
				cr_assert_eq(pbp__reader_next(&r, &body, &blen), 0);
			}
	pbp__reader_free(&r);
	free(buf);
	free(payload);
}

T(control_frames_round_trip)
{
	pbpipe_Hello h = pbt_good_hello();
	pbpipe_Envelope env;
	uint8_t buf[256];
	size_t n, hdr;
	uint32_t len;
	pbp__frame f;

	n = pbt_hello_frame(buf, sizeof buf, &h);
	cr_assert_eq(pbp__frame_length(buf, n, &len, &hdr), 1);
	cr_assert_eq(hdr + len, n);
	cr_assert_eq(pbp__frame_decode(buf + hdr, len, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_HELLO);
	cr_assert_eq(f.hello.magic, PBP__MAGIC);
	cr_assert_eq(f.hello.schema_fingerprint, PBPTEST_SCHEMA_FINGERPRINT);
	cr_assert_eq(f.hello.max_frame, PBP_DEFAULT_MAX_FRAME);
	cr_assert_leq(len, pbpipe_Hello_size + 2);
	cr_assert_leq(n, PBP__HANDSHAKE_MAX_FRAME);

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_goodbye_tag;
	env.body.goodbye.reason = pbpipe_Goodbye_Reason_SHUTDOWN;
	strcpy(env.body.goodbye.detail, "bye now");
	cr_assert_eq(pbp__control_encode(buf, sizeof buf, &env, &n, NULL), 0);
	cr_assert_eq(pbp__frame_length(buf, n, &len, &hdr), 1);
	cr_assert_eq(pbp__frame_decode(buf + hdr, len, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_GOODBYE);
	cr_assert_eq(f.goodbye.reason, pbpipe_Goodbye_Reason_SHUTDOWN);
	cr_assert_str_eq(f.goodbye.detail, "bye now");
}

/* Three frames of different sizes back to back. */
static size_t
three_frames(uint8_t *buf, size_t ends[3])
{
	size_t n = 0;

	n += app_frame(buf + n, 1, 0, "x", 1);
	ends[0] = n;
	n += app_frame(buf + n, 2, 99, "hello world, a longer payload", 29);
	ends[1] = n;
	n += app_frame(buf + n, 3, 0, "", 0);
	ends[2] = n;
	return n;
}

T(one_byte_feeding)
{
	uint8_t buf[128];
	size_t ends[3], n = three_frames(buf, ends), i, got = 0;
	pbp__reader r;

	cr_assert_eq(pbp__reader_init(&r, 1024, 1), 0);
	for (i = 0; i < n; i++) {
		const uint8_t *body;
		size_t blen;
		int rc;

		cr_assert_eq(pbp__reader_feed(&r, buf + i, 1), 0);
		rc = pbp__reader_next(&r, &body, &blen);
		if (i + 1 == ends[got]) {
			cr_assert_eq(rc, 1, "frame %zu not complete at byte %zu", got, i);
			got++;
		} else {
			cr_assert_eq(rc, 0, "rc %d at byte %zu", rc, i);
		}
	}
	cr_assert_eq(got, 3);
	pbp__reader_free(&r);
}

T(truncation_at_every_offset)
{
	uint8_t buf[128];
	size_t ends[3], n = three_frames(buf, ends), cut;

	for (cut = 0; cut <= n; cut++) {
		const uint8_t *body;
		size_t blen, frames = 0;
		pbp__reader r;
		int rc, boundary = cut == 0 || cut == ends[0] || cut == ends[1] || cut == ends[2];

		cr_assert_eq(pbp__reader_init(&r, 1024, 64), 0);
		cr_assert_eq(pbp__reader_feed(&r, buf, cut), 0);
		pbp__reader_set_eof(&r);
		while ((rc = pbp__reader_next(&r, &body, &blen)) == 1)
			frames++;
		cr_assert_eq(rc, boundary ? PBP_EOF : PBP_ETRUNC, "cut %zu: rc %d", cut, rc);
		cr_assert_eq(frames, (size_t)(cut >= ends[0]) + (cut >= ends[1]) + (cut >= ends[2]));
		if (!boundary) {
			/* Sticky: asking again gives the same error. */
			cr_assert_eq(pbp__reader_next(&r, &body, &blen), PBP_ETRUNC);
			cr_assert_neq(strstr(r.error.msg, "end of stream inside"), NULL);
		}
		pbp__reader_free(&r);
	}
}

T(oversize_rejected_before_allocation)
{
	uint8_t hdr[8];
	size_t n = (size_t)(pbp__put_varint(hdr, 1025) - hdr), cap;
	const uint8_t *body;
	size_t blen;
	uint8_t *p;
	pbp__reader r;

	cr_assert_eq(pbp__reader_init(&r, 1024, 16), 0);
	cap = r.cap;
	cr_assert_eq(pbp__reader_feed(&r, hdr, n), 0);
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), PBP_EMSGSIZE);
	cr_assert_neq(strstr(r.error.msg, "1025"), NULL, "%s", r.error.msg);
	/* No buffer was sized from the declared length. */
	cr_assert_eq(pbp__reader_space(&r, &p, &blen), 0);
	cr_assert_eq(r.cap, cap);
	/* Sticky, even after valid bytes arrive. */
	cr_assert_eq(pbp__reader_feed(&r, "\x00", 1), 0);
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), PBP_EMSGSIZE);
	pbp__reader_free(&r);
}

T(limit_is_inclusive)
{
	uint8_t *buf = calloc(1, 2048);
	const uint8_t *body;
	size_t blen, n = (size_t)(pbp__put_varint(buf, 1024) - buf);
	pbp__reader r;

	cr_assert_eq(pbp__reader_init(&r, 1024, 16), 0);
	cr_assert_eq(pbp__reader_feed(&r, buf, n + 1024), 0);
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), 1);
	cr_assert_eq(blen, 1024);
	pbp__reader_free(&r);
	free(buf);
}

T(bad_length_prefix_is_sticky_eproto)
{
	static const uint8_t six[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	const uint8_t *body;
	size_t blen;
	pbp__reader r;

	cr_assert_eq(pbp__reader_init(&r, 1024, 16), 0);
	cr_assert_eq(pbp__reader_feed(&r, six, sizeof six), 0);
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), PBP_EPROTO);
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), PBP_EPROTO);
	pbp__reader_free(&r);
}

/* An envelope body and the code pbp__frame_decode() must return for it. */
typedef struct decode_case {
	const char *what;
	const char *bytes;
	size_t n;
	int rc;
} decode_case;

/* Decodes one case; checks its code, and that a failure is described. */
static void
check_decode(const decode_case *c, pbp_error *err)
{
	pbp__frame f;
	int rc;

	memset(err, 0, sizeof *err);
	rc = pbp__frame_decode((const uint8_t *)c->bytes, c->n, &f, err);
	cr_assert_eq(rc, c->rc, "%s: rc %d (%s)", c->what, rc, err->msg);
	if (rc != 0)
		cr_assert_eq(err->code, rc, "%s", c->what);
}

T(malformed_envelopes)
{
	static const decode_case cases[] = {
		{ "empty envelope", "", 0, PBP_EPROTO },
		{ "only an unknown field", "\x50\x05", 2, PBP_EPROTO },
		{ "two bodies", "\x1a\x02\x08\x01\x1a\x02\x08\x02", 8, PBP_EPROTO },
		{ "type 0", "\x1a\x02\x08\x00", 4, PBP_EPROTO },
		{ "no type", "\x1a\x00", 2, PBP_EPROTO },
		{ "body with varint wire type", "\x18\x01", 2, PBP_EDECODE },
		{ "body longer than the frame", "\x1a\x05\x08\x01", 4, PBP_EDECODE },
		{ "payload longer than the message", "\x1a\x04\x08\x01\x1a\x09", 6, PBP_EDECODE },
		{ "type with string wire type", "\x1a\x03\x0a\x01\x00", 5, PBP_EDECODE },
		{ "type over 32 bits", "\x1a\x06\x08\x80\x80\x80\x80\x10", 8, PBP_EDECODE },
		{ "zero tag", "\x00\x00", 2, PBP_EDECODE },
		{ "truncated varint", "\x1a\x02\x08\x80", 4, PBP_EDECODE },
		{ "truncated tag", "\xff\xff\xff", 3, PBP_EDECODE },
		{ "garbage", "\xff\xff\xff\xff", 4, PBP_EDECODE },
		{ "Hello with a bad field", "\x0a\x02\x0d\x01", 4, PBP_EDECODE },
		{ "Goodbye detail too long", "\x12\x83\x01\x12\x80\x01", 6, PBP_EDECODE },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		pbp_error err;

		check_decode(&cases[i], &err);
		if (strcmp(cases[i].what, "truncated tag") == 0)
			cr_assert_null(strstr(err.msg, "field number 0"), "%s", err.msg);
		cr_assert_neq(err.msg[0], '\0', "%s", cases[i].what);
	}
}

/* Protocol 1.2: the stream bodies and Message.stream, by the same wire
 * rules as the rest. */
T(stream_bodies_decode)
{
	static const uint8_t data[] = "\x32\x07\x08\x03\x12\x03" "abc";
	static const uint8_t end[] = "\x3a\x07\x08\x01\x10\x07\x1a\x01x";
	static const uint8_t credit[] = "\x42\x05\x08\x02\x10\xe8\x07";
	static const uint8_t cancel[] = "\x4a\x08\x08\x04\x10\x84\x80\xfc\xff\x0f";
	static const uint8_t open[] = "\x1a\x04\x08\x01\x38\x05";
	pbp__frame f;

	cr_assert_eq(pbp__frame_decode(data, sizeof data - 1, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_STREAM_DATA);
	cr_assert_eq(f.stream, 3);
	cr_assert_eq(f.chunk_len, 3);
	cr_assert_eq(f.chunk, data + 6, "the chunk is decoded in place");
	cr_assert_eq(pbp__frame_decode(end, sizeof end - 1, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_STREAM_END);
	cr_assert_eq(f.stream, 1);
	cr_assert_eq(f.error_code, 7);
	cr_assert_eq(f.error_len, 1);
	cr_assert_eq(f.error_msg[0], 'x');
	cr_assert_eq(pbp__frame_decode(credit, sizeof credit - 1, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_STREAM_CREDIT);
	cr_assert_eq(f.stream, 2);
	cr_assert_eq(f.credit, 1000);
	cr_assert_eq(pbp__frame_decode(cancel, sizeof cancel - 1, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_STREAM_CANCEL);
	cr_assert_eq(f.stream, 4);
	cr_assert_eq(f.error_code, PBP_REMOTE_TOO_MANY_STREAMS);
	cr_assert_eq(pbp__frame_decode(open, sizeof open - 1, &f, NULL), 0);
	cr_assert_eq(f.kind, PBP__FRAME_MESSAGE);
	cr_assert_eq(f.stream, 5);
}

T(malformed_stream_bodies)
{
	static const decode_case cases[] = {
		{ "a stream's header with an id", "\x1a\x06\x08\x01\x10\x02\x38\x05", 8, PBP_EPROTO },
		{ "a stream's header with reply_to", "\x1a\x06\x08\x01\x20\x02\x38\x05", 8,
		  PBP_EPROTO },
		{ "chunk as a varint", "\x32\x04\x08\x01\x10\x05", 6, PBP_EDECODE },
		{ "stream id as bytes", "\x3a\x02\x0a\x00", 4, PBP_EDECODE },
		{ "credit over 32 bits", "\x42\x08\x08\x01\x10\x80\x80\x80\x80\x10", 10,
		  PBP_EDECODE },
		{ "cancel code over 32 bits", "\x4a\x08\x08\x01\x10\x80\x80\x80\x80\x10", 10,
		  PBP_EDECODE },
		{ "stream body as a varint", "\x30\x01", 2, PBP_EDECODE },
		{ "stream id of 11 bytes", "\x32\x0c\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		  14, PBP_EDECODE },
		{ "data and a message", "\x32\x02\x08\x01\x1a\x02\x08\x01", 8, PBP_EPROTO },
		{ "data then a bad end", "\x32\x02\x08\x01\x3a\x01\x08", 7, PBP_EDECODE },
	};
	uint8_t big[6 + 128];
	decode_case c = { "end message of 128 bytes", (const char *)big, sizeof big, PBP_EDECODE };
	pbp_error err;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_decode(&cases[i], &err);
		cr_assert_neq(err.msg[0], '\0', "%s", cases[i].what);
	}
	/* StreamEnd{stream: 1, error_message: 128 bytes} is too long; 127 is
	 * not. */
	memcpy(big, "\x3a\x83\x01\x1a\x80\x01", 6);
	memset(big + 6, 'm', sizeof big - 6);
	c.n = 6 + 128;
	check_decode(&c, &err);
	cr_assert_neq(strstr(err.msg, "128 bytes"), NULL, "%s", err.msg);
	memcpy(big, "\x3a\x81\x01\x1a\x7f", 5);
	c = (decode_case){ "end message of 127 bytes", (const char *)big, 5 + 127, 0 };
	check_decode(&c, &err);
}

T(stream_data_header_round_trips)
{
	static const uint64_t ids[] = { 1, 127, 128, UINT64_MAX };
	static const size_t lens[] = { 0, 1, 127, 128, 300000 };
	uint8_t *buf = malloc(PBP__DATA_HEADER_MAX + 300000);
	size_t i, j;

	for (i = 0; i < 4; i++) {
		for (j = 0; j < 5; j++) {
			uint64_t body;
			size_t h = pbp__stream_data_header(buf, ids[i], lens[j], &body), hdr;
			uint32_t flen;
			pbp__frame f;

			cr_assert_leq(h, PBP__DATA_HEADER_MAX);
			memset(buf + h, 'c', lens[j]);
			cr_assert_eq(pbp__frame_length(buf, h, &flen, &hdr), 1);
			cr_assert_eq(flen, body);
			cr_assert_eq(hdr + flen, h + lens[j]);
			cr_assert_eq(pbp__frame_decode(buf + hdr, flen, &f, NULL), 0);
			cr_assert_eq(f.kind, PBP__FRAME_STREAM_DATA);
			cr_assert_eq(f.stream, ids[i]);
			cr_assert_eq(f.chunk_len, lens[j]);
			if (lens[j] > 0)
				cr_assert_eq(f.chunk, buf + h);
		}
	}
	free(buf);
}

T(unknown_fields_are_skipped)
{
	/* Message{type: 5, unknown field 9 varint, payload "z"} plus an
	 * unknown envelope field 15 (fixed32) after the body. */
	static const uint8_t body[] = { 0x1a, 0x07, 0x08, 0x05, 0x48, 0x01, 0x1a, 0x01, 'z',
		                        0x7d, 1, 2, 3, 4 };
	pbp__frame f;

	cr_assert_eq(pbp__frame_decode(body, sizeof body, &f, NULL), 0);
	cr_assert_eq(f.type, 5);
	cr_assert_eq(f.payload_len, 1);
	cr_assert_eq(f.payload[0], 'z');
}

T(reader_grows_only_to_what_it_needs)
{
	uint8_t *buf = malloc(300000), *payload = calloc(1, 250000);
	size_t n = app_frame(buf, 1, 0, payload, 250000);
	const uint8_t *body;
	size_t blen;
	pbp__reader r;

	cr_assert_eq(pbp__reader_init(&r, 260000, 1024), 0);
	cr_assert_eq(pbp__reader_feed(&r, buf, n), 0);
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), 1);
	cr_assert_leq(r.cap, 260000 + PBP__VARINT32_MAX);
	pbp__reader_free(&r);
	free(buf);
	free(payload);
}

T(tiny_buffer_still_takes_a_whole_length_prefix)
{
	/* A reader made with a 1-byte buffer must still make room for a
	 * 5-byte length prefix (it used to offer 0 bytes forever). */
	uint8_t frame[300], *p;
	size_t n = app_frame(frame, 1, 0, "x", 1), room, i;
	const uint8_t *body;
	size_t blen;
	pbp__reader r;

	memset(frame + n, 0, sizeof frame - n);
	n = (size_t)(pbp__put_varint(frame, 200) - frame) + 200; /* a 2-byte prefix */
	cr_assert_eq(pbp__reader_init(&r, 1024, 1), 0);
	for (i = 0; i < n; i += room) {
		cr_assert_eq(pbp__reader_space(&r, &p, &room), 0);
		cr_assert_gt(room, 0, "no room at byte %zu", i);
		if (room > n - i)
			room = n - i;
		memcpy(p, frame + i, room);
		pbp__reader_commit(&r, room);
	}
	cr_assert_eq(pbp__reader_next(&r, &body, &blen), 1);
	cr_assert_eq(blen, 200);
	pbp__reader_free(&r);
}

/* ---- issue 12.7: strings sent are valid UTF-8 ---------------------------- */

T(utf8_copy_replaces_ill_formed_sequences)
{
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} cases[] = {
		{ "plain", 5, "plain" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
		{ "a\xff" "b", 3, "a\xef\xbf\xbd" "b" },                 /* invalid byte */
		{ "\x80\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd" },           /* stray continuations */
		{ "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd" },           /* overlong '/' */
		{ "\xe0\x80\xaf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* overlong, 3 bytes */
		{ "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* surrogate U+D800 */
		{ "\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* > U+10FFFF */
		{ "\xe2\x82x", 3, "\xef\xbf\xbdx" },                    /* cut short: one U+FFFD */
		{ "ab\xf0\x9f\x98", 5, "ab\xef\xbf\xbd" },               /* cut short at the end */
		{ "a\0b", 3, "a" },                                      /* stops at NUL */
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[64];
		size_t n = pbp__utf8_copy(out, sizeof out, cases[i].in, cases[i].n);

		cr_assert_str_eq(out, cases[i].want, "case %zu", i);
		cr_assert_eq(n, strlen(cases[i].want), "case %zu", i);
		cr_assert(pbp__utf8_valid(out, n), "case %zu", i);
	}
	cr_assert_not(pbp__utf8_valid("\xed\xbf\xbf", 3)); /* U+DFFF */
	cr_assert(pbp__utf8_valid("\xef\xbf\xbf", 3));      /* U+FFFF */
	cr_assert(pbp__utf8_valid("", 0));
}

T(utf8_copy_never_cuts_a_character)
{
	char out[8];

	/* 3 + 3 bytes, room for 7: the euro fits twice. */
	cr_assert_eq(pbp__utf8_copy(out, 8, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9), 6);
	cr_assert_str_eq(out, "\xe2\x82\xac\xe2\x82\xac");
	/* An emoji does not fit in 3 bytes: nothing of it is copied. */
	cr_assert_eq(pbp__utf8_copy(out, 4, "\xf0\x9f\x98\x80", 4), 0);
	cr_assert_str_eq(out, "");
	/* Nor does half of a U+FFFD. */
	cr_assert_eq(pbp__utf8_copy(out, 5, "ab\xff", 3), 2);
	cr_assert_str_eq(out, "ab");
	cr_assert_eq(pbp__utf8_copy(out, 1, "abc", 3), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(pbp__utf8_copy(out, 0, "abc", 3), 0);
	cr_assert_eq(pbp__utf8_copy(out, sizeof out, NULL, 0), 0);
	cr_assert_str_eq(out, "");
}

/* Encodes an error reply with message m and decodes it again. */
static void
error_reply(const char *m, pbp__frame *f, uint8_t *buf)
{
	pbp__reply r = { 7, 42, m, 0 };
	uint64_t body_len;
	uint32_t len;
	size_t hdr, h = pbp__message_header_ex(buf, 2, 0, &r, 0, &body_len);
	pbp_error err = { 0 };

	cr_assert_gt(h, 0);
	cr_assert_leq(h, PBP__MSG_HEADER_MAX);
	cr_assert_eq(pbp__frame_length(buf, h, &len, &hdr), 1);
	cr_assert_eq(hdr + len, h);
	cr_assert_eq(pbp__frame_decode(buf + hdr, len, f, &err), 0, "%s", err.msg);
}

T(reply_error_message_is_sent_as_valid_utf8)
{
	uint8_t buf[PBP__MSG_HEADER_MAX];
	char longer[320];
	pbp__frame f;
	size_t i;

	error_reply("bad \xff byte, cut \xe2\x82", &f, buf);
	cr_assert_eq(f.error_len, strlen("bad \xef\xbf\xbd byte, cut \xef\xbf\xbd"));
	cr_assert_arr_eq(f.error_msg, "bad \xef\xbf\xbd byte, cut \xef\xbf\xbd", f.error_len);

	/* 200 invalid bytes: 42 replacements (126 bytes), not 127. */
	memset(longer, 0xfe, 200);
	longer[200] = '\0';
	error_reply(longer, &f, buf);
	cr_assert_eq(f.error_len, 126);
	cr_assert(pbp__utf8_valid(f.error_msg, f.error_len));

	/* 'a' then 100 euro signs: cut after 42 of them (1 + 126 bytes). */
	longer[0] = 'a';
	for (i = 0; i < 100; i++)
		memcpy(longer + 1 + 3 * i, "\xe2\x82\xac", 3);
	longer[301] = '\0';
	error_reply(longer, &f, buf);
	cr_assert_eq(f.error_len, 127);
	cr_assert(pbp__utf8_valid(f.error_msg, f.error_len));
	cr_assert_arr_eq(f.error_msg, longer, 127);
}

T(goodbye_detail_is_sent_as_valid_utf8)
{
	pbpipe_Envelope env;
	uint8_t buf[PBP__HANDSHAKE_MAX_FRAME];
	size_t written, hdr;
	uint32_t len;
	pbp__frame f;
	pbp_error err = { 0 };

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_goodbye_tag;
	env.body.goodbye.reason = pbpipe_Goodbye_Reason_ERROR;
	/* Not UTF-8, and cut inside a character by someone else. */
	snprintf(env.body.goodbye.detail, sizeof env.body.goodbye.detail,
	         "\xc0\xafpath \xe2\x82");
	cr_assert_eq(pbp__control_encode(buf, sizeof buf, &env, &written, &err), 0, "%s", err.msg);
	cr_assert_eq(pbp__frame_length(buf, written, &len, &hdr), 1);
	cr_assert_eq(pbp__frame_decode(buf + hdr, len, &f, &err), 0, "%s", err.msg);
	cr_assert_str_eq(f.goodbye.detail, "\xef\xbf\xbd\xef\xbf\xbdpath \xef\xbf\xbd");
	/* The caller's envelope is left alone. */
	cr_assert_str_eq(env.body.goodbye.detail, "\xc0\xafpath \xe2\x82");
}

/* ---- issue 13.14: the decoders agree, by the rules of PROTOCOL.md -------- */

T(wire_rules_keys_lengths_varints_strings)
{
	static const decode_case cases[] = {
		{ "key of 5 bytes", "\x1a\x06\x88\x80\x80\x80\x00\x01", 8, 0 },
		{ "key of 6 bytes", "\x1a\x07\x88\x80\x80\x80\x80\x00\x01", 9, PBP_EDECODE },
		{ "key of 2^32", "\x1a\x08\x08\x01\x80\x80\x80\x80\x10\x01", 10, PBP_EDECODE },
		{ "key of 2^35-1", "\x1a\x08\x08\x01\xff\xff\xff\xff\x7f\x01", 10, PBP_EDECODE },
		{ "envelope key of 10 bytes", "\x9a\x80\x80\x80\x80\x80\x80\x80\x80\x00\x02\x08\x01",
		  13, PBP_EDECODE },
		{ "length of 5 bytes", "\x1a\x0a\x08\x01\x1a\x82\x80\x80\x80\x00\xab\xcd", 12, 0 },
		{ "length of 6 bytes", "\x1a\x0b\x08\x01\x1a\x82\x80\x80\x80\x80\x00\xab\xcd", 13,
		  PBP_EDECODE },
		{ "body length of 6 bytes", "\x1a\x82\x80\x80\x80\x80\x00\x08\x01", 9, PBP_EDECODE },
		{ "type of 10 bytes", "\x1a\x0b\x08\x81\x80\x80\x80\x80\x80\x80\x80\x80\x00", 13, 0 },
		{ "id with a 10th byte of 2",
		  "\x1a\x0d\x08\x01\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 15, PBP_EDECODE },
		{ "Hello: unknown varint of 11 bytes",
		  "\x0a\x11\x0d\x50\x50\x42\x50\x40\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00", 19,
		  PBP_EDECODE },
		{ "Goodbye: unknown varint of 11 bytes",
		  "\x12\x0e\x08\x01\x40\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 16, PBP_EDECODE },
		{ "Sync: key of 6 bytes", "\x22\x07\x88\x80\x80\x80\x80\x00\x05", 9, PBP_EDECODE },
		{ "SyncAck: key 0x78-extended", "\x2a\x00\x80\x80\x80\x80\x78\x77", 8, PBP_EDECODE },
		{ "payload as a varint", "\x1a\x04\x08\x01\x18\x05", 6, PBP_EDECODE },
		{ "two bodies, the second malformed", "\x1a\x02\x08\x01\x12\x02\x08", 7, PBP_EDECODE },
		{ "type 0, then malformed", "\x1a\x00\x38", 3, PBP_EDECODE },
		{ "two good bodies", "\x1a\x02\x08\x01\x12\x00", 6, PBP_EPROTO },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		pbp_error err;

		check_decode(&cases[i], &err);
	}
}

/* A Message with an error message of n bytes. */
static int
decode_errmsg(size_t n, pbp__frame *f, pbp_error *err)
{
	uint8_t body[300];
	size_t m = 0;

	body[m++] = 0x1a;
	m = (size_t)(pbp__put_varint(body + m, 7 + pbp__varint_size(n) + n) - body);
	memcpy(body + m, "\x08\x01\x20\x01\x28\x05\x32", 7);
	m += 7;
	m = (size_t)(pbp__put_varint(body + m, n) - body);
	memset(body + m, 'e', n);
	return pbp__frame_decode(body, m + n, f, err);
}

T(error_message_over_127_bytes_is_a_decode_error)
{
	pbp_error err = { 0 };
	pbp__frame f;

	cr_assert_eq(decode_errmsg(127, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(f.error_len, 127);
	cr_assert_eq(decode_errmsg(128, &f, &err), PBP_EDECODE);
	cr_assert_neq(strstr(err.msg, "error_message of 128 bytes"), NULL, "%s", err.msg);
	cr_assert_eq(decode_errmsg(200, &f, &err), PBP_EDECODE);
}

T(received_strings_are_not_checked_for_utf8)
{
	/* Goodbye{reason: 2^32-1, detail: "\xff"} and an error message
	 * "\xc0": both accepted as they are.  A reason over 32 bits (as a
	 * negative one is, in 10 bytes) is a decode error. */
	static const uint8_t bye[] = { 0x12, 0x09, 0x08, 0xff, 0xff, 0xff, 0xff, 0x0f,
		                       0x12, 0x01, 0xff };
	static const uint8_t neg[] = { 0x12, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		                       0xff, 0xff, 0xff, 0x01 };
	static const uint8_t msg[] = { 0x1a, 0x0b, 0x08, 0x01, 0x20, 0x01, 0x28, 0x05, 0x32,
		                       0x01, 0xc0, 0x48, 0x00 };
	pbp_error err = { 0 };
	pbp__frame f;

	cr_assert_eq(pbp__frame_decode(bye, sizeof bye, &f, &err), 0, "%s", err.msg);
	cr_assert_eq((uint32_t)f.goodbye.reason, UINT32_MAX);
	cr_assert_str_eq(f.goodbye.detail, "\xff");
	cr_assert_eq(pbp__frame_decode(neg, sizeof neg, &f, &err), PBP_EDECODE);
	cr_assert_eq(pbp__frame_decode(msg, sizeof msg, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(f.error_len, 1);
	cr_assert_eq((unsigned char)f.error_msg[0], 0xc0);
}
