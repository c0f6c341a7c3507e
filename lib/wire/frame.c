/*
 * frame.c: the frame codec.  Pure: bytes in, bytes out, no fds, no clocks.
 *
 * A frame is a protobuf varint (the body length) followed by the body, one
 * serialized pbpipe.Envelope.  The channel, the fuzzers and the tests all
 * use this one codec.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "pbp_internal.h"

/* Protobuf tags of the fields written by hand below: (number << 3) | wire
 * type, with wire type 0 (varint) or 2 (length-delimited). */
#define TAG_ENVELOPE_MESSAGE ((3u << 3) | 2u) /* Envelope.message */
#define TAG_MESSAGE_TYPE ((1u << 3) | 0u)     /* Message.type */
#define TAG_MESSAGE_ID ((2u << 3) | 0u)       /* Message.id */
#define TAG_MESSAGE_PAYLOAD ((3u << 3) | 2u)  /* Message.payload */

size_t
pbp__varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

uint8_t *
pbp__put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

int
pbp__frame_length(const uint8_t *p, size_t n, uint32_t *len, size_t *hdrlen)
{
	uint64_t v = 0;
	size_t i;

	if (n > 0 && p[0] < 0x80) { /* frames under 128 bytes */
		*len = p[0];
		*hdrlen = 1;
		return 1;
	}
	for (i = 0; i < n && i < PBP__VARINT32_MAX; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			if (v > UINT32_MAX)
				return PBP_EPROTO;
			*len = (uint32_t)v;
			*hdrlen = i + 1;
			return 1;
		}
	}
	return i == PBP__VARINT32_MAX ? PBP_EPROTO : 0;
}

#define TAG_MESSAGE_REPLY_TO ((4u << 3) | 0u)  /* Message.reply_to */
#define TAG_MESSAGE_ERROR_CODE ((5u << 3) | 0u) /* Message.error_code */
#define TAG_MESSAGE_ERROR_MSG ((6u << 3) | 2u)  /* Message.error_message */
#define TAG_MESSAGE_STREAM ((7u << 3) | 0u)     /* Message.stream (1.2) */
#define TAG_ENVELOPE_DATA ((6u << 3) | 2u)      /* Envelope.data (1.2) */
#define TAG_DATA_STREAM ((1u << 3) | 0u)        /* StreamData.stream */
#define TAG_DATA_CHUNK ((2u << 3) | 2u)         /* StreamData.chunk */

