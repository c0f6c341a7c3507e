/*
 * frame_fuzzer.c: the frame reader (pbp__reader_*) and envelope decoding
 * (pbp__frame_decode) on a peer's byte stream.
 *
 * Input: two control bytes, then the stream.
 *   byte 0  bits 0-2  largest chunk: 1 2 3 7 16 100 1000 65536 bytes
 *           bit  3    chunk sizes vary (pseudo-random in [1, largest])
 *           bits 4-5  how bytes go in:
 *                     0  pbp__reader_feed, drain after every chunk
 *                     1  pbp__reader_feed, drain after every 4th chunk
 *                        (whole frames pile up in the buffer)
 *                     2  pbp__reader_space/commit as the channel does it:
 *                        ask for space, write at most a chunk, commit;
 *                        drain as byte 1 says
 *                     3  as 2, but like a channel's handshake: the limit
 *                        is PBP__HANDSHAKE_MAX_FRAME until the first frame
 *                        has come out, then the chosen one, with max_cap
 *                        raised to limit + 5 + slack
 *           bits 6-7  initial capacity: 1 16 1024 PBP__READER_INITIAL_CAP
 *   byte 1  bits 0-3  frame limit (table below)
 *           bits 4-7  seed for chunk sizes; bits 4-5 also pick the
 *                     slack of mode 3: 0 1 100 65536
 *           bits 6-7  in modes 2 and 3, when to drain:
 *                     0  before every space() call (a receive loop)
 *                     1  before every 2nd call, 2  every 8th call,
 *                     3  only when space() offers nothing (a channel
 *                        that keeps reading while its writes are
 *                        blocked, until max_cap bytes are pending)
 *
 * Invariants:
 *   - next() returns only 1, 0, PBP_EOF, PBP_ETRUNC, PBP_EPROTO or
 *     PBP_EMSGSIZE, and never 0 once end of input is set;
 *   - errors are sticky: once next() returned a negative code, every later
 *     call returns the same code, even after more input; the reader's
 *     error record matches;
 *   - every frame body is at most the limit in force, lies inside the
 *     buffer, and equals the bytes a straightforward reference parser finds
 *     at the same offset of the stream; pending() counts what is left;
 *   - the capacity never exceeds max(initial cap, max_cap, limit + 5,
 *     bytes fed + 1), so nothing is allocated on an unchecked peer length;
 *     when bytes go in through space/commit (what the channel does) it
 *     never exceeds max(initial cap, max_cap, limit + 5);
 *   - space() offers 0 bytes only when a frame or an error is ready, so a
 *     caller that drains and refills cannot spin;
 *   - chunking does not matter: a second reader fed the whole stream at
 *     once yields the same frames and the same final code;
 *   - every frame body decodes per pbp__frame_decode's contract.
 *
 * Space/commit modes include initial capacities under PBP__VARINT32_MAX
 * bytes: pbp__reader_space() once offered 0 bytes there while only part of
 * a length prefix was buffered (fixed in df7460e; the input is
 * fuzz/corpora/frame/crash-reader-space-tiny-cap-livelock).
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz_checks.h"

static const size_t chunk_sizes[8] = { 1, 2, 3, 7, 16, 100, 1000, 65536 };
static const size_t initial_caps[4] = { 1, 16, 1024, PBP__READER_INITIAL_CAP };
static const uint32_t limits[16] = {
	0, 1, 2, 5, 16, 127, 128, 255, 256, 300, PBP__HANDSHAKE_MAX_FRAME, 4096,
	65535, 65536, 1u << 20, PBP_DEFAULT_MAX_FRAME,
};
static const size_t slacks[4] = { 0, 1, 100, 64u * 1024u };
static const unsigned drain_periods[4] = { 1, 2, 8, 0 };

enum feed_mode { FEED_EACH, FEED_PILE, SPACE, SPACE_HANDSHAKE };

/* A reference parser: walks the whole stream by offset, with the same
 * rules as the reader but none of its buffering. */
typedef struct model {
	const uint8_t *p;
	size_t n, off;
} model;

static int
model_next(model *m, uint32_t limit, size_t *body_off, size_t *len)
{
	size_t left = m->n - m->off, i;
	uint64_t v = 0;

	if (left == 0)
		return PBP_EOF;
	for (i = 0; i < 5 && i < left; i++) {
		v |= (uint64_t)(m->p[m->off + i] & 0x7f) << (7 * i);
		if ((m->p[m->off + i] & 0x80) == 0)
			break;
	}
	if (i == 5)
		return PBP_EPROTO;      /* five bytes with the continuation bit */
	if (i == left)
		return PBP_ETRUNC;      /* the stream ends inside the prefix */
	if (v > UINT32_MAX)
		return PBP_EPROTO;
	if (v > limit)
		return PBP_EMSGSIZE;
	if (left - (i + 1) < v)
		return PBP_ETRUNC;
	*body_off = m->off + i + 1;
	*len = (size_t)v;
	m->off += i + 1 + (size_t)v;
	return 1;
}

