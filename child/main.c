/*
 * pbpipe-child: the helper side of the demo.  Started by pbpipe-parent
 * with two pipe handles as its last arguments (the one it writes to, then
 * the one it reads from).  By default it answers every greeting until the
 * parent ends the stream, then exits 0; a greeting too long for
 * demo.Greeting is refused with a Goodbye (reason ERROR) saying so.  With --serve it answers Add calls
 * instead (pbpipe-fanout drives it): --reverse answers each batch of
 * requests that arrived together in reverse order, --delay-ms N waits
 * before every answer.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h> /* Sleep: mingw's nanosleep needs winpthreads */
#endif

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
	PBP_MSGTYPE(demo_Type_ADD, demo_Add),
	PBP_MSGTYPE(demo_Type_SUM, demo_Sum),
};

static int delay_ms;

static int
usage(const char *why)
{
	fprintf(stderr,
	        "pbpipe-child: %s\n"
	        "usage: pbpipe-child [--serve [--reverse] [--delay-ms N]] WRITE_HANDLE READ_HANDLE\n"
	        "  Started by pbpipe-parent (or pbpipe-fanout), which passes the two pipe\n"
	        "  handles: the fd this program writes to, then the fd it reads from.\n",
	        why);
	return 2;
}

/* The demo: answer greetings until the parent ends the stream.  A
 * greeting that does not fit demo.Greeting (its text is bounded by
 * proto/demo.options) is refused with a Goodbye of reason ERROR whose
 * detail says why; the child then reads on until the parent ends the
 * stream and exits 0. */
static int
greet(pbp_channel *ch)
{
	union {
		demo_Greeting greeting;
		demo_Add add;
	} in;
	pbp_peer_info peer;
	uint32_t type;
	int rc, refused = 0;

	for (;;) {
		demo_Greeting reply = { "Hello from Process B!" };

		type = 0; /* set only when a message arrived */
		rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
		if (rc == PBP_EDECODE && type == demo_Type_GREETING && !refused) {
			char detail[128];

			fprintf(stderr, "pbpipe-child: refusing a greeting: %s\n", pbp_channel_errmsg(ch));
			snprintf(detail, sizeof detail,
			         "refused greeting: %s (its text holds at most %u bytes: proto/demo.options)",
			         pbp_channel_errmsg(ch), (unsigned)sizeof in.greeting.text - 1);
			if (pbp_channel_goodbye(ch, PBP_GOODBYE_ERROR, detail) != 0) {
				fprintf(stderr, "pbpipe-child: goodbye failed: %s\n", pbp_channel_errmsg(ch));
				return 1;
			}
			refused = 1;
			continue;
		}
		if (refused && (rc == 0 || (rc == PBP_EDECODE && type != 0)))
			continue; /* we said goodbye: read on until the parent ends */
		if (rc != 0)
			break;
		if (type != demo_Type_GREETING)
			continue;
		printf("child: received \"%s\"\n", in.greeting.text);
		if (pbp_channel_send(ch, demo_Type_GREETING, &reply) != 0) {
			fprintf(stderr, "pbpipe-child: send failed: %s\n", pbp_channel_errmsg(ch));
			return 1;
		}
	}
	if (rc != PBP_EOF) {
		fprintf(stderr, "pbpipe-child: receive failed: %s\n", pbp_channel_errmsg(ch));
		return 1;
	}
	if (pbp_channel_peer(ch, &peer) == 0 && peer.goodbye_received)
		printf("child: end of stream (parent said goodbye), exiting\n");
	else
		printf("child: end of stream, exiting\n");
	return 0;
}

static int
add(const void *req, void *resp, pbp_reply_error *err, void *payload)
{
	const demo_Add *a = req;

	(void)err;
	(void)payload;
	if (delay_ms > 0) {
#ifdef _WIN32
		Sleep((DWORD)delay_ms);
#else
		struct timespec ts = { delay_ms / 1000, (long)(delay_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
#endif
	}
	((demo_Sum *)resp)->value = a->a + a->b;
	return 0;
}

/* Answers the requests that arrived together in reverse order, so the
 * parent sees replies out of order. */
static int
serve_reversed(pbp_channel *ch)
{
	uint64_t ids[256];
	demo_Sum sums[256];
	demo_Add a;
	pbp_msginfo mi;
	int n, rc = 0;

	for (;;) {
		if (pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, -1) != 0)
			return PBP_EINVAL;
		for (n = 0; n < 256; n++) {
			rc = pbp_channel_recv(ch, &mi);
			if (rc != 0)
				break;
			if (mi.type != demo_Type_ADD || mi.id == 0 ||
			    pbp_channel_decode(ch, demo_Add_fields, &a) != 0)
				return PBP_EPROTO;
			ids[n] = mi.id;
			sums[n] = (demo_Sum){ a.a + a.b };
			/* The rest of the batch: whatever is already here. */
			if (pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, 0) != 0)
				return PBP_EINVAL;
		}
		while (n-- > 0)
			if (pbp_channel_reply(ch, ids[n], demo_Type_SUM, &sums[n]) != 0)
				return pbp_channel_error(ch)->code;
		if (rc != 0 && rc != PBP_EAGAIN)
			return rc == PBP_EOF ? 0 : rc;
	}
}

int
main(int argc, char **argv)
{
	static const pbp_handler handlers[] = {
		{ demo_Type_ADD, demo_Type_SUM, add, NULL },
	};
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
	int serve = 0, reverse = 0, i, rc;
	pbp_channel *ch;
	pbp_error err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i + 2 < argc; i++) {
		if (strcmp(argv[i], "--serve") == 0)
			serve = 1;
		else if (strcmp(argv[i], "--reverse") == 0)
			reverse = 1;
		else if (strcmp(argv[i], "--delay-ms") == 0 && i + 3 < argc)
			delay_ms = atoi(argv[++i]);
		else
			return usage("unknown option");
	}
	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	if (argc < 3)
		return usage("expected two handle arguments");
	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0)
		return usage(err.msg);
	if (pbp_channel_handshake(ch) != 0) {
		fprintf(stderr, "pbpipe-child: handshake failed: %s\n", pbp_channel_errmsg(ch));
		pbp_channel_free(ch);
		return 1;
	}
	if (!serve)
		rc = greet(ch);
	else if ((rc = reverse ? serve_reversed(ch) : pbp_channel_serve(ch, handlers, 1)) != 0)
		fprintf(stderr, "pbpipe-child: serving failed: %s\n", pbp_channel_errmsg(ch));
	pbp_channel_free(ch);
	return rc == 0 ? 0 : 1;
}