size_t
pbp__message_header_ex(uint8_t *out, uint32_t type, uint64_t id, const pbp__reply *r,
                       size_t payload_len, uint64_t *body_len)
{
	uint64_t msg_len, body;
	/* A protobuf string: valid UTF-8 (stock proto3 parsers reject the
	 * whole frame otherwise), cut at a character boundary. */
	char emsg[PBP__ERRMSG_WIRE_MAX + 1];
	size_t elen = 0;
	uint8_t *p = out;

	if (payload_len > UINT32_MAX)
		return 0;
	if (r && r->error_code != 0 && r->error_msg != NULL)
		elen = pbp__utf8_copy(emsg, sizeof emsg, r->error_msg, strlen(r->error_msg));
	/* Canonical proto3 encoding: fields with default values (id 0, an
	 * empty payload) are omitted, so a plain message's bytes equal what
	 * any protobuf library produces for the same Envelope.  The payload
	 * comes last so that it can follow this header directly. */
	msg_len = 1 + pbp__varint_size(type);
	if (id != 0)
		msg_len += 1 + pbp__varint_size(id);
	if (r && r->reply_to != 0)
		msg_len += 1 + pbp__varint_size(r->reply_to);
	if (r && r->error_code != 0)
		msg_len += 1 + pbp__varint_size(r->error_code);
	if (r && r->stream != 0)
		msg_len += 1 + pbp__varint_size(r->stream);
	if (elen != 0)
		msg_len += 1 + pbp__varint_size(elen) + elen;
	if (payload_len != 0)
		msg_len += 1 + pbp__varint_size(payload_len) + payload_len;
	body = 1 + pbp__varint_size(msg_len) + msg_len;
	if (body > UINT32_MAX)
		return 0;
	*body_len = body;

	p = pbp__put_varint(p, body);
	*p++ = TAG_ENVELOPE_MESSAGE;
	p = pbp__put_varint(p, msg_len);
	*p++ = TAG_MESSAGE_TYPE;
	p = pbp__put_varint(p, type);
	if (id != 0) {
		*p++ = TAG_MESSAGE_ID;
		p = pbp__put_varint(p, id);
	}
	if (r && r->reply_to != 0) {
		*p++ = TAG_MESSAGE_REPLY_TO;
		p = pbp__put_varint(p, r->reply_to);
	}
	if (r && r->error_code != 0) {
		*p++ = TAG_MESSAGE_ERROR_CODE;
		p = pbp__put_varint(p, r->error_code);
	}
	if (elen != 0) {
		*p++ = TAG_MESSAGE_ERROR_MSG;
		p = pbp__put_varint(p, elen);
		memcpy(p, emsg, elen);
		p += elen;
	}
	if (r && r->stream != 0) {
		*p++ = TAG_MESSAGE_STREAM;
		p = pbp__put_varint(p, r->stream);
	}
	if (payload_len != 0) {
		*p++ = TAG_MESSAGE_PAYLOAD;
		p = pbp__put_varint(p, payload_len);
	}
	return (size_t)(p - out);
}

size_t
pbp__stream_data_header(uint8_t *out, uint64_t stream, size_t chunk_len, uint64_t *body_len)
{
	uint64_t data_len = 1 + pbp__varint_size(stream);
	uint8_t *p = out;

	/* The chunk goes last, so that it can follow this header directly
	 * (from the caller's memory); an empty one is omitted, as proto3
	 * does. */
	if (chunk_len != 0)
		data_len += 1 + pbp__varint_size(chunk_len) + chunk_len;
	*body_len = 1 + pbp__varint_size(data_len) + data_len;
	p = pbp__put_varint(p, *body_len);
	*p++ = TAG_ENVELOPE_DATA;
	p = pbp__put_varint(p, data_len);
	*p++ = TAG_DATA_STREAM;
	p = pbp__put_varint(p, stream);
	if (chunk_len != 0) {
		*p++ = TAG_DATA_CHUNK;
		p = pbp__put_varint(p, chunk_len);
	}
	return (size_t)(p - out);
}

size_t
pbp__message_header(uint8_t *out, uint32_t type, uint64_t id,
                    size_t payload_len, uint64_t *body_len)
{
	return pbp__message_header_ex(out, type, id, NULL, payload_len, body_len);
}

int
pbp__control_encode(uint8_t *out, size_t cap, const pbpipe_Envelope *env,
                    size_t *written, pbp_error *err)
{
	pb_ostream_t os = pb_ostream_from_buffer(out, cap);
	pbpipe_Envelope copy;

	if (env->which_body == pbpipe_Envelope_goodbye_tag) {
		/* Goodbye.detail is a protobuf string: send valid UTF-8. */
		const char *d = env->body.goodbye.detail;
		const char *nul = memchr(d, '\0', sizeof env->body.goodbye.detail);

		copy = *env;
		pbp__utf8_copy(copy.body.goodbye.detail, sizeof copy.body.goodbye.detail, d,
		               nul != NULL ? (size_t)(nul - d) : sizeof env->body.goodbye.detail);
		env = &copy;
	}
	if (!pb_encode_ex(&os, pbpipe_Envelope_fields, env, PB_ENCODE_DELIMITED))
		return pbp__seterr(err, PBP_EENCODE, 0,
		                   "encoding a control frame: %s", PB_GET_ERROR(&os));
	*written = os.bytes_written;
	return 0;
}