typedef struct run {
	const uint8_t *stream;
	size_t n;
	enum feed_mode mode;
	pbp__reader a;        /* fed in chunks */
	pbp__reader b;        /* fed everything at once */
	model m;
	uint32_t limit;       /* chosen limit (after the handshake in mode 3) */
	uint32_t max_limit;   /* largest limit the readers have had */
	size_t max_cap;       /* largest max_cap the readers have had */
	size_t initial_cap;
	size_t slack;
	unsigned drain_every; /* modes 2 and 3: drain before every n-th space()
	                         call; 0: only when full */
	size_t fed;           /* bytes given to reader a */
	size_t consumed;      /* bytes of whole frames taken from reader a */
	size_t frames;
	int final;            /* first negative code from reader a, or 0 */
} run;

static void
check_cap(const run *r)
{
	size_t bound = r->initial_cap;

	if (bound < r->max_cap)
		bound = r->max_cap;
	if (bound < (size_t)r->max_limit + PBP__VARINT32_MAX)
		bound = (size_t)r->max_limit + PBP__VARINT32_MAX;
	/* The reader always makes room for a whole length prefix. */
	if (bound < PBP__VARINT32_MAX + 1)
		bound = PBP__VARINT32_MAX + 1;
	if (r->mode == FEED_EACH || r->mode == FEED_PILE) {
		if (bound < r->fed + 1)
			bound = r->fed + 1;
	}
	FUZZ_CHECK(r->a.cap <= bound, "capacity %zu over %zu (mode %d, fed %zu, limit %u)",
	           r->a.cap, bound, (int)r->mode, r->fed, (unsigned)r->max_limit);
}

/* After the first frame of a handshake-mode run, switch both readers to
 * the negotiated limit, as pbp_channel_handshake() does. */
static void
after_frame(run *r)
{
	r->frames++;
	if (r->mode == SPACE_HANDSHAKE && r->frames == 1) {
		r->a.limit = r->b.limit = r->limit;
		r->a.max_cap = r->b.max_cap = (size_t)r->limit + PBP__VARINT32_MAX + r->slack;
		if (r->max_limit < r->limit)
			r->max_limit = r->limit;
		if (r->max_cap < r->a.max_cap)
			r->max_cap = r->a.max_cap;
	}
}

/* One frame body out of reader a: compare with the model and reader b,
 * then decode it. */
static void
take_frame(run *r, const uint8_t *body, size_t len)
{
	const uint8_t *bbody;
	size_t blen, moff, mlen;
	uint32_t limit = r->a.limit;
	uint8_t *copy;
	pbp__frame f;
	int rc;

	FUZZ_CHECK(len <= limit, "frame of %zu bytes over the limit %u", len, (unsigned)limit);
	FUZZ_CHECK(body >= r->a.buf && body + len <= r->a.buf + r->a.cap,
	           "body outside the buffer");
	rc = model_next(&r->m, limit, &moff, &mlen);
	FUZZ_CHECK(rc == 1, "reader gave a frame, reference parser says %d", rc);
	FUZZ_CHECK(mlen == len && memcmp(body, r->stream + moff, len) == 0,
	           "frame %zu differs from the reference (%zu vs %zu bytes)",
	           r->frames, len, mlen);
	rc = pbp__reader_next(&r->b, &bbody, &blen);
	FUZZ_CHECK(rc == 1 && blen == len && memcmp(bbody, body, len) == 0,
	           "frame %zu differs when the stream is fed in one piece (rc %d)",
	           r->frames, rc);
	r->consumed = r->m.off;
	FUZZ_CHECK(pbp__reader_pending(&r->a) == r->fed - r->consumed,
	           "pending %zu, expected %zu", pbp__reader_pending(&r->a),
	           r->fed - r->consumed);

	copy = fuzz_dup(body, len);
	if (copy != NULL) {
		if (fuzz_decode_frame(copy, len, &f) == 0 && f.payload_len > 0)
			FUZZ_CHECK(f.payload >= copy && f.payload + f.payload_len <= copy + len,
			           "payload outside the body");
		free(copy);
	}
	after_frame(r);
}

/* Takes frames from reader a until it needs more input.  Returns the
 * number of frames taken. */
static size_t
drain(run *r)
{
	size_t got = 0;

	for (;;) {
		const uint8_t *body;
		size_t len;
		int ready = pbp__reader_ready(&r->a);
		int rc = pbp__reader_next(&r->a, &body, &len);

		/* ready: next() answers without more input, and only then. */
		FUZZ_CHECK(ready == (rc != 0), "pbp__reader_ready said %d, next returned %d",
		           ready, rc);
		if (rc == 1) {
			take_frame(r, body, len);
			got++;
			continue;
		}
		FUZZ_CHECK(rc == 0 || rc == PBP_EOF || rc == PBP_ETRUNC ||
		           rc == PBP_EPROTO || rc == PBP_EMSGSIZE,
		           "pbp__reader_next returned %d", rc);
		FUZZ_CHECK(r->final == 0 || rc == r->final,
		           "sticky error %d became %d", r->final, rc);
		FUZZ_CHECK(rc != 0 || !r->a.eof, "\"need more\" after end of input");
		if (rc < 0) {
			if (r->final == 0 && rc != PBP_EOF)
				fuzz_check_error(rc, &r->a.error);
			if (r->final == 0)
				r->final = rc;
			/* A second call must say the same. */
			FUZZ_CHECK(pbp__reader_next(&r->a, &body, &len) == rc,
			           "error %d not sticky", rc);
		}
		check_cap(r);
		return got;
	}
}

