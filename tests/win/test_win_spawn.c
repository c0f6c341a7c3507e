/*
 * test_win_spawn.c: pbpipe on Windows end to end, through the public
 * headers only: pbp_child_spawn() of this same program in helper roles
 * (Helper() below; winrun.h) and of the demo's pbpipe-child.exe; messages
 * both ways, calls and the barrier, how streams end (EOF, truncation,
 * garbage), deadlines (and that waiting does not spin), exit codes,
 * pbp_child_close() on a child that ignores Goodbye, the Job object,
 * captured stderr, and PBP_EEXEC.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <ctype.h>
#include <fcntl.h> /* _O_BINARY */
#include <io.h>    /* _setmode */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "demo.pb.h"
#include "demo_fingerprint.h"
#include "support.h"
#include "winrun.h"

#define T(name) Test(win_spawn, name, .timeout = 30)

/* ---- helpers: the child roles ------------------------------------------ */

/* The channel of a helper: from the two handle strings the parent
 * appended, handshaken.  Exits 90 (the parent's test then fails) if that
 * fails. */
static pbp_channel *
helper_channel(int argc, char **argv)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *ch;
	pbp_error err;

	if (pbp_channel_from_argv(&ch, argc, argv, &o, &err) != 0) {
		fprintf(stderr, "helper: pbp_channel_from_argv: %s\n", err.msg);
		exit(90);
	}
	if (pbp_channel_handshake(ch) != 0) {
		fprintf(stderr, "helper: handshake: %s\n", pbp_channel_errmsg(ch));
		exit(91);
	}
	return ch;
}

/* Writes n raw bytes to a handle named by a handle string (the channel
 * must have been given back first: pbp_channel_free_keep_fds()).  Works
 * whether or not the handle was opened for overlapped I/O. */
static void
raw_write(const char *handle_str, const void *buf, DWORD n)
{
	HANDLE h = (HANDLE)(uintptr_t)strtoull(handle_str, NULL, 10);
	OVERLAPPED ov;
	DWORD done = 0;

	memset(&ov, 0, sizeof ov);
	ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
	if (!WriteFile(h, buf, n, &done, &ov) && GetLastError() != ERROR_IO_PENDING) {
		fprintf(stderr, "helper: WriteFile: %lu\n", GetLastError());
		exit(92);
	}
	if (!GetOverlappedResult(h, &ov, &done, TRUE) || done != n) {
		fprintf(stderr, "helper: GetOverlappedResult: %lu\n", GetLastError());
		exit(93);
	}
	CloseHandle(ov.hEvent);
}

/* Sends every message back (copied first) until end of stream; exit 0. */
Helper(echo)
{
	pbp_channel *ch = helper_channel(argc, argv);
	pbp_msginfo mi;
	int rc;

	while ((rc = pbp_channel_recv(ch, &mi)) == 0) {
		void *copy = malloc(mi.size ? mi.size : 1);
		uint32_t type = mi.type;
		size_t n = mi.size;

		if (copy == NULL)
			return 94;
		memcpy(copy, mi.payload, n);
		rc = pbp_channel_send_raw(ch, type, 0, copy, n);
		free(copy);
		if (rc != 0) {
			fprintf(stderr, "echo: send: %s\n", pbp_channel_errmsg(ch));
			return 95;
		}
	}
	if (rc != PBP_EOF) {
		fprintf(stderr, "echo: recv: %s\n", pbp_channel_errmsg(ch));
		return 96;
	}
	pbp_channel_free(ch);
	return 0;
}

static int
upper(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	const pbptest_Text *in = req;
	pbptest_Text *out = resp;
	size_t i;

	(void)payload;
	if (strcmp(in->text, "fail") == 0) {
		snprintf(e->message, sizeof e->message, "asked to fail");
		return 42;
	}
	for (i = 0; in->text[i] != '\0'; i++)
		out->text[i] = (char)toupper((unsigned char)in->text[i]);
	out->text[i] = '\0';
	return 0;
}

/* Answers Text calls with the text in capitals ("fail": error 42). */
Helper(serve)
{
	static const pbp_handler handlers[] = {
		{ pbptest_Type_TEXT, pbptest_Type_TEXT, upper, NULL },
	};
	pbp_channel *ch = helper_channel(argc, argv);
	int rc = pbp_channel_serve(ch, handlers, 1);

	if (rc != 0)
		fprintf(stderr, "serve: %s\n", pbp_channel_errmsg(ch));
	pbp_channel_free(ch);
	return rc == 0 ? 0 : 1;
}

/* Sends one Text, then exits at once: end of stream between frames. */
Helper(one_then_exit)
{
	pbp_channel *ch = helper_channel(argc, argv);
	pbptest_Text t = { "last words" };

	if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
		return 97;
	pbp_channel_free(ch);
	return 0;
}

/* After the handshake, writes half a frame (a 100-byte frame's length and
 * 10 bytes of it) and exits. */
Helper(half_frame)
{
	static const uint8_t half[11] = { 100, 0x1a, 8, 1, 2, 3, 4, 5, 6, 7, 8 };
	pbp_channel *ch = helper_channel(argc, argv);

	pbp_channel_free_keep_fds(ch);
	raw_write(argv[argc - 2], half, sizeof half);
	return 0;
}

/* After the handshake, writes bytes that are no frame (a length prefix
 * longer than 5 bytes), then waits for the parent to go. */
