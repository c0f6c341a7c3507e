/*
 * legacy-helper: serves calls to the 32-bit-only "ledger98" library
 * (legacy.h) over pbpipe, for a 64-bit host (parent/legacy_host.c).  Built
 * only in a 32-bit tree.  Started by the host with two pipe handles as its
 * last arguments; answers each Request with one Response until the host
 * ends the stream, then exits 0.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "legacy.h"
#include "legacy.pb.h"
#include "legacy_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(legacy_Type_REQUEST, legacy_Request),
	PBP_MSGTYPE(legacy_Type_RESPONSE, legacy_Response),
};

/* One call into the library.  The translation between the wire's fixed
 * widths and the library's `long` happens here, in the helper. */
static void
serve(const legacy_Request *req, legacy_Response *res)
{
	int rc;

	memset(res, 0, sizeof *res);
	switch (req->op) {
	case legacy_Request_Op_INFO:
		snprintf(res->message, sizeof res->message, "%s", LEDGER_VERSION);
		res->long_bits = (uint32_t)(sizeof(long) * CHAR_BIT);
		res->record_size = (uint32_t)sizeof(struct ledger_record);
		break;
	case legacy_Request_Op_CHECKSUM:
		res->checksum = (uint32_t)ledger_checksum(req->data.bytes, req->data.size);
		break;
	case legacy_Request_Op_PACK:
		rc = ledger_pack(res->record.bytes, sizeof res->record.bytes, req->id,
		                 req->balance, req->name);
		if (rc < 0) {
			res->error = rc;
			snprintf(res->message, sizeof res->message, "%s", ledger_strerror(rc));
		} else {
			res->record.size = (pb_size_t)rc;
		}
		break;
	default:
		res->error = -100;
		snprintf(res->message, sizeof res->message, "unknown op %d", (int)req->op);
	}
}

int
main(int argc, char **argv)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
	union {
		legacy_Request req;
	} in;
	legacy_Response res;
	pbp_channel *ch;
	pbp_error err;
	uint32_t type;
	int rc;

	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = LEGACY_SCHEMA_FINGERPRINT;
	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0) {
		fprintf(stderr, "legacy-helper: %s\nusage: legacy-helper WRITE_HANDLE READ_HANDLE\n",
		        err.msg);
		return 2;
	}
	if (pbp_channel_handshake(ch) != 0) {
		fprintf(stderr, "legacy-helper: handshake failed: %s\n", pbp_channel_errmsg(ch));
		pbp_channel_free(ch);
		return 1;
	}
	while ((rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in)) == 0 ||
	       rc == PBP_ETYPE) {
		if (rc == PBP_ETYPE || type != legacy_Type_REQUEST)
			continue; /* not a request: ignore it */
		serve(&in.req, &res);
		if ((rc = pbp_channel_send(ch, legacy_Type_RESPONSE, &res)) != 0)
			break;
	}
	if (rc != PBP_EOF)
		fprintf(stderr, "legacy-helper: %s\n", pbp_channel_errmsg(ch));
	pbp_channel_free(ch);
	return rc == PBP_EOF ? 0 : 1;
}
