/*
 * legacy-host: a 64-bit program using a 32-bit-only library through
 * pbpipe.  Spawns child/legacy32's legacy-helper (a 32-bit program linked
 * with the "ledger98" library), calls the library through it and prints
 * the results.  Usage:
 *
 *     legacy-host [HELPER]
 *
 * HELPER defaults to ../m32/bin/legacy-helper relative to this program:
 * where a 64-bit build tree configured with -DPBP_M32=ON puts the 32-bit
 * helper.
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "legacy.pb.h"
#include "legacy_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(legacy_Type_REQUEST, legacy_Request),
	PBP_MSGTYPE(legacy_Type_RESPONSE, legacy_Response),
};

/* One call: sends req, receives the Response into res. */
static int
call(pbp_channel *ch, const legacy_Request *req, legacy_Response *res)
{
	union {
		legacy_Response res;
	} in;
	uint32_t type;
	int rc;

	if ((rc = pbp_channel_send(ch, legacy_Type_REQUEST, req)) != 0 ||
	    (rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in)) != 0) {
		fprintf(stderr, "legacy-host: %s\n", pbp_channel_errmsg(ch));
		return rc;
	}
	if (type != legacy_Type_RESPONSE) {
		fprintf(stderr, "legacy-host: unexpected message type %u\n", (unsigned)type);
		return PBP_EPROTO;
	}
	*res = in.res;
	return 0;
}

static int
checksum(pbp_channel *ch, const char *label, const void *data, size_t size)
{
	legacy_Request req = legacy_Request_init_zero;
	legacy_Response res;

	req.op = legacy_Request_Op_CHECKSUM;
	memcpy(req.data.bytes, data, size);
	req.data.size = (pb_size_t)size;
	if (call(ch, &req, &res) != 0)
		return -1;
	printf("checksum(%s) = 0x%08x\n", label, (unsigned)res.checksum);
	return 0;
}

/* Packs a record; prints its bytes, or the library's error. */
static int
pack(pbp_channel *ch, int32_t id, int32_t balance, const char *name, legacy_Response *res)
{
	legacy_Request req = legacy_Request_init_zero;
	pb_size_t i;

	req.op = legacy_Request_Op_PACK;
	req.id = id;
	req.balance = balance;
	snprintf(req.name, sizeof req.name, "%s", name);
	if (call(ch, &req, res) != 0)
		return -1;
	if (res->error != 0) {
		printf("pack \"%s\": error %d (%s)\n", name, (int)res->error, res->message);
		return 0;
	}
	printf("record %d \"%s\" %d:", (int)id, name, (int)balance);
	for (i = 0; i < res->record.size; i++)
		printf("%s%02x", i % 4 == 0 && i < 12 ? " " : "", res->record.bytes[i]);
	printf("\n");
	return 0;
}

static int
run(pbp_channel *ch)
{
	static const char hello[] = "Hello from Process A!";
	legacy_Request req = legacy_Request_init_zero;
	legacy_Response res;

	req.op = legacy_Request_Op_INFO;
	if (call(ch, &req, &res) != 0)
		return -1;
	printf("helper: %s, long is %u bits, a record is %u bytes\n", res.message,
	       (unsigned)res.long_bits, (unsigned)res.record_size);
	if (checksum(ch, "\"Hello from Process A!\"", hello, sizeof hello - 1) != 0 ||
	    pack(ch, 42, -1250, "ACME Corp", &res) != 0)
		return -1;
	/* The record's bytes go back into the library, as a file would. */
	if (checksum(ch, "record", res.record.bytes, res.record.size) != 0 ||
	    pack(ch, 7, 0, "An overly long name", &res) != 0)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	char path[PATH_MAX], self[PATH_MAX], how[96];
	const char *helper = argc > 1 ? argv[1] : NULL;
	pbp_exit_status st;
	pbp_peer_info pi;
	pbp_error err;
	pbp_child *c;
	ssize_t n;
	int rc;

	if (argc > 2 || (helper != NULL && helper[0] == '-')) {
		fprintf(stderr, "usage: legacy-host [HELPER]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (helper == NULL) {
		n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n < 0) {
			perror("legacy-host: /proc/self/exe");
			return 1;
		}
		self[n] = '\0';
		snprintf(path, sizeof path, "%s/../m32/bin/legacy-helper", dirname(self));
		helper = path;
	}
	co.types = types;
	co.ntypes = sizeof types / sizeof types[0];
	co.schema_fingerprint = LEGACY_SCHEMA_FINGERPRINT;
	so.channel = &co;
	if (pbp_child_spawn(&c, helper, NULL, &so, &err) != 0) {
		fprintf(stderr, "legacy-host: %s\n", err.msg);
		return 1;
	}
	if (pbp_channel_peer(pbp_child_channel(c), &pi) != 0)
		pi.pointer_bits = 0;
	printf("host: %u-bit, helper pid %d is %u-bit\n", (unsigned)(sizeof(void *) * CHAR_BIT),
	       (int)pbp_child_pid(c), (unsigned)pi.pointer_bits);

	rc = run(pbp_child_channel(c));
	if (pbp_child_close(c, 2000, &st) != 0) {
		fprintf(stderr, "legacy-host: %s\n", pbp_child_error(c)->msg);
		rc = -1;
	} else {
		printf("host: helper %s\n", pbp_exit_status_str(&st, how, sizeof how));
		if (!st.exited || st.code != 0)
			rc = -1;
	}
	pbp_child_free(c);
	return rc == 0 ? 0 : 1;
}