Helper(garbage)
{
	static const uint8_t junk[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		                          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	pbp_channel *ch = helper_channel(argc, argv);

	pbp_channel_free_keep_fds(ch);
	raw_write(argv[argc - 2], junk, sizeof junk);
	Sleep(20000);
	return 0;
}

/* Handshakes, then neither reads nor writes nor exits (for 60 s): a
 * silent peer, one that never reads, and one that ignores Goodbye and end
 * of stream alike. */
Helper(silent)
{
	pbp_channel *ch = helper_channel(argc, argv);

	(void)ch;
	Sleep(60000);
	return 0;
}

/* Exits 5 before the handshake, having said why on stderr. */
Helper(early_exit)
{
	(void)argc;
	(void)argv;
	fputs("early_exit: leaving before the handshake\n", stderr);
	return 5;
}

/* Never speaks: no handshake, sleeps 30 s. */
Helper(mute)
{
	(void)argc;
	(void)argv;
	Sleep(30000);
	return 0;
}

/* Handshakes; its first argument is the value of an event handle in the
 * parent that was inheritable but not meant for it: exits 1 if that value
 * names an event here (SetEvent works on events only), 0 if not. */
Helper(no_leak)
{
	pbp_channel *ch = helper_channel(argc, argv);
	HANDLE h = (HANDLE)(uintptr_t)strtoull(argv[2], NULL, 10);
	int leaked = SetEvent(h) != 0;

	if (leaked)
		fprintf(stderr, "no_leak: handle %s was inherited\n", argv[2]);
	pbp_channel_free(ch);
	return leaked;
}

/* Handshakes, then sends one Text: its arguments between the role and
 * the two handle strings joined by '|', then "cwd=" its working
 * directory and "env=" $PBPTEST_VAR; waits for end of stream. */
Helper(info)
{
	pbp_channel *ch = helper_channel(argc, argv);
	pbptest_Text t;
	char cwd[MAX_PATH];
	const char *v = getenv("PBPTEST_VAR");
	size_t n = 0;
	pbp_msginfo mi;
	int i;

	memset(&t, 0, sizeof t);
	for (i = 2; i < argc - 2; i++)
		n += (size_t)snprintf(t.text + n, sizeof t.text - n, "%s|", argv[i]);
	if (GetCurrentDirectoryA(sizeof cwd, cwd) == 0)
		cwd[0] = '\0';
	snprintf(t.text + n, sizeof t.text - n, "cwd=%s;env=%s", cwd, v ? v : "(unset)");
	if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
		return 1;
	while (pbp_channel_recv(ch, &mi) == 0)
		;
	pbp_channel_free(ch);
	return 0;
}

/* Counts messages until end of stream, then answers with a Text
 * "got N after your end" and exits 0: the other direction outlives the
 * parent's close_write. */
Helper(count_then_reply)
{
	pbp_channel *ch = helper_channel(argc, argv);
	pbptest_Text t;
	pbp_msginfo mi;
	int n = 0, rc;

	while ((rc = pbp_channel_recv(ch, &mi)) == 0)
		n++;
	if (rc != PBP_EOF)
		return 1;
	snprintf(t.text, sizeof t.text, "got %d after your end", n);
	if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
		return 2;
	pbp_channel_free(ch);
	return 0;
}

/* Handshakes, then exits with the code given as its first argument. */
Helper(exit_code)
{
	pbp_channel *ch = helper_channel(argc, argv);
	int code = atoi(argv[2]);

	pbp_channel_free(ch);
	return code;
}

/* Handshakes, writes 10000 bytes of numbered lines and "the end\n" to
 * stderr, exits 3. */
Helper(stderr_lines)
{
	pbp_channel *ch = helper_channel(argc, argv);
	int i;

	/* Bytes as written: no "\n" -> "\r\n" of the text mode. */
	if (_setmode(_fileno(stderr), _O_BINARY) < 0)
		return 98;
	for (i = 0; i < 1000; i++)
		fprintf(stderr, "line %04d\n", i); /* 10 bytes each */
	fputs("the end\n", stderr);
	fflush(stderr);
	pbp_channel_free(ch);
	return 3;
}

/* The middle of three processes: spawns `self --helper=silent` through
 * pbpipe, prints its pid on stdout, then sleeps until it is killed. */
Helper(middle)
{
	const char *av[] = { pbt_win_self(), "--helper=silent", NULL };
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	pbp_child *c;
	pbp_error err;

	(void)argc;
	(void)argv;
	so.channel = &co;
	if (pbp_child_spawn(&c, pbt_win_self(), av, &so, &err) != 0) {
		fprintf(stderr, "middle: spawn: %s\n", err.msg);
		return 1;
	}
	printf("%lu\n", (unsigned long)pbp_child_pid(c));
	fflush(stdout);
	Sleep(60000);
	return 0;
}

/* Sleeps a minute: a grandchild started by hand, not through pbpipe. */
Helper(sleeper)
{
	(void)argc;
	(void)argv;
	Sleep(60000);
	return 0;
}

/* Handshakes, starts `self --helper=sleeper` with plain CreateProcessW
 * (so it lands in our Job), sends its pid as a Text, then sleeps. */
Helper(forker)
{
	pbp_channel *ch = helper_channel(argc, argv);
	WCHAR self[MAX_PATH], cmd[MAX_PATH * 3 + 64];
	char narrow[MAX_PATH * 3 + 64];
	STARTUPINFOW si;
	PROCESS_INFORMATION pi;
	pbptest_Text t;

	if (GetModuleFileNameW(NULL, self, MAX_PATH) == 0)
		return 80;
	snprintf(narrow, sizeof narrow, "\"%s\" --helper=sleeper", pbt_win_self());
	if (!MultiByteToWideChar(CP_UTF8, 0, narrow, -1, cmd, (int)(sizeof cmd / sizeof cmd[0])))
		return 81;
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	if (!CreateProcessW(self, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi))
		return 82;
	CloseHandle(pi.hThread);
	CloseHandle(pi.hProcess);
	snprintf(t.text, sizeof t.text, "%lu", (unsigned long)pi.dwProcessId);
	if (pbp_channel_send(ch, pbptest_Type_TEXT, &t) != 0)
		return 83;
	Sleep(60000);
	return 0;
}

/* ---- the parent side --------------------------------------------------- */

static pbp_child *
spawn_role(const char *role, const char *arg, pbp_spawn_options *so_in)
{
	char flag[64];
	const char *av[4] = { pbt_win_self(), flag, arg, NULL };
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	pbp_child *c = NULL;
	pbp_error err;
	int rc;

	snprintf(flag, sizeof flag, "--helper=%s", role);
	if (so_in != NULL)
		so = *so_in;
	if (so.channel == NULL)
		so.channel = &co;
	rc = pbp_child_spawn(&c, pbt_win_self(), av, &so, &err);
	cr_assert_eq(rc, 0, "spawning helper %s: %s (%d)", role, err.msg, rc);
	cr_assert_not_null(c);
	return c;
}

static int64_t
now_ms(void)
{
	return (int64_t)GetTickCount64();
}

/* CPU time (user + kernel) of this process so far, in ms. */
static double
cpu_ms(void)
{
	FILETIME create, exit_, kernel, user;
	ULARGE_INTEGER k, u;

	cr_assert(GetProcessTimes(GetCurrentProcess(), &create, &exit_, &kernel, &user));
	k.LowPart = kernel.dwLowDateTime;
	k.HighPart = kernel.dwHighDateTime;
	u.LowPart = user.dwLowDateTime;
	u.HighPart = user.dwHighDateTime;
	return (double)(k.QuadPart + u.QuadPart) / 10000.0;
}

static const char *
status_str(const pbp_exit_status *st)
{
	static char buf[96];

	return pbp_exit_status_str(st, buf, sizeof buf);
}

/* Spawns the demo's pbpipe-child.exe with the demo schema in co, with
 * spawn flags `flags`. */
static pbp_child *
spawn_demo(pbp_channel_options *co, unsigned int flags)
{
	static const pbp_msgtype types[] = {
		PBP_MSGTYPE(demo_Type_GREETING, demo_Greeting),
	};
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	char path[MAX_PATH * 3];
	pbp_child *c;
	pbp_error err;
	int rc;

	*co = (pbp_channel_options)PBP_CHANNEL_OPTIONS_INIT;
	co->types = types;
	co->ntypes = 1;
	co->schema_fingerprint = DEMO_SCHEMA_FINGERPRINT;
	so.channel = co;
	so.flags = flags;
	pbt_win_sibling(path, sizeof path, "pbpipe-child.exe");
	rc = pbp_child_spawn(&c, path, NULL, &so, &err);
	cr_assert_eq(rc, 0, "spawning %s: %s", path, err.msg);
	return c;
}

/* A greeting to the demo child, and its answer. */
static void
greet_demo(pbp_channel *ch)
{
	demo_Greeting hello = { "Hello from Process A!" };
	union {
		demo_Greeting g;
	} in;
	uint32_t type = 0;
	int rc;

	cr_assert_eq(pbp_channel_send(ch, demo_Type_GREETING, &hello), 0);
	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(type, demo_Type_GREETING);
	cr_assert_str_eq(in.g.text, "Hello from Process B!");
}

T(demo_child_handshake_and_greeting)
{
	pbp_channel_options co;
	pbp_peer_info peer;
	pbp_exit_status st;
	pbp_child *c = spawn_demo(&co, 0);

	cr_assert_eq(pbp_channel_peer(pbp_child_channel(c), &peer), 0);
	cr_assert_eq(peer.major, PBP_PROTOCOL_MAJOR);
	cr_assert_eq(peer.pointer_bits, 64);
	cr_assert_eq(peer.pid, (uint32_t)pbp_child_pid(c));
	greet_demo(pbp_child_channel(c));
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited && st.code == 0, "the demo child %s", status_str(&st));
	pbp_child_free(c);
}

