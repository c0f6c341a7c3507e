/*
 * fuzz_checks.h: invariants of the frame codec shared by the harnesses.
 *
 * Header-only (static functions), so each harness stays one .c file that
 * links the same way with libFuzzer and with the standalone driver.
 */
#ifndef PBP_FUZZ_CHECKS_H
#define PBP_FUZZ_CHECKS_H

#include <stdbool.h>
#include <string.h>

#include "fuzz_common.h"
#include "pbp_internal.h"

/* An error record filled for code rc: same code, a non-empty message,
 * terminated inside the buffer. */
static inline void
fuzz_check_error(int rc, const pbp_error *err)
{
	FUZZ_CHECK(err->code == rc, "record says %d, call returned %d", err->code, rc);
	FUZZ_CHECK(memchr(err->msg, '\0', sizeof err->msg) != NULL,
	           "error message not terminated");
	FUZZ_CHECK(err->msg[0] != '\0', "empty error message for code %d", rc);
}

/* Copies len bytes into an exact-size heap block, so that AddressSanitizer
 * sees any read past the end of a frame body (inside the reader's buffer
 * such a read would go unnoticed).  Returns NULL only when out of memory. */
static inline uint8_t *
fuzz_dup(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len > 0 ? len : 1);

	if (q != NULL && len > 0)
		memcpy(q, p, len);
	return q;
}

/* pbp__frame_decode plus its contract: 0, PBP_EDECODE or PBP_EPROTO; an
 * error comes with a message; a success has exactly one known kind, a
 * nonzero application type, a payload inside the body and a terminated
 * Goodbye detail. */
static inline int
fuzz_decode_frame(const uint8_t *body, size_t len, pbp__frame *f)
{
	pbp_error err;
	int rc;

	memset(&err, 0, sizeof err);
	rc = pbp__frame_decode(body, len, f, &err);
	FUZZ_CHECK(rc == 0 || rc == PBP_EDECODE || rc == PBP_EPROTO,
	           "pbp__frame_decode returned %d", rc);
	if (rc != 0) {
		fuzz_check_error(rc, &err);
		return rc;
	}
	FUZZ_CHECK(f->kind == PBP__FRAME_HELLO || f->kind == PBP__FRAME_GOODBYE ||
	           f->kind == PBP__FRAME_MESSAGE || f->kind == PBP__FRAME_SYNC ||
	           f->kind == PBP__FRAME_SYNC_ACK || f->kind == PBP__FRAME_STREAM_DATA ||
	           f->kind == PBP__FRAME_STREAM_END || f->kind == PBP__FRAME_STREAM_CREDIT ||
	           f->kind == PBP__FRAME_STREAM_CANCEL, "kind %d", f->kind);
	if (f->kind == PBP__FRAME_STREAM_DATA && f->chunk_len > 0)
		FUZZ_CHECK(f->chunk >= body && f->chunk + f->chunk_len <= body + len,
		           "chunk outside the body");
	if (f->kind == PBP__FRAME_STREAM_END || f->kind == PBP__FRAME_STREAM_CANCEL) {
		FUZZ_CHECK(f->error_len <= PBP__ERRMSG_WIRE_MAX, "stream message of %zu bytes",
		           f->error_len);
		if (f->error_len > 0)
			FUZZ_CHECK((const uint8_t *)f->error_msg >= body &&
			           (const uint8_t *)f->error_msg + f->error_len <= body + len,
			           "stream message outside the body");
	}
	if (f->kind == PBP__FRAME_MESSAGE) {
		FUZZ_CHECK(f->type != 0, "application message of type 0 accepted");
		FUZZ_CHECK(f->payload_len <= len, "payload %zu > body %zu",
		           f->payload_len, len);
		if (f->payload_len > 0)
			FUZZ_CHECK(f->payload >= body &&
			           f->payload + f->payload_len <= body + len,
			           "payload outside the body");
		FUZZ_CHECK(f->error_len <= len, "error message %zu > body %zu",
		           f->error_len, len);
		if (f->error_len > 0)
			FUZZ_CHECK((const uint8_t *)f->error_msg >= body &&
			           (const uint8_t *)f->error_msg + f->error_len <= body + len,
			           "error message outside the body");
	}
	if (f->kind == PBP__FRAME_GOODBYE)
		FUZZ_CHECK(memchr(f->goodbye.detail, '\0', sizeof f->goodbye.detail) != NULL,
		           "Goodbye detail not terminated");
	return 0;
}

