/*
 * test_stream.c: streams (protocol 1.2, pbp_stream.h): data larger than
 * any frame in either direction, several streams interleaved with
 * messages and calls, the window (backpressure) and its deadlines, cancel
 * and abort, the end of the channel before a stream's end, peers that
 * break the stream rules, 1.1 peers, serve(), zero-copy reads, the stream
 * limit, duplex channels and misuse.  Over real pipes, the peer on a
 * thread or written by hand.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "channel_impl.h"
#include "support.h"

#define T(name) Test(stream, name, .timeout = 120)

#define KIB 1024u
#define MIB (1024u * 1024u)

static pbp_channel_options
opts(void)
{
	pbp_channel_options o = pbt_options();

	o.send_timeout_ms = pbt_scale(10000);
	o.recv_timeout_ms = pbt_scale(10000);
	return o;
}

static void
fill(uint8_t *p, size_t n, uint32_t seed, size_t at)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = pbt_pattern(seed, at + i);
}

/* Index of the first byte of p[0..n) that is not the pattern at `at`, or n. */
static size_t
mismatch(const uint8_t *p, size_t n, uint32_t seed, size_t at)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != pbt_pattern(seed, at + i))
			return i;
	return n;
}

static pbptest_Text
text(const char *s)
{
	pbptest_Text t = pbptest_Text_init_zero;

	strncpy(t.text, s, sizeof t.text - 1);
	return t;
}

/* ---- a writer on a thread ------------------------------------------------------ */

typedef struct writer {
	pbp_channel *ch;
	uint64_t stream;
	size_t total, piece;  /* bytes in all, per pbp_stream_write() */
	uint32_t seed;
	int open_rc, rc, end_rc;
	size_t done;
	int no_end;           /* leave the stream open */
} writer;

static void *
write_thread(void *arg)
{
	writer *w = arg;
	pbptest_Text hdr = text("upload");
	uint8_t *buf = malloc(w->piece);
	size_t at = 0;

	w->open_rc = pbp_stream_open(w->ch, pbptest_Type_TEXT, &hdr, &w->stream);
	w->rc = w->open_rc;
	while (w->rc == 0 && at < w->total) {
		size_t n = w->total - at < w->piece ? w->total - at : w->piece, d = 0;

		fill(buf, n, w->seed, at);
		w->rc = pbp_stream_write(w->ch, w->stream, buf, n, &d);
		/* What went must be exactly what the call says went. */
		memset(buf, 0xee, n);
		at += d;
	}
	w->done = at;
	if (w->rc == 0 && !w->no_end)
		w->end_rc = pbp_stream_end(w->ch, w->stream);
	free(buf);
	return NULL;
}

/* Receives the next message, which must be a stream's header. */
static uint64_t
recv_header(pbp_channel *ch)
{
	pbp_msginfo mi;
	int rc = pbp_channel_recv(ch, &mi);

	cr_assert_eq(rc, 0, "recv: %s", pbp_channel_errmsg(ch));
	cr_assert_neq(mi.stream, 0, "not a stream's header (type %u)", (unsigned)mi.type);
	cr_assert_eq(pbp_channel_last_stream(ch), mi.stream);
	return mi.stream;
}

/* Reads a whole stream with views, checking every byte. */
static size_t
read_all_view(pbp_channel *ch, uint64_t s, uint32_t seed)
{
	const void *p;
	size_t n, got = 0;
	int rc;

	while ((rc = pbp_stream_read_view(ch, s, &p, &n)) == 0) {
		size_t bad = mismatch(p, n, seed, got);

		cr_assert_eq(bad, n, "byte %zu of stream %llu differs", got + bad,
		             (unsigned long long)s);
		cr_assert_gt(n, 0);
		got += n;
	}
	cr_assert_eq(rc, PBP_EOF, "read: %d %s", rc, pbp_channel_errmsg(ch));
	cr_assert_eq(n, 0);
	return got;
}

/* ---- large streams ----------------------------------------------------------- */

/* 64 MiB parent to child through a 64 KiB frame limit: the stream is a
 * thousand times larger than any frame; every byte is checked. */
T(sixty_four_mib_through_a_64k_frame_limit)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	writer w = { 0 };
	pthread_t t;
	size_t got;

	o.max_frame = 64 * KIB;
	pbt_pair(&a, &b, &o, &o);
	w = (writer){ .ch = a, .total = 64 * MIB, .piece = 3 * MIB + 17, .seed = 1 };
	t = pbt_spawn_thread(write_thread, &w);
	got = read_all_view(b, recv_header(b), 1);
	pbt_join(t);
	cr_assert_eq(w.rc, 0, "write: %s", pbp_channel_errmsg(a));
	cr_assert_eq(w.end_rc, 0);
	cr_assert_eq(w.done, 64 * MIB);
	cr_assert_eq(got, 64 * MIB);
	/* Repeatable. */
	cr_assert_eq(pbp_stream_read_view(b, 1, &(const void *){ NULL }, &(size_t){ 0 }), PBP_EOF);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* The same to a real child process (pbptest-peer streamsum), which reads
 * the stream with views and answers with its length and FNV-1a hash. */
T(sixty_four_mib_to_a_child_process)
{
	pbp_channel_options o = opts();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "streamsum", NULL };
	unsigned long long h = 14695981039346656037ull;
	size_t total = 64 * MIB, piece = 1 * MIB + 3, at = 0, i;
	uint8_t *buf = malloc(piece);
	pbptest_Text hdr = text("to the child"), got;
	pbp_exit_status st;
	pbp_channel *ch;
	pbp_child *c;
	pbp_error err;
	char want[96];
	uint32_t type;
	uint64_t s;

	o.max_frame = 64 * KIB;
	so.channel = &o;
	cr_assert_eq(pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err), 0, "%s", err.msg);
	ch = pbp_child_channel(c);
	cr_assert_eq(pbp_stream_open(ch, pbptest_Type_TEXT, &hdr, &s), 0, "%s", pbp_channel_errmsg(ch));
	while (at < total) {
		size_t n = total - at < piece ? total - at : piece, d = 0;

		fill(buf, n, 77, at);
		for (i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 1099511628211ull;
		}
		cr_assert_eq(pbp_stream_write(ch, s, buf, n, &d), 0, "%s", pbp_channel_errmsg(ch));
		cr_assert_eq(d, n);
		at += n;
	}
	cr_assert_eq(pbp_stream_end(ch, s), 0);
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &got, sizeof got), 0, "%s",
	             pbp_channel_errmsg(ch));
	snprintf(want, sizeof want, "%zu %016llx %d", total, h, PBP_EOF);
	cr_assert_str_eq(got.text, want);
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
	cr_assert(st.exited && st.code == 0, "child: exited %d code %d", st.exited, st.code);
	pbp_child_free(c);
	free(buf);
}