/*
 * Decoding: the wire rules of docs/PROTOCOL.md section 3, in one place.
 * Envelope and Message are decoded here by hand; Hello, Goodbye, Sync and
 * SyncAck by nanopb after wire_check() has applied the rules nanopb does
 * not (it takes keys and lengths of up to 10 bytes and skips unknown
 * varints of any length).  fuzz/envelope_diff_fuzzer.c holds the two
 * decoders to each other.
 */

/* A varint value from p[0..end): at most 10 bytes, the 10th 0 or 1 (so
 * the value fits 64 bits; nanopb's and libprotobuf's rule).  0 and *v on
 * success, -1 if it runs past end or breaks the rule. */
static int
get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	uint64_t r = 0;
	unsigned shift;

	for (shift = 0; p < end && shift < 70; shift += 7) {
		uint8_t b = *p++;

		if (shift == 63 && b > 1)
			return -1;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*pp = p;
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* A field key or a length: a varint of at most 5 bytes with a value under
 * 2^32 (the 5th byte at most 0x0f), as for the frame length prefix and as
 * libprotobuf reads tags and sizes.  0 or -1. */
static int
get_varint32(const uint8_t **pp, const uint8_t *end, uint32_t *v)
{
	uint32_t len;
	size_t hdr;

	if (pbp__frame_length(*pp, (size_t)(end - *pp), &len, &hdr) != 1)
		return -1; /* too long, over 32 bits, or past the end */
	*pp += hdr;
	*v = len;
	return 0;
}

/* A field key: field number (at least 1) and wire type.  NULL, or why
 * not. */
static const char *
get_key(const uint8_t **pp, const uint8_t *end, uint32_t *field, unsigned *wt)
{
	uint32_t key;

	if (get_varint32(pp, end, &key) != 0)
		return "bad field key (over 5 bytes, over 32 bits, or cut short)";
	*field = key >> 3;
	*wt = key & 7u;
	if (*field == 0)
		return "field number 0";
	return NULL;
}

/* The length of a length-delimited field, which must fit in p[0..end). */
static const char *
get_len(const uint8_t **pp, const uint8_t *end, uint32_t *n)
{
	if (get_varint32(pp, end, n) != 0)
		return "bad length (over 5 bytes, over 32 bits, or cut short)";
	if (*n > (uint64_t)(end - *pp))
		return "length past the end";
	return NULL;
}

/* Skips the value of one field of wire type wt.  NULL, or why not. */
static const char *
skip_field(const uint8_t **pp, const uint8_t *end, unsigned wt)
{
	uint64_t v;
	uint32_t n;
	const char *why;

	switch (wt) {
	case 0:
		return get_varint(pp, end, &v) == 0 ? NULL : "bad varint (over 10 bytes or cut short)";
	case 1: n = 8; break;
	case 5: n = 4; break;
	case 2:
		if ((why = get_len(pp, end, &n)) != NULL)
			return why;
		break;
	default: return "wire type 3, 4, 6 or 7"; /* groups and the reserved two */
	}
	if (n > (uint64_t)(end - *pp))
		return "field past the end";
	*pp += n;
	return NULL;
}

/* Checks that p[0..end) is a sequence of well-formed fields by the rules
 * above, without interpreting any: the pre-check for bodies nanopb
 * decodes.  NULL, or why not. */
static const char *
wire_check(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		uint32_t field;
		unsigned wt;
		const char *why;

		if ((why = get_key(&p, end, &field, &wt)) != NULL ||
		    (why = skip_field(&p, end, wt)) != NULL)
			return why;
	}
	return NULL;
}

/* Decodes pbpipe.Message from p[0..end).  Hand-written on raw bytes rather
 * than with pb_decode(): it is the per-message hot path, and it locates the
 * payload in place, without a copy or a callback.  The type-0 check is the
 * caller's (it comes after every decode error). */
