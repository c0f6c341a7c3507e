/*
 * pbpipe-loop-helper: the helper of the event-loop examples (pbpipe-uv,
 * pbpipe-event; docs/event-loops.md).  Serves Work calls; to answer one it
 * makes a nested call back to the parent, Lookup{key} -> Value, while the
 * parent's call is still waiting, and answers Result{n + value}.
 *
 *   pbpipe-loop-helper [--slow-start-ms N] WRITE_HANDLE READ_HANDLE
 *
 * --slow-start-ms N sleeps N ms before the handshake, so that a parent
 * restarting it sees a handshake that takes that long.  Exits 0 when the
 * parent ends the stream, 1 on a failure, 2 on bad arguments.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pbpipe/pbpipe.h>

#include "loop.pb.h"
#include "loop_fingerprint.h"

/* How long a nested Lookup may take. */
#define LOOKUP_TIMEOUT_MS 5000

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(loop_Type_WORK, loop_Work),
	PBP_MSGTYPE(loop_Type_RESULT, loop_Result),
	PBP_MSGTYPE(loop_Type_LOOKUP, loop_Lookup),
	PBP_MSGTYPE(loop_Type_VALUE, loop_Value),
};

static int
usage(const char *why)
{
	fprintf(stderr,
	        "pbpipe-loop-helper: %s\n"
	        "usage: pbpipe-loop-helper [--slow-start-ms N] WRITE_HANDLE READ_HANDLE\n"
	        "  Started by pbpipe-uv or pbpipe-event, which pass the two pipe handles:\n"
	        "  the fd this program writes to, then the fd it reads from.\n",
	        why);
	return 2;
}

/* Work -> Result, through a nested call to the parent: payload is the
 * channel. */
static int
work(const void *req, void *resp, pbp_reply_error *err, void *payload)
{
	const loop_Work *w = req;
	pbp_channel *ch = payload;
	loop_Lookup l = { w->key };
	loop_Value v;
	int rc;

	rc = pbp_channel_call(ch, loop_Type_LOOKUP, &l, loop_Type_VALUE, &v, LOOKUP_TIMEOUT_MS);
	if (rc != 0) {
		snprintf(err->message, sizeof err->message, "lookup of key %lld: %s",
		         (long long)w->key, pbp_channel_errmsg(ch));
		return 1;
	}
	((loop_Result *)resp)->value = w->n + v.value;
	return 0;
}

static int
parse_ms(const char *s, long *out)
{
	char *end;

	*out = strtol(s, &end, 10);
	return *s != '\0' && *end == '\0' && *out >= 0 && *out <= 600000;
}

int
main(int argc, char **argv)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
	pbp_handler handlers[1];
	long slow_ms = 0;
	pbp_channel *ch;
	pbp_error err;
	int i, rc;

	for (i = 1; i + 2 < argc; i++) {
		if (strcmp(argv[i], "--slow-start-ms") == 0 && i + 3 < argc) {
			if (!parse_ms(argv[++i], &slow_ms))
				return usage("--slow-start-ms takes a number of ms (0 to 600000)");
		} else {
			return usage("unknown option");
		}
	}
	if (argc < 3)
		return usage("expected two handle arguments");
	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = LOOP_SCHEMA_FINGERPRINT;
	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0)
		return usage(err.msg);
	if (slow_ms > 0) {
		struct timespec ts = { slow_ms / 1000, (slow_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
	if (pbp_channel_handshake(ch) != 0) {
		fprintf(stderr, "pbpipe-loop-helper: handshake failed: %s\n", pbp_channel_errmsg(ch));
		pbp_channel_free(ch);
		return 1;
	}
	handlers[0] = (pbp_handler){ loop_Type_WORK, loop_Type_RESULT, work, ch };
	rc = pbp_channel_serve(ch, handlers, 1);
	if (rc != 0)
		fprintf(stderr, "pbpipe-loop-helper: serving failed: %s\n", pbp_channel_errmsg(ch));
	pbp_channel_free(ch);
	return rc == 0 ? 0 : 1;
}
