/*
 * test_bytes.c: bytes and strings of any size with no user callbacks
 * (pbp_bytes.h, issue 15 item 1): zero-copy sends, views and copies on
 * receive, calls, replies and serve handlers.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include <criterion/criterion.h>

#include "pbpbytes.pb.h"
#include "support.h"

#define T(name) Test(bytes, name, .timeout = 120)

#define MIB (1024u * 1024u)
#define BIG (8u * MIB)

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbpbytes_Type_PUT, pbpbytes_Put),
	PBP_MSGTYPE(pbpbytes_Type_GOT, pbpbytes_Got),
	PBP_MSGTYPE(pbpbytes_Type_NESTED, pbpbytes_Nested),
	PBP_MSGTYPE(pbpbytes_Type_MANY, pbpbytes_Many),
	PBP_MSGTYPE(pbpbytes_Type_GET, pbpbytes_Get),
};

typedef union any {
	pbpbytes_Put put;
	pbpbytes_Got got;
	pbpbytes_Nested nested;
	pbpbytes_Many many;
	pbpbytes_Get get;
} any;

static pbp_channel_options
opts(void)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.max_frame = 16 * MIB;
	o.handshake_timeout_ms = pbt_scale(2000);
	return o;
}

static void
pair(pbp_channel **a, pbp_channel **b)
{
	pbp_channel_options o = opts();

	pbt_pair(a, b, &o, &o);
}

static uint8_t *
pattern(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n ? n : 1);
	size_t i;

	cr_assert_not_null(p);
	for (i = 0; i < n; i++)
		p[i] = pbt_pattern(seed, i);
	return p;
}

static int
is_pattern(const void *data, size_t n, uint32_t seed)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != pbt_pattern(seed, i))
			return 0;
	return 1;
}

/* A sender on its own thread: the receiver reads meanwhile. */
typedef struct sender {
	pbp_channel *ch;
	uint32_t type;
	const void *msg;
	int rc;
	size_t wcap; /* the write buffer's capacity once the send returned */
	int times;   /* sends (0: one) */
} sender;

static void *
send_thread(void *arg)
{
	sender *s = arg;
	int i = 0;

	do
		s->rc = pbp_channel_send(s->ch, s->type, s->msg);
	while (s->rc == 0 && ++i < s->times);
	s->wcap = pbp__channel_wbuf_cap(s->ch);
	return NULL;
}

/* ---- sends and receives ------------------------------------------------------ */

/* 8 MiB out from the caller's memory (never copied into the write buffer:
 * its capacity stays far below the payload) and in as a view into the
 * received payload (no copy either). */
T(eight_mib_put_zero_copy_and_view)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero, got = pbpbytes_Put_init_zero;
	pbp_bytes data, key, in, inkey;
	uint8_t *buf = pattern(BIG, 3);
	pbp_msginfo mi;
	sender s;
	pthread_t t;

	pair(&a, &b);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	pbp_string_out(&put.key, &key, "the key");
	s = (sender){ a, pbpbytes_Type_PUT, &put, -1, 0, 1 };
	t = pbt_spawn_thread(send_thread, &s);
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_lt(s.wcap, BIG / 8, "write buffer grew to %zu bytes: the payload was copied",
	             s.wcap);
	cr_assert_eq(pbp_channel_pending(a), 0);
	pbp_bytes_view(&got.data, &in);
	pbp_bytes_view(&got.key, &inkey);
	cr_assert_eq(pbp_channel_decode(b, pbpbytes_Put_fields, &got), 0, "%s",
	             pbp_channel_errmsg(b));
	cr_assert_eq(in.size, BIG);
	cr_assert(in.present);
	cr_assert(is_pattern(in.data, in.size, 3), "the bytes differ");
	/* A view: inside the received payload, not a copy. */
	cr_assert((const uint8_t *)in.data > (const uint8_t *)mi.payload &&
	          (const uint8_t *)in.data + in.size <= (const uint8_t *)mi.payload + mi.size);
	cr_assert_eq(inkey.size, 7);
	cr_assert_eq(memcmp(inkey.data, "the key", 7), 0);
	cr_assert_eq(pbp_bytes_of(&got.data), &in);
	free(buf);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* pbp_bytes_into: the application's buffer; too small is PBP_EDECODE with
 * the size needed, and the stream goes on. */