static int
decode_message(const uint8_t *p, const uint8_t *end, pbp__frame *out, pbp_error *err)
{
	const char *why = NULL;
	uint64_t v;
	uint32_t n;

	while (p < end) {
		uint32_t tag;
		unsigned wt;

		if ((why = get_key(&p, end, &tag, &wt)) != NULL)
			break;
		if (tag == 1 || tag == 2 || tag == 4 || tag == 5 || tag == 7) {
			if (wt != 0) {
				why = "wrong wire type";
				break;
			}
			if (get_varint(&p, end, &v) != 0) {
				why = "bad varint (over 10 bytes or cut short)";
				break;
			}
			if ((tag == 1 || tag == 5) && v > UINT32_MAX)
				return pbp__seterr(err, PBP_EDECODE, 0,
				                   "Message field %" PRIu32 ": %" PRIu64
				                   " does not fit 32 bits",
				                   tag, v);
			if (tag == 1)
				out->type = (uint32_t)v;
			else if (tag == 2)
				out->id = v;
			else if (tag == 4)
				out->reply_to = v;
			else if (tag == 7)
				out->stream = v;
			else
				out->error_code = (uint32_t)v;
		} else if (tag == 3 || tag == 6) {
			if (wt != 2) {
				why = "wrong wire type";
				break;
			}
			if ((why = get_len(&p, end, &n)) != NULL)
				break;
			if (tag == 3) {
				out->payload = p;
				out->payload_len = n;
			} else {
				/* The bound nanopb applies to Goodbye.detail
				 * (max_size 128), so that both decoders treat an
				 * over-long string the same way. */
				if (n > PBP__ERRMSG_WIRE_MAX)
					return pbp__seterr(err, PBP_EDECODE, 0,
					                   "Message error_message of %" PRIu32
					                   " bytes exceeds %u",
					                   n, PBP__ERRMSG_WIRE_MAX);
				out->error_msg = (const char *)p;
				out->error_len = n;
			}
			p += n;
		} else if ((why = skip_field(&p, end, wt)) != NULL) {
			break;
		}
	}
	if (why != NULL)
		return pbp__seterr(err, PBP_EDECODE, 0, "malformed Message envelope: %s", why);
	return 0;
}

/* Decodes a stream body (1.2) from p[0..end), by hand like Message: tag 6
 * StreamData {stream, bytes chunk}, 7 StreamEnd and 9 StreamCancel
 * {stream, uint32 error_code, string error_message}, 8 StreamCredit
 * {stream, uint32 bytes}.  The chunk is located in place. */
static int
decode_stream(const uint8_t *p, const uint8_t *end, uint32_t body, pbp__frame *out,
              pbp_error *err)
{
	static const char *const names[] = { "StreamData", "StreamEnd", "StreamCredit",
	                                     "StreamCancel" };
	const char *name = names[body - 6], *why = NULL;
	uint64_t v;
	uint32_t n;

	while (p < end) {
		uint32_t tag;
		unsigned wt, want;

		if ((why = get_key(&p, end, &tag, &wt)) != NULL)
			break;
		if (tag > 3 || (tag == 3 && (body == 6 || body == 8))) {
			if ((why = skip_field(&p, end, wt)) != NULL)
				break;
			continue;
		}
		want = tag == 1 || (tag == 2 && body != 6) ? 0u : 2u;
		if (wt != want) {
			why = "wrong wire type";
			break;
		}
		if (want == 0) {
			if (get_varint(&p, end, &v) != 0) {
				why = "bad varint (over 10 bytes or cut short)";
				break;
			}
			if (tag == 2 && v > UINT32_MAX)
				return pbp__seterr(err, PBP_EDECODE, 0,
				                   "%s field 2: %" PRIu64 " does not fit 32 bits", name, v);
			if (tag == 1)
				out->stream = v;
			else if (body == 8)
				out->credit = (uint32_t)v;
			else
				out->error_code = (uint32_t)v;
			continue;
		}
		if ((why = get_len(&p, end, &n)) != NULL)
			break;
		if (tag == 2) {
			out->chunk = p;
			out->chunk_len = n;
		} else {
			if (n > PBP__ERRMSG_WIRE_MAX)
				return pbp__seterr(err, PBP_EDECODE, 0,
				                   "%s error_message of %" PRIu32 " bytes exceeds %u", name,
				                   n, PBP__ERRMSG_WIRE_MAX);
			out->error_msg = (const char *)p;
			out->error_len = n;
		}
		p += n;
	}
	if (why != NULL)
		return pbp__seterr(err, PBP_EDECODE, 0, "malformed %s: %s", name, why);
	return 0;
}

