/*
 * message_fuzzer.c: application payloads and envelopes.
 *
 * Input: one control byte, then the data.
 *   byte 0  bit 0  0: the data is an application payload;
 *                  1: the data is an envelope body (a frame without its
 *                     length prefix), decoded with pbp__frame_decode; the
 *                     payload of an application message is used as above
 *
 * Every payload is decoded with nanopb (pb_decode on a buffer stream, as
 * pbp_channel_decode() does) into every message type of the test schema
 * (tests/proto/pbptest.proto), of the fuzz schema (fuzz/proto/pbpfuzz.proto)
 * and of the wire schema.  Callback fields get a decode callback that keeps
 * the bytes, and an encode callback that writes them back.
 *
 * Invariants:
 *   - decode, encode, decode, encode: when the first decode succeeds, the
 *     encode succeeds, its size matches pb_get_encoded_size and the
 *     generated <Msg>_size bound, the second decode succeeds and the two
 *     encodings are byte-identical;
 *   - envelopes keep pbp__frame_decode's contract, and re-encoded the way
 *     the library sends them (pbp__message_header + payload, or
 *     pbp__control_encode) they decode to the same kind, type, id and
 *     payload (fuzz_checks.h);
 *   - no leaks (the callbacks' copies are freed on every path).
 */
#include <stdbool.h>
#include <string.h>

#include <pb_common.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "fuzz_checks.h"
#include "pbpfuzz.pb.h"
#include "pbptest.pb.h"

/* A message type to try: generated descriptor, struct size and the
 * generated bound on the encoded size (0 where nanopb cannot know it). */
typedef struct msgtype {
	const char *name;
	const pb_msgdesc_t *fields;
	size_t size;
	size_t max_encoded;
} msgtype;

static const msgtype types[] = {
	{ "pbptest.Text", pbptest_Text_fields, sizeof(pbptest_Text), pbptest_Text_size },
	{ "pbptest.Numbers", pbptest_Numbers_fields, sizeof(pbptest_Numbers), pbptest_Numbers_size },
	{ "pbptest.Blob", pbptest_Blob_fields, sizeof(pbptest_Blob), 0 },
	{ "pbptest.Empty", pbptest_Empty_fields, sizeof(pbptest_Empty), pbptest_Empty_size },
	{ "pbpfuzz.Inner", pbpfuzz_Inner_fields, sizeof(pbpfuzz_Inner), pbpfuzz_Inner_size },
	{ "pbpfuzz.Rich", pbpfuzz_Rich_fields, sizeof(pbpfuzz_Rich), 0 },
	{ "pbpipe.Hello", pbpipe_Hello_fields, sizeof(pbpipe_Hello), pbpipe_Hello_size },
	{ "pbpipe.Goodbye", pbpipe_Goodbye_fields, sizeof(pbpipe_Goodbye), pbpipe_Goodbye_size },
	{ "pbpipe.Envelope", pbpipe_Envelope_fields, sizeof(pbpipe_Envelope), 0 },
	{ "pbpipe.Sync", pbpipe_Sync_fields, sizeof(pbpipe_Sync), pbpipe_Sync_size },
};

/* The largest struct above, so one stack buffer holds any of them. */
typedef union anymsg {
	pbptest_Text text;
	pbptest_Numbers numbers;
	pbptest_Blob blob;
	pbpfuzz_Rich rich;
	pbpipe_Envelope envelope;
} anymsg;

/* What a callback field received: every occurrence for a repeated field,
 * the last one for a singular field (protobuf's "last one wins"). */
#define MAX_SLOTS 4

typedef struct chunk {
	uint8_t *data;
	size_t len;
} chunk;

typedef struct slot {
	bool repeated;
	chunk *items;
	size_t n;
} slot;

static void
slot_clear(slot *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->items[i].data);
	free(s->items);
	s->items = NULL;
	s->n = 0;
}

static bool
cb_decode(pb_istream_t *stream, const pb_field_t *field, void **arg)
{
	slot *s = *arg;
	size_t len = stream->bytes_left;
	uint8_t *data = malloc(len > 0 ? len : 1);
	chunk *items;

	(void)field;
	if (data == NULL)
		return false;
	if (!pb_read(stream, data, len)) {
		free(data);
		return false;
	}
	if (!s->repeated)
		slot_clear(s);
	items = realloc(s->items, (s->n + 1) * sizeof *items);
	if (items == NULL) {
		free(data);
		return false;
	}
	s->items = items;
	s->items[s->n].data = data;
	s->items[s->n].len = len;
	s->n++;
	return true;
}

static bool
cb_encode(pb_ostream_t *stream, const pb_field_t *field, void *const *arg)
{
	const slot *s = *arg;
	size_t i;

	for (i = 0; i < s->n; i++) {
		if (!pb_encode_tag_for_field(stream, field) ||
		    !pb_encode_string(stream, s->items[i].data, s->items[i].len))
			return false;
	}
	return true;
}

/* Points every top-level callback field of msg at a slot, for decoding
 * (encode false) or encoding.  Returns false if a callback field is of a
 * kind whose bytes cannot be written back as a length-delimited field. */