T(into_fits_and_too_small_keeps_the_stream)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	any got;
	pbp_bytes data, in;
	uint8_t *buf = pattern(MIB, 5), *small = malloc(MIB / 2), *room = malloc(2 * MIB);
	uint32_t type;
	sender s;
	pthread_t t;
	int rc;

	pair(&a, &b);
	pbp_bytes_out(&put.data, &data, buf, MIB);
	s = (sender){ a, pbpbytes_Type_PUT, &put, -1, 0, 1 };
	t = pbt_spawn_thread(send_thread, &s);
	memset(&got, 0, sizeof got);
	pbp_bytes_into(&got.put.data, &in, small, MIB / 2);
	rc = pbp_channel_recv_msg(b, &type, &got, sizeof got);
	cr_assert_eq(rc, PBP_EDECODE, "rc %d", rc);
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "pbp_bytes_into"), NULL, "%s",
	              pbp_channel_errmsg(b));
	cr_assert_eq(in.size, MIB, "the size needed");
	pbt_join(t);
	cr_assert_eq(s.rc, 0);
	/* The next message arrives. */
	t = pbt_spawn_thread(send_thread, &s);
	memset(&got, 0, sizeof got);
	pbp_bytes_into(&got.put.data, &in, room, 2 * MIB);
	rc = pbp_channel_recv_msg(b, &type, &got, sizeof got);
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(b));
	pbt_join(t);
	cr_assert_eq(s.rc, 0);
	cr_assert_eq(in.data, room);
	cr_assert_eq(in.size, MIB);
	cr_assert(is_pattern(room, MIB, 5));
	free(buf);
	free(small);
	free(room);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A send whose deadline passes halfway through the caller's bytes keeps
 * the rest (copied: the caller's memory is freed right after the send
 * returned, which ASan and valgrind would catch), and the peer gets the
 * whole message after the next flush. */
static void *
recv_put_thread(void *arg)
{
	pbp_channel *b = arg;
	static pbpbytes_Put got;
	static pbp_bytes in;
	uint32_t type;
	int rc;

	memset(&got, 0, sizeof got);
	pbp_bytes_view(&got.data, &in);
	rc = pbp_channel_recv_msg(b, &type, &got, sizeof got);
	if (rc != 0)
		return (void *)(intptr_t)rc;
	if (in.size != BIG || !is_pattern(in.data, in.size, 9))
		return (void *)(intptr_t)-1000;
	return (void *)(intptr_t)0;
}

T(send_timing_out_mid_payload_keeps_a_copy_of_the_rest)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbp_bytes data;
	uint8_t *buf = pattern(BIG, 9);
	size_t left;
	pthread_t t;
	int rc;

	pair(&a, &b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 100), 0);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	rc = pbp_channel_send(a, pbpbytes_Type_PUT, &put);
	cr_assert_eq(rc, PBP_ETIMEDOUT, "rc %d: %s", rc, pbp_channel_errmsg(a));
	left = pbp_channel_pending(a);
	cr_assert(left > 0 && left < BIG, "%zu bytes pending", left);
	memset(buf, 0xAA, BIG);
	free(buf);
	t = pbt_spawn_thread(recv_put_thread, b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, -1), 0);
	cr_assert_eq(pbp_channel_flush(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_pending(a), 0);
	cr_assert_eq((intptr_t)pbt_join(t), 0, "the receiver got another message");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Non-blocking (send deadline 0): the send returns at once with the
 * rest copied; nothing is lost. */
T(non_blocking_send_of_eight_mib)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbp_bytes data;
	uint8_t *buf = pattern(BIG, 9);
	pthread_t t;
	int rc;

	pair(&a, &b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 0), 0);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	rc = pbp_channel_send(a, pbpbytes_Type_PUT, &put);
	cr_assert_eq(rc, 0, "rc %d: %s", rc, pbp_channel_errmsg(a));
	cr_assert_gt(pbp_channel_pending(a), 0);
	free(buf);
	t = pbt_spawn_thread(recv_put_thread, b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, -1), 0);
	cr_assert_eq(pbp_channel_flush(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq((intptr_t)pbt_join(t), 0, "the receiver got another message");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Closing drains what a timed-out zero-copy send left. */
T(close_drains_the_rest_of_a_timed_out_send)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbp_bytes data;
	uint8_t *buf = pattern(BIG, 9);
	pbp_error err;
	pthread_t t;

	pair(&a, &b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 50), 0);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_PUT, &put), PBP_ETIMEDOUT);
	free(buf);
	t = pbt_spawn_thread(recv_put_thread, b);
	cr_assert_eq(pbp_channel_close(a, 20000, &err), 0, "%s", err.msg);
	cr_assert_eq((intptr_t)pbt_join(t), 0, "the receiver got another message");
	pbp_channel_free(b);
}

