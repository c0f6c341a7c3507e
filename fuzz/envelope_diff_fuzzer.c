/*
 * envelope_diff_fuzzer.c: differential fuzzing of envelope decoding.  The
 * same bytes go through pbp__frame_decode (the library's decoder: Envelope
 * and Message by hand, the other bodies with nanopb after a wire check)
 * and through plain nanopb (pb_decode of the generated pbpipe_Envelope),
 * and the two must agree on accept/reject and on every decoded value.
 *
 * Input: one envelope body (a frame without its length prefix), no
 * control bytes.
 *
 * The reference ("what PROTOCOL.md section 3 says") is nanopb plus the
 * rules in which pbpipe is documented to be stricter than nanopb, each
 * detected here independently of lib/:
 *   W1  a field key longer than 5 bytes, or over 32 bits (5th byte > 0x0f);
 *   W2  a length longer than 5 bytes, or over 32 bits;
 *   W3  a varint longer than 10 bytes, or a 10th byte other than 0 or 1
 *       (nanopb skips unknown varints of any length);
 *   W4  Message.payload or StreamData.chunk (1.2) with a wire type other
 *       than 2 (nanopb skips a callback field of any wire type);
 * found at any level (W1-W3 by walk() below, W4 by a payload callback
 * that sees where nanopb's stream points).  Then:
 *   - nanopb rejects, or W1-W4 hold     => PBP_EDECODE;
 *   - otherwise, no body, two or more body fields (nanopb lets the last
 *     win or merges them), a Message of type 0, or a Message whose stream
 *     (1.2) is nonzero with a nonzero id or reply_to => PBP_EPROTO;
 *   - otherwise 0, with the same kind and the same field values: every
 *     Hello field, Goodbye reason and detail, Message type, id,
 *     reply_to, error_code, error_message (byte for byte, at most 127
 *     bytes), stream and payload (the same bytes in place), Sync/SyncAck
 *     id; StreamData stream and chunk (in place), StreamEnd and
 *     StreamCancel stream, code and message, StreamCredit stream and
 *     bytes.
 * Any disagreement aborts.
 */
#include <stdbool.h>
#include <string.h>

#include <pb_decode.h>

#include "fuzz_checks.h"

/* ---- W1-W3: the walk ------------------------------------------------------ */

/* Reads a varint of at most max bytes (max 5: also < 2^32; max 10: the
 * 10th byte 0 or 1).  Returns its length, 0 if it runs past the end (nanopb
 * rejects that anyway), or -1 if it breaks the rule. */
static int
raw_varint(const uint8_t *p, size_t n, int max, uint64_t *v)
{
	uint64_t r = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((int)i == max)
			return -1;
		if (max == 5 && i == 4 && p[i] > 0x0f)
			return -1;
		if (max == 10 && i == 9 && p[i] > 1)
			return -1;
		if (i < 10)
			r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = r;
			return (int)i + 1;
		}
	}
	return 0;
}

/* Walks one message level: 1 when a rule W1-W3 is broken anywhere in it
 * (envelope: also in its bodies), 0 otherwise or when it stops at
 * something nanopb rejects by itself. */
static int
walk(const uint8_t *p, size_t n, bool envelope)
{
	while (n > 0) {
		uint64_t key, v;
		int k = raw_varint(p, n, 5, &key);
		unsigned wt;

		if (k < 0)
			return 1;
		if (k == 0)
			return 0;
		p += k;
		n -= (size_t)k;
		wt = (unsigned)(key & 7);
		if (wt == 0) {
			k = raw_varint(p, n, 10, &v);
			if (k < 0)
				return 1;
			if (k == 0)
				return 0;
			p += k;
			n -= (size_t)k;
		} else if (wt == 1 || wt == 5) {
			size_t w = wt == 1 ? 8 : 4;

			if (n < w)
				return 0;
			p += w;
			n -= w;
		} else if (wt == 2) {
			k = raw_varint(p, n, 5, &v);
			if (k < 0)
				return 1;
			if (k == 0 || v > n - (size_t)k)
				return 0;
			p += k;
			n -= (size_t)k;
			if (envelope && key >> 3 >= 1 && key >> 3 <= 9 && walk(p, (size_t)v, false))
				return 1;
			p += v;
			n -= (size_t)v;
		} else {
			return 0;
		}
	}
	return 0;
}

/* ---- nanopb, with Message bodies decoded once more for the payload ---------- */

typedef struct capture {
	const uint8_t *base, *end; /* the input */
	const uint8_t *payload;    /* the last payload, in place */
	size_t payload_len;
	bool seen;
	bool wrong_wire_type;      /* W4 */
} capture;

static bool
take_payload(pb_istream_t *s, const pb_field_t *field, void **arg)
{
	capture *c = *arg;
	const uint8_t *at = s->state;

	(void)field;
	/* A length-delimited field's substream reads the input in place; any
	 * other wire type is copied into a buffer of nanopb's own first. */
	if (at < c->base || at > c->end) {
		c->wrong_wire_type = true;
	} else {
		c->payload = at;
		c->payload_len = s->bytes_left;
		c->seen = true;
	}
	return pb_read(s, NULL, s->bytes_left);
}

