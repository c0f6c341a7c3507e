/*
 * pbpipe-parent: the host side of the demo.  Spawns pbpipe-child (or the
 * program given with --child) behind two pipes, greets it, prints its
 * answer, ends the stream and reports how the child exited.
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
};

static int
usage(void)
{
	fprintf(stderr, "usage: pbpipe-parent [--child PATH] [--timeout MS]\n"
	                "  Spawns PATH (default: pbpipe-child next to this program) with two\n"
	                "  pipes, exchanges greetings with it and waits for it to exit.\n");
	return 2;
}

/* pbpipe-child in the directory of this executable. */
static int
default_child(char *buf, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n < 0)
		return -1;
	self[n] = '\0';
	if ((size_t)snprintf(buf, size, "%s/pbpipe-child", dirname(self)) >= size)
		return -1;
	return 0;
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
	const char *child = NULL;
	demo_Greeting hello = { "Hello from Process A!" };
	union {
		demo_Greeting greeting;
	} in;
	pbp_exit_status st;
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
		else
			return usage();
	}
	if (child == NULL) {
		if (default_child(path, sizeof path) != 0)
			return fail("locating pbpipe-child", "cannot read /proc/self/exe", NULL);
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
	if (pbp_channel_send(ch, demo_Type_GREETING, &hello) != 0)
		return fail("sending", pbp_channel_errmsg(ch), c);
	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
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