/* Both sides write a stream and read the other's at once, from one thread
 * each, with deadlines of 0 (write what the window takes, read what came). */
typedef struct duo {
	pbp_channel *ch;
	uint32_t seed_out, seed_in;
	size_t total, sent, got;
	int rc;
	char err[PBP_ERRMSG_SIZE];
} duo;

static void *
duo_thread(void *arg)
{
	duo *d = arg;
	pbptest_Text hdr = text("both");
	uint64_t out = 0, in = 0;
	uint8_t *buf = malloc(512 * KIB), rbuf[100 * KIB];
	int ended = 0, eof = 0, spins = 0, rc;

	if (pbp_channel_set_timeout(d->ch, PBP_TIMEOUT_SEND, 0) != 0 ||
	    pbp_channel_set_timeout(d->ch, PBP_TIMEOUT_RECV, 0) != 0)
		d->rc = -101;
	if (d->rc == 0)
		d->rc = pbp_stream_open(d->ch, pbptest_Type_TEXT, &hdr, &out);
	while (d->rc == 0 && (!ended || !eof) && spins < 2000000) {
		int moved = 0;

		if (d->sent < d->total) {
			size_t n = d->total - d->sent < 512 * KIB ? d->total - d->sent : 512 * KIB, k = 0;

			fill(buf, n, d->seed_out, d->sent);
			rc = pbp_stream_write(d->ch, out, buf, n, &k);
			if (rc != 0 && rc != PBP_EAGAIN) {
				d->rc = rc;
				break;
			}
			d->sent += k;
			moved |= k > 0;
		} else if (!ended) {
			rc = pbp_stream_end(d->ch, out);
			if (rc != 0) {
				d->rc = rc;
				break;
			}
			ended = 1;
		}
		if (in == 0) {
			pbp_msginfo mi;

			rc = pbp_channel_recv(d->ch, &mi);
			if (rc == 0)
				in = mi.stream;
			else if (rc != PBP_EAGAIN)
				d->rc = rc;
		}
		while (in != 0 && !eof) {
			size_t n = 0;

			rc = pbp_stream_read(d->ch, in, rbuf, sizeof rbuf, &n);
			if (rc == PBP_EOF) {
				eof = 1;
			} else if (rc == 0) {
				if (mismatch(rbuf, n, d->seed_in, d->got) != n) {
					d->rc = -100;
					break;
				}
				d->got += n;
				moved = 1;
			} else {
				if (rc != PBP_EAGAIN)
					d->rc = rc;
				break;
			}
		}
		if (!moved) {
			spins++;
			if ((rc = pbp_channel_flush(d->ch)) != 0 && rc != PBP_EAGAIN)
				d->rc = rc;
			usleep(50);
		}
	}
	while (d->rc == 0 && pbp_channel_pending(d->ch) > 0 && spins++ < 2000000) {
		rc = pbp_channel_flush(d->ch);
		if (rc != 0 && rc != PBP_EAGAIN)
			d->rc = rc;
		usleep(50);
	}
	memcpy(d->err, pbp_channel_errmsg(d->ch), sizeof d->err);
	free(buf);
	return NULL;
}