/* Decodes a control body (Hello, Goodbye, Sync, SyncAck): the wire check,
 * then nanopb. */
static int
decode_control(const uint8_t *p, size_t n, uint32_t tag, pbp__frame *out, pbp_error *err)
{
	static const char *const names[] = { "", "Hello", "Goodbye", "", "Sync", "SyncAck" };
	pb_istream_t sub = pb_istream_from_buffer(p, n);
	const char *why = wire_check(p, p + n);
	bool ok;

	if (why != NULL)
		return pbp__seterr(err, PBP_EDECODE, 0, "malformed %s: %s", names[tag], why);
	if (tag == 1) {
		ok = pb_decode(&sub, pbpipe_Hello_fields, &out->hello);
	} else if (tag == 2) {
		ok = pb_decode(&sub, pbpipe_Goodbye_fields, &out->goodbye);
	} else {
		/* Sync and SyncAck have the same shape. */
		pbpipe_Sync sync = pbpipe_Sync_init_zero;

		ok = pb_decode(&sub, pbpipe_Sync_fields, &sync);
		out->sync_id = sync.id;
	}
	if (!ok) {
		why = PB_GET_ERROR(&sub);
		if (tag == 2 && strcmp(why, "string overflow") == 0)
			why = "detail longer than 127 bytes";
		return pbp__seterr(err, PBP_EDECODE, 0, "malformed %s: %s", names[tag], why);
	}
	return 0;
}

int
pbp__frame_decode(const uint8_t *body, size_t len, pbp__frame *out,
                  pbp_error *err)
{
	const uint8_t *p = body, *end = body + len;
	const char *why;
	int rc, extra = 0;

	/* Not the Hello and Goodbye at the end (about a kilobyte): only
	 * pb_decode() fills them, and it sets every field. */
	memset(out, 0, offsetof(pbp__frame, hello));
	while (p < end) {
		pbp__frame scratch, *into = out;
		uint32_t tag, n;
		unsigned wt;

		if ((why = get_key(&p, end, &tag, &wt)) != NULL)
			return pbp__seterr(err, PBP_EDECODE, 0, "malformed envelope: %s", why);
		if (tag > 9) {
			if ((why = skip_field(&p, end, wt)) != NULL)
				return pbp__seterr(err, PBP_EDECODE, 0,
				                   "malformed envelope: unknown field %" PRIu32 ": %s",
				                   tag, why);
			continue;
		}
		if (wt != 2)
			return pbp__seterr(err, PBP_EDECODE, 0,
			                   "malformed envelope: field %" PRIu32 " has wire type %u",
			                   tag, wt);
		if ((why = get_len(&p, end, &n)) != NULL)
			return pbp__seterr(err, PBP_EDECODE, 0, "malformed envelope: body %s", why);
		/* The oneof allows one body.  Protobuf would let a later one
		 * win; no conforming encoder writes two, so two means a broken
		 * or hostile peer.  A second one is still decoded, so that a
		 * malformed one is PBP_EDECODE as anywhere else. */
		if (out->kind != 0) {
			memset(&scratch, 0, offsetof(pbp__frame, hello));
			into = &scratch;
			extra = 1;
		}
		if (tag == 3)
			rc = decode_message(p, p + n, into, err);
		else if (tag >= 6)
			rc = decode_stream(p, p + n, tag, into, err);
		else
			rc = decode_control(p, n, tag, into, err);
		if (rc != 0)
			return rc;
		into->kind = (int)tag;
		p += n;
	}
	if (extra)
		return pbp__seterr(err, PBP_EPROTO, 0, "envelope holds more than one body");
	if (out->kind == 0)
		return pbp__seterr(err, PBP_EPROTO, 0, "envelope holds no body");
	if (out->kind == PBP__FRAME_MESSAGE && out->type == 0)
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "application message without a type (type 0)");
	if (out->kind == PBP__FRAME_MESSAGE && out->stream != 0 && (out->id != 0 || out->reply_to != 0))
		return pbp__seterr(err, PBP_EPROTO, 0,
		                   "a message opening stream %" PRIu64 " has a%s too",
		                   out->stream, out->id != 0 ? "n id" : " reply_to");
	return 0;
}