/* close_write after a timed-out zero-copy send writes the rest first;
 * the reader gets the message, then the end of the stream. */
static void *
recv_put_then_eof_thread(void *arg)
{
	pbp_msginfo mi;
	intptr_t rc = (intptr_t)recv_put_thread(arg);

	if (rc != 0)
		return (void *)rc;
	return (void *)(intptr_t)(pbp_channel_recv(arg, &mi) == PBP_EOF ? 0 : -2000);
}

T(close_write_writes_the_rest_of_a_timed_out_send_then_ends)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbp_bytes data;
	uint8_t *buf = pattern(BIG, 9);
	pthread_t t;

	pair(&a, &b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 50), 0);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_PUT, &put), PBP_ETIMEDOUT);
	free(buf);
	t = pbt_spawn_thread(recv_put_then_eof_thread, b);
	cr_assert_eq(pbp_channel_set_timeout(a, PBP_TIMEOUT_SEND, 20000), 0);
	cr_assert_eq(pbp_channel_close_write(a), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_pending(a), 0);
	cr_assert_eq((intptr_t)pbt_join(t), 0, "the receiver did not get the message, then EOF");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* With PBP_CHANNEL_COALESCE a zero-copy send still returns only once the
 * caller's bytes are written (or copied). */
T(coalescing_send_with_spliced_bytes_writes_them)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbp_bytes data;
	uint8_t *buf = pattern(BIG, 9);
	pthread_t t;

	o.flags = PBP_CHANNEL_COALESCE;
	pbt_pair(&a, &b, &o, &o);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	t = pbt_spawn_thread(recv_put_thread, b);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_PUT, &put), 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_pending(a), 0);
	free(buf);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- calls and serve ------------------------------------------------------------ */

typedef struct store {
	uint8_t *data;
	size_t size;
} store;

static int
put_handler(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	const pbp_bytes *d = pbp_bytes_of(&((const pbpbytes_Put *)req)->data);
	const pbp_bytes *k = pbp_bytes_of(&((const pbpbytes_Put *)req)->key);
	store *s = payload;

	if (d == NULL || k == NULL || k->size != 3 || memcmp(k->data, "big", 3) != 0) {
		snprintf(e->message, sizeof e->message, "no data or wrong key");
		return 1;
	}
	free(s->data);
	s->data = malloc(d->size ? d->size : 1);
	memcpy(s->data, d->data, d->size);
	s->size = d->size;
	((pbpbytes_Got *)resp)->status = 1;
	return 0;
}

static int
get_handler(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	store *s = payload;
	static pbp_bytes out, note;
	pbpbytes_Got *g = resp;

	(void)req;
	(void)e;
	g->status = 2;
	/* The reply goes out after the handler returns: out lives on. */
	pbp_bytes_out(&g->data, &out, s->data, s->size);
	pbp_string_out(&g->note, &note, "here");
	return 0;
}

static int
nested_handler(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	const pbpbytes_Nested *n = req;
	const pbp_bytes *d = pbp_bytes_of(&n->inner.data), *name = pbp_bytes_of(&n->name);

	(void)e;
	(void)payload;
	if (d == NULL || name == NULL || !n->has_inner || !is_pattern(d->data, d->size, 4))
		return 1;
	((pbpbytes_Got *)resp)->status = (uint32_t)d->size + n->inner.n + (uint32_t)name->size;
	return 0;
}