typedef struct reference {
	bool ok;             /* nanopb accepts the envelope (and every Message in it) */
	bool stricter;       /* W1-W4 */
	int bodies;          /* body fields (numbers 1-9) at the top level */
	pbpipe_Envelope env; /* nanopb's result */
	pbpipe_Message msg;  /* the last Message body, decoded again */
	capture cap;         /* its payload */
	pbpipe_StreamData data; /* the last StreamData body, decoded again */
	capture dcap;        /* its chunk */
} reference;

static void
reference_decode(const uint8_t *data, size_t size, reference *ref)
{
	pb_istream_t s = pb_istream_from_buffer(data, size);

	memset(ref, 0, sizeof *ref);
	ref->ok = pb_decode(&s, pbpipe_Envelope_fields, &ref->env);
	ref->stricter = walk(data, size, true) != 0;
	if (!ref->ok)
		return;
	/* nanopb accepted, so the top level walks cleanly with its own
	 * primitives; decode every Message body again with a payload
	 * callback (inside the oneof nanopb clears callbacks). */
	s = pb_istream_from_buffer(data, size);
	for (;;) {
		pb_wire_type_t wt;
		uint32_t tag;
		bool eof;

		if (!pb_decode_tag(&s, &wt, &tag, &eof)) {
			FUZZ_CHECK(eof, "nanopb accepted, but its tag walk fails: %s",
			           PB_GET_ERROR(&s));
			break;
		}
		if (tag >= 1 && tag <= 9)
			ref->bodies++;
		if (tag == 3 && wt == PB_WT_STRING) {
			pb_istream_t sub;
			capture cap = { data, data + size, NULL, 0, false, ref->cap.wrong_wire_type };

			FUZZ_CHECK(pb_make_string_substream(&s, &sub), "substream");
			memset(&ref->msg, 0, sizeof ref->msg);
			ref->msg.payload.funcs.decode = take_payload;
			ref->msg.payload.arg = &cap;
			FUZZ_CHECK(pb_decode(&sub, pbpipe_Message_fields, &ref->msg),
			           "a Message nanopb accepted in the envelope fails alone: %s",
			           PB_GET_ERROR(&sub));
			FUZZ_CHECK(pb_close_string_substream(&s, &sub), "close substream");
			ref->cap = cap;
		} else if (tag == 6 && wt == PB_WT_STRING) {
			pb_istream_t sub;
			capture cap = { data, data + size, NULL, 0, false, ref->dcap.wrong_wire_type };

			FUZZ_CHECK(pb_make_string_substream(&s, &sub), "substream");
			memset(&ref->data, 0, sizeof ref->data);
			ref->data.chunk.funcs.decode = take_payload;
			ref->data.chunk.arg = &cap;
			FUZZ_CHECK(pb_decode(&sub, pbpipe_StreamData_fields, &ref->data),
			           "a StreamData nanopb accepted in the envelope fails alone: %s",
			           PB_GET_ERROR(&sub));
			FUZZ_CHECK(pb_close_string_substream(&s, &sub), "close substream");
			ref->dcap = cap;
		} else {
			FUZZ_CHECK(pb_skip_field(&s, wt), "nanopb accepted, but skipping fails");
		}
	}
	if (ref->cap.wrong_wire_type || ref->dcap.wrong_wire_type)
		ref->stricter = true;
}

/* ---- the comparison ----------------------------------------------------------- */

static void
compare_message(const reference *ref, const pbp__frame *f)
{
	const pbpipe_Message *m = &ref->msg;

	FUZZ_CHECK(f->type == m->type && f->id == m->id && f->reply_to == m->reply_to &&
	           f->error_code == m->error_code && f->stream == m->stream,
	           "Message fields: type %u/%u id %llu/%llu reply_to %llu/%llu code %u/%u",
	           (unsigned)f->type, (unsigned)m->type, (unsigned long long)f->id,
	           (unsigned long long)m->id, (unsigned long long)f->reply_to,
	           (unsigned long long)m->reply_to, (unsigned)f->error_code,
	           (unsigned)m->error_code);
	FUZZ_CHECK(f->error_len <= PBP__ERRMSG_WIRE_MAX, "error message of %zu bytes",
	           f->error_len);
	FUZZ_CHECK(f->error_len == 0 || memcmp(f->error_msg, m->error_message, f->error_len) == 0,
	           "error message bytes differ");
	FUZZ_CHECK(m->error_message[f->error_len] == '\0',
	           "error message: %zu bytes by hand, nanopb has more", f->error_len);
	if (ref->cap.seen) {
		FUZZ_CHECK(f->payload_len == ref->cap.payload_len,
		           "payload length %zu by hand, %zu by nanopb", f->payload_len,
		           ref->cap.payload_len);
		FUZZ_CHECK(f->payload_len == 0 || f->payload == ref->cap.payload,
		           "payload at a different place");
	} else {
		FUZZ_CHECK(f->payload_len == 0, "payload of %zu bytes by hand, none by nanopb",
		           f->payload_len);
	}
}

