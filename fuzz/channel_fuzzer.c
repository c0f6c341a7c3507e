/*
 * channel_fuzzer.c: the stateful harness.  A channel runs over an in-memory
 * transport (tests/memio.c) whose incoming bytes come from the input, while
 * the input also chooses a sequence of operations: receive, send, call,
 * barrier, flush, half-close, the peer closing either direction, changing
 * how many bytes each read returns, and (op bytes 240 to 246) streams:
 * open, write, end, abort, read (a view or a copy), cancel.  Every deadline is 0, so nothing
 * blocks.  Invariants: only documented codes come back, receive errors are
 * sticky, payloads lie inside the receive buffer and within the limit, and
 * both buffers stay within their bounds, and so does every stream's.
 *
 * Input: byte 0 picks options (frame limit, coalescing, whether a valid
 * Hello from the peer comes first); then operations, one byte each, some
 * followed by arguments.
 */
#include <string.h>

#include "channel_impl.h"
#include "fuzz_common.h"
#include "memio.h"
#include "pbptest.pb.h"
#include "fuzzapp_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};

typedef struct input {
	const uint8_t *p;
	size_t n;
} input;

static int
take(input *in)
{
	if (in->n == 0)
		return -1;
	in->n--;
	return *in->p++;
}

static int
documented(int rc)
{
	return rc <= 0 && rc >= PBP_ENOTSUP;
}

static int
sticky_rx(int rc)
{
	return rc == PBP_EOF || rc == PBP_ETRUNC || rc == PBP_EPROTO || rc == PBP_EMSGSIZE ||
	       rc == PBP_ESYS || rc == PBP_ENOMEM || rc == PBP_EUNANSWERED;
}

/* A Hello from the peer with our fingerprint and the given limit. */
static void
peer_hello(pbt_pipe *p, uint32_t max_frame)
{
	pbpipe_Envelope env;
	uint8_t buf[128];
	size_t n;

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_hello_tag;
	env.body.hello.magic = PBP__MAGIC;
	env.body.hello.major = PBP_PROTOCOL_MAJOR;
	env.body.hello.minor = PBP_PROTOCOL_MINOR;
	env.body.hello.max_frame = max_frame;
	env.body.hello.schema_fingerprint = FUZZAPP_SCHEMA_FINGERPRINT;
	env.body.hello.stream_window = 4096;
	FUZZ_CHECK(pbp__control_encode(buf, sizeof buf, &env, &n, NULL) == 0, "encoding Hello");
	pbt_pipe_put(p, buf, n);
}

static void
check_bounds(const pbp_channel *ch)
{
	size_t rx_bound = (size_t)ch->limit + PBP__VARINT32_MAX + RX_SLACK;

	if (rx_bound < BUF_INITIAL)
		rx_bound = BUF_INITIAL;
	FUZZ_CHECK(ch->rd.cap <= rx_bound, "receive buffer %zu over %zu", ch->rd.cap, rx_bound);
	FUZZ_CHECK(ch->wcap <= 2 * ((size_t)ch->limit + PBP__MSG_HEADER_MAX + QUEUE_MAX),
	           "write buffer %zu", ch->wcap);
	FUZZ_CHECK(pbp_channel_pending(ch) <= QUEUE_MAX + ch->limit + PBP__MSG_HEADER_MAX,
	           "%zu bytes queued", pbp_channel_pending(ch));
	if (ch->st != NULL) {
		size_t i, live = 0;

		for (i = 0; i < STREAM_SLOTS; i++) {
			const pbp__instream *s = &ch->st->in[i];

			FUZZ_CHECK(s->len <= ch->st_window && s->cap <= ch->st_window,
			           "stream %llu buffers %zu (room %zu), window %u",
			           (unsigned long long)s->id, s->len, s->cap, (unsigned)ch->st_window);
			FUZZ_CHECK(s->view_len == 0, "a view left after a call");
			live += s->state == IN_OPEN || s->state == IN_ENDED;
		}
		FUZZ_CHECK(live == ch->st->nlive_in && live <= PBP_MAX_STREAMS, "%zu live streams",
		           live);
	}
}