static store served;

/* Many: status = the elements of items and names, note = their bytes
 * concatenated, items first (a copy: the views end with the handler). */
static int
many_handler(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	const pbpbytes_Many *m = req;
	pbpbytes_Got *g = resp;
	const pbp_bytes_list *lists[2] = { pbp_bytes_list_of(&m->items),
	                                   pbp_bytes_list_of(&m->names) };
	static char note[4096];
	static pbp_bytes out;
	size_t len = 0, i, k;

	(void)e;
	(void)payload;
	if (lists[0] == NULL || lists[1] == NULL)
		return -1;
	for (k = 0; k < 2; k++)
		for (i = 0; i < lists[k]->count; i++) {
			const pbp_bytes *b = &lists[k]->items[i];

			g->status++;
			if (len + b->size <= sizeof note) {
				memcpy(note + len, b->data, b->size);
				len += b->size;
			}
		}
	pbp_bytes_out(&g->note, &out, note, len);
	return 0;
}

static void *
serve_thread(void *arg)
{
	static const pbp_handler h[] = {
		{ pbpbytes_Type_PUT, pbpbytes_Type_GOT, put_handler, &served },
		{ pbpbytes_Type_GET, pbpbytes_Type_GOT, get_handler, &served },
		{ pbpbytes_Type_NESTED, pbpbytes_Type_GOT, nested_handler, NULL },
		{ pbpbytes_Type_MANY, pbpbytes_Type_GOT, many_handler, NULL },
	};

	return (void *)(intptr_t)pbp_channel_serve(arg, h, sizeof h / sizeof h[0]);
}

/* The 8 MiB put and get, with serve() on the other side and no
 * callback written by the application. */
T(serve_eight_mib_put_and_get)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbpbytes_Get get = pbpbytes_Get_init_zero;
	pbpbytes_Got got = pbpbytes_Got_init_zero;
	pbp_bytes data, key, in, note;
	uint8_t *buf = pattern(BIG, 11);
	char text[16];
	pthread_t t;
	int rc;

	pair(&a, &b);
	t = pbt_spawn_thread(serve_thread, b);
	pbp_bytes_out(&put.data, &data, buf, BIG);
	pbp_string_out(&put.key, &key, "big");
	rc = pbp_channel_call(a, pbpbytes_Type_PUT, &put, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, 0, "put: %d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(got.status, 1);
	cr_assert_lt(pbp__channel_wbuf_cap(a), BIG / 8, "the request was copied");
	free(buf);
	pbp_string_out(&get.key, &key, "big");
	memset(&got, 0, sizeof got);
	pbp_bytes_view(&got.data, &in);
	pbp_bytes_view(&got.note, &note);
	rc = pbp_channel_call(a, pbpbytes_Type_GET, &get, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, 0, "get: %d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(got.status, 2);
	cr_assert_eq(in.size, BIG);
	cr_assert(is_pattern(in.data, in.size, 11), "the bytes differ");
	cr_assert_eq(pbp_bytes_cstr(text, sizeof text, &note), 0);
	cr_assert_str_eq(text, "here");
	pbp_channel_free(a);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(b);
	free(served.data);
	served.data = NULL;
}

/* A submessage with a bytes field, both ways through serve(). */
T(serve_submessage_with_a_bytes_field)
{
	pbp_channel *a, *b;
	pbpbytes_Nested n = pbpbytes_Nested_init_zero;
	pbpbytes_Got got = pbpbytes_Got_init_zero;
	pbp_bytes data, name;
	uint8_t *buf = pattern(100000, 4);
	pthread_t t;
	int rc;

	pair(&a, &b);
	t = pbt_spawn_thread(serve_thread, b);
	n.has_inner = true;
	n.inner.n = 7;
	pbp_bytes_out(&n.inner.data, &data, buf, 100000);
	pbp_string_out(&n.name, &name, "abc");
	rc = pbp_channel_call(a, pbpbytes_Type_NESTED, &n, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, 0, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(got.status, 100000 + 7 + 3);
	free(buf);
	pbp_channel_free(a);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(b);
}

/* Repeated bytes and strings: a list out, a list of views in. */
T(repeated_fields_out_and_viewed)
{
	pbp_channel *a, *b;
	pbpbytes_Many m = pbpbytes_Many_init_zero;
	any got;
	uint8_t *big = pattern(40000, 5); /* spliced, and within the smallest pipe */
	pbp_bytes items[3] = { { .data = big, .size = 40000 }, { .data = NULL, .size = 0 },
	                       { .data = "xyz", .size = 3 } };
	pbp_bytes names[1] = { { .data = "n", .size = 1 } };
	pbp_bytes in[4], inn[4];
	pbp_bytes_list li, ln, gi, gn;
	uint32_t type;

	pair(&a, &b);
	pbp_bytes_list_out(&m.items, &li, items, 3);
	pbp_bytes_list_out(&m.names, &ln, names, 1);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_MANY, &m), 0, "%s", pbp_channel_errmsg(a));
	memset(&got, 0, sizeof got);
	pbp_bytes_list_view(&got.many.items, &gi, in, 4);
	pbp_bytes_list_view(&got.many.names, &gn, inn, 4);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(b));
	cr_assert_eq(gi.count, 3);
	cr_assert_eq(in[0].size, 40000);
	cr_assert(is_pattern(in[0].data, 40000, 5));
	cr_assert(in[1].present);
	cr_assert_eq(in[1].size, 0);
	cr_assert_eq(in[2].size, 3);
	cr_assert_eq(memcmp(in[2].data, "xyz", 3), 0);
	cr_assert_eq(gn.count, 1);
	cr_assert_eq(memcmp(inn[0].data, "n", 1), 0);
	cr_assert_eq(pbp_bytes_list_of(&got.many.items), &gi);
	cr_assert_null(pbp_bytes_of(&got.many.items));
	free(big);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* More elements than the array holds: PBP_EDECODE, and the channel goes on. */