T(both_directions_at_once)
{
	pbp_channel *a, *b;
	duo da = { 0 }, db = { 0 };
	pthread_t ta, tb;

	pbt_pair(&a, &b, NULL, NULL);
	da = (duo){ .ch = a, .seed_out = 11, .seed_in = 22, .total = 16 * MIB };
	db = (duo){ .ch = b, .seed_out = 22, .seed_in = 11, .total = 16 * MIB };
	ta = pbt_spawn_thread(duo_thread, &da);
	tb = pbt_spawn_thread(duo_thread, &db);
	pbt_join(ta);
	pbt_join(tb);
	cr_assert_eq(da.rc, 0, "A: %d %s", da.rc, da.err);
	cr_assert_eq(db.rc, 0, "B: %d %s", db.rc, db.err);
	cr_assert_eq(da.got, 16 * MIB);
	cr_assert_eq(db.got, 16 * MIB);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- several streams, messages and a call ---------------------------------------- */

#define ROUNDS 24
#define PER_ROUND (100 * KIB)

typedef struct multi {
	pbp_channel *ch;
	int rc;
	char reply[64];
} multi;

static void *
multi_thread(void *arg)
{
	multi *m = arg;
	uint8_t *buf = malloc(PER_ROUND);
	uint64_t s[3];
	pbptest_Text req = text("ping"), resp;
	int i, k, rc = 0;

	for (k = 0; k < 3 && rc == 0; k++) {
		pbptest_Text hdr = text(k == 0 ? "one" : k == 1 ? "two" : "three");

		rc = pbp_stream_open(m->ch, pbptest_Type_TEXT, &hdr, &s[k]);
	}
	for (i = 0; i < ROUNDS && rc == 0; i++) {
		char what[16];
		pbptest_Text t;

		for (k = 0; k < 3 && rc == 0; k++) {
			fill(buf, PER_ROUND, (uint32_t)(100 + k), (size_t)i * PER_ROUND);
			rc = pbp_stream_write(m->ch, s[k], buf, PER_ROUND, NULL);
			if (rc == 0 && k == 1) {
				snprintf(what, sizeof what, "m%d", i);
				t = text(what);
				rc = pbp_channel_send(m->ch, pbptest_Type_TEXT, &t);
			}
		}
	}
	for (k = 0; k < 3 && rc == 0; k++)
		rc = pbp_stream_end(m->ch, s[k]);
	memset(&resp, 0, sizeof resp);
	if (rc == 0)
		rc = pbp_channel_call(m->ch, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp,
		                      pbt_scale(10000));
	memcpy(m->reply, resp.text, sizeof m->reply - 1);
	m->rc = rc;
	free(buf);
	return NULL;
}

T(three_streams_interleaved_with_messages_and_a_call)
{
	pbp_channel *a, *b;
	multi m = { 0 };
	uint64_t s[3];
	uint8_t buf[PER_ROUND];
	size_t got[3] = { 0, 0, 0 };
	pbp_msginfo mi;
	pthread_t t;
	int i, k;

	pbt_pair(&a, &b, NULL, NULL);
	m.ch = a;
	t = pbt_spawn_thread(multi_thread, &m);
	for (k = 0; k < 3; k++)
		s[k] = recv_header(b);
	cr_assert(s[0] < s[1] && s[1] < s[2]);
	/* Round by round: while one stream is read, the others' chunks and
	 * the messages are kept for later. */
	for (i = 0; i < ROUNDS; i++) {
		for (k = 0; k < 3; k++) {
			while (got[k] < (size_t)(i + 1) * PER_ROUND) {
				size_t want = (size_t)(i + 1) * PER_ROUND - got[k], n = 0;
				int rc = pbp_stream_read(b, s[k], buf, want < sizeof buf ? want : sizeof buf, &n);

				cr_assert_eq(rc, 0, "stream %d: %d %s", k, rc, pbp_channel_errmsg(b));
				cr_assert_eq(mismatch(buf, n, (uint32_t)(100 + k), got[k]), n);
				got[k] += n;
			}
		}
	}
	for (k = 0; k < 3; k++)
		cr_assert_eq(pbp_stream_read(b, s[k], buf, sizeof buf, &(size_t){ 0 }), PBP_EOF,
		             "%s", pbp_channel_errmsg(b));
	/* The messages, in order, then the call. */
	for (i = 0; i < ROUNDS; i++) {
		pbptest_Text in;
		char want[16];

		cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
		cr_assert_eq(mi.stream, 0);
		cr_assert_eq(mi.id, 0);
		cr_assert_eq(pbp_channel_decode(b, pbptest_Text_fields, &in), 0);
		snprintf(want, sizeof want, "m%d", i);
		cr_assert_str_eq(in.text, want);
	}
	cr_assert_eq(pbp_channel_recv(b, &mi), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_neq(mi.id, 0);
	{
		pbptest_Text pong = text("pong");

		cr_assert_eq(pbp_channel_reply(b, mi.id, pbptest_Type_TEXT, &pong), 0);
	}
	pbt_join(t);
	cr_assert_eq(m.rc, 0, "writer: %d %s", m.rc, pbp_channel_errmsg(a));
	cr_assert_str_eq(m.reply, "pong");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- the window -------------------------------------------------------------------- */

/* A reader that does not read: the write stops after the reader's window
 * and times out by its deadline, having said exactly what went; the
 * reader buffers no more than the window.  Then the reader reads, and
 * the rest goes.  The window and its frame fit the smallest pipe (64 KiB,
 * where the pipe size cannot be set), so the reader can take them in. */
T(backpressure_stops_the_writer_after_the_window)
{
	pbp_channel_options oa = opts(), ob = opts();
	pbp_channel *a, *b;
	size_t total = 1 * MIB, done = 0, got = 0, n;
	uint8_t *data = malloc(total), buf[64 * KIB];
	const uint32_t W = 16 * KIB;
	pbp__instream *in;
	uint64_t s, rs;
	int64_t t0, ms;
	int rc;

	fill(data, total, 5, 0);
	oa.send_timeout_ms = 300;
	ob.stream_window = W;
	ob.recv_timeout_ms = 100;
	pbt_pair(&a, &b, &oa, &ob);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0, "%s", pbp_channel_errmsg(a));
	t0 = pbp__now_ms();
	rc = pbp_stream_write(a, s, data, total, &done);
	ms = pbp__now_ms() - t0;
	cr_assert_eq(rc, PBP_ETIMEDOUT, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(done, W, "done %zu", done);
	cr_assert_geq(ms, 290, "%lld ms", (long long)ms);
	cr_assert_lt(ms, pbt_scale(3000), "%lld ms", (long long)ms);
	/* The reader takes in the header and what the pipe holds, no more
	 * than the window. */
	rs = recv_header(b);
	cr_assert_eq(pbp_channel_recv(b, &(pbp_msginfo){ 0 }), PBP_ETIMEDOUT);
	in = pbp__streams_in(b, rs);
	cr_assert_not_null(in);
	cr_assert_eq(in->len, W);
	cr_assert_leq(in->cap, W);
	/* Now the reader reads, and the writer goes on from where it was. */
	while (got < W) {
		cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), 0, "%s", pbp_channel_errmsg(b));
		cr_assert_eq(mismatch(buf, n, 5, got), n);
		got += n;
	}
	{
		size_t more = 0;

		/* The credit for the first W is in the pipe: W more go. */
		rc = pbp_stream_write(a, s, data + done, total - done, &more);
		cr_assert_eq(rc, PBP_ETIMEDOUT, "%d %s", rc, pbp_channel_errmsg(a));
		cr_assert_eq(more, W, "more %zu", more);
	}
	pbp_channel_free(a);
	pbp_channel_free(b);
	free(data);
}

/* A reader's deadline applies to each read. */
T(read_times_out_by_the_receive_deadline)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	uint8_t buf[16];
	size_t n = 99;
	uint64_t s;
	int64_t t0;

	o.recv_timeout_ms = 200;
	pbt_pair(&a, &b, &o, &o);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &s), 0);
	s = recv_header(b);
	t0 = pbp__now_ms();
	cr_assert_eq(pbp_stream_read(b, s, buf, sizeof buf, &n), PBP_ETIMEDOUT);
	cr_assert_eq(n, 0);
	cr_assert_geq(pbp__now_ms() - t0, 190);
	/* Non-blocking: PBP_EAGAIN. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_stream_read(b, s, buf, sizeof buf, &n), PBP_EAGAIN);
	/* Then the data comes. */
	cr_assert_eq(pbp_stream_write(a, s, "hello", 5, NULL), 0);
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 2000), 0);
	cr_assert_eq(pbp_stream_read(b, s, buf, 3, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(memcmp(buf, "hel", 3), 0);
	cr_assert_eq(pbp_stream_read(b, s, buf, sizeof buf, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(memcmp(buf, "lo", 2), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- cancel, abort, the end of the channel ------------------------------------------- */

T(reader_cancels_writer_gets_ecanceled)
{
	pbp_channel *a, *b;
	uint8_t data[10 * KIB], buf[10 * KIB];
	size_t n, done = 1;
	uint64_t s, rs;

	pbt_pair(&a, &b, NULL, NULL);
	fill(data, sizeof data, 3, 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
	cr_assert_eq(pbp_stream_write(a, s, data, sizeof data, &done), 0);
	cr_assert_eq(done, sizeof data);
	rs = recv_header(b);
	cr_assert_eq(pbp_stream_read(b, rs, buf, 100, &n), 0);
	cr_assert_eq(pbp_stream_cancel(b, rs, 7, "enough"), 0, "%s", pbp_channel_errmsg(b));
	/* Cancelled: the id is gone on the reader's side. */
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_EINVAL);
	/* The writer learns it on its next write (sticky), and end says so. */
	cr_assert_eq(pbp_stream_write(a, s, data, sizeof data, &done), PBP_ECANCELED);
	cr_assert_eq(done, 0);
	cr_assert_eq(pbp_channel_error(a)->remote_code, 7);
	cr_assert_str_eq(pbp_channel_errmsg(a), "enough");
	cr_assert_eq(pbp_stream_write(a, s, data, 1, &done), PBP_ECANCELED);
	cr_assert_eq(pbp_stream_end(a, s), PBP_ECANCELED);
	cr_assert_eq(pbp_stream_write(a, s, data, 1, &done), PBP_EINVAL);
	/* Chunks that crossed the cancel are dropped; the channel goes on. */
	{
		pbptest_Text t = text("after");

		cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
		cr_assert_eq(pbp_channel_recv(b, &(pbp_msginfo){ 0 }), 0, "%s", pbp_channel_errmsg(b));
	}
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(writer_aborts_reader_gets_eremote)
{
	pbp_channel *a, *b;
	uint8_t data[1000], buf[2000];
	size_t n, got = 0;
	uint64_t s, rs;
	int rc;

	pbt_pair(&a, &b, NULL, NULL);
	fill(data, sizeof data, 4, 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
	cr_assert_eq(pbp_stream_write(a, s, data, sizeof data, NULL), 0);
	cr_assert_eq(pbp_stream_abort(a, s, 0, "x"), PBP_EINVAL);
	cr_assert_eq(pbp_stream_abort(a, s, 9, "disk full"), 0);
	cr_assert_eq(pbp_stream_write(a, s, data, 1, NULL), PBP_EINVAL);
	rs = recv_header(b);
	/* The data first, then the abort, repeatably. */
	while ((rc = pbp_stream_read(b, rs, buf, sizeof buf, &n)) == 0)
		got += n;
	cr_assert_eq(got, sizeof data);
	cr_assert_eq(rc, PBP_EREMOTE, "%d %s", rc, pbp_channel_errmsg(b));
	cr_assert_eq(pbp_channel_error(b)->remote_code, 9);
	cr_assert_str_eq(pbp_channel_errmsg(b), "disk full");
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_EREMOTE);
	cr_assert_eq(pbp_channel_error(b)->remote_code, 9);

	/* A long, ill-formed message goes out as valid UTF-8 of at most 127
	 * bytes, as error replies do. */
	{
		char msg[300];

		memset(msg, 'z', sizeof msg - 1);
		msg[sizeof msg - 1] = '\0';
		msg[0] = (char)0xff;
		cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
		cr_assert_eq(pbp_stream_abort(a, s, 3, msg), 0);
		rs = recv_header(b);
		cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_EREMOTE);
		cr_assert_eq(pbp_channel_error(b)->remote_code, 3);
		cr_assert_leq(strlen(pbp_channel_errmsg(b)), 127);
		cr_assert_eq(memcmp(pbp_channel_errmsg(b), "\xef\xbf\xbdzzz", 6), 0, "%s",
		             pbp_channel_errmsg(b));
	}
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(channel_end_before_the_stream_end_is_etrunc)
{
	pbp_channel *a, *b;
	uint8_t data[100], buf[200];
	size_t n;
	uint64_t s, rs;

	pbt_pair(&a, &b, NULL, NULL);
	fill(data, sizeof data, 6, 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
	cr_assert_eq(pbp_stream_write(a, s, data, sizeof data, NULL), 0);
	cr_assert_eq(pbp_channel_goodbye(a, PBP_GOODBYE_DONE, "bye"), 0);
	rs = recv_header(b);
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), 0);
	cr_assert_eq(n, sizeof data);
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_ETRUNC, "%s",
	             pbp_channel_errmsg(b));
	cr_assert_eq(n, 0);
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_ETRUNC);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* The writer's process dies (its channel is freed, no Goodbye) before the
 * end: the reader reads what came, then PBP_ETRUNC. */
T(peer_gone_before_the_stream_end_is_etrunc)
{
	pbp_channel *a, *b;
	uint8_t data[3000], buf[4000];
	size_t n, got = 0;
	uint64_t s, rs;
	int rc;

	pbt_pair(&a, &b, NULL, NULL);
	fill(data, sizeof data, 7, 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
	cr_assert_eq(pbp_stream_write(a, s, data, sizeof data, NULL), 0);
	pbp_channel_free(a);
	rs = recv_header(b);
	while ((rc = pbp_stream_read(b, rs, buf, sizeof buf, &n)) == 0)
		got += n;
	cr_assert_eq(got, sizeof data);
	cr_assert_eq(rc, PBP_ETRUNC, "%d %s", rc, pbp_channel_errmsg(b));
	pbp_channel_free(b);
}

static void *
free_later(void *ch)
{
	usleep(200 * 1000);
	pbp_channel_free(ch);
	return NULL;
}

/* The reader goes away while the writer waits for credit: the credit can
 * never come, and the writer says so before its deadline. */
T(reader_gone_while_the_writer_waits_is_etrunc)
{
	pbp_channel_options oa = opts(), ob = opts();
	pbp_channel *a, *b;
	uint8_t data[8 * KIB] = { 0 };
	size_t done = 0;
	pthread_t t;
	uint64_t s;
	int64_t t0;
	int rc;

	oa.send_timeout_ms = pbt_scale(5000);
	ob.stream_window = 1024;
	pbt_pair(&a, &b, &oa, &ob);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
	t = pbt_spawn_thread(free_later, b);
	t0 = pbp__now_ms();
	rc = pbp_stream_write(a, s, data, sizeof data, &done);
	cr_assert(rc == PBP_ETRUNC || rc == PBP_EPIPE, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(done, 1024);
	cr_assert_lt(pbp__now_ms() - t0, pbt_scale(4000));
	pbt_join(t);
	pbp_channel_free(a);
}

/* ---- a peer written by hand ------------------------------------------------------ */

typedef struct raw {
	pbp_channel *ch;
	int fds[4]; /* the peer writes fds[1] and reads fds[2] */
} raw;

static void
raw_open(raw *r, uint32_t minor, uint32_t peer_window, uint32_t our_window)
{
	pbp_channel_options o = opts();
	pbpipe_Hello h = pbt_good_hello();
	uint8_t buf[256];
	pbp_error err;
	size_t n;

	o.stream_window = our_window;
	o.recv_timeout_ms = 1000;
	o.send_timeout_ms = 1000;
	pbt_pipes(r->fds);
	cr_assert_eq(pbp_channel_from_fds(&r->ch, r->fds[0], r->fds[3], &o, &err), 0, "%s", err.msg);
	h.minor = minor;
	h.stream_window = peer_window;
	n = pbt_hello_frame(buf, sizeof buf, &h);
	pbt_write_all(r->fds[1], buf, n);
}

static void
raw_close(raw *r)
{
	pbp_channel_free(r->ch);
	close(r->fds[1]);
	close(r->fds[2]);
}

static void
raw_stream_open(raw *r, uint64_t stream, uint64_t id)
{
	uint8_t hdr[PBP__MSG_HEADER_MAX];
	pbp__reply rp = { 0, 0, NULL, stream };
	uint64_t body;
	size_t h = pbp__message_header_ex(hdr, pbptest_Type_EMPTY, id, &rp, 0, &body);

	pbt_write_all(r->fds[1], hdr, h);
}

static void
raw_data(raw *r, uint64_t stream, size_t n)
{
	uint8_t hdr[PBP__DATA_HEADER_MAX], *d = calloc(1, n + 1);
	uint64_t body;
	size_t h = pbp__stream_data_header(hdr, stream, n, &body);

	pbt_write_all(r->fds[1], hdr, h);
	pbt_write_all(r->fds[1], d, n);
	free(d);
}

static void
raw_control(raw *r, pb_size_t tag, uint64_t stream, uint32_t value)
{
	pbpipe_Envelope env;
	uint8_t buf[PBP__HANDSHAKE_MAX_FRAME];
	size_t n;

	memset(&env, 0, sizeof env);
	env.which_body = tag;
	if (tag == pbpipe_Envelope_credit_tag) {
		env.body.credit.stream = stream;
		env.body.credit.bytes = value;
	} else if (tag == pbpipe_Envelope_cancel_tag) {
		env.body.cancel.stream = stream;
		env.body.cancel.error_code = value;
	} else {
		env.body.end.stream = stream;
		env.body.end.error_code = value;
	}
	cr_assert_eq(pbp__control_encode(buf, sizeof buf, &env, &n, NULL), 0);
	pbt_write_all(r->fds[1], buf, n);
}

static void
expect_proto(raw *r, const char *what)
{
	pbp_msginfo mi;
	int rc;

	while ((rc = pbp_channel_recv(r->ch, &mi)) == 0)
		;
	cr_assert_eq(rc, PBP_EPROTO, "%d %s", rc, pbp_channel_errmsg(r->ch));
	cr_assert_neq(strstr(pbp_channel_errmsg(r->ch), what), NULL, "%s", pbp_channel_errmsg(r->ch));
	/* Sticky. */
	cr_assert_eq(pbp_channel_recv(r->ch, &mi), PBP_EPROTO);
}

T(hostile_chunks_beyond_the_window)
{
	raw r;
	uint8_t buf[4096];
	size_t n, got = 0;
	int rc;

	raw_open(&r, 2, PBP_DEFAULT_STREAM_WINDOW, 1024);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0, "%s", pbp_channel_errmsg(r.ch));
	raw_stream_open(&r, 1, 0);
	raw_data(&r, 1, 1000);
	raw_data(&r, 1, 25); /* 1025 > 1024 */
	/* Nothing read, so nothing granted: the second chunk is one byte too
	 * many. */
	cr_assert_eq(recv_header(r.ch), 1);
	expect_proto(&r, "exceeds the window");
	raw_close(&r);

	/* One chunk larger than the window, met by a read. */
	raw_open(&r, 2, PBP_DEFAULT_STREAM_WINDOW, 1024);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0, "%s", pbp_channel_errmsg(r.ch));
	raw_stream_open(&r, 1, 0);
	raw_data(&r, 1, 1025);
	cr_assert_eq(recv_header(r.ch), 1);
	while ((rc = pbp_stream_read(r.ch, 1, buf, sizeof buf, &n)) == 0)
		got += n;
	cr_assert_eq(rc, PBP_EPROTO, "%d %s", rc, pbp_channel_errmsg(r.ch));
	cr_assert_neq(strstr(pbp_channel_errmsg(r.ch), "window"), NULL, "%s", pbp_channel_errmsg(r.ch));
	cr_assert_eq(got, 0);
	raw_close(&r);
}

T(hostile_data_for_a_stream_never_opened)
{
	raw r;

	raw_open(&r, 2, 0, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	raw_stream_open(&r, 1, 0);
	raw_data(&r, 2, 10);
	expect_proto(&r, "never opened");
	raw_close(&r);

	raw_open(&r, 2, 0, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	raw_control(&r, pbpipe_Envelope_end_tag, 3, 0);
	expect_proto(&r, "never opened");
	raw_close(&r);
}

T(hostile_reused_or_decreasing_id)
{
	raw r;

	raw_open(&r, 2, 0, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	raw_stream_open(&r, 5, 0);
	raw_stream_open(&r, 5, 0);
	expect_proto(&r, "not above its previous 5");
	raw_close(&r);

	raw_open(&r, 2, 0, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	raw_stream_open(&r, 5, 0);
	raw_stream_open(&r, 4, 0);
	expect_proto(&r, "not above its previous 5");
	raw_close(&r);
}

T(hostile_stream_zero)
{
	static const pb_size_t tags[] = { pbpipe_Envelope_data_tag, pbpipe_Envelope_end_tag,
	                                  pbpipe_Envelope_credit_tag, pbpipe_Envelope_cancel_tag };
	size_t i;

	for (i = 0; i < 4; i++) {
		raw r;

		raw_open(&r, 2, 0, 0);
		cr_assert_eq(pbp_channel_handshake(r.ch), 0);
		if (tags[i] == pbpipe_Envelope_data_tag)
			raw_data(&r, 0, 3);
		else
			raw_control(&r, tags[i], 0, 1);
		expect_proto(&r, " 0");
		raw_close(&r);
	}
}

T(hostile_message_with_stream_and_id)
{
	raw r;

	raw_open(&r, 2, 0, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	raw_stream_open(&r, 1, 77);
	expect_proto(&r, "opening stream 1 has an id");
	raw_close(&r);
}

T(hostile_credit_and_cancel_on_the_writer)
{
	raw r;
	uint64_t s;

	/* Credit for a stream we never opened. */
	raw_open(&r, 2, 4096, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	raw_control(&r, pbpipe_Envelope_credit_tag, 1, 100);
	expect_proto(&r, "never opened");
	raw_close(&r);
	/* A cancel for one either. */
	raw_open(&r, 2, 4096, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	cr_assert_eq(pbp_stream_open(r.ch, pbptest_Type_EMPTY, NULL, &s), 0);
	raw_control(&r, pbpipe_Envelope_cancel_tag, s + 1, 3);
	expect_proto(&r, "never opened");
	raw_close(&r);
	/* Credit past 2^32 - 1 outstanding. */
	raw_open(&r, 2, 4096, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	cr_assert_eq(pbp_stream_open(r.ch, pbptest_Type_EMPTY, NULL, &s), 0);
	raw_control(&r, pbpipe_Envelope_credit_tag, s, UINT32_MAX - 4096);
	raw_control(&r, pbpipe_Envelope_credit_tag, s, 1);
	expect_proto(&r, "2^32");
	raw_close(&r);
}

T(hostile_small_window_in_hello)
{
	raw r;

	raw_open(&r, 2, 100, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), PBP_EPROTO);
	cr_assert_neq(strstr(pbp_channel_errmsg(r.ch), "stream window 100"), NULL, "%s",
	              pbp_channel_errmsg(r.ch));
	raw_close(&r);
	/* From a 1.1 peer, field 8 means nothing. */
	raw_open(&r, 1, 100, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0, "%s", pbp_channel_errmsg(r.ch));
	raw_close(&r);
}

/* Frames the channel wrote to a hand-written peer, after its Hello: none
 * may be of protocol 1.2. */
static void
expect_no_stream_frames(raw *r, int *messages)
{
	uint8_t buf[64 * KIB];
	pbp__reader rd;
	const uint8_t *body;
	size_t len;
	ssize_t got;
	int fl = fcntl(r->fds[2], F_GETFL), rc;

	cr_assert_eq(fcntl(r->fds[2], F_SETFL, fl | O_NONBLOCK), 0);
	cr_assert_eq(pbp__reader_init(&rd, 1024 * 1024, 4096), 0);
	while ((got = read(r->fds[2], buf, sizeof buf)) > 0)
		cr_assert_eq(pbp__reader_feed(&rd, buf, (size_t)got), 0);
	*messages = 0;
	while ((rc = pbp__reader_next(&rd, &body, &len)) == 1) {
		pbp__frame f;

		cr_assert_eq(pbp__frame_decode(body, len, &f, NULL), 0);
		cr_assert_lt(f.kind, PBP__FRAME_STREAM_DATA, "a 1.2 frame (kind %d)", f.kind);
		cr_assert_eq(f.stream, 0, "a Message opening a stream");
		if (f.kind == PBP__FRAME_MESSAGE)
			(*messages)++;
	}
	pbp__reader_free(&rd);
}

T(peer_of_protocol_1_1_gets_enotsup_and_no_stream_frame)
{
	pbptest_Text t = text("plain");
	pbp_peer_info pi;
	uint64_t s = 42;
	int msgs;
	raw r;

	raw_open(&r, 1, PBP_DEFAULT_STREAM_WINDOW, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	cr_assert_eq(pbp_channel_peer(r.ch, &pi), 0);
	cr_assert_eq(pi.minor, 1);
	cr_assert_eq(pi.stream_window, 0);
	cr_assert_eq(pbp_stream_open(r.ch, pbptest_Type_TEXT, &t, &s), PBP_ENOTSUP);
	cr_assert_eq(s, 42);
	cr_assert_eq(pbp_channel_send(r.ch, pbptest_Type_TEXT, &t), 0);
	expect_no_stream_frames(&r, &msgs);
	cr_assert_eq(msgs, 1);
	raw_close(&r);

	/* A 1.2 peer with a window of 0 accepts no streams either. */
	raw_open(&r, 2, 0, 0);
	cr_assert_eq(pbp_channel_handshake(r.ch), 0);
	cr_assert_eq(pbp_stream_open(r.ch, pbptest_Type_TEXT, &t, &s), PBP_ENOTSUP);
	expect_no_stream_frames(&r, &msgs);
	cr_assert_eq(msgs, 0);
	raw_close(&r);
}

/* ---- serve, zero copy, limits ------------------------------------------------------- */

static int
echo(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	(void)e;
	(void)payload;
	*(pbptest_Text *)resp = *(const pbptest_Text *)req;
	return 0;
}

static void *
serve_thread(void *arg)
{
	static const pbp_handler h[] = { { pbptest_Type_TEXT, pbptest_Type_TEXT, echo, NULL } };

	return (void *)(intptr_t)pbp_channel_serve(arg, h, 1);
}

T(serve_cancels_incoming_streams)
{
	pbp_channel *a, *b;
	pbptest_Text req = text("hi"), resp;
	uint8_t data[100] = { 0 };
	pthread_t t;
	uint64_t s;

	pbt_pair(&a, &b, NULL, NULL);
	t = pbt_spawn_thread(serve_thread, b);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, &req, &s), 0);
	cr_assert_eq(pbp_channel_call(a, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp, 5000), 0,
	             "%s", pbp_channel_errmsg(a));
	cr_assert_str_eq(resp.text, "hi");
	/* The cancel came before the reply. */
	cr_assert_eq(pbp_stream_write(a, s, data, sizeof data, NULL), PBP_ECANCELED);
	cr_assert_eq(pbp_channel_error(a)->remote_code, PBP_REMOTE_STREAM_NOT_ACCEPTED);
	cr_assert_str_eq(pbp_channel_errmsg(a), "stream not accepted");
	cr_assert_eq(pbp_channel_close_write(a), 0);
	cr_assert_eq((int)(intptr_t)pbt_join(t), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A chunk that arrives while read_view waits is handed out where it lies
 * in the receive buffer; the writer sent it from the caller's memory. */
T(read_view_hands_out_chunks_without_a_copy)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	size_t total = 200 * KIB, n;
	writer w = { 0 };
	const void *p;
	uint64_t rs;
	pthread_t t;

	pbt_pair(&a, &b, &o, &o);
	/* One chunk of 200 KiB, more than the smallest pipe: from a thread. */
	w = (writer){ .ch = a, .total = total, .piece = total, .seed = 8 };
	t = pbt_spawn_thread(write_thread, &w);
	rs = recv_header(b);
	cr_assert_eq(pbp_stream_read_view(b, rs, &p, &n), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(n, total);
	cr_assert((const uint8_t *)p >= b->rd.buf && (const uint8_t *)p + n <= b->rd.buf + b->rd.cap,
	          "the view is not in the receive buffer");
	cr_assert_eq(mismatch(p, n, 8, 0), n);
	cr_assert_null(pbp__streams_in(b, rs)->buf, "the chunk was copied");
	cr_assert_eq(pbp_stream_read_view(b, rs, &p, &n), PBP_EOF, "%s", pbp_channel_errmsg(b));
	pbt_join(t);
	cr_assert_eq(w.rc, 0, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(w.end_rc, 0, "%s", pbp_channel_errmsg(a));
	/* Zero copy on the way out: the write buffer never held the chunk. */
	cr_assert_lt(pbp__channel_wbuf_cap(a), total);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(too_many_incoming_streams_are_refused)
{
	pbp_channel *a, *b;
	uint64_t s[PBP_MAX_STREAMS + 1], extra;
	pbp_msginfo mi;
	int i, rc;

	pbt_pair(&a, &b, NULL, NULL);
	for (i = 0; i < PBP_MAX_STREAMS; i++)
		cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &s[i]), 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &extra), PBP_ELIMIT);
	/* Ended by the writer, but their ends not yet read: still open for
	 * the reader. */
	for (i = 0; i < PBP_MAX_STREAMS; i++)
		cr_assert_eq(pbp_stream_end(a, s[i]), 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &s[PBP_MAX_STREAMS]), 0);
	for (i = 0; i < PBP_MAX_STREAMS; i++)
		cr_assert_eq(recv_header(b), s[i]);
	/* The 17th header is not delivered. */
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 200), 0);
	cr_assert_eq(pbp_channel_recv(b, &mi), PBP_ETIMEDOUT);
	/* The refusal is in the pipe: the write reads it before it sends. */
	rc = pbp_stream_write(a, s[PBP_MAX_STREAMS], "x", 1, NULL);
	cr_assert_eq(rc, PBP_ECANCELED, "%d %s", rc, pbp_channel_errmsg(a));
	cr_assert_eq(pbp_channel_error(a)->remote_code, PBP_REMOTE_TOO_MANY_STREAMS);
	cr_assert_str_eq(pbp_channel_errmsg(a), "too many streams");
	/* Reading the ends frees the reader's slots. */
	for (i = 0; i < PBP_MAX_STREAMS; i++)
		cr_assert_eq(pbp_stream_read(b, s[i], &(uint8_t){ 0 }, 1, &(size_t){ 0 }), PBP_EOF);
	cr_assert_eq(pbp_stream_end(a, s[PBP_MAX_STREAMS]), PBP_ECANCELED);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &extra), 0);
	cr_assert_eq(pbp_channel_set_timeout(b, PBP_TIMEOUT_RECV, 2000), 0);
	cr_assert_eq(recv_header(b), extra);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A stream's header that the inbox has no room for while a call waits
 * is left unread, and read again later: the stream is not taken for a
 * reused id. */
T(header_refused_by_a_full_inbox_is_read_again)
{
	pbp_channel *a, *b;
	pbptest_Text req = text("q"), resp;
	uint8_t buf[8];
	uint32_t type;
	pbt_any any;
	uint64_t id, s;
	size_t n;
	int i, rc;

	pbt_pair(&a, &b, NULL, NULL);
	for (i = 0; i < PBP_MAX_HELD; i++)
		cr_assert_eq(pbp_channel_send(a, pbptest_Type_EMPTY, &(pbptest_Empty){ 0 }), 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, &req, &s), 0);
	cr_assert_eq(pbp_stream_write(a, s, "abc", 3, NULL), 0);
	cr_assert_eq(pbp_stream_end(a, s), 0);
	cr_assert_eq(pbp_channel_call_start(b, pbptest_Type_TEXT, &req, &id), 0);
	rc = pbp_channel_call_finish(b, id, pbptest_Type_TEXT, &resp, 2000);
	cr_assert_eq(rc, PBP_ELIMIT, "%d %s", rc, pbp_channel_errmsg(b));
	for (i = 0; i < PBP_MAX_HELD; i++)
		cr_assert_eq(pbp_channel_recv(b, &(pbp_msginfo){ 0 }), 0, "%d: %s", i,
		             pbp_channel_errmsg(b));
	/* recv_msg users learn the id from pbp_channel_last_stream(). */
	cr_assert_eq(pbp_channel_recv_msg(b, &type, &any, sizeof any), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(type, pbptest_Type_TEXT);
	cr_assert_str_eq(any.text.text, "q");
	cr_assert_eq(pbp_channel_last_stream(b), s);
	cr_assert_eq(pbp_stream_read(b, s, buf, sizeof buf, &n), 0, "%s", pbp_channel_errmsg(b));
	cr_assert_eq(n, 3);
	cr_assert_eq(memcmp(buf, "abc", 3), 0);
	cr_assert_eq(pbp_stream_read(b, s, buf, sizeof buf, &n), PBP_EOF);
	/* The call's request went; its reply is not part of this test. */
	cr_assert_eq(pbp_channel_call_cancel(b, id), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* ---- duplex, options, misuse ------------------------------------------------------- */

T(duplex_channels_refuse_streams)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	pbp_peer_info pi;
	uint64_t s = 0;

	o.flags = PBP_CHANNEL_DUPLEX;
	pbt_pair(&a, &b, &o, &o);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &s), PBP_EINVAL);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "duplex"), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_stream_read(a, 1, &(uint8_t){ 0 }, 1, &(size_t){ 0 }), PBP_EINVAL);
	cr_assert_eq(pbp_channel_peer(a, &pi), 0);
	cr_assert_eq(pi.stream_window, 0, "a duplex channel announces no window");
	pbp_channel_free(a);
	pbp_channel_free(b);

	/* And a plain channel cannot open one to a duplex peer. */
	{
		pbp_channel_options p = opts();

		pbt_pair(&a, &b, &p, &o);
		cr_assert_eq(pbp_stream_open(a, pbptest_Type_EMPTY, NULL, &s), PBP_ENOTSUP);
		pbp_channel_free(a);
		pbp_channel_free(b);
	}
}

T(stream_window_option)
{
	pbp_channel_options o = opts(), p;
	pbp_channel *a, *b;
	pbp_peer_info pi;
	pbp_error err;
	int fds[4];

	pbt_pipes(fds);
	o.stream_window = 255;
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), PBP_EINVAL);
	cr_assert_neq(strstr(err.msg, "stream_window 255"), NULL, "%s", err.msg);
	o.stream_window = PBP_MAX_STREAM_WINDOW + 1;
	cr_assert_eq(pbp_channel_from_fds(&a, fds[0], fds[3], &o, &err), PBP_EINVAL);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	/* A version 1 struct gets the default window; a given one is sent. */
	o = opts();
	o.version = 1;
	o.stream_window = 12345; /* not part of a version 1 struct: ignored */
	p = opts();
	p.stream_window = 4096;
	pbt_pair(&a, &b, &o, &p);
	cr_assert_eq(pbp_channel_peer(a, &pi), 0);
	cr_assert_eq(pi.minor, 2);
	cr_assert_eq(pi.stream_window, 4096);
	cr_assert_eq(pbp_channel_peer(b, &pi), 0);
	cr_assert_eq(pi.stream_window, PBP_DEFAULT_STREAM_WINDOW);
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* A window smaller than a chunk: chunks shrink to it, and credit keeps the
 * stream going. */
T(small_window_many_credits)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	writer w = { 0 };
	pthread_t t;

	o.stream_window = 256;
	pbt_pair(&a, &b, &o, &o);
	w = (writer){ .ch = a, .total = 300 * KIB, .piece = 100 * KIB, .seed = 9 };
	t = pbt_spawn_thread(write_thread, &w);
	cr_assert_eq(read_all_view(b, recv_header(b), 9), 300 * KIB);
	pbt_join(t);
	cr_assert_eq(w.rc, 0, "%s", pbp_channel_errmsg(a));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

T(misuse_is_einval_naming_the_id)
{
	pbp_channel *a, *b;
	uint8_t buf[8];
	size_t n = 5;
	uint64_t s, rs;

	pbt_pair(&a, &b, NULL, NULL);
	cr_assert_eq(pbp_stream_write(a, 99, "x", 1, &n), PBP_EINVAL);
	cr_assert_eq(n, 0);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "stream 99"), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_stream_read(a, 99, buf, sizeof buf, &n), PBP_EINVAL);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "stream 99"), NULL, "%s", pbp_channel_errmsg(a));
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, NULL), PBP_EINVAL);
	cr_assert_eq(pbp_stream_open(a, 77, NULL, &s), PBP_ETYPE);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s), 0);
	rs = recv_header(b);
	/* Each side's ids are for its own direction's calls. */
	cr_assert_eq(pbp_stream_read(a, s, buf, sizeof buf, &n), PBP_EINVAL);
	cr_assert_neq(strstr(pbp_channel_errmsg(a), "this side opened"), NULL, "%s",
	              pbp_channel_errmsg(a));
	cr_assert_eq(pbp_stream_write(b, rs, "x", 1, &n), PBP_EINVAL);
	cr_assert_neq(strstr(pbp_channel_errmsg(b), "the peer opened"), NULL, "%s",
	              pbp_channel_errmsg(b));
	cr_assert_eq(pbp_stream_read(b, rs, buf, 0, &n), PBP_EINVAL);
	cr_assert_eq(pbp_stream_cancel(b, rs, 0, "no"), PBP_EINVAL);
	cr_assert_eq(pbp_stream_write(a, s, NULL, 1, &n), PBP_EINVAL);
	cr_assert_eq(pbp_stream_write(a, s, NULL, 0, &n), 0);
	cr_assert_eq(pbp_stream_end(a, s), 0);
	cr_assert_eq(pbp_stream_end(a, s), PBP_EINVAL);
	cr_assert_eq(pbp_stream_write(a, s, "x", 1, &n), PBP_EINVAL);
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_EOF);
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_EOF);
	cr_assert_eq(pbp_stream_cancel(b, rs, 1, "late"), 0);
	cr_assert_eq(pbp_stream_read(b, rs, buf, sizeof buf, &n), PBP_EINVAL);
	cr_assert_eq(pbp_stream_read(NULL, 1, buf, 1, &n), PBP_EINVAL);
	cr_assert_eq(pbp_channel_last_stream(NULL), 0);
	cr_assert_str_eq(pbp_strerror(PBP_ECANCELED), "the reader cancelled the stream");
	cr_assert_str_eq(pbp_strerror(PBP_ENOTSUP), "the peer does not accept streams");
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Freeing channels with streams open in both states leaks nothing (run
 * under ASan: scripts/test). */
T(free_with_streams_open)
{
	pbp_channel_options o = opts();
	pbp_channel *a, *b;
	uint8_t data[20 * KIB] = { 1 }; /* both fit the smallest pipe */
	uint64_t s1, s2;

	pbt_pair(&a, &b, &o, &o);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s1), 0);
	cr_assert_eq(pbp_stream_open(a, pbptest_Type_TEXT, NULL, &s2), 0);
	cr_assert_eq(pbp_stream_write(a, s1, data, sizeof data, NULL), 0);
	cr_assert_eq(pbp_stream_write(a, s2, data, sizeof data, NULL), 0);
	(void)recv_header(b);
	(void)recv_header(b);
	cr_assert_eq(pbp_stream_read(b, s1, data, 10, &(size_t){ 0 }), 0);
	pbp_channel_free(a);
	pbp_channel_free(b);
}
