/*
 * pbp_bytes.h: bytes and string fields of any size, with no callbacks to
 * write.
 *
 * With nanopb's 16-bit field sizes (Debian's build), a bytes or string
 * field without max_size is a pb_callback_t: nanopb calls a function to
 * encode it and another to decode it.  pbpipe provides both.  Point the
 * field at a pbp_bytes and say what to do with it:
 *
 *     // .proto: message Put { string key = 1; bytes data = 2; }
 *     // .options: nothing for `data` (no max_size: a callback field)
 *     store_Put put = store_Put_init_zero;
 *     pbp_bytes data;
 *     pbp_bytes_out(&put.data, &data, buf, len);    // send from buf
 *     rc = pbp_channel_send(ch, store_Type_PUT, &put);
 *
 *     store_Put got = store_Put_init_zero;
 *     pbp_bytes in;
 *     pbp_bytes_view(&got.data, &in);               // receive as a view
 *     rc = pbp_channel_recv_msg(ch, &type, &got, sizeof got);
 *     // in.data, in.size: the bytes, inside the channel's receive buffer
 *
 * A pbp_bytes is the field's state: it must outlive the encode or decode
 * of the message whose field points at it (usually both on the stack).
 * pbp_channel_serve() installs views for a request's fields itself; a
 * handler reads them with pbp_bytes_of().
 *
 * A repeated bytes or string field takes a pbp_bytes_list instead: an
 * array of items to send (pbp_bytes_list_out()), or room for the views of
 * the items received (pbp_bytes_list_view()).
 */
#ifndef PBPIPE_PBP_BYTES_H
#define PBPIPE_PBP_BYTES_H

#include <stddef.h>

#include <pb.h>

#include <pbpipe/pbp_common.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * One bytes or string field's data, to send or as received.  Read data and
 * size; leave the other members to pbpipe.
 */
typedef struct pbp_bytes {
	const void *data;  /**< send: the bytes; after a decode: where they are
	                        (NULL with size 0 when the field was absent) */
	size_t size;       /**< their number; after a failed pbp_bytes_into()
	                        decode, the size the field needed */
	int present;       /**< after a decode: 1 if the field was in the message */
	/* private */
	void *buf;         /* pbp_bytes_into(): the application's buffer */
	size_t cap;        /* its capacity */
	unsigned int mode; /* what was installed */
} pbp_bytes;

/**
 * Installs pbpipe's encoder on a bytes or string callback field: the
 * field is sent with the `size` bytes at `data`.  Call before the send
 * (pbp_channel_send(), pbp_channel_call(), pbp_channel_reply(), a serve
 * handler's response).
 *
 * @param field  the message's pb_callback_t for the field
 * @param[out] b the field's state; must live until the send returns
 * @param data   the bytes (may be NULL when size is 0)
 * @param size   their number, up to the frame limit
 *
 * Ownership: data must stay valid and unchanged until the send returns;
 * pbpipe keeps no pointer to it afterwards (the encoded frame is in the
 * channel's write buffer, including what a deadline left unwritten).  An
 * empty field (size 0) is still sent, so the receiver sees `present`.
 */
PBP_API void pbp_bytes_out(pb_callback_t *field, pbp_bytes *b, const void *data, size_t size);

/**
 * pbp_bytes_out() for a NUL-terminated string (the NUL is not sent).
 * A NULL s sends an empty string.
 */
PBP_API void pbp_string_out(pb_callback_t *field, pbp_bytes *b, const char *s);

/**
 * Installs pbpipe's view decoder on a bytes or string callback field:
 * after the decode, b->data and b->size are the field's bytes inside the
 * message's payload, with no copy.
 *
 * Valid exactly as long as the message's pbp_msginfo payload: until the
 * next call on this channel (any pbp_channel_* or pbp_call.h call, a send
 * included), or its free.  Copy what must live longer.  A string view is
 * not NUL-terminated and not checked for UTF-8: use b->size, or
 * pbp_bytes_cstr().
 *
 * Works with the decodes of pbpipe (pbp_channel_decode(),
 * pbp_channel_recv_msg(), pbp_channel_call(), pbp_channel_call_finish(),
 * pbp_channel_serve()) and with nanopb's pb_istream_from_buffer(); any
 * other stream fails the decode (PBP_EDECODE, "pbp_bytes_view needs a
 * buffer stream").
 *
 * @param field  the message's pb_callback_t for the field
 * @param[out] b the field's state, reset here (size 0, not present)
 */
PBP_API void pbp_bytes_view(pb_callback_t *field, pbp_bytes *b);