T(messages_both_ways_up_to_1_mib)
{
	static const size_t sizes[] = { 0, 1, 1000, 65536, 1024 * 1024 };
	pbp_child *c = spawn_role("echo", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbp_exit_status st;
	size_t i;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		pbt_blob_src src = { sizes[i], (uint32_t)i + 7 };
		pbt_blob_sink sink = { (uint32_t)i + 7, 0, 0 };
		pbptest_Blob out = pbptest_Blob_init_zero, back = pbptest_Blob_init_zero;
		pbp_msginfo mi;
		int rc;

		out.tag = (uint32_t)i;
		pbt_blob_set_source(&out, &src);
		rc = pbp_channel_send(ch, pbptest_Type_BLOB, &out);
		cr_assert_eq(rc, 0, "send %zu bytes: %s", sizes[i], pbp_channel_errmsg(ch));
		rc = pbp_channel_recv(ch, &mi);
		cr_assert_eq(rc, 0, "recv %zu bytes: %s", sizes[i], pbp_channel_errmsg(ch));
		cr_assert_eq(mi.type, pbptest_Type_BLOB);
		pbt_blob_set_sink(&back, &sink);
		cr_assert_eq(pbp_channel_decode(ch, pbptest_Blob_fields, &back), 0, "%s",
		             pbp_channel_errmsg(ch));
		cr_assert_eq(back.tag, (uint32_t)i);
		cr_assert_eq(sink.got, sizes[i]);
		cr_assert_eq(sink.mismatch, 0, "the %zu bytes came back changed", sizes[i]);
	}
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited && st.code == 0, "echo %s", status_str(&st));
	pbp_child_free(c);
}

