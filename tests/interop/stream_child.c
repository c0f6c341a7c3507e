/*
 * stream_child: the C side of the stream interop tests (check_streams.py),
 * a pbpipe-child-like helper that speaks protocol 1.2 with its parent, a
 * Python peer written from docs/PROTOCOL.md with stock protobuf.
 *
 * Every message is a demo.Greeting.  A stream the parent opens is handled
 * by its header's text:
 *   "sink"      read it whole; answer "sink <bytes> <fnv1a-64 hex>", or
 *               "aborted <code> <text>" when the writer aborts it
 *   "cancel N"  read at least N bytes, cancel it (code 7, "child cancels"),
 *               answer "cancelled-after <bytes read>"
 *   "hold"      read nothing for now; answer "holding"; the command
 *               "drain" then reads it as "sink" does
 * Commands (a Greeting that opens no stream):
 *   "send N"    open a stream (header "data") to the parent, write N bytes
 *               (byte i is i % 251), end it; answer "sent N", or
 *               "send-failed <rc> <remote code> <text>"
 *   "abort N"   the same, but abort the stream after N bytes (code 9,
 *               "child aborts"); answer "aborted-sent N"
 *   "cut N"     write N bytes of a stream and exit without its end
 *   "open"      try to open a stream; answer "opened" or "open-failed <rc>"
 * The parent's end of stream (or Goodbye) ends it with status 0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
};

static uint64_t held; /* a "hold" stream not read yet, or 0 */

static int
say(pbp_channel *ch, const char *text)
{
	demo_Greeting g = demo_Greeting_init_zero;
	int rc;

	snprintf(g.text, sizeof g.text, "%s", text);
	rc = pbp_channel_send(ch, demo_Type_GREETING, &g);
	if (rc != 0)
		fprintf(stderr, "stream_child: send \"%s\": %s\n", text, pbp_channel_errmsg(ch));
	return rc;
}

/* Reads stream s to its end (or at least stop_after bytes when nonzero). */
static int
sink(pbp_channel *ch, uint64_t s, size_t stop_after)
{
	static uint8_t buf[64 * 1024];
	uint64_t h = 0xcbf29ce484222325u, total = 0;
	char line[200];
	size_t n, i;
	int rc;

	for (;;) {
		rc = pbp_stream_read(ch, s, buf, sizeof buf, &n);
		if (rc != 0)
			break;
		for (i = 0; i < n; i++)
			h = (h ^ buf[i]) * 0x100000001b3u;
		total += n;
		if (stop_after && total >= stop_after) {
			rc = pbp_stream_cancel(ch, s, 7, "child cancels");
			if (rc != 0) {
				fprintf(stderr, "stream_child: cancel: %s\n", pbp_channel_errmsg(ch));
				return rc;
			}
			snprintf(line, sizeof line, "cancelled-after %" PRIu64, total);
			return say(ch, line);
		}
	}
	if (rc == PBP_EOF)
		snprintf(line, sizeof line, "sink %" PRIu64 " %016" PRIx64, total, h);
	else if (rc == PBP_EREMOTE)
		snprintf(line, sizeof line, "aborted %u %s",
		         pbp_channel_error(ch)->remote_code, pbp_channel_errmsg(ch));
	else {
		fprintf(stderr, "stream_child: read: %s\n", pbp_channel_errmsg(ch));
		return rc;
	}
	return say(ch, line);
}

/* Writes n pattern bytes to a new stream; how it ends: 0 end, 1 abort,
 * 2 not at all (the process exits). */