/* ---- the frame reader ---------------------------------------------------- */

int
pbp__reader_init(pbp__reader *r, uint32_t limit, size_t initial_cap)
{
	memset(r, 0, sizeof *r);
	r->limit = limit;
	r->buf = malloc(initial_cap);
	if (r->buf == NULL)
		return PBP_ENOMEM;
	r->cap = initial_cap;
	r->max_cap = initial_cap;
	r->initial_cap = initial_cap;
	return 0;
}

void
pbp__reader_free(pbp__reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = r->start = r->end = 0;
}

size_t
pbp__reader_pending(const pbp__reader *r)
{
	return r->end - r->start;
}

/* How many bytes the frame at r->start needs in all, once its header is
 * complete and within the limit; otherwise 0. */
static size_t
frame_need(const pbp__reader *r)
{
	uint32_t len;
	size_t hdr;

	if (pbp__frame_length(r->buf + r->start, r->end - r->start, &len, &hdr) != 1 ||
	    len > r->limit)
		return 0;
	return hdr + len;
}

/* realloc rather than free and malloc: glibc shrinks a block it mmap'd in
 * place (mremap), so the pages go back to the system, and the next large
 * frame grows it again without a copy; freeing it instead would raise
 * glibc's dynamic mmap threshold, after which blocks up to that size come
 * from the heap and stay resident once freed (docs/performance.md, "Large
 * messages"). */
int
pbp__reader_shrink(pbp__reader *r)
{
	uint8_t *nb;

	if (!pbp__reader_idle_large(r))
		return 0;
	nb = realloc(r->buf, r->initial_cap);
	if (nb == NULL)
		return 0; /* keep the large one: nothing is lost */
	r->buf = nb;
	r->cap = r->initial_cap;
	r->start = r->end = 0;
	return 1;
}

uint8_t *
pbp__reader_detach(pbp__reader *r)
{
	size_t pending = r->end - r->start;
	size_t ncap = pending > r->initial_cap ? pending : r->initial_cap;
	uint8_t *old = r->buf, *nb = malloc(ncap > 0 ? ncap : 1);

	if (nb == NULL)
		return NULL;
	if (pending > 0)
		memcpy(nb, r->buf + r->start, pending);
	r->buf = nb;
	r->cap = ncap;
	r->start = r->prev_start = 0;
	r->end = r->prev_end = pending;
	return old;
}