/* Parses the length prefix of an encoded frame and checks it covers the
 * rest exactly.  Returns the body. */
static inline const uint8_t *
fuzz_split_frame(const uint8_t *frame, size_t n, size_t *body_len)
{
	uint32_t len;
	size_t hdr;
	int rc = pbp__frame_length(frame, n, &len, &hdr);

	FUZZ_CHECK(rc == 1, "our own frame has a bad length prefix (%d)", rc);
	FUZZ_CHECK(hdr + len == n, "prefix %zu + body %u != frame %zu", hdr,
	           (unsigned)len, n);
	FUZZ_CHECK(hdr == pbp__varint_size(len), "non-canonical length prefix");
	*body_len = len;
	return frame + hdr;
}

/* The reply fields of a re-encoded Message g against the original f: the
 * same reply_to and error_code; an error message only with an error code,
 * sent as pbp__utf8_copy() makes the original (up to its first NUL): valid
 * UTF-8 of at most PBP__ERRMSG_WIRE_MAX bytes; when the original is valid
 * UTF-8, a prefix of it, cut at a character boundary, and all of it when it
 * fits. */
static inline void
check_reply_roundtrip(const pbp__frame *f, const pbp__frame *g, const char *emsg)
{
	size_t want = strlen(emsg);

	FUZZ_CHECK(g->reply_to == f->reply_to && g->error_code == f->error_code,
	           "reply fields changed: reply_to %llu -> %llu, error_code %u -> %u",
	           (unsigned long long)f->reply_to, (unsigned long long)g->reply_to,
	           (unsigned)f->error_code, (unsigned)g->error_code);
	if (f->error_code == 0) {
		FUZZ_CHECK(g->error_len == 0, "error message without an error code");
		return;
	}
	FUZZ_CHECK(g->error_len <= PBP__ERRMSG_WIRE_MAX, "error message of %zu bytes",
	           g->error_len);
	FUZZ_CHECK(pbp__utf8_valid(g->error_msg, g->error_len), "sent error message is not UTF-8");
	FUZZ_CHECK(g->error_len == 0 || memchr(g->error_msg, '\0', g->error_len) == NULL,
	           "sent error message has a NUL");
	if (!pbp__utf8_valid(emsg, want))
		return;
	FUZZ_CHECK(g->error_len <= want, "error message of %zu bytes (original %zu)",
	           g->error_len, want);
	FUZZ_CHECK(g->error_len == 0 || memcmp(g->error_msg, emsg, g->error_len) == 0,
	           "error message is not a prefix of the original");
	if (want <= PBP__ERRMSG_WIRE_MAX)
		FUZZ_CHECK(g->error_len == want, "short error message cut (%zu of %zu)",
		           g->error_len, want);
	else
		FUZZ_CHECK(((unsigned char)emsg[g->error_len] & 0xc0) != 0x80 &&
		           g->error_len + 4 > PBP__ERRMSG_WIRE_MAX,
		           "error message cut inside a UTF-8 character, or too short, at %zu",
		           g->error_len);
}

/* Re-encodes a decoded frame the way the library sends one: an application
 * message with pbp__message_header (pbp__message_header_ex with the reply
 * fields, protocol 1.1) plus the payload, Hello, Goodbye, Sync and SyncAck
 * with pbp__control_encode.  Decodes the result again and checks that kind,
 * type, id, reply fields and payload (or the control fields) survive. */