T(calls_remote_errors_and_the_barrier)
{
	pbp_child *c = spawn_role("serve", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbptest_Text req = { "hello windows" }, resp;
	pbp_exit_status st;
	int rc, i;

	for (i = 0; i < 50; i++) {
		memset(&resp, 0, sizeof resp);
		rc = pbp_channel_call(ch, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp, 5000);
		cr_assert_eq(rc, 0, "call %d: %s", i, pbp_channel_errmsg(ch));
		cr_assert_str_eq(resp.text, "HELLO WINDOWS");
	}
	snprintf(req.text, sizeof req.text, "fail");
	rc = pbp_channel_call(ch, pbptest_Type_TEXT, &req, pbptest_Type_TEXT, &resp, 5000);
	cr_assert_eq(rc, PBP_EREMOTE, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_channel_error(ch)->remote_code, 42);
	cr_assert(strstr(pbp_channel_errmsg(ch), "asked to fail") != NULL, "%s",
	          pbp_channel_errmsg(ch));
	rc = pbp_channel_sync(ch, 5000);
	cr_assert_eq(rc, 0, "barrier: %s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited && st.code == 0, "serve %s", status_str(&st));
	pbp_child_free(c);
}

T(child_closing_between_frames_is_eof)
{
	pbp_child *c = spawn_role("one_then_exit", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbt_any in;
	pbp_report rep;
	uint32_t type = 0;
	int rc;

	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_str_eq(in.text.text, "last words");
	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	cr_assert_eq(rc, PBP_EOF, "%d: %s", rc, pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_child_wait(c, 5000, NULL), 0);
	cr_assert_eq(pbp_child_report(c, &rep), 0);
	cr_assert_eq(rep.end, PBP_END_EOF);
	pbp_child_free(c);
}

T(child_exiting_inside_a_frame_is_truncation)
{
	pbp_child *c = spawn_role("half_frame", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbt_any in;
	pbp_report rep;
	uint32_t type;
	int rc;

	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	cr_assert_eq(rc, PBP_ETRUNC, "%d: %s", rc, pbp_channel_errmsg(ch));
	/* Sticky. */
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), PBP_ETRUNC);
	cr_assert_eq(pbp_child_report(c, &rep), 0);
	cr_assert_eq(rep.end, PBP_END_TRUNCATED);
	pbp_child_free(c);
}

T(garbage_is_a_protocol_error)
{
	pbp_child *c = spawn_role("garbage", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbt_any in;
	uint32_t type;
	int rc;

	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	cr_assert_eq(rc, PBP_EPROTO, "%d: %s", rc, pbp_channel_errmsg(ch));
	pbp_child_free(c);
}

T(receive_deadline_on_a_silent_child_does_not_spin)
{
	pbp_child *c = spawn_role("silent", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	double cpu0, cpu1, burn0;
	int64_t t0, waited;
	pbt_any in;
	uint32_t type;
	volatile unsigned long x = 0;
	int rc;

	/* The CPU clock must see CPU being used, or "near 0" below proves
	 * nothing: burn 100 ms of CPU first (by the same clock: under load a
	 * busy loop gets less CPU than wall time). */
	burn0 = cpu_ms();
	t0 = now_ms();
	while (cpu_ms() - burn0 < 100.0 && now_ms() - t0 < 5000)
		x++;
	cr_assert_geq(cpu_ms() - burn0, 100.0,
	              "GetProcessTimes does not measure CPU time here (5 s of busy loop)");

	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, 1000), 0);
	cpu0 = cpu_ms();
	t0 = now_ms();
	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	waited = now_ms() - t0;
	cpu1 = cpu_ms();
	cr_assert_eq(rc, PBP_ETIMEDOUT, "%d: %s", rc, pbp_channel_errmsg(ch));
	cr_assert_geq(waited, 950, "returned after %lld ms", (long long)waited);
	cr_assert_leq(waited, 1500, "returned after %lld ms", (long long)waited);
	cr_log_info("receive deadline: %lld ms waited, %.1f ms CPU", (long long)waited, cpu1 - cpu0);
	cr_assert_leq(cpu1 - cpu0, 100.0, "the 1 s wait used %.1f ms of CPU: busy waiting",
	              cpu1 - cpu0);
	/* Nothing was lost: the channel is still usable. */
	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_RECV, 0), 0);
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), PBP_EAGAIN);
	pbp_child_free(c);
}

T(send_deadline_when_the_child_never_reads)
{
	pbp_child *c = spawn_role("silent", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	int64_t t0, took = 0;
	double cpu0, cpu = 0;
	int i, rc = 0;

	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_SEND, 500), 0);
	/* 1 MiB at a time until the pipe is full: at most 3 MiB in flight
	 * under the default frame limit; 64 MiB would be a pipe without a
	 * bound. */
	for (i = 0; i < 64; i++) {
		pbt_blob_src src = { 1024 * 1024, (uint32_t)i };
		pbptest_Blob b = pbptest_Blob_init_zero;

		pbt_blob_set_source(&b, &src);
		cpu0 = cpu_ms();
		t0 = now_ms();
		rc = pbp_channel_send(ch, pbptest_Type_BLOB, &b);
		took = now_ms() - t0;
		cpu = cpu_ms() - cpu0;
		if (rc != 0)
			break;
	}
	cr_assert_eq(rc, PBP_ETIMEDOUT, "send %d: %d: %s", i, rc, pbp_channel_errmsg(ch));
	cr_assert_geq(took, 450, "the timed-out send returned after %lld ms", (long long)took);
	cr_assert_leq(took, 1500, "the timed-out send returned after %lld ms", (long long)took);
	cr_log_info("send deadline after %d MiB sent, %lld ms, %.1f ms CPU", i, (long long)took, cpu);
	/* Encoding 1 MiB costs a few ms; waiting must cost nothing. */
	cr_assert_leq(cpu, 150.0, "the timed-out send used %.1f ms of CPU: busy waiting", cpu);
	cr_assert_gt(pbp_channel_pending(ch), 0);
	pbp_child_free(c);
}