T(repeated_field_larger_than_its_array)
{
	pbp_channel *a, *b;
	pbpbytes_Many m = pbpbytes_Many_init_zero;
	any got;
	pbp_bytes items[5] = { { .data = "a", .size = 1 }, { .data = "b", .size = 1 },
	                       { .data = "c", .size = 1 }, { .data = "d", .size = 1 },
	                       { .data = "e", .size = 1 } };
	pbp_bytes in[4];
	pbp_bytes_list li, gi;
	uint32_t type;
	int rc;

	pair(&a, &b);
	pbp_bytes_list_out(&m.items, &li, items, 5);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_MANY, &m), 0, "%s", pbp_channel_errmsg(a));
	pbp_bytes_list_out(&m.items, &li, items, 4);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_MANY, &m), 0, "%s", pbp_channel_errmsg(a));
	memset(&got, 0, sizeof got);
	pbp_bytes_list_view(&got.many.items, &gi, in, 4);
	rc = pbp_channel_recv_msg(b, &type, &got, sizeof got);
	cr_assert_eq(rc, PBP_EDECODE, "%d %s", rc, pbp_channel_errmsg(b));
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "more elements than"), NULL, "%s",
	              pbp_channel_errmsg(b));
	cr_assert_eq(gi.count, 5);
	memset(&got, 0, sizeof got);
	pbp_bytes_list_view(&got.many.items, &gi, in, 4);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(b));
	cr_assert_eq(gi.count, 4);
	cr_assert_eq(memcmp(in[3].data, "d", 1), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* serve() hands a handler its request's repeated fields as lists. */
T(serve_receives_repeated_fields)
{
	pbp_channel *a, *b;
	pbpbytes_Many m = pbpbytes_Many_init_zero;
	pbpbytes_Got got = pbpbytes_Got_init_zero;
	pbp_bytes items[2] = { { .data = "hello ", .size = 6 }, { .data = "big ", .size = 4 } };
	pbp_bytes names[1] = { { .data = "world", .size = 5 } };
	pbp_bytes_list li, ln;
	pbp_bytes note;
	char text[32];
	pthread_t t;
	int rc;

	pair(&a, &b);
	t = pbt_spawn_thread(serve_thread, b);
	pbp_bytes_list_out(&m.items, &li, items, 2);
	pbp_bytes_list_out(&m.names, &ln, names, 1);
	pbp_string_into(&got.note, &note, text, sizeof text);
	rc = pbp_channel_call(a, pbpbytes_Type_MANY, &m, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, 0, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(got.status, 3);
	cr_assert_str_eq(text, "hello big world");
	pbp_channel_free(a);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(b);
}

/* Past serve()'s 256 list elements: an error reply, no handler call. */
T(serve_refuses_more_list_elements_than_it_holds)
{
	pbp_channel *a, *b;
	pbpbytes_Many m = pbpbytes_Many_init_zero;
	pbpbytes_Got got = pbpbytes_Got_init_zero;
	pbp_bytes items[129];
	pbp_bytes_list li;
	pthread_t t;
	size_t i;
	int rc;

	for (i = 0; i < 129; i++)
		items[i] = (pbp_bytes){ .data = "i", .size = 1 };
	pair(&a, &b);
	t = pbt_spawn_thread(serve_thread, b);
	/* Two lists share 256: 128 each, so 129 items is one too many. */
	pbp_bytes_list_out(&m.items, &li, items, 129);
	rc = pbp_channel_call(a, pbpbytes_Type_MANY, &m, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, PBP_EREMOTE, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_error(a)->remote_code, PBP_REMOTE_BAD_REQUEST);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "more elements than"), NULL, "%s",
	              pbp_channel_errmsg(a));
	pbp_bytes_list_out(&m.items, &li, items, 128);
	rc = pbp_channel_call(a, pbpbytes_Type_MANY, &m, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, 0, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(got.status, 128);
	pbp_channel_free(a);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(b);
}

/* A repeated submessage with a callback field is still refused, by name. */
static bool
one_inner(pb_ostream_t *stream, const pb_field_t *field, void *const *arg)
{
	pbpbytes_Inner in = pbpbytes_Inner_init_zero;

	(void)arg;
	in.n = 1;
	return pb_encode_tag_for_field(stream, field) &&
	       pb_encode_submessage(stream, pbpbytes_Inner_fields, &in);
}

T(serve_refuses_repeated_submessages_by_name)
{
	pbp_channel *a, *b;
	pbpbytes_Many m = pbpbytes_Many_init_zero;
	pbpbytes_Got got = pbpbytes_Got_init_zero;
	pthread_t t;
	int rc;

	pair(&a, &b);
	t = pbt_spawn_thread(serve_thread, b);
	m.inners.funcs.encode = one_inner;
	rc = pbp_channel_call(a, pbpbytes_Type_MANY, &m, pbpbytes_Type_GOT, &got, 20000);
	cr_assert_eq(rc, PBP_EREMOTE, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_error(a)->remote_code, PBP_REMOTE_BAD_REQUEST);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "field 2"), NULL, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	cr_assert_eq((intptr_t)pbt_join(t), 0);
	pbp_channel_free(b);
}