int
pbp__reader_space(pbp__reader *r, uint8_t **p, size_t *n)
{
	size_t pending = r->end - r->start;
	size_t frame = frame_need(r);
	size_t bound = r->max_cap > frame ? r->max_cap : frame;

	/* Room for a whole length prefix at least, or a reader made with a
	 * tiny buffer could never finish reading one. */
	if (bound < PBP__VARINT32_MAX + 1)
		bound = PBP__VARINT32_MAX + 1;
	size_t need = frame > pending + 1 ? frame : pending + 1;

	if (r->cap - r->start < need || r->end == r->cap) {
		/* Compact: move the partial frame to the front. */
		memmove(r->buf, r->buf + r->start, pending);
		r->start = 0;
		r->end = pending;
	}
	if (r->cap < need && need <= bound) {
		/* Grow only up to the bound, or to what one frame whose length
		 * was already checked against the limit needs; doubling keeps
		 * the growth amortised.  A large frame gets exactly its size:
		 * one allocation, and no more address space than it fills. */
		size_t ncap = r->cap * 2 > need ? r->cap * 2 : need;
		uint8_t *nb;

		if (frame > PBP__BUF_SHRINK_ABOVE)
			ncap = need;
		if (ncap > bound)
			ncap = bound;
		nb = realloc(r->buf, ncap);
		if (nb == NULL)
			return PBP_ENOMEM;
		r->buf = nb;
		r->cap = ncap;
	}
	*p = r->buf + r->end;
	*n = r->cap - r->end; /* 0 when full of whole frames up to the bound */
	return 0;
}

void
pbp__reader_commit(pbp__reader *r, size_t n)
{
	r->end += n;
}

int
pbp__reader_feed(pbp__reader *r, const void *data, size_t n)
{
	size_t pending = r->end - r->start;

	if (n == 0)
		return 0;
	if (r->cap - r->end < n) {
		memmove(r->buf, r->buf + r->start, pending);
		r->start = 0;
		r->end = pending;
	}
	if (r->cap - r->end < n) {
		uint8_t *nb = realloc(r->buf, pending + n);

		if (nb == NULL)
			return PBP_ENOMEM;
		r->buf = nb;
		r->cap = pending + n;
	}
	memcpy(r->buf + r->end, data, n);
	r->end += n;
	return 0;
}

void
pbp__reader_unget(pbp__reader *r)
{
	r->start = r->prev_start;
	r->end = r->prev_end;
}

void
pbp__reader_set_eof(pbp__reader *r)
{
	r->eof = 1;
}

int
pbp__reader_ready(const pbp__reader *r)
{
	size_t pending = r->end - r->start, hdr;
	uint32_t flen;
	int rc;

	if (r->err != 0 || r->eof)
		return 1;
	rc = pbp__frame_length(r->buf + r->start, pending, &flen, &hdr);
	return rc < 0 || (rc == 1 && (flen > r->limit || pending - hdr >= flen));
}

int
pbp__reader_next(pbp__reader *r, const uint8_t **body, size_t *len)
{
	size_t pending = r->end - r->start;
	uint32_t flen;
	size_t hdr;
	int rc;

	if (r->err != 0)
		return r->err;
	rc = pbp__frame_length(r->buf + r->start, pending, &flen, &hdr);
	if (rc < 0) {
		r->err = pbp__seterr(&r->error, PBP_EPROTO, 0,
		                     "bad frame length prefix (varint longer than 5 bytes or over 32 bits)");
		return r->err;
	}
	if (rc == 1 && flen > r->limit) {
		r->err = pbp__seterr(&r->error, PBP_EMSGSIZE, 0,
		                     "frame of %" PRIu32 " bytes exceeds the limit of %" PRIu32 " bytes",
		                     flen, r->limit);
		return r->err;
	}
	if (rc == 1 && pending - hdr >= flen) {
		*body = r->buf + r->start + hdr;
		*len = flen;
		r->prev_start = r->start;
		r->prev_end = r->end;
		r->start += hdr + flen;
		if (r->start == r->end)
			r->start = r->end = 0;
		return 1;
	}
	if (!r->eof)
		return 0;
	if (pending == 0)
		return PBP_EOF;
	if (rc == 1)
		r->err = pbp__seterr(&r->error, PBP_ETRUNC, 0,
		                     "end of stream inside a frame body (%zu of %" PRIu32 " bytes)",
		                     pending - hdr, flen);
	else
		r->err = pbp__seterr(&r->error, PBP_ETRUNC, 0,
		                     "end of stream inside a frame header (%zu bytes)", pending);
	return r->err;
}