static bool
set_callbacks(const pb_msgdesc_t *fields, void *msg, slot *slots, bool encode)
{
	pb_field_iter_t it;
	size_t n = 0;
	bool writable = true;

	if (!pb_field_iter_begin(&it, fields, msg))
		return true;
	do {
		pb_callback_t *cb;

		if (PB_ATYPE(it.type) != PB_ATYPE_CALLBACK)
			continue;
		FUZZ_CHECK(n < MAX_SLOTS, "more than %d callback fields", MAX_SLOTS);
		cb = it.pData;
		slots[n].repeated = PB_HTYPE(it.type) == PB_HTYPE_REPEATED;
		if (encode)
			cb->funcs.encode = cb_encode;
		else
			cb->funcs.decode = cb_decode;
		cb->arg = &slots[n];
		if (PB_LTYPE(it.type) != PB_LTYPE_BYTES && PB_LTYPE(it.type) != PB_LTYPE_STRING &&
		    PB_LTYPE(it.type) != PB_LTYPE_SUBMESSAGE)
			writable = false;
		n++;
	} while (pb_field_iter_next(&it));
	return writable;
}

static void
slots_clear(slot *slots)
{
	size_t i;

	for (i = 0; i < MAX_SLOTS; i++)
		slot_clear(&slots[i]);
}

/* Decodes data as type t into msg, with callbacks collecting into slots. */
static bool
decode_as(const msgtype *t, const uint8_t *data, size_t len, anymsg *msg, slot *slots,
          bool *writable)
{
	pb_istream_t is = pb_istream_from_buffer(data, len);

	memset(msg, 0, sizeof *msg);
	*writable = set_callbacks(t->fields, msg, slots, false);
	return pb_decode(&is, t->fields, msg);
}

/* Encodes msg (type t) into a new heap block; sets *len. */
static uint8_t *
encode_as(const msgtype *t, anymsg *msg, slot *slots, size_t *len)
{
	pb_ostream_t os;
	uint8_t *buf;
	size_t size = 0;

	(void)set_callbacks(t->fields, msg, slots, true);
	FUZZ_CHECK(pb_get_encoded_size(&size, t->fields, msg),
	           "%s: sizing a decoded message failed", t->name);
	if (t->max_encoded != 0)
		FUZZ_CHECK(size <= t->max_encoded, "%s: %zu bytes, generated bound %zu",
		           t->name, size, t->max_encoded);
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL)
		return NULL;
	os = pb_ostream_from_buffer(buf, size);
	FUZZ_CHECK(pb_encode(&os, t->fields, msg), "%s: encoding a decoded message: %s",
	           t->name, PB_GET_ERROR(&os));
	FUZZ_CHECK(os.bytes_written == size, "%s: wrote %zu bytes, sized %zu", t->name,
	           os.bytes_written, size);
	*len = size;
	return buf;
}

static void
roundtrip(const msgtype *t, const uint8_t *data, size_t len)
{
	slot slots1[MAX_SLOTS], slots2[MAX_SLOTS];
	uint8_t *enc1 = NULL, *enc2 = NULL;
	size_t len1 = 0, len2 = 0;
	bool writable;
	anymsg msg;

	FUZZ_CHECK(t->size <= sizeof msg, "%s does not fit union anymsg", t->name);
	memset(slots1, 0, sizeof slots1);
	memset(slots2, 0, sizeof slots2);
	if (!decode_as(t, data, len, &msg, slots1, &writable) || !writable)
		goto out;
	enc1 = encode_as(t, &msg, slots1, &len1);
	if (enc1 == NULL)
		goto out;
	FUZZ_CHECK(decode_as(t, enc1, len1, &msg, slots2, &writable),
	           "%s: our own encoding does not decode", t->name);
	enc2 = encode_as(t, &msg, slots2, &len2);
	if (enc2 == NULL)
		goto out;
	FUZZ_CHECK(len1 == len2 && memcmp(enc1, enc2, len1) == 0,
	           "%s: decode-encode-decode not stable (%zu vs %zu bytes)", t->name,
	           len1, len2);
out:
	free(enc1);
	free(enc2);
	slots_clear(slots1);
	slots_clear(slots2);
}

static void
payload(const uint8_t *data, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof types / sizeof types[0]; i++)
		roundtrip(&types[i], data, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	size_t len;
	pbp__frame f;

	if (size < 1)
		return 0;
	len = size - 1;
	/* An exact-size copy: AddressSanitizer then sees reads past the end. */
	copy = fuzz_dup(data + 1, len);
	if (copy == NULL)
		return 0;
	if ((data[0] & 1) == 0) {
		payload(copy, len);
	} else if (fuzz_decode_frame(copy, len, &f) == 0) {
		if (f.kind == PBP__FRAME_MESSAGE) {
			uint8_t *p = fuzz_dup(f.payload, f.payload_len);

			if (p != NULL) {
				payload(p, f.payload_len);
				free(p);
			}
		}
		fuzz_roundtrip_frame(&f);
	}
	free(copy);
	return 0;
}