T(exit_code_seen_by_wait)
{
	pbp_child *c = spawn_role("exit_code", "7", NULL);
	pbp_exit_status st;
	pbp_report rep;
	int rc;

	rc = pbp_child_wait(c, 10000, &st);
	cr_assert_eq(rc, 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited, "%s", status_str(&st));
	cr_assert_eq(st.code, 7, "%s", status_str(&st));
	cr_assert_eq(st.signal, 0);
	/* Again: the same status at once. */
	cr_assert_eq(pbp_child_wait(c, 0, &st), 0);
	cr_assert_eq(st.code, 7);
	cr_assert_eq(pbp_child_report(c, &rep), 0);
	cr_assert_eq(rep.fate, PBP_FATE_EXITED);
	cr_assert_eq(rep.status.code, 7);
	pbp_child_free(c);
}

T(wait_with_a_deadline_on_a_running_child)
{
	pbp_child *c = spawn_role("silent", NULL, NULL);
	int64_t t0 = now_ms(), took;
	pbp_exit_status st;

	cr_assert_eq(pbp_child_wait(c, 300, &st), PBP_ETIMEDOUT);
	took = now_ms() - t0;
	cr_assert_geq(took, 250, "%lld ms", (long long)took);
	cr_assert_leq(took, 1000, "%lld ms", (long long)took);
	cr_assert_eq(pbp_child_wait(c, 0, &st), PBP_ETIMEDOUT);
	pbp_child_free(c);
}

T(close_terminates_a_child_that_ignores_goodbye)
{
	pbp_child *c = spawn_role("silent", NULL, NULL);
	int64_t t0 = now_ms(), took;
	pbp_exit_status st;
	int rc;

	rc = pbp_child_close(c, 300, &st);
	took = now_ms() - t0;
	cr_assert_eq(rc, 0, "%s", pbp_child_error(c)->msg);
	cr_log_info("pbp_child_close: %s after %lld ms", status_str(&st), (long long)took);
	/* os.h: terminated with exit code 128 + 15 (the "SIGTERM" step) or
	 * 128 + 9; reported as that exit code or as the signal. */
	cr_assert((st.exited && (st.code == 143 || st.code == 137)) ||
	                  st.signal == 15 || st.signal == 9,
	          "the child %s", status_str(&st));
	/* The grace period passed once (Goodbye ignored), then the child died
	 * at once: less than both grace periods and a margin. */
	cr_assert_geq(took, 250, "%lld ms", (long long)took);
	cr_assert_leq(took, 300 * 2 + 1000, "%lld ms", (long long)took);
	pbp_child_free(c);
}

T(killing_the_parent_kills_the_helper)
{
	WCHAR self[MAX_PATH], cmd[MAX_PATH * 3 + 64];
	char narrow[MAX_PATH * 3 + 64];
	SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
	STARTUPINFOW si;
	PROCESS_INFORMATION pi;
	HANDLE rd, wr, helper;
	char line[64];
	DWORD n = 0, got = 0, wait;
	unsigned long pid;

	/* The middle process: started by hand (not in a pbpipe Job), its
	 * stdout a pipe to us. */
	cr_assert(CreatePipe(&rd, &wr, &sa, 0));
	cr_assert(SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0));
	cr_assert(GetModuleFileNameW(NULL, self, MAX_PATH) > 0);
	snprintf(narrow, sizeof narrow, "\"%s\" --helper=middle", pbt_win_self());
	cr_assert(MultiByteToWideChar(CP_UTF8, 0, narrow, -1, cmd, (int)(sizeof cmd / sizeof cmd[0])));
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
	si.hStdOutput = wr;
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	cr_assert(CreateProcessW(self, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi),
	          "CreateProcessW: %lu", GetLastError());
	CloseHandle(wr);
	CloseHandle(pi.hThread);
	while (got < sizeof line - 1 && ReadFile(rd, line + got, 1, &n, NULL) && n == 1) {
		if (line[got] == '\n')
			break;
		got++;
	}
	line[got] = '\0';
	pid = strtoul(line, NULL, 10);
	cr_assert_gt(pid, 0, "the middle process printed '%s'", line);
	helper = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
	cr_assert_not_null(helper, "OpenProcess(%lu): %lu", pid, GetLastError());
	/* The helper is alive, ignoring its pipes, until its Job dies. */
	cr_assert_eq(WaitForSingleObject(helper, 200), WAIT_TIMEOUT, "the helper died early");
	cr_assert(TerminateProcess(pi.hProcess, 1));
	cr_assert_eq(WaitForSingleObject(pi.hProcess, 5000), WAIT_OBJECT_0);
	wait = WaitForSingleObject(helper, 5000);
	cr_assert_eq(wait, WAIT_OBJECT_0,
	             "the helper (pid %lu) outlived its parent by 5 s: no kill-on-close Job", pid);
	CloseHandle(helper);
	CloseHandle(pi.hProcess);
	CloseHandle(rd);
}

/* Spawns the forker role (with flags) and opens the grandchild it
 * started. */
