/*
 * pbpipe-child: the helper side of the demo.  Started by pbpipe-parent
 * with two pipe handles as its last arguments (the one it writes to, then
 * the one it reads from).  Answers every greeting until the parent ends the
 * stream, then exits 0.
 */
#include <stdio.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
};

static int
usage(const char *why)
{
	fprintf(stderr,
	        "pbpipe-child: %s\n"
	        "usage: pbpipe-child WRITE_HANDLE READ_HANDLE\n"
	        "  Started by pbpipe-parent, which passes the two pipe handles: the fd\n"
	        "  this program writes to, then the fd it reads from.\n",
	        why);
	return 2;
}

int
main(int argc, char **argv)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
	pbp_channel *ch;
	pbp_error err;
	pbp_peer_info peer;
	uint32_t type;
	union {
		demo_Greeting greeting;
	} in;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	if (argc != 3)
		return usage("expected exactly two handle arguments");
	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0)
		return usage(err.msg);
	if (pbp_channel_handshake(ch) != 0) {
		fprintf(stderr, "pbpipe-child: handshake failed: %s\n", pbp_channel_errmsg(ch));
		pbp_channel_free(ch);
		return 1;
	}
	while ((rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in)) == 0) {
		demo_Greeting reply = { "Hello from Process B!" };

		printf("child: received \"%s\"\n", in.greeting.text);
		if (pbp_channel_send(ch, demo_Type_GREETING, &reply) != 0)
			break;
	}
	if (rc != PBP_EOF && rc != 0)
		fprintf(stderr, "pbpipe-child: receive failed: %s\n", pbp_channel_errmsg(ch));
	else if (rc != PBP_EOF)
		fprintf(stderr, "pbpipe-child: send failed: %s\n", pbp_channel_errmsg(ch));
	else if (pbp_channel_peer(ch, &peer) == 0 && peer.goodbye_received)
		printf("child: end of stream (parent said goodbye), exiting\n");
	else
		printf("child: end of stream, exiting\n");
	pbp_channel_free(ch);
	return rc == PBP_EOF ? 0 : 1;
}