/* StreamEnd and StreamCancel: stream, code and message. */
static void
compare_stream_end(const pbp__frame *f, uint64_t stream, uint32_t code, const char *msg)
{
	FUZZ_CHECK(f->stream == stream && f->error_code == code, "stream %llu/%llu code %u/%u",
	           (unsigned long long)f->stream, (unsigned long long)stream,
	           (unsigned)f->error_code, (unsigned)code);
	FUZZ_CHECK(f->error_len <= PBP__ERRMSG_WIRE_MAX, "stream message of %zu bytes",
	           f->error_len);
	FUZZ_CHECK(f->error_len == 0 || memcmp(f->error_msg, msg, f->error_len) == 0,
	           "stream message bytes differ");
	FUZZ_CHECK(msg[f->error_len] == '\0', "stream message: %zu bytes by hand, nanopb has more",
	           f->error_len);
}

static void
compare_stream(const reference *ref, const pbp__frame *f)
{
	const pbpipe_Envelope *e = &ref->env;

	switch (f->kind) {
	case PBP__FRAME_STREAM_DATA:
		FUZZ_CHECK(f->stream == ref->data.stream, "StreamData stream differs");
		if (ref->dcap.seen)
			FUZZ_CHECK(f->chunk_len == ref->dcap.payload_len &&
			           (f->chunk_len == 0 || f->chunk == ref->dcap.payload),
			           "chunk of %zu bytes by hand, %zu by nanopb, or elsewhere",
			           f->chunk_len, ref->dcap.payload_len);
		else
			FUZZ_CHECK(f->chunk_len == 0, "chunk of %zu bytes by hand, none by nanopb",
			           f->chunk_len);
		break;
	case PBP__FRAME_STREAM_END:
		compare_stream_end(f, e->body.end.stream, e->body.end.error_code,
		                   e->body.end.error_message);
		break;
	case PBP__FRAME_STREAM_CANCEL:
		compare_stream_end(f, e->body.cancel.stream, e->body.cancel.error_code,
		                   e->body.cancel.error_message);
		break;
	default:
		FUZZ_CHECK(f->stream == e->body.credit.stream && f->credit == e->body.credit.bytes,
		           "StreamCredit differs");
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *body = fuzz_dup(data, size);
	static reference ref;
	pbp__frame f;
	int rc, want;

	if (body == NULL)
		return 0;
	reference_decode(body, size, &ref);
	memset(&f, 0, sizeof f);
	rc = fuzz_decode_frame(body, size, &f);

	if (!ref.ok || ref.stricter)
		want = PBP_EDECODE;
	else if (ref.bodies != 1 || ref.env.which_body == 0 ||
	         (ref.env.which_body == pbpipe_Envelope_message_tag && ref.msg.type == 0) ||
	         (ref.env.which_body == pbpipe_Envelope_message_tag && ref.msg.stream != 0 &&
	          (ref.msg.id != 0 || ref.msg.reply_to != 0)))
		want = PBP_EPROTO;
	else
		want = 0;
	FUZZ_CHECK(rc == want,
	           "pbp__frame_decode returned %d, the reference %d (nanopb %s%s, %d bodies, kind %u)",
	           rc, want, ref.ok ? "accepts" : "rejects",
	           ref.stricter ? ", pbpipe is stricter" : "", ref.bodies,
	           (unsigned)ref.env.which_body);
	if (rc == 0) {
		FUZZ_CHECK(f.kind == (int)ref.env.which_body, "kind %d, nanopb %u", f.kind,
		           (unsigned)ref.env.which_body);
		switch (f.kind) {
		case PBP__FRAME_HELLO: {
			const pbpipe_Hello *a = &f.hello, *b = &ref.env.body.hello;

			FUZZ_CHECK(a->magic == b->magic && a->major == b->major &&
			           a->minor == b->minor && a->pid == b->pid &&
			           a->pointer_bits == b->pointer_bits &&
			           a->max_frame == b->max_frame &&
			           a->schema_fingerprint == b->schema_fingerprint &&
			           a->stream_window == b->stream_window,
			           "Hello fields differ");
			break;
		}
		case PBP__FRAME_GOODBYE:
			FUZZ_CHECK(f.goodbye.reason == ref.env.body.goodbye.reason &&
			           strcmp(f.goodbye.detail, ref.env.body.goodbye.detail) == 0,
			           "Goodbye differs: %d '%s' / %d '%s'", (int)f.goodbye.reason,
			           f.goodbye.detail, (int)ref.env.body.goodbye.reason,
			           ref.env.body.goodbye.detail);
			break;
		case PBP__FRAME_MESSAGE:
			compare_message(&ref, &f);
			break;
		case PBP__FRAME_SYNC:
			FUZZ_CHECK(f.sync_id == ref.env.body.sync.id, "Sync id differs");
			break;
		case PBP__FRAME_SYNC_ACK:
			FUZZ_CHECK(f.sync_id == ref.env.body.sync_ack.id, "SyncAck id differs");
			break;
		default:
			compare_stream(&ref, &f);
			break;
		}
	}
	free(body);
	return 0;
}