static pbp_child *
spawn_forker(unsigned int flags, HANDLE *gc)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c;
	uint32_t type;
	pbt_any in;
	unsigned long pid;

	so.flags = flags;
	c = spawn_role("forker", NULL, &so);
	cr_assert_eq(pbp_channel_recv_msg(pbp_child_channel(c), &type, &in, sizeof in), 0, "%s",
	             pbp_channel_errmsg(pbp_child_channel(c)));
	pid = strtoul(in.text.text, NULL, 10);
	cr_assert_gt(pid, 0);
	*gc = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
	cr_assert_not_null(*gc, "OpenProcess(%lu): %lu", pid, GetLastError());
	return c;
}

T(process_group_flag_kills_the_grandchild_through_the_job)
{
	pbp_exit_status st;
	DWORD code = 0;
	HANDLE gc;
	pbp_child *c = spawn_forker(PBP_SPAWN_PROCESS_GROUP, &gc);

	cr_assert_eq(WaitForSingleObject(gc, 100), WAIT_TIMEOUT, "the grandchild died early");
	cr_assert_eq(pbp_child_kill(c, 9), 0, "%s", pbp_child_error(c)->msg);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert((st.exited && st.code == 137) || st.signal == 9, "%s", status_str(&st));
	/* Before the job's handle is closed (pbp_child_free): the kill did it. */
	cr_assert_eq(WaitForSingleObject(gc, 5000), WAIT_OBJECT_0,
	             "the grandchild outlived pbp_child_kill with PBP_SPAWN_PROCESS_GROUP");
	cr_assert(GetExitCodeProcess(gc, &code));
	cr_assert_eq(code, 137, "the grandchild's exit code");
	CloseHandle(gc);
	pbp_child_free(c);
}

T(without_the_flag_kill_spares_the_grandchild_until_free)
{
	pbp_exit_status st;
	HANDLE gc;
	pbp_child *c = spawn_forker(0, &gc);

	cr_assert_eq(pbp_child_kill(c, 9), 0, "%s", pbp_child_error(c)->msg);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert_eq(WaitForSingleObject(gc, 300), WAIT_TIMEOUT, "the grandchild died with the child");
	/* Freeing closes the job, which kills what is left in it. */
	pbp_child_free(c);
	cr_assert_eq(WaitForSingleObject(gc, 5000), WAIT_OBJECT_0, "the job left the grandchild");
	CloseHandle(gc);
}

T(captured_stderr_tail_in_the_report)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c;
	pbp_exit_status st;
	pbp_report *rep = malloc(sizeof *rep);
	pbt_any in;
	uint32_t type;
	size_t tl;
	int rc;

	cr_assert_not_null(rep);
	so.stderr_mode = PBP_STDIO_CAPTURE;
	so.stderr_tail = 100;
	c = spawn_role("stderr_lines", NULL, &so);
	rc = pbp_channel_recv_msg(pbp_child_channel(c), &type, &in, sizeof in);
	cr_assert_eq(rc, PBP_EOF, "%d: %s", rc, pbp_channel_errmsg(pbp_child_channel(c)));
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert(st.exited && st.code == 3, "%s", status_str(&st));
	cr_assert_eq(pbp_child_report(c, rep), 0);
	cr_assert_eq(rep->fate, PBP_FATE_EXITED);
	cr_assert_eq(rep->stderr_total, 1000 * 10 + 8, "%zu bytes", rep->stderr_total);
	cr_assert_eq(rep->stderr_len, 100, "%zu bytes kept", rep->stderr_len);
	tl = strlen(rep->stderr_tail);
	cr_assert_eq(tl, 100);
	cr_assert_str_eq(rep->stderr_tail + tl - 18, "line 0999\nthe end\n");
	pbp_child_free(c);
	free(rep);
}

T(child_exiting_before_the_handshake_fails_the_spawn)
{
	const char *av[] = { pbt_win_self(), "--helper=early_exit", NULL };
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	pbp_report *rep = calloc(1, sizeof *rep);
	pbp_child *c = NULL;
	pbp_error err;
	int64_t t0 = now_ms();
	int rc;

	cr_assert_not_null(rep);
	so.channel = &co;
	so.stderr_mode = PBP_STDIO_CAPTURE;
	so.report = rep;
	rc = pbp_child_spawn(&c, pbt_win_self(), av, &so, &err);
	cr_log_info("spawn: %d: %s", rc, err.msg);
	cr_assert(rc == PBP_ETRUNC || rc == PBP_EPIPE, "%d: %s", rc, err.msg);
	cr_assert_null(c);
	/* Long before the 2 s handshake deadline. */
	cr_assert_leq(now_ms() - t0, 1500);
	cr_assert_eq(rep->fate, PBP_FATE_EXITED, "fate %d", rep->fate);
	cr_assert_eq(rep->status.code, 5);
	cr_assert(strstr(rep->stderr_tail, "leaving before the handshake") != NULL,
	          "stderr tail: '%s'", rep->stderr_tail);
	free(rep);
}

/* The handshake in two steps, as an event loop does it: pbpipe-child
 * answers while a silent helper's handshake stays under way, and no
 * finish waits. */
T(nonblocking_handshake_finishes_while_a_silent_child_waits)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co;
	pbp_child *c = spawn_demo(&co, PBP_SPAWN_NO_HANDSHAKE), *mute;
	pbp_channel *ch = pbp_child_channel(c);
	int64_t deadline = now_ms() + 20000, t0, slowest = 0;
	int rc;

	so.channel = &co;
	so.flags = PBP_SPAWN_NO_HANDSHAKE;
	mute = spawn_role("mute", NULL, &so);
	cr_assert_eq(pbp_channel_handshake_start(ch), 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_channel_handshake_start(pbp_child_channel(mute)), 0);
	do {
		cr_assert_lt(now_ms(), deadline, "no Hello from pbpipe-child");
		Sleep(5);
		t0 = now_ms();
		rc = pbp_channel_handshake_finish(ch, 0);
		cr_assert_eq(pbp_channel_handshake_finish(pbp_child_channel(mute), 0), PBP_EAGAIN);
		slowest = now_ms() - t0 > slowest ? now_ms() - t0 : slowest;
	} while (rc == PBP_EAGAIN);
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_lt(slowest, 500, "a finish took %lld ms", (long long)slowest);
	greet_demo(ch);
	pbp_child_free(mute);
	pbp_child_free(c);
}

