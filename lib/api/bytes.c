/*
 * bytes.c: the encode and decode callbacks every user of a large bytes or
 * string field would otherwise write (pbp_bytes.h).
 *
 * The view decoder relies on how nanopb reads a buffer stream
 * (pb_istream_from_buffer, which is what every decode of pbpipe uses): its
 * state is the pointer to the next unread byte, and a field's substream
 * shares the parent's callback and state.  So the field's bytes are at
 * stream->state, bytes_left long, and skipping them (pb_read with a NULL
 * buffer) moves the pointer without copying.  Any other stream is refused
 * rather than guessed at.
 */
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "channel_impl.h"

enum { MODE_OUT = 1, MODE_VIEW, MODE_INTO, MODE_STRING_INTO, MODE_LIST_OUT, MODE_LIST_VIEW };

/* One element: its tag, length and bytes. */
static bool
encode_one(pb_ostream_t *stream, const pb_field_t *field, const pbp_bytes *b)
{
	if (!pb_encode_tag_for_field(stream, field) || !pb_encode_varint(stream, b->size))
		return false;
	/* Into a channel's frame, large bytes are not copied: the engine
	 * writes them from the caller's memory (stream.c, pbp__ch_splice). */
	switch (pbp__ch_splice(stream, b->data, b->size)) {
	case 1:
		return true;
	case -1:
		PB_RETURN_ERROR(stream, "out of memory splicing a bytes field");
	default:
		return pb_write(stream, b->data, b->size);
	}
}

static bool
bytes_encode(pb_ostream_t *stream, const pb_field_t *field, void *const *arg)
{
	return encode_one(stream, field, *arg);
}

/* A repeated field's callback writes every element (nanopb calls it once). */
static bool
list_encode(pb_ostream_t *stream, const pb_field_t *field, void *const *arg)
{
	const pbp_bytes_list *l = *arg;
	size_t i;

	for (i = 0; i < l->count; i++)
		if (!encode_one(stream, field, &l->items[i]))
			return false;
	return true;
}

/* The read callback of nanopb's buffer streams (static in pb_decode.c),
 * taken from a stream it makes. */
static bool
is_buffer_stream(const pb_istream_t *stream)
{
	static const pb_byte_t none[1];
	pb_istream_t probe = pb_istream_from_buffer(none, 0);

	return stream->callback == probe.callback;
}

static bool
bytes_view(pb_istream_t *stream, const pb_field_t *field, void **arg)
{
	pbp_bytes *b = *arg;

	(void)field;
	if (!is_buffer_stream(stream))
		PB_RETURN_ERROR(stream, "pbp_bytes_view needs a buffer stream");
	b->data = stream->state;
	b->size = stream->bytes_left;
	b->present = 1;
	return pb_read(stream, NULL, stream->bytes_left);
}

/* A repeated field's callback is called once per element. */
static bool
list_view(pb_istream_t *stream, const pb_field_t *field, void **arg)
{
	pbp_bytes_list *l = *arg;
	pbp_bytes *b;

	(void)field;
	if (!is_buffer_stream(stream))
		PB_RETURN_ERROR(stream, "pbp_bytes_list_view needs a buffer stream");
	if (l->count >= l->cap) {
		l->count = l->cap + 1;
		PB_RETURN_ERROR(stream, "more elements than the pbp_bytes_list_view array holds");
	}
	b = &l->items[l->count++];
	memset(b, 0, sizeof *b);
	b->mode = MODE_VIEW;
	b->data = stream->state;
	b->size = stream->bytes_left;
	b->present = 1;
	return pb_read(stream, NULL, stream->bytes_left);
}

static bool
bytes_into(pb_istream_t *stream, const pb_field_t *field, void **arg)
{
	pbp_bytes *b = *arg;
	int str = b->mode == MODE_STRING_INTO;

	(void)field;
	b->present = 1;
	b->size = stream->bytes_left;
	/* A string keeps one byte for its NUL (so a cap of 0 takes none). */
	if (stream->bytes_left > b->cap || (str && stream->bytes_left + 1 > b->cap))
		PB_RETURN_ERROR(stream, "bytes field larger than the buffer given to pbp_bytes_into");
	if (!pb_read(stream, b->buf, stream->bytes_left))
		return false;
	if (str)
		((char *)b->buf)[b->size] = '\0';
	b->data = b->buf;
	return true;
}

static void
reset(pbp_bytes *b, unsigned int mode)
{
	memset(b, 0, sizeof *b);
	b->mode = mode;
}

void
pbp_bytes_out(pb_callback_t *field, pbp_bytes *b, const void *data, size_t size)
{
	reset(b, MODE_OUT);
	b->data = data;
	b->size = size;
	b->present = 1;
	field->funcs.encode = bytes_encode;
	field->arg = b;
}

void
pbp_string_out(pb_callback_t *field, pbp_bytes *b, const char *s)
{
	pbp_bytes_out(field, b, s, s != NULL ? strlen(s) : 0);
}

void
pbp_bytes_view(pb_callback_t *field, pbp_bytes *b)
{
	reset(b, MODE_VIEW);
	field->funcs.decode = bytes_view;
	field->arg = b;
}

void
pbp_bytes_into(pb_callback_t *field, pbp_bytes *b, void *buf, size_t cap)
{
	reset(b, MODE_INTO);
	b->buf = buf;
	b->cap = buf != NULL ? cap : 0;
	field->funcs.decode = bytes_into;
	field->arg = b;
}

void
pbp_string_into(pb_callback_t *field, pbp_bytes *b, char *buf, size_t cap)
{
	pbp_bytes_into(field, b, buf, cap);
	b->mode = MODE_STRING_INTO;
	if (b->cap > 0)
		buf[0] = '\0';
}

void
pbp_bytes_list_out(pb_callback_t *field, pbp_bytes_list *l, const pbp_bytes *items, size_t n)
{
	memset(l, 0, sizeof *l);
	l->mode = MODE_LIST_OUT;
	l->items = (pbp_bytes *)items; /* only read */
	l->count = items != NULL ? n : 0;
	field->funcs.encode = list_encode;
	field->arg = l;
}

void
pbp_bytes_list_view(pb_callback_t *field, pbp_bytes_list *l, pbp_bytes *items, size_t cap)
{
	memset(l, 0, sizeof *l);
	l->mode = MODE_LIST_VIEW;
	l->items = items;
	l->cap = items != NULL ? cap : 0;
	field->funcs.decode = list_view;
	field->arg = l;
}

const pbp_bytes_list *
pbp_bytes_list_of(const pb_callback_t *field)
{
	if (field == NULL || field->arg == NULL)
		return NULL;
	if (field->funcs.encode == list_encode || field->funcs.decode == list_view)
		return field->arg;
	return NULL;
}

const pbp_bytes *
pbp_bytes_of(const pb_callback_t *field)
{
	if (field == NULL || field->arg == NULL)
		return NULL;
	if (field->funcs.encode == bytes_encode || field->funcs.decode == bytes_view ||
	    field->funcs.decode == bytes_into)
		return field->arg;
	return NULL;
}

int
pbp_bytes_cstr(char *out, size_t cap, const pbp_bytes *b)
{
	if (out == NULL || cap == 0 || b == NULL)
		return PBP_EINVAL;
	if (b->size >= cap) {
		out[0] = '\0';
		return PBP_EMSGSIZE;
	}
	if (b->size > 0)
		memcpy(out, b->data, b->size);
	out[b->size] = '\0';
	return 0;
}
