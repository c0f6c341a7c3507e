/*
 * test_win_nested.c: calls nested both ways on Windows, through the
 * public headers, against pbptest-pool-helper.exe (tests/pool_helper.c)
 * next to this program: its handler calls the parent back while the
 * parent waits in a call (answered by the parent's handler table) or in
 * asynchronous calls ended by pbp_channel_process().  The Windows
 * counterpart of the helper tests of tests/test_nested.c.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"
#include "pool_helper.h"
#include "winrun.h"

#define T(name) Test(win_nested, name, .timeout = 30)

static const pbp_msgtype types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};

static int
times_ten(const void *req, void *resp, pbp_reply_error *e, void *payload)
{
	(void)e;
	(*(int *)payload)++;
	((pbptest_Numbers *)resp)->i64 = ((const pbptest_Numbers *)req)->i64 * 10;
	return 0;
}

static pbp_child *
spawn_helper(void)
{
	static const char *const argv[] = { "pbptest-pool-helper", NULL };
	static pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
	static char path[MAX_PATH * 3];
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	pbp_child *c = NULL;
	pbp_error err;

	co.types = types;
	co.ntypes = 3;
	co.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	so.channel = &co;
	pbt_win_sibling(path, sizeof path, "pbptest-pool-helper.exe");
	cr_assert_eq(pbp_child_spawn(&c, path, argv, &so, &err), 0, "%s", err.msg);
	return c;
}

T(the_helper_calls_back_while_the_parent_waits)
{
	pbp_child *c = spawn_helper();
	pbp_channel *ch = pbp_child_channel(c);
	int runs = 0;
	pbp_handler h[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, times_ten, &runs } };
	pbptest_Numbers q = pbptest_Numbers_init_zero, r = pbptest_Numbers_init_zero;
	pbp_exit_status st;

	q.i32 = POOL_OP_CALLBACK;
	q.i64 = 4;
	cr_assert_eq(pbp_channel_set_handlers(ch, h, 1), 0);
	cr_assert_eq(pbp_channel_call(ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS, &r, 10000),
	             0, "%s", pbp_channel_errmsg(ch));
	cr_assert_eq(r.i64, 41);
	cr_assert_eq(runs, 1);
	cr_assert_eq(pbp_child_close(c, 2000, &st), 0);
	cr_assert(st.exited && st.code == 0);
	pbp_child_free(c);
}

struct outcome {
	int runs, rc;
	int64_t value;
};

static void
on_done(pbp_channel *ch, uint64_t id, int rc, void *resp, void *user)
{
	struct outcome *o = user;

	(void)ch;
	(void)id;
	o->runs++;
	o->rc = rc;
	if (rc == 0)
		o->value = ((pbptest_Numbers *)resp)->i64;
}

T(asynchronous_calls_with_callbacks_end_in_process)
{
	pbp_child *c = spawn_helper();
	pbp_channel *ch = pbp_child_channel(c);
	int runs = 0, i, n = 0;
	pbp_handler h[] = { { pbptest_Type_NUMBERS, pbptest_Type_NUMBERS, times_ten, &runs } };
	struct outcome o[4];
	DWORD t0 = GetTickCount();

	memset(o, 0, sizeof o);
	cr_assert_eq(pbp_channel_set_handlers(ch, h, 1), 0);
	for (i = 0; i < 4; i++) {
		pbptest_Numbers q = pbptest_Numbers_init_zero;

		q.i32 = POOL_OP_CALLBACK;
		q.i64 = i;
		cr_assert_eq(pbp_channel_call_async(ch, pbptest_Type_NUMBERS, &q, pbptest_Type_NUMBERS,
		                                    10000, on_done, &o[i], NULL), 0);
	}
	/* No fd to poll here: process, then sleep a little. */
	while (n < 4 && GetTickCount() - t0 < 20000) {
		cr_assert(pbp_channel_process(ch) >= 0, "%s", pbp_channel_errmsg(ch));
		for (n = 0, i = 0; i < 4; i++)
			n += o[i].runs;
		if (n < 4)
			Sleep(1);
	}
	for (i = 0; i < 4; i++) {
		cr_assert_eq(o[i].runs, 1);
		cr_assert_eq(o[i].rc, 0);
		cr_assert_eq(o[i].value, 10 * i + 1);
	}
	cr_assert_eq(runs, 4);
	pbp_child_free(c);
}

T(the_exit_handle_is_signalled_when_the_helper_ends)
{
	pbp_child *c = spawn_helper();
	pbp_channel *ch = pbp_child_channel(c);
	pbp_os_handle h = pbp_child_exit_handle(c);
	pbp_exit_status st;
	int rc;

	cr_assert_neq(h, PBP_OS_HANDLE_INVALID);
	cr_assert_eq(pbp_channel_set_timeout(ch, PBP_TIMEOUT_SEND, 0), 0);
	rc = pbp_channel_goodbye(ch, PBP_GOODBYE_DONE, "bye");
	cr_assert(rc == 0 || rc == PBP_EAGAIN, "%d %s", rc, pbp_channel_errmsg(ch));
	cr_assert_eq(WaitForSingleObject((HANDLE)h, 10000), WAIT_OBJECT_0);
	cr_assert_eq(pbp_child_wait(c, 0, &st), 0);
	cr_assert(st.exited && st.code == 0);
	cr_assert_eq(pbp_child_exit_handle(c), PBP_OS_HANDLE_INVALID);
	pbp_child_free(c);
}