T(a_silent_child_fails_the_handshake_by_its_deadline_and_is_gone)
{
	const char *av[] = { pbt_win_self(), "--helper=mute", NULL };
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	pbp_report *rep = calloc(1, sizeof *rep);
	pbp_child *c = NULL;
	pbp_error err;
	HANDLE h;
	int64_t t0 = now_ms(), took;
	int rc;

	cr_assert_not_null(rep);
	co.handshake_timeout_ms = 500;
	so.channel = &co;
	so.report = rep;
	rc = pbp_child_spawn(&c, pbt_win_self(), av, &so, &err);
	took = now_ms() - t0;
	cr_log_info("spawn: %d after %lld ms: %s", rc, (long long)took, err.msg);
	cr_assert_eq(rc, PBP_ETIMEDOUT, "%d: %s", rc, err.msg);
	cr_assert_null(c);
	cr_assert_geq(took, 450, "%lld ms", (long long)took);
	cr_assert_leq(took, 2000, "%lld ms", (long long)took);
	/* Nothing left behind: the child was killed and reaped. */
	cr_assert_neq(rep->fate, PBP_FATE_RUNNING);
	cr_assert_gt(rep->pid, 0);
	h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)rep->pid);
	if (h != NULL) {
		cr_assert_eq(WaitForSingleObject(h, 0), WAIT_OBJECT_0, "pid %lu still runs",
		             (unsigned long)rep->pid);
		CloseHandle(h);
	}
	free(rep);
}

T(kill_ends_the_child_with_128_plus_the_signal)
{
	pbp_child *c = spawn_role("silent", NULL, NULL);
	pbp_exit_status st;

	cr_assert_eq(pbp_child_kill(c, 9), 0, "%s", pbp_child_error(c)->msg);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert((st.exited && st.code == 137) || st.signal == 9, "%s", status_str(&st));
	/* Gone: a second kill does nothing. */
	cr_assert_eq(pbp_child_kill(c, 9), 0);
	pbp_child_free(c);
}

T(the_child_inherits_only_its_two_pipe_ends)
{
	SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
	HANDLE filler[200], ev;
	pbp_exit_status st;
	pbp_child *c;
	char val[32];
	int i;

	/* Push the event's handle value above anything the child opens
	 * itself, so that the same value there means it was inherited. */
	for (i = 0; i < 200; i++)
		cr_assert_not_null(filler[i] = CreateEventW(NULL, TRUE, FALSE, NULL));
	ev = CreateEventW(&sa, TRUE, FALSE, NULL); /* inheritable */
	cr_assert_not_null(ev);
	snprintf(val, sizeof val, "%llu", (unsigned long long)(uintptr_t)ev);
	c = spawn_role("no_leak", val, NULL);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited && st.code == 0,
	          "the child %s: it inherited the event %s not meant for it", status_str(&st), val);
	cr_assert_eq(WaitForSingleObject(ev, 0), WAIT_TIMEOUT, "the child set our event");
	pbp_child_free(c);
	CloseHandle(ev);
	for (i = 0; i < 200; i++)
		CloseHandle(filler[i]);
}

struct sender {
	pbp_channel *ch;
	int n, rc;
};

static DWORD WINAPI
send_all(void *arg)
{
	struct sender *s = arg;
	int i;

	for (i = 0; i < s->n && s->rc == 0; i++) {
		pbptest_Text t;

		snprintf(t.text, sizeof t.text, "message %d", i);
		s->rc = pbp_channel_send(s->ch, pbptest_Type_TEXT, &t);
	}
	return 0;
}

T(duplex_one_thread_sends_while_another_receives)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	struct sender s;
	pbp_exit_status st;
	pbp_channel *ch;
	pbp_child *c;
	HANDLE t;
	char want[64];
	int i, rc;

	co.flags = PBP_CHANNEL_DUPLEX;
	so.channel = &co;
	c = spawn_role("echo", NULL, &so);
	ch = pbp_child_channel(c);
	s.ch = ch;
	s.n = 20000;
	s.rc = 0;
	t = CreateThread(NULL, 0, send_all, &s, 0, NULL);
	cr_assert_not_null(t);
	for (i = 0; i < s.n; i++) {
		pbt_any in;
		uint32_t type;

		rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
		cr_assert_eq(rc, 0, "echo %d: %s (sender: %d)", i, pbp_channel_errmsg(ch), s.rc);
		snprintf(want, sizeof want, "message %d", i);
		cr_assert_str_eq(in.text.text, want);
	}
	cr_assert_eq(WaitForSingleObject(t, 10000), WAIT_OBJECT_0);
	CloseHandle(t);
	cr_assert_eq(s.rc, 0, "%s", pbp_channel_send_error(ch)->msg);
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited && st.code == 0, "echo %s", status_str(&st));
	pbp_child_free(c);
}