static inline void
fuzz_roundtrip_frame(const pbp__frame *f)
{
	pbp__frame g;
	const uint8_t *body;
	size_t body_len;

	if (f->kind == PBP__FRAME_MESSAGE) {
		uint8_t *buf = malloc(PBP__MSG_HEADER_MAX + f->payload_len);
		uint64_t env_len = 0;
		size_t h;
		/* The encoder takes a C string: a NUL-terminated copy. */
		char *emsg = malloc(f->error_len + 1);
		pbp__reply reply;

		if (buf == NULL || emsg == NULL) {
			free(buf);
			free(emsg);
			return;
		}
		if (f->error_len > 0)
			memcpy(emsg, f->error_msg, f->error_len);
		emsg[f->error_len] = '\0';
		reply.reply_to = f->reply_to;
		reply.error_code = f->error_code;
		reply.error_msg = emsg;
		reply.stream = f->stream;
		h = pbp__message_header_ex(buf, f->type, f->id, &reply, f->payload_len,
		                           &env_len);
		FUZZ_CHECK(h > 0 && h <= PBP__MSG_HEADER_MAX, "header length %zu", h);
		if (f->payload_len > 0)
			memcpy(buf + h, f->payload, f->payload_len);
		body = fuzz_split_frame(buf, h + f->payload_len, &body_len);
		FUZZ_CHECK(body_len == env_len, "body %zu, header said %llu", body_len,
		           (unsigned long long)env_len);
		body = fuzz_dup(body, body_len);
		if (body != NULL) {
			FUZZ_CHECK(fuzz_decode_frame(body, body_len, &g) == 0,
			           "our own message frame does not decode");
			FUZZ_CHECK(g.kind == PBP__FRAME_MESSAGE && g.type == f->type &&
			           g.id == f->id && g.payload_len == f->payload_len &&
			           g.stream == f->stream,
			           "message changed: type %u->%u id %llu->%llu len %zu->%zu",
			           (unsigned)f->type, (unsigned)g.type,
			           (unsigned long long)f->id, (unsigned long long)g.id,
			           f->payload_len, g.payload_len);
			FUZZ_CHECK(f->payload_len == 0 ||
			           memcmp(g.payload, f->payload, f->payload_len) == 0,
			           "payload bytes changed");
			check_reply_roundtrip(f, &g, emsg);
			free((void *)body);
		}
		free(emsg);
		free(buf);
	} else if (f->kind == PBP__FRAME_STREAM_DATA) {
		/* A chunk goes out as pbp__stream_data_header() plus its bytes. */
		uint8_t *buf = malloc(PBP__DATA_HEADER_MAX + f->chunk_len);
		uint64_t env_len = 0;
		size_t h;

		if (buf == NULL)
			return;
		h = pbp__stream_data_header(buf, f->stream, f->chunk_len, &env_len);
		FUZZ_CHECK(h > 0 && h <= PBP__DATA_HEADER_MAX, "data header length %zu", h);
		if (f->chunk_len > 0)
			memcpy(buf + h, f->chunk, f->chunk_len);
		body = fuzz_split_frame(buf, h + f->chunk_len, &body_len);
		FUZZ_CHECK(body_len == env_len, "data body %zu, header said %llu", body_len,
		           (unsigned long long)env_len);
		body = fuzz_dup(body, body_len);
		if (body != NULL) {
			FUZZ_CHECK(fuzz_decode_frame(body, body_len, &g) == 0,
			           "our own StreamData frame does not decode");
			FUZZ_CHECK(g.kind == f->kind && g.stream == f->stream &&
			           g.chunk_len == f->chunk_len &&
			           (f->chunk_len == 0 || memcmp(g.chunk, f->chunk, f->chunk_len) == 0),
			           "StreamData changed in a round trip");
			free((void *)body);
		}
		free(buf);
	} else if (f->kind >= PBP__FRAME_STREAM_END) {
		/* StreamEnd, StreamCredit, StreamCancel: control frames, their
		 * message sent as pbp__utf8_copy() makes it. */
		uint8_t buf[PBP__HANDSHAKE_MAX_FRAME + PBP__VARINT32_MAX];
		char want[PBP__ERRMSG_WIRE_MAX + 1];
		pbpipe_Envelope env;
		pbp_error err;
		size_t written = 0;

		memset(&env, 0, sizeof env);
		pbp__utf8_copy(want, sizeof want, f->error_msg, f->error_len);
		env.which_body = (pb_size_t)f->kind;
		if (f->kind == PBP__FRAME_STREAM_END) {
			env.body.end.stream = f->stream;
			env.body.end.error_code = f->error_code;
			memcpy(env.body.end.error_message, want, sizeof want);
		} else if (f->kind == PBP__FRAME_STREAM_CANCEL) {
			env.body.cancel.stream = f->stream;
			env.body.cancel.error_code = f->error_code;
			memcpy(env.body.cancel.error_message, want, sizeof want);
		} else {
			env.body.credit.stream = f->stream;
			env.body.credit.bytes = f->credit;
		}
		FUZZ_CHECK(pbp__control_encode(buf, sizeof buf, &env, &written, &err) == 0,
		           "re-encoding a stream frame: %s", err.msg);
		body = fuzz_split_frame(buf, written, &body_len);
		body = fuzz_dup(body, body_len);
		if (body == NULL)
			return;
		FUZZ_CHECK(fuzz_decode_frame(body, body_len, &g) == 0,
		           "our own stream frame does not decode");
		FUZZ_CHECK(g.kind == f->kind && g.stream == f->stream && g.credit == f->credit &&
		           g.error_code == f->error_code &&
		           (f->kind == PBP__FRAME_STREAM_CREDIT ||
		            (g.error_len == strlen(want) &&
		             (g.error_len == 0 || memcmp(g.error_msg, want, g.error_len) == 0))),
		           "stream frame changed in a round trip");
		free((void *)body);
	} else {
		/* Any control frame fits the limit in force before the
		 * handshake, whatever the Goodbye detail. */
		uint8_t buf[PBP__HANDSHAKE_MAX_FRAME + PBP__VARINT32_MAX];
		pbpipe_Envelope env;
		pbp_error err;
		size_t written = 0;
		int rc;

		memset(&env, 0, sizeof env);
		memset(&err, 0, sizeof err);
		if (f->kind == PBP__FRAME_HELLO) {
			env.which_body = pbpipe_Envelope_hello_tag;
			env.body.hello = f->hello;
		} else if (f->kind == PBP__FRAME_SYNC) {
			env.which_body = pbpipe_Envelope_sync_tag;
			env.body.sync.id = f->sync_id;
		} else if (f->kind == PBP__FRAME_SYNC_ACK) {
			env.which_body = pbpipe_Envelope_sync_ack_tag;
			env.body.sync_ack.id = f->sync_id;
		} else {
			env.which_body = pbpipe_Envelope_goodbye_tag;
			env.body.goodbye = f->goodbye;
		}
		rc = pbp__control_encode(buf, sizeof buf, &env, &written, &err);
		FUZZ_CHECK(rc == 0, "re-encoding a decoded control frame: %s", err.msg);
		body = fuzz_split_frame(buf, written, &body_len);
		FUZZ_CHECK(body_len <= PBP__HANDSHAKE_MAX_FRAME,
		           "control frame of %zu bytes", body_len);
		body = fuzz_dup(body, body_len);
		if (body == NULL)
			return;
		FUZZ_CHECK(fuzz_decode_frame(body, body_len, &g) == 0,
		           "our own control frame does not decode");
		FUZZ_CHECK(g.kind == f->kind, "kind %d -> %d", f->kind, g.kind);
		if (f->kind == PBP__FRAME_HELLO) {
			const pbpipe_Hello *a = &f->hello, *b = &g.hello;

			FUZZ_CHECK(a->magic == b->magic && a->major == b->major &&
			           a->minor == b->minor && a->pid == b->pid &&
			           a->pointer_bits == b->pointer_bits &&
			           a->max_frame == b->max_frame &&
			           a->schema_fingerprint == b->schema_fingerprint &&
			           a->stream_window == b->stream_window,
			           "Hello fields changed in a round trip");
		} else if (f->kind == PBP__FRAME_SYNC || f->kind == PBP__FRAME_SYNC_ACK) {
			FUZZ_CHECK(g.sync_id == f->sync_id, "Sync id %llu -> %llu",
			           (unsigned long long)f->sync_id,
			           (unsigned long long)g.sync_id);
		} else {
			/* The detail goes out as pbp__utf8_copy() makes it. */
			char want[sizeof f->goodbye.detail];

			pbp__utf8_copy(want, sizeof want, f->goodbye.detail,
			               strlen(f->goodbye.detail));
			FUZZ_CHECK(pbp__utf8_valid(g.goodbye.detail, strlen(g.goodbye.detail)),
			           "sent Goodbye detail is not UTF-8");
			FUZZ_CHECK(!pbp__utf8_valid(f->goodbye.detail, strlen(f->goodbye.detail)) ||
			           strcmp(f->goodbye.detail, want) == 0,
			           "a valid UTF-8 detail changed in pbp__utf8_copy");
			FUZZ_CHECK(f->goodbye.reason == g.goodbye.reason &&
			           strcmp(want, g.goodbye.detail) == 0,
			           "Goodbye changed: %d '%s' -> %d '%s'",
			           (int)f->goodbye.reason, f->goodbye.detail,
			           (int)g.goodbye.reason, g.goodbye.detail);
		}
		free((void *)body);
	}
}

#endif /* PBP_FUZZ_CHECKS_H */