/* Pseudo-random chunk sizes from the seed nibble (xorshift32). */
static size_t
next_chunk(uint32_t *state, size_t largest, bool vary)
{
	if (!vary)
		return largest;
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return 1 + (size_t)(*state % largest);
}

static void
feed_all(run *r, size_t largest, bool vary, uint32_t seed)
{
	size_t off = 0, chunks = 0, spaces = 0;

	while (off < r->n) {
		size_t chunk = next_chunk(&seed, largest, vary);

		if (chunk > r->n - off)
			chunk = r->n - off;
		if (r->mode == FEED_EACH || r->mode == FEED_PILE) {
			if (pbp__reader_feed(&r->a, r->stream + off, chunk) != 0)
				return; /* out of memory: nothing to compare */
			r->fed += chunk;
			off += chunk;
			check_cap(r);
			if (r->mode == FEED_EACH || ++chunks % 4 == 0)
				(void)drain(r);
		} else {
			uint8_t *p;
			size_t room;

			/* The channel stops reading once the stream has failed. */
			if (r->final != 0)
				return;
			spaces++;
			if (r->drain_every != 0 && spaces % r->drain_every == 0)
				(void)drain(r);
			if (r->final != 0)
				return;
			if (pbp__reader_space(&r->a, &p, &room) != 0)
				return;
			check_cap(r);
			if (room == 0) {
				size_t before = r->frames;
				int prev = r->final;

				(void)drain(r);
				FUZZ_CHECK(r->frames > before || r->final != prev,
				           "space() offers 0 bytes but no frame or error is ready "
				           "(pending %zu, cap %zu, max_cap %zu)",
				           pbp__reader_pending(&r->a), r->a.cap, r->a.max_cap);
				continue;
			}
			FUZZ_CHECK(p >= r->a.buf && p + room <= r->a.buf + r->a.cap,
			           "space outside the buffer");
			if (chunk > room)
				chunk = room;
			memcpy(p, r->stream + off, chunk);
			pbp__reader_commit(&r->a, chunk);
			r->fed += chunk;
			off += chunk;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *body;
	size_t len, moff, mlen;
	int mrc, rc;
	run r;

	if (size < 2)
		return 0;
	memset(&r, 0, sizeof r);
	r.stream = data + 2;
	r.n = size - 2;
	r.mode = (enum feed_mode)((data[0] >> 4) & 3);
	r.initial_cap = initial_caps[data[0] >> 6];
	r.limit = limits[data[1] & 15];
	r.slack = slacks[(data[1] >> 4) & 3];
	r.drain_every = drain_periods[data[1] >> 6];
	r.m.p = r.stream;
	r.m.n = r.n;

	{
		uint32_t first = r.mode == SPACE_HANDSHAKE ? PBP__HANDSHAKE_MAX_FRAME : r.limit;

		r.max_limit = first;
		if (pbp__reader_init(&r.a, first, r.initial_cap) != 0)
			return 0;
		if (pbp__reader_init(&r.b, first, PBP__READER_INITIAL_CAP) != 0) {
			pbp__reader_free(&r.a);
			return 0;
		}
		r.max_cap = r.a.max_cap;
	}
	if (pbp__reader_feed(&r.b, r.stream, r.n) != 0)
		goto out;
	pbp__reader_set_eof(&r.b);

	feed_all(&r, chunk_sizes[data[0] & 7], (data[0] & 8) != 0,
	         0x9e3779b9u * (uint32_t)((data[1] >> 4) + 1));
	if (r.fed < r.n && r.final == 0)
		goto out; /* out of memory part way */

	pbp__reader_set_eof(&r.a);
	(void)drain(&r);
	FUZZ_CHECK(r.final != 0, "no final code after end of input");

	/* The reference parser and reader b end the same way. */
	mrc = model_next(&r.m, r.a.limit, &moff, &mlen);
	FUZZ_CHECK(mrc == r.final, "reader ends with %d, reference parser with %d",
	           r.final, mrc);
	rc = pbp__reader_next(&r.b, &body, &len);
	FUZZ_CHECK(rc == r.final, "fed in chunks: %d; in one piece: %d", r.final, rc);

	/* Still the same code after more input and more calls. */
	if (r.final != PBP_EOF) {
		static const uint8_t more[] = { 0x00, 0x02, 0x1a, 0x00 };

		if (pbp__reader_feed(&r.a, more, sizeof more) == 0) {
			r.fed += sizeof more;
			FUZZ_CHECK(pbp__reader_next(&r.a, &body, &len) == r.final,
			           "sticky error lost after more input");
		}
	}
	FUZZ_CHECK(pbp__reader_next(&r.a, &body, &len) == r.final, "final code not stable");
out:
	pbp__reader_free(&r.a);
	pbp__reader_free(&r.b);
	return 0;
}
