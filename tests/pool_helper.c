/*
 * pbptest-pool-helper: a helper for the pool tests.  Usage:
 *     pbptest-pool-helper [OPTION]... WRITE_HANDLE READ_HANDLE
 * Options:
 *   --tag N            put N in every reply (Numbers.s64)
 *   --exit-at-start N  exit N before the handshake
 *   --fail-start-if F  exit 3 before the handshake if the file F exists
 *   --no-handshake     never handshake: sleep until killed
 *   --crash-flag F     the file POOL_OP_CRASH_ONCE creates
 * Then it serves the operations of pool_helper.h with pbp_channel_serve()
 * until end of stream, and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
/* Windows (mingw, the tests of tests/win/): Sleep() for nanosleep() and
 * pause(), the process id from GetCurrentProcessId(), _open()/_access()
 * from <io.h>; abort() ends the process with exit code 3. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <io.h>
#include <sys/stat.h>
#else
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#endif

#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"
#include "pool_helper.h"

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};

static pbp_channel *the_ch;
static long long tag;
static const char *crash_flag;

#ifdef _WIN32
static void
nap_ms(long ms)
{
	Sleep((DWORD)ms);
}

static long
my_pid(void)
{
	return (long)GetCurrentProcessId();
}

/* Creates the file, failing if it exists: 1 if this call created it. */
static int
create_excl(const char *path)
{
	int fd = _open(path, _O_WRONLY | _O_CREAT | _O_EXCL, _S_IREAD | _S_IWRITE);

	if (fd < 0)
		return 0;
	_close(fd);
	return 1;
}

__attribute__((noreturn)) static void
sleep_forever(void)
{
	for (;;)
		Sleep(INFINITE);
}

#define file_exists(path) (_access((path), 0) == 0)
#else
static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static long
my_pid(void)
{
	return (long)getpid();
}

static int
create_excl(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_EXCL, 0600) >= 0;
}

__attribute__((noreturn)) static void
sleep_forever(void)
{
	for (;;)
		pause();
}

#define file_exists(path) (access((path), F_OK) == 0)
#endif

static void
crash(void)
{
	fprintf(stderr, "pbptest-pool-helper: crashing (pid %ld)\n", my_pid());
	abort();
}

static int
serve_op(const void *request, void *response, pbp_reply_error *err, void *payload)
{
	const pbptest_Numbers *q = request;
	pbptest_Numbers *r = response;
	int64_t i;

	(void)payload;
	switch (q->i32) {
	case POOL_OP_ECHO:
		break;
	case POOL_OP_SLEEP:
		nap_ms((long)q->i64);
		break;
	case POOL_OP_CRASH:
		crash();
		break;
	case POOL_OP_CRASH_ONCE:
		if (crash_flag && create_excl(crash_flag))
			crash();
		break;
	case POOL_OP_EXIT:
		exit((int)q->i64);
	case POOL_OP_HANG:
		sleep_forever();
	case POOL_OP_APP_ERROR:
		snprintf(err->message, sizeof err->message, "application error %lld",
		         (long long)q->i64);
		return (int)q->i64;
	case POOL_OP_ONEWAY:
		for (i = 0; i < q->i64; i++) {
			pbptest_Numbers m = pbptest_Numbers_init_zero;

			m.i64 = i;
			if (pbp_channel_send(the_ch, pbptest_Type_NUMBERS, &m) != 0)
				return -1;
		}
		break;
	case POOL_OP_CALLBACK: {
		pbptest_Numbers back = pbptest_Numbers_init_zero, ans = pbptest_Numbers_init_zero;
		int rc;

		back.i64 = q->i64;
		rc = pbp_channel_call(the_ch, pbptest_Type_NUMBERS, &back, pbptest_Type_NUMBERS, &ans,
		                      10000);
		if (rc != 0) {
			snprintf(err->message, sizeof err->message, "calling the parent: %s",
			         pbp_channel_errmsg(the_ch));
			err->code = rc == PBP_EREMOTE ? pbp_channel_error(the_ch)->remote_code : 98;
			return 1;
		}
		r->u64 = (uint64_t)my_pid();
		r->i64 = ans.i64 + 1;
		r->i32 = (int32_t)(sizeof(void *) * 8);
		r->s64 = tag;
		return 0;
	}
	default:
		snprintf(err->message, sizeof err->message, "unknown op %d", (int)q->i32);
		return 99;
	}
	r->u64 = (uint64_t)my_pid();
	r->i64 = q->i64 + 1;
	r->i32 = (int32_t)(sizeof(void *) * 8);
	r->s64 = tag;
	return 0;
}

int
main(int argc, char **argv)
{
	static const pbp_handler handlers[] = {
		{ pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, serve_op, NULL },
	};
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
#ifndef _WIN32
	struct rlimit nocore = { 0, 0 };
#endif
	int handshake = 1, i, rc;
	pbp_error err;

#ifndef _WIN32
	/* The crashes are on purpose: no core files. */
	setrlimit(RLIMIT_CORE, &nocore);
#endif
	for (i = 1; i + 2 < argc; i++) {
		if (strcmp(argv[i], "--tag") == 0 && i + 3 < argc) {
			tag = atoll(argv[++i]);
		} else if (strcmp(argv[i], "--exit-at-start") == 0 && i + 3 < argc) {
			fprintf(stderr, "pbptest-pool-helper: exiting at start\n");
			return atoi(argv[++i]);
		} else if (strcmp(argv[i], "--fail-start-if") == 0 && i + 3 < argc) {
			if (file_exists(argv[++i])) {
				fprintf(stderr, "pbptest-pool-helper: %s exists\n", argv[i]);
				return 3;
			}
		} else if (strcmp(argv[i], "--no-handshake") == 0) {
			handshake = 0;
		} else if (strcmp(argv[i], "--crash-flag") == 0 && i + 3 < argc) {
			crash_flag = argv[++i];
		} else {
			fprintf(stderr, "pbptest-pool-helper: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	o.types = types;
	o.ntypes = sizeof types / sizeof types[0];
	o.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	if (pbp_channel_from_argv(&the_ch, argc, argv, &o, &err) != 0) {
		fprintf(stderr, "pbptest-pool-helper: %s\n", err.msg);
		return 2;
	}
	if (!handshake)
		sleep_forever();
	if (pbp_channel_handshake(the_ch) != 0) {
		fprintf(stderr, "pbptest-pool-helper: handshake: %s\n", pbp_channel_errmsg(the_ch));
		pbp_channel_free(the_ch);
		return 1;
	}
	rc = pbp_channel_serve(the_ch, handlers, 1);
	if (rc != 0)
		fprintf(stderr, "pbptest-pool-helper: serve: %s\n", pbp_channel_errmsg(the_ch));
	pbp_channel_free(the_ch);
	return rc == 0 ? 0 : 1;
}