/* Streams: ops 240 to 246 on the newest stream of either direction. */
static void
op_stream(pbp_channel *ch, int op, input *in)
{
	static uint8_t data[64 * 1024];
	uint64_t own = ch->st_next - 1, peer = ch->st_peer_last, s;
	const void *view;
	uint8_t buf[300];
	size_t n = 0;
	int rc, arg;

	switch (op) {
	case 0: rc = pbp_stream_open(ch, pbptest_Type_EMPTY, NULL, &s); break;
	case 1:
		arg = take(in);
		rc = pbp_stream_write(ch, own, data, arg > 0 ? (size_t)arg * 256 : 1, &n);
		FUZZ_CHECK(n <= (arg > 0 ? (size_t)arg * 256 : 1), "wrote %zu", n);
		break;
	case 2: rc = pbp_stream_end(ch, own); break;
	case 3: rc = pbp_stream_abort(ch, own, 5, "stop"); break;
	case 4:
		rc = pbp_stream_read_view(ch, peer, &view, &n);
		FUZZ_CHECK(rc == 0 ? n > 0 && view != NULL : n == 0 && view == NULL,
		           "read_view %d with %zu bytes", rc, n);
		break;
	case 5:
		rc = pbp_stream_read(ch, peer, buf, sizeof buf, &n);
		FUZZ_CHECK(rc == 0 ? n > 0 && n <= sizeof buf : n == 0, "read %d with %zu bytes", rc,
		           n);
		break;
	default: rc = pbp_stream_cancel(ch, peer, 9, "no"); break;
	}
	FUZZ_CHECK(documented(rc), "stream op %d returned %d", op, rc);
}

/* One receive; checks the result against what came before. */
static void
op_recv(pbp_channel *ch, int *sticky)
{
	pbp_msginfo mi;
	pbptest_Numbers any[2];
	int rc = pbp_channel_recv(ch, &mi);

	FUZZ_CHECK(documented(rc), "recv returned %d", rc);
	if (*sticky != 0 && ch->qlen == 0)
		FUZZ_CHECK(rc == *sticky || rc == 0, "sticky %d, then %d", *sticky, rc);
	if (rc == 0) {
		FUZZ_CHECK(mi.size <= ch->limit, "payload %zu over the limit", mi.size);
		if (pbp__ch_find_type(ch, mi.type) != NULL) {
			rc = pbp_channel_decode(ch, pbp__ch_find_type(ch, mi.type)->fields, any);
			FUZZ_CHECK(rc == 0 || rc == PBP_EDECODE, "decode returned %d", rc);
		}
		return;
	}
	/* Sticky errors are the ones the channel recorded as such (a reply
	 * to an unknown id, say, is PBP_EPROTO but not sticky). */
	if (ch->rx_err != 0 && ch->state == ST_READY) {
		FUZZ_CHECK(sticky_rx(ch->rx_err) || ch->rx_err == PBP_EDECODE,
		           "sticky %d is not a stream error", ch->rx_err);
		FUZZ_CHECK(rc == ch->rx_err, "recv %d while the channel failed with %d", rc,
		           ch->rx_err);
		*sticky = rc;
	}
}

static void
op_send(pbp_channel *ch, input *in)
{
	pbptest_Text t;
	int len = take(in), rc;

	memset(&t, 0, sizeof t);
	memset(t.text, 'a', len > 0 ? (size_t)len % sizeof t.text : 0);
	rc = pbp_channel_send(ch, pbptest_Type_TEXT, &t);
	FUZZ_CHECK(documented(rc), "send returned %d", rc);
}