T(arguments_cwd_and_environment_reach_the_child)
{
	/* Arguments the command-line quoting must carry through unchanged
	 * (CommandLineToArgvW's rules: spaces, quotes, backslashes before a
	 * quote and at the end, an empty argument). */
	const char *av[] = { pbt_win_self(), "--helper=info", "two words", "say \"hi\"",
		             "back\\slash\\", "tail\\\"q", "", "tab\there", NULL };
	const char *want_args = "two words|say \"hi\"|back\\slash\\|tail\\\"q||tab\there|";
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	char dir[MAX_PATH], sysroot[MAX_PATH + 16], want[512];
	char *envp[] = { "PBPTEST_VAR=from the parent", sysroot, NULL };
	pbp_exit_status st;
	pbp_child *c;
	pbp_error err;
	pbt_any in;
	uint32_t type;
	DWORD n;
	int rc;

	n = GetSystemDirectoryA(dir, sizeof dir); /* C:\windows\system32 */
	cr_assert(n > 0 && n < sizeof dir);
	snprintf(sysroot, sizeof sysroot, "SystemRoot=%s", getenv("SystemRoot") ? getenv("SystemRoot") : "C:\\windows");
	so.channel = &co;
	so.cwd = dir;
	so.envp = envp;
	rc = pbp_child_spawn(&c, pbt_win_self(), av, &so, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	rc = pbp_channel_recv_msg(pbp_child_channel(c), &type, &in, sizeof in);
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(pbp_child_channel(c)));
	snprintf(want, sizeof want, "%scwd=%s;env=from the parent", want_args, dir);
	cr_assert_str_eq(in.text.text, want);
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0, "%s", pbp_child_error(c)->msg);
	cr_assert(st.exited && st.code == 0, "info %s", status_str(&st));
	pbp_child_free(c);
}

T(close_write_is_end_of_stream_for_the_child_only)
{
	pbp_child *c = spawn_role("count_then_reply", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbptest_Text t = { "one of three" };
	pbp_exit_status st;
	pbt_any in;
	uint32_t type;
	int i, rc;

	for (i = 0; i < 3; i++)
		cr_assert_eq(pbp_channel_send(ch, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_close_write(ch), 0, "%s", pbp_channel_errmsg(ch));
	rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in);
	cr_assert_eq(rc, 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_str_eq(in.text.text, "got 3 after your end");
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), PBP_EOF);
	cr_assert_eq(pbp_child_wait(c, 5000, &st), 0);
	cr_assert(st.exited && st.code == 0, "%s", status_str(&st));
	pbp_child_free(c);
}

T(eight_children_at_once)
{
	pbp_child *c[8];
	pbp_exit_status st;
	int i, round, rc;

	for (i = 0; i < 8; i++)
		c[i] = spawn_role("serve", NULL, NULL);
	for (round = 0; round < 50; round++)
		for (i = 0; i < 8; i++) {
			pbptest_Text req, resp;

			snprintf(req.text, sizeof req.text, "child %d round %d", i, round);
			rc = pbp_channel_call(pbp_child_channel(c[i]), pbptest_Type_TEXT, &req,
			                      pbptest_Type_TEXT, &resp, 5000);
			cr_assert_eq(rc, 0, "child %d: %s", i, pbp_channel_errmsg(pbp_child_channel(c[i])));
			snprintf(req.text, sizeof req.text, "CHILD %d ROUND %d", i, round);
			cr_assert_str_eq(resp.text, req.text);
		}
	for (i = 0; i < 8; i++) {
		cr_assert_eq(pbp_child_close(c[i], 5000, &st), 0);
		cr_assert(st.exited && st.code == 0, "child %d %s", i, status_str(&st));
		pbp_child_free(c[i]);
	}
}

T(a_trace_file_records_both_directions)
{
	pbp_child *c = spawn_role("echo", NULL, NULL);
	pbp_channel *ch = pbp_child_channel(c);
	pbptest_Text t = { "trace me, windows" };
	char path[MAX_PATH], dir[MAX_PATH], *buf;
	pbp_exit_status st;
	pbt_any in;
	uint32_t type;
	FILE *f;
	long size;
	size_t n, i, hits = 0;

	cr_assert(GetTempPathA(sizeof dir, dir) > 0);
	cr_assert(GetTempFileNameA(dir, "pbt", 0, path) != 0);
	cr_assert_eq(pbp_channel_set_trace(ch, path), 0, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(pbp_channel_send(ch, pbptest_Type_TEXT, &t), 0);
	cr_assert_eq(pbp_channel_recv_msg(ch, &type, &in, sizeof in), 0);
	cr_assert_eq(pbp_child_close(c, 5000, &st), 0);
	pbp_child_free(c);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	rewind(f);
	cr_assert_gt(size, 0);
	buf = malloc((size_t)size);
	cr_assert_not_null(buf);
	n = fread(buf, 1, (size_t)size, f);
	fclose(f);
	DeleteFileA(path);
	/* The text twice: our frame out, its echo in. */
	for (i = 0; i + strlen(t.text) <= n; i++)
		if (memcmp(buf + i, t.text, strlen(t.text)) == 0)
			hits++;
	free(buf);
	cr_assert_eq(hits, 2, "the payload appears %zu times in %ld bytes of trace", hits, size);
}

T(missing_program_is_eexec)
{
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_channel_options co = pbt_options();
	pbp_child *c = NULL;
	pbp_error err;
	char path[MAX_PATH * 3];
	int64_t t0 = now_ms();
	int rc;

	so.channel = &co;
	pbt_win_sibling(path, sizeof path, "no-such-program.exe");
	rc = pbp_child_spawn(&c, path, NULL, &so, &err);
	cr_assert_eq(rc, PBP_EEXEC, "%d: %s", rc, err.msg);
	cr_assert_null(c);
	cr_assert(strstr(err.msg, "no-such-program") != NULL, "the message names the program: %s",
	          err.msg);
	cr_assert_neq(err.sys_errno, 0);
	/* At once, not after a handshake deadline. */
	cr_assert_leq(now_ms() - t0, 1000);
}
