/*
 * pbpipe-parent: the host side of the demo.  Spawns pbpipe-child (or the
 * program given with --child) behind two pipes, greets it, prints its
 * answer, ends the stream and reports how the child exited.  If the child
 * refuses the greeting (a Goodbye with reason ERROR), it prints the
 * child's reason and exits 1.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h> /* GetModuleFileNameA */
#else
#include <unistd.h>
#endif

#include <pb_encode.h>
#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
};

static int
usage(void)
{
	fprintf(stderr, "usage: pbpipe-parent [--child PATH] [--timeout MS] [--greeting TEXT]\n"
	                "  Spawns PATH (default: pbpipe-child next to this program) with two\n"
	                "  pipes, exchanges greetings with it and waits for it to exit.\n"
	                "  --greeting TEXT  sends TEXT instead of \"Hello from Process A!\"; one of\n"
	                "                   256 bytes or more is sent anyway, and the child refuses it\n");
	return 2;
}

/* pbpipe-child in the directory of this executable. */
static int
default_child(char *buf, size_t size)
{
	char self[PATH_MAX];
	const char *sep;
#ifdef _WIN32
	DWORD n = GetModuleFileNameA(NULL, self, sizeof self);

	if (n == 0 || n >= sizeof self)
		return -1;
	self[n] = '\0';
	sep = strrchr(self, '\\');
#else
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n < 0)
		return -1;
	self[n] = '\0';
	sep = strrchr(self, '/');
#endif
	if (sep == NULL)
		return -1;
	/* The directory with its separator, then the name. */
	if ((size_t)snprintf(buf, size, "%.*spbpipe-child", (int)(sep - self + 1), self) >= size)
		return -1;
	return 0;
}

/* Sends a greeting.  A text that fits demo.Greeting goes the usual way; a
 * longer one is encoded by hand (field 1, length-delimited), to show
 * what the child does with a greeting over its bound. */
static int
send_greeting(pbp_channel *ch, const char *text)
{
	demo_Greeting hello = demo_Greeting_init_zero;
	size_t len = strlen(text), cap = len + 16;
	pb_ostream_t os;
	uint8_t *buf;
	int rc;

	if (len < sizeof hello.text) {
		memcpy(hello.text, text, len + 1);
		return pbp_channel_send(ch, demo_Type_GREETING, &hello);
	}
	if ((buf = malloc(cap)) == NULL)
		return PBP_ENOMEM;
	os = pb_ostream_from_buffer(buf, cap);
	if (!pb_encode_tag(&os, PB_WT_STRING, demo_Greeting_text_tag) ||
	    !pb_encode_string(&os, (const pb_byte_t *)text, len))
		rc = PBP_EENCODE;
	else
		rc = pbp_channel_send_raw(ch, demo_Type_GREETING, 0, buf, os.bytes_written);
	free(buf);
	return rc;
}

static int
fail(const char *what, const char *msg, pbp_child *c)
{
	fprintf(stderr, "pbpipe-parent: %s: %s\n", what, msg);
	pbp_child_free(c);
	return 1;
}

int
main(int argc, char **argv)
{
	pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	char path[PATH_MAX], how[96];
	const char *child = NULL, *greeting = "Hello from Process A!";
	union {
		demo_Greeting greeting;
	} in;
	pbp_exit_status st;
	pbp_peer_info peer;
	pbp_channel *ch;
	pbp_child *c;
	pbp_error err;
	uint32_t type;
	int i, timeout_ms = 5000, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--child") == 0 && i + 1 < argc)
			child = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--greeting") == 0 && i + 1 < argc)
			greeting = argv[++i];
		else
			return usage();
	}
	if (child == NULL) {
		if (default_child(path, sizeof path) != 0)
			return fail("locating pbpipe-child", "cannot find this program's path", NULL);
		child = path;
	}
	co.types = types;
	co.ntypes = sizeof types / sizeof types[0];
	co.schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	co.handshake_timeout_ms = timeout_ms;
	so.channel = &co;

	if (pbp_child_spawn(&c, child, NULL, &so, &err) != 0)
		return fail("spawning the child", err.msg, NULL);
	printf("parent: spawned %s (pid %d), handshake done\n", child, (int)pbp_child_pid(c));
	ch = pbp_child_channel(c);
	if (send_greeting(ch, greeting) != 0)
		return fail("sending", pbp_channel_errmsg(ch), c);
	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	if (rc == PBP_EOF && pbp_channel_peer(ch, &peer) == 0 && peer.goodbye_received &&
	    peer.goodbye_reason == PBP_GOODBYE_ERROR) {
		/* The child said why it ends the stream: report that, and how it exited. */
		fprintf(stderr, "pbpipe-parent: the child refused: %s\n", peer.goodbye_detail);
		if (pbp_child_close(c, timeout_ms, &st) != 0)
			return fail("waiting for the child", pbp_child_error(c)->msg, c);
		printf("parent: child %s\n", pbp_exit_status_str(&st, how, sizeof how));
		pbp_child_free(c);
		return 1;
	}
	if (rc != 0)
		return fail("receiving the reply", pbp_channel_errmsg(ch), c);
	printf("parent: received \"%s\"\n", in.greeting.text);
	/* Goodbye, close our write side, wait for the child to exit. */
	if (pbp_child_close(c, timeout_ms, &st) != 0)
		return fail("waiting for the child", pbp_child_error(c)->msg, c);
	printf("parent: child %s\n", pbp_exit_status_str(&st, how, sizeof how));
	pbp_child_free(c);
	if (!st.exited || st.code != 0) {
		fprintf(stderr, "pbpipe-parent: the child did not exit cleanly: %s\n", how);
		return 1;
	}
	return 0;
}