/**
 * Installs pbpipe's copying decoder on a bytes or string callback field:
 * the decode copies the field into buf, and b->data is buf, b->size the
 * length.  A field longer than cap fails the decode: PBP_EDECODE with
 * "bytes field larger than the buffer given to pbp_bytes_into", b->size
 * the size needed; the channel stays usable (the next receive works).
 * Memory: the whole frame is in the receive buffer while it is copied, so
 * a large field costs twice its size at the peak; pbp_bytes_view() reads
 * it in place, for once its size.
 *
 * @param field  the message's pb_callback_t for the field
 * @param[out] b the field's state, reset here
 * @param buf    where the bytes go; the application's memory
 * @param cap    its size in bytes
 */
PBP_API void pbp_bytes_into(pb_callback_t *field, pbp_bytes *b, void *buf, size_t cap);

/**
 * pbp_bytes_into() for a string: one byte of buf is kept for a NUL, which
 * ends the string after the decode (a string of cap - 1 bytes fits).  On
 * failure buf holds an empty string.
 */
PBP_API void pbp_string_into(pb_callback_t *field, pbp_bytes *b, char *buf, size_t cap);

/**
 * The pbp_bytes installed on a field by pbp_bytes_out(), pbp_string_out(),
 * pbp_bytes_view(), pbp_bytes_into() or pbp_string_into(), or by
 * pbp_channel_serve() for a request's field: how a serve handler reads
 * its request's large fields:
 *
 *     static int put(const void *req, void *resp, pbp_reply_error *e, void *p) {
 *         const pbp_bytes *data = pbp_bytes_of(&((const store_Put *)req)->data);
 *         // data->data, data->size: valid until the handler returns
 *
 * @return the pbp_bytes, or NULL when the field has no pbpipe callback.
 */
PBP_API const pbp_bytes *pbp_bytes_of(const pb_callback_t *field);

/**
 * A repeated bytes or string field's items, to send or as received.  Read
 * items and count; leave the other members to pbpipe.
 */
typedef struct pbp_bytes_list {
	pbp_bytes *items;  /**< send: the items (their data and size); after a
	                        decode: the views, items[0 .. count) */
	size_t count;      /**< send: how many; after a decode: how many came
	                        (after a decode that failed for room: cap + 1) */
	/* private */
	size_t cap;        /* pbp_bytes_list_view(): room in items */
	unsigned int mode; /* what was installed */
} pbp_bytes_list;

/**
 * Installs pbpipe's encoder on a repeated bytes or string callback field:
 * one element per item, in order, each with items[i].size bytes at
 * items[i].data (set only those two members, e.g. `{ .data = p, .size =
 * n }`).  Large items are sent from the caller's memory, as with
 * pbp_bytes_out(), up to 16 per frame; the rest are copied.  Call before
 * the send.
 *
 * @param field  the message's pb_callback_t for the field
 * @param[out] l the field's state; must live until the send returns
 * @param items  n items (may be NULL when n is 0: no element is sent);
 *               they and their bytes must stay valid until the send
 *               returns
 * @param n      their number
 */
PBP_API void pbp_bytes_list_out(pb_callback_t *field, pbp_bytes_list *l, const pbp_bytes *items,
                                size_t n);

/**
 * Installs pbpipe's view decoder on a repeated bytes or string callback
 * field: after the decode, l->items[0 .. l->count) are views of the
 * elements received, in order, each valid as a pbp_bytes_view() is (until
 * the next call on this channel).  More than cap elements fail the decode:
 * PBP_EDECODE with "more elements than the pbp_bytes_list_view array
 * holds"; the channel stays usable.  Same streams as pbp_bytes_view().
 *
 * @param field  the message's pb_callback_t for the field
 * @param[out] l the field's state, reset here (count 0)
 * @param items  room for cap views
 * @param cap    its number of items
 */
PBP_API void pbp_bytes_list_view(pb_callback_t *field, pbp_bytes_list *l, pbp_bytes *items,
                                 size_t cap);

/**
 * The pbp_bytes_list installed on a field by pbp_bytes_list_out() or
 * pbp_bytes_list_view(), or by pbp_channel_serve() for a request's
 * repeated bytes or string field (at most 256 elements in all the
 * request's repeated fields, shared equally among them; a request with
 * more gets a PBP_REMOTE_BAD_REQUEST error reply).
 *
 * @return the list, or NULL when the field has no pbpipe list callback.
 */
PBP_API const pbp_bytes_list *pbp_bytes_list_of(const pb_callback_t *field);

/**
 * Copies a received field into out as a NUL-terminated string.
 *
 * @param[out] out  cap bytes; an empty string on failure
 * @param cap       out's size
 * @param b         a decoded field (pbp_bytes_view() or pbp_bytes_into())
 * @return 0; PBP_EMSGSIZE when cap < b->size + 1; PBP_EINVAL (NULL out,
 *         cap 0, or NULL b).
 */
PBP_API PBP_WARN_UNUSED int pbp_bytes_cstr(char *out, size_t cap, const pbp_bytes *b);

#ifdef __cplusplus
}
#endif

#endif /* PBPIPE_PBP_BYTES_H */