static int
source(pbp_channel *ch, size_t n, int how)
{
	static uint8_t buf[100 * 1024];
	demo_Greeting hdr = { "data" };
	uint64_t s = 0;
	size_t off = 0, i, done;
	char line[200];
	int rc;

	rc = pbp_stream_open(ch, demo_Type_GREETING, &hdr, &s);
	while (rc == 0 && off < n) {
		size_t k = n - off < sizeof buf ? n - off : sizeof buf;

		for (i = 0; i < k; i++)
			buf[i] = (uint8_t)((off + i) % 251);
		rc = pbp_stream_write(ch, s, buf, k, &done);
		off += done;
	}
	if (rc == 0 && how == 2) {
		rc = pbp_channel_flush(ch);
		exit(rc == 0 ? 0 : 1);
	}
	if (rc == 0)
		rc = how == 1 ? pbp_stream_abort(ch, s, 9, "child aborts") : pbp_stream_end(ch, s);
	if (rc == 0)
		snprintf(line, sizeof line, how == 1 ? "aborted-sent %zu" : "sent %zu", off);
	else if (s == 0)
		snprintf(line, sizeof line, "open-failed %s", pbp_strerror(rc));
	else
		snprintf(line, sizeof line, "send-failed %s %u %s after %zu", pbp_strerror(rc),
		         pbp_channel_error(ch)->remote_code, pbp_channel_errmsg(ch), off);
	return say(ch, line);
}

static int
on_stream(pbp_channel *ch, uint64_t s, const char *name)
{
	if (strcmp(name, "sink") == 0)
		return sink(ch, s, 0);
	if (strncmp(name, "cancel ", 7) == 0)
		return sink(ch, s, (size_t)strtoull(name + 7, NULL, 10));
	if (strcmp(name, "hold") == 0) {
		held = s;
		return say(ch, "holding");
	}
	return say(ch, "unknown stream");
}

static int
on_command(pbp_channel *ch, const char *cmd)
{
	if (strncmp(cmd, "send ", 5) == 0)
		return source(ch, (size_t)strtoull(cmd + 5, NULL, 10), 0);
	if (strncmp(cmd, "abort ", 6) == 0)
		return source(ch, (size_t)strtoull(cmd + 6, NULL, 10), 1);
	if (strncmp(cmd, "cut ", 4) == 0)
		return source(ch, (size_t)strtoull(cmd + 4, NULL, 10), 2);
	if (strcmp(cmd, "open") == 0) {
		demo_Greeting hdr = { "data" };
		uint64_t s;
		int rc = pbp_stream_open(ch, demo_Type_GREETING, &hdr, &s);
		char line[80];

		if (rc == 0)
			return say(ch, "opened");
		snprintf(line, sizeof line, "open-failed %s", pbp_strerror(rc));
		return say(ch, line);
	}
	if (strcmp(cmd, "drain") == 0 && held != 0) {
		uint64_t s = held;

		held = 0;
		return sink(ch, s, 0);
	}
	return say(ch, "unknown command");
}

int
main(int argc, char **argv)
{
	pbp_channel_options opts = PBP_CHANNEL_OPTIONS_INIT;
	pbp_channel *ch;
	pbp_error err;
	pbp_msginfo m;
	int rc;

	opts.types = types;
	opts.ntypes = sizeof types / sizeof types[0];
	opts.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	opts.recv_timeout_ms = 20000;
	opts.send_timeout_ms = 20000;
	if (argc > 3)
		opts.max_frame = (uint32_t)strtoul(argv[1], NULL, 10);
	if (pbp_channel_from_argv(&ch, argc, argv, &opts, &err) != 0) {
		fprintf(stderr, "stream_child: %s\n", err.msg);
		return 2;
	}
	if (pbp_channel_handshake(ch) != 0) {
		fprintf(stderr, "stream_child: handshake: %s\n", pbp_channel_errmsg(ch));
		pbp_channel_free(ch);
		return 1;
	}
	while ((rc = pbp_channel_recv(ch, &m)) == 0) {
		demo_Greeting g = demo_Greeting_init_zero;

		if (pbp_channel_decode(ch, demo_Greeting_fields, &g) != 0) {
			fprintf(stderr, "stream_child: decode: %s\n", pbp_channel_errmsg(ch));
			break;
		}
		rc = m.stream ? on_stream(ch, m.stream, g.text) : on_command(ch, g.text);
		if (rc != 0)
			break;
	}
	if (rc == PBP_EOF) {
		rc = pbp_channel_close(ch, 5000, NULL);
		return rc == 0 ? 0 : 1;
	}
	fprintf(stderr, "stream_child: %s\n", pbp_channel_errmsg(ch));
	pbp_channel_free(ch);
	return 1;
}