/* ---- small cases ---------------------------------------------------------------- */

/* Empty bytes are sent and seen as present; an absent field is not. */
T(empty_and_absent_fields)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	any got;
	pbp_bytes data, in, key;
	uint32_t type;

	pair(&a, &b);
	pbp_bytes_out(&put.data, &data, NULL, 0);
	cr_assert_eq(pbp_channel_send(a, pbpbytes_Type_PUT, &put), 0, "%s", pbp_channel_errmsg(a));
	memset(&got, 0, sizeof got);
	pbp_bytes_view(&got.put.data, &in);
	pbp_bytes_view(&got.put.key, &key);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(b));
	cr_assert(in.present);
	cr_assert_eq(in.size, 0);
	cr_assert_not(key.present);
	cr_assert_eq(key.size, 0);
	cr_assert_null(key.data);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Strings: out, a view (not NUL-terminated), into with its NUL, too small. */
T(strings_view_into_and_cstr)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	any got;
	pbp_bytes key, in;
	char *long_key = malloc(100001), room[100001], small[10];
	uint32_t type;
	sender s;
	pthread_t t;
	int rc;

	memset(long_key, 'k', 100000);
	long_key[100000] = '\0';
	pair(&a, &b);
	pbp_string_out(&put.key, &key, long_key);
	/* Three sends of 100 kB: more than a 64 KiB pipe holds (the
	 * pipe_size fallback), so they run while we receive. */
	s = (sender){ a, pbpbytes_Type_PUT, &put, -1, 0, 3 };
	t = pbt_spawn_thread(send_thread, &s);
	memset(&got, 0, sizeof got);
	pbp_bytes_view(&got.put.key, &in);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &got, sizeof got), 0);
	cr_assert_eq(in.size, 100000);
	cr_assert_eq(memcmp(in.data, long_key, 100000), 0);
	cr_assert_eq(pbp_bytes_cstr(small, sizeof small, &in), PBP_EMSGSIZE);
	cr_assert_str_eq(small, "");
	/* Exactly fits with its NUL. */
	memset(&got, 0, sizeof got);
	pbp_string_into(&got.put.key, &in, room, sizeof room);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(b));
	cr_assert_str_eq(room, long_key);
	cr_assert_eq(in.size, 100000);
	/* One byte short. */
	memset(&got, 0, sizeof got);
	pbp_string_into(&got.put.key, &in, room, 100000);
	rc = pbp_channel_recv_msg(b, &type, &got, sizeof got);
	cr_assert_eq(rc, PBP_EDECODE, "rc %d", rc);
	cr_assert_str_eq(room, "");
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(a));
	free(long_key);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* pbp_bytes_of() knows only pbpipe's callbacks. */
