/*
 * test_alloc.c: heap use.  This binary is linked with --wrap for malloc,
 * calloc, realloc and free, so every allocation pbpipe makes goes through
 * a counting allocator that can also be told to fail.  Checks: no heap
 * allocation per frame in steady state, and a clean PBP_ENOMEM (no crash,
 * no leak) when any single allocation fails.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define T(name) Test(alloc, name, .timeout = 60)

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static atomic_long allocs;    /* allocations made since the last reset */
static atomic_long live;      /* blocks allocated and not freed */
static atomic_long fail_at = -1; /* fail the allocation with this number; -1: never */

static int
should_fail(void)
{
	long n = atomic_fetch_add(&allocs, 1);

	return atomic_load(&fail_at) >= 0 && n == atomic_load(&fail_at);
}

void *
__wrap_malloc(size_t n)
{
	void *p;

	if (should_fail())
		return NULL;
	p = __real_malloc(n);
	if (p != NULL)
		atomic_fetch_add(&live, 1);
	return p;
}

void *
__wrap_calloc(size_t k, size_t n)
{
	void *p;

	if (should_fail())
		return NULL;
	p = __real_calloc(k, n);
	if (p != NULL)
		atomic_fetch_add(&live, 1);
	return p;
}

void *
__wrap_realloc(void *old, size_t n)
{
	void *p;

	if (should_fail())
		return NULL;
	p = __real_realloc(old, n);
	if (p != NULL && old == NULL)
		atomic_fetch_add(&live, 1);
	return p;
}

void
__wrap_free(void *p)
{
	if (p != NULL)
		atomic_fetch_sub(&live, 1);
	__real_free(p);
}

static void
reset(long fail)
{
	atomic_store(&allocs, 0);
	atomic_store(&fail_at, fail);
}

T(no_allocation_per_frame_in_steady_state)
{
	pbp_channel *a, *b;
	pbptest_Text t = { "steady" };
	pbptest_Numbers n = { .i64 = 5, .list_count = 3 };
	static char big[100000];
	pbp_msginfo mi;
	uint32_t type;
	pbt_any u;
	int i, round;

	reset(-1);
	pbt_pair(&a, &b, NULL, NULL);
	/* Two rounds: the first grows the buffers to their working size, the
	 * second must not allocate at all.  One thread; the pipes (1 MiB)
	 * hold every frame in flight. */
	for (round = 0; round < 2; round++) {
		if (round == 1)
			cr_assert_gt(atomic_load(&allocs), 0, "the first round grows buffers: "
			             "the counting allocator must have seen it");
		reset(-1);
		for (i = 0; i < 5000; i++) {
			cr_assert_eq(pbp_channel_send(a, pbptest_Type_TEXT, &t), 0);
			cr_assert_eq(pbp_channel_send(a, pbptest_Type_NUMBERS, &n), 0);
			cr_assert_eq(pbp_channel_recv_msg(b, &type, &u, sizeof u), 0);
			cr_assert_eq(pbp_channel_recv_msg(b, &type, &u, sizeof u), 0);
			cr_assert_eq(pbp_channel_send_raw(b, 9, (uint64_t)i, "reply", 5), 0);
			cr_assert_eq(pbp_channel_recv(a, &mi), 0);
			if (i % 500 == 0) {
				cr_assert_eq(pbp_channel_send_raw(a, 9, 0, big, sizeof big), 0);
				cr_assert_eq(pbp_channel_recv(b, &mi), 0);
				cr_assert_eq(mi.size, sizeof big);
			}
		}
	}
	cr_assert_eq(atomic_load(&allocs), 0, "%ld allocations in 25,000 frames",
	             atomic_load(&allocs));
	pbp_channel_free(a);
	pbp_channel_free(b);
}

/* Runs op with allocation number k failing, for k = 0, 1, ... until op
 * succeeds.  Each failing run must report PBP_ENOMEM and leave nothing
 * allocated behind. */
static void
each_failure(const char *what, int (*op)(void), long max)
{
	long k, before;
	int rc = -1;

	for (k = 0; k < max; k++) {
		before = atomic_load(&live);
		reset(k);
		rc = op();
		reset(-1);
		if (rc == 0)
			break;
		cr_assert_eq(rc, PBP_ENOMEM, "%s: allocation %ld failing gave %d", what, k, rc);
		cr_assert_eq(atomic_load(&live), before, "%s: allocation %ld failing leaked", what, k);
	}
	cr_assert_eq(rc, 0, "%s never succeeded", what);
	cr_log_info("%s: survived each of its %ld allocations failing", what, k);
}

static int
op_channel(void)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *ch;
	pbp_error err;
	int fds[4], rc, i;

	pbt_pipes(fds);
	rc = pbp_channel_from_fds(&ch, fds[0], fds[3], &o, &err);
	if (rc == 0)
		pbp_channel_free(ch);
	else
		close(fds[0]), close(fds[3]);
	for (i = 1; i < 3; i++)
		close(fds[i]);
	return rc;
}

static pbp_channel *big_a, *big_b;

/* Grows both buffers past 64 KiB, and fits the pipe: one thread here. */
static char big_payload[200000];

static int
op_big_frame(void)
{
	pbp_msginfo mi;
	int rc = pbp_channel_send_raw(big_a, 1, 0, big_payload, sizeof big_payload);

	if (rc == 0)
		rc = pbp_channel_recv(big_b, &mi);
	return rc;
}

static int
op_spawn(void)
{
	pbp_channel_options o = pbt_options();
	pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
	const char *argv[] = { PBPTEST_PEER, "echo", NULL };
	pbp_exit_status st;
	pbp_child *c;
	pbp_error err;
	int rc;

	so.channel = &o;
	so.stderr_mode = PBP_STDIO_CAPTURE;
	rc = pbp_child_spawn(&c, PBPTEST_PEER, argv, &so, &err);
	if (rc != 0)
		return rc;
	rc = pbp_child_close(c, 5000, &st);
	pbp_child_free(c);
	return rc;
}

T(every_allocation_failure_is_enomem_without_leak)
{
	each_failure("pbp_channel_from_fds", op_channel, 50);
	each_failure("pbp_child_spawn", op_spawn, 50);
}

T(buffer_growth_failure_is_enomem_and_sticky_on_receive)
{
	pbp_msginfo mi;
	int rc;

	pbt_pair(&big_a, &big_b, NULL, NULL);
	/* Sending: the write buffer must grow; failing that fails the call
	 * only, and nothing was sent. */
	reset(0);
	rc = op_big_frame();
	reset(-1);
	cr_assert_eq(rc, PBP_ENOMEM);
	cr_assert_eq(pbp_channel_send_raw(big_a, 1, 0, "ok", 2), 0, "sending still works");
	cr_assert_eq(pbp_channel_recv(big_b, &mi), 0);
	cr_assert_eq(mi.size, 2, "the failed frame never went out");
	/* Receiving: the receive buffer must grow; failing that is sticky. */
	cr_assert_eq(pbp_channel_send_raw(big_a, 1, 0, big_payload, sizeof big_payload), 0);
	reset(0);
	rc = pbp_channel_recv(big_b, &mi);
	reset(-1);
	cr_assert_eq(rc, PBP_ENOMEM, "%s", pbp_channel_errmsg(big_b));
	cr_assert_eq(pbp_channel_recv(big_b, &mi), PBP_ENOMEM, "sticky");
	pbp_channel_free(big_a);
	pbp_channel_free(big_b);
}