static void
op_call(pbp_channel *ch)
{
	pbptest_Numbers q = { .i64 = 7 }, r;
	uint64_t id;
	int rc = pbp_channel_call_start(ch, pbptest_Type_NUMBERS, &q, &id);

	FUZZ_CHECK(documented(rc), "call_start returned %d", rc);
	if (rc == 0) {
		rc = pbp_channel_call_finish(ch, id, pbptest_Type_NUMBERS, &r, 0);
		FUZZ_CHECK(documented(rc), "call_finish returned %d", rc);
		if (rc == PBP_EAGAIN)
			(void)pbp_channel_call_cancel(ch, id);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t limits[] = { 256, 1024, 65536, PBP_DEFAULT_MAX_FRAME };
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
	input in = { data, size };
	pbt_pipe in_pipe, out_pipe;
	pbt_end end = { 0 };
	pbp_channel *ch;
	int opt = take(&in), op, sticky = 0, rc;

	if (opt < 0)
		return 0;
	pbt_pipe_init(&in_pipe, 0);
	pbt_pipe_init(&out_pipe, (size_t)(opt >> 4) * 4096);
	end.in = &in_pipe;
	end.out = &out_pipe;
	o.types = types;
	o.ntypes = 3;
	o.schema_fingerprint = FUZZAPP_SCHEMA_FINGERPRINT;
	o.max_frame = limits[opt & 3];
	o.flags = (opt & 4) ? PBP_CHANNEL_COALESCE : 0;
	o.handshake_timeout_ms = -1; /* memio never waits anyway */
	FUZZ_CHECK(pbp__channel_new_io(&ch, &pbt_mem_io, &end, &o, NULL) == 0, "new channel");
	if (opt & 8)
		peer_hello(&in_pipe, limits[(opt >> 2) & 3]);
	/* The peer's first bytes, then the handshake. */
	rc = take(&in);
	if (rc > 0) {
		size_t k = (size_t)rc < in.n ? (size_t)rc : in.n;

		pbt_pipe_put(&in_pipe, in.p, k);
		in.p += k;
		in.n -= k;
	}
	rc = pbp_channel_handshake(ch);
	FUZZ_CHECK(documented(rc), "handshake returned %d", rc);
	if (rc == 0) {
		FUZZ_CHECK(ch->limit <= o.max_frame && ch->limit >= PBP_MIN_MAX_FRAME, "limit %u",
		           ch->limit);
		FUZZ_CHECK(pbp_channel_set_timeout(ch, PBP_TIMEOUT_SEND, 0) == 0 &&
		           pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, 0) == 0, "timeouts");
	}
	while ((op = take(&in)) >= 0) {
		if (op >= 240 && op <= 246) {
			op_stream(ch, op - 240, &in);
			check_bounds(ch);
			continue;
		}
		switch (op % 10) {
		case 0: { /* the peer writes n bytes of the input */
			int n = take(&in);
			size_t k = n < 0 ? 0 : (size_t)n * 4 < in.n ? (size_t)n * 4 : in.n;

			pbt_pipe_put(&in_pipe, in.p, k);
			in.p += k;
			in.n -= k;
			break;
		}
		case 1: op_recv(ch, &sticky); break;
		case 2: op_send(ch, &in); break;
		case 3: op_call(ch); break;
		case 4: rc = pbp_channel_sync(ch, 0);
			FUZZ_CHECK(documented(rc), "sync returned %d", rc); break;
		case 5: in_pipe.wclosed = 1; break;
		case 6: rc = pbp_channel_flush(ch);
			FUZZ_CHECK(documented(rc), "flush returned %d", rc); break;
		case 7: end.max_chunk = (size_t)(op >> 4); break;
		case 8: out_pipe.rclosed = 1; break;
		case 9: out_pipe.rpos = out_pipe.len; break; /* the peer reads all */
		}
		check_bounds(ch);
	}
	pbp_channel_free(ch);
	pbt_pipe_free(&in_pipe);
	pbt_pipe_free(&out_pipe);
	return 0;
}