T(bytes_of_other_callbacks_is_null)
{
	pb_callback_t cb;
	pbp_bytes b;
	int x;

	memset(&cb, 0, sizeof cb);
	cr_assert_null(pbp_bytes_of(&cb));
	cb.funcs.encode = one_inner;
	cb.arg = &x;
	cr_assert_null(pbp_bytes_of(&cb));
	cr_assert_null(pbp_bytes_list_of(&cb));
	pbp_bytes_into(&cb, &b, &x, sizeof x);
	cr_assert_eq(pbp_bytes_of(&cb), &b);
	cr_assert_eq(pbp_bytes_cstr(NULL, 1, &b), PBP_EINVAL);
}

/* The trace records a spliced frame whole: header, then every piece. */
T(trace_records_a_spliced_frame_whole)
{
	pbp_channel *a, *b;
	pbpbytes_Put put = pbpbytes_Put_init_zero;
	pbp_bytes data, in;
	any got;
	uint8_t *buf = pattern(300000, 6), *rec;
	char path[] = "/tmp/pbptest-bytes-trace-XXXXXX";
	size_t n;
	uint32_t type;
	sender s;
	pthread_t t;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	pair(&a, &b);
	cr_assert_eq(pbp_channel_set_trace(a, path), 0);
	pbp_bytes_out(&put.data, &data, buf, 300000);
	s = (sender){ a, pbpbytes_Type_PUT, &put, -1, 0, 1 };
	t = pbt_spawn_thread(send_thread, &s);
	memset(&got, 0, sizeof got);
	pbp_bytes_view(&got.put.data, &in);
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &got, sizeof got), 0);
	pbt_join(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_lt(s.wcap, 300000, "the payload was copied");
	cr_assert(is_pattern(in.data, 300000, 6));
	f = fopen(path, "rb");
	cr_assert_not_null(f);
	rec = malloc(400000);
	n = fread(rec, 1, 400000, f);
	fclose(f);
	unlink(path);
	/* One record: 20 bytes of trace header, then the frame, whose last
	 * 300000 bytes are the payload. */
	cr_assert_gt(n, 20 + 300000);
	cr_assert_eq(memcmp(rec, "PBPT", 4), 0);
	cr_assert_eq(rec[5], 'S');
	cr_assert(is_pattern(rec + n - 300000, 300000, 6), "the trace lacks the spliced bytes");
	free(rec);
	free(buf);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Duplex: one thread sends spliced frames while another receives on the
 * same channel, both ways at once (scripts/test-tsan runs this too). */
typedef struct duplex_side {
	pbp_channel *ch;
	uint8_t *buf;
	int rc;
} duplex_side;

static void *
duplex_send_thread(void *arg)
{
	duplex_side *d = arg;
	int i;

	for (i = 0; i < 4 && d->rc == 0; i++) {
		pbpbytes_Put put = pbpbytes_Put_init_zero;
		pbp_bytes data;

		pbp_bytes_out(&put.data, &data, d->buf, 2 * MIB);
		d->rc = pbp_channel_send(d->ch, pbpbytes_Type_PUT, &put);
	}
	return NULL;
}

static void *
duplex_recv_thread(void *arg)
{
	duplex_side *d = arg;
	int i;

	for (i = 0; i < 4 && d->rc == 0; i++) {
		pbpbytes_Put got = pbpbytes_Put_init_zero;
		pbp_bytes in;
		uint32_t type;

		pbp_bytes_view(&got.data, &in);
		d->rc = pbp_channel_recv_msg(d->ch, &type, &got, sizeof got);
		if (d->rc == 0 && (in.size != 2 * MIB || !is_pattern(in.data, in.size, 12)))
			d->rc = -1000;
	}
	return NULL;
}

T(duplex_spliced_sends_both_ways_while_receiving)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	uint8_t *buf = pattern(2 * MIB, 12);
	duplex_side s[4];
	pthread_t t[4];
	int i;

	o.flags = PBP_CHANNEL_DUPLEX;
	pbt_pair(&a, &b, &o, &o);
	s[0] = (duplex_side){ a, buf, 0 };
	s[1] = (duplex_side){ b, buf, 0 };
	s[2] = (duplex_side){ a, buf, 0 };
	s[3] = (duplex_side){ b, buf, 0 };
	t[0] = pbt_spawn_thread(duplex_send_thread, &s[0]);
	t[1] = pbt_spawn_thread(duplex_send_thread, &s[1]);
	t[2] = pbt_spawn_thread(duplex_recv_thread, &s[2]);
	t[3] = pbt_spawn_thread(duplex_recv_thread, &s[3]);
	for (i = 0; i < 4; i++)
		pbt_join(t[i]);
	for (i = 0; i < 4; i++)
		cr_assert_eq(s[i].rc, 0, "side %d: rc %d (%s)", i, s[i].rc,
		             pbp_channel_errmsg(s[i].ch));
	cr_assert_lt(pbp__channel_wbuf_cap(a), MIB, "the payload was copied");
	free(buf);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A view works on nanopb's own buffer streams and refuses other streams
 * (whose state is not a pointer into the bytes) instead of guessing. */
typedef struct mem {
	const uint8_t *p;
} mem;

static bool
mem_read(pb_istream_t *stream, pb_byte_t *buf, size_t count)
{
	mem *m = stream->state;

	if (buf != NULL)
		memcpy(buf, m->p, count);
	m->p += count;
	return true;
}

T(view_needs_a_buffer_stream)
{
	pbpbytes_Put put = pbpbytes_Put_init_zero, got = pbpbytes_Put_init_zero;
	pbp_bytes data, in;
	uint8_t enc[64];
	pb_ostream_t os = pb_ostream_from_buffer(enc, sizeof enc);
	pb_istream_t is;
	mem m = { enc };

	pbp_bytes_out(&put.data, &data, "hello", 5);
	cr_assert(pb_encode(&os, pbpbytes_Put_fields, &put));
	is = pb_istream_from_buffer(enc, os.bytes_written);
	pbp_bytes_view(&got.data, &in);
	cr_assert(pb_decode(&is, pbpbytes_Put_fields, &got), "%s", PB_GET_ERROR(&is));
	cr_assert_eq(in.size, 5);
	cr_assert_eq(in.data, enc + 2);
	is = (pb_istream_t){ mem_read, &m, os.bytes_written, NULL };
	pbp_bytes_view(&got.data, &in);
	cr_assert_not(pb_decode(&is, pbpbytes_Put_fields, &got));
	cr_assert_str_eq(PB_GET_ERROR(&is), "pbp_bytes_view needs a buffer stream");
}
