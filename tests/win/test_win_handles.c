/*
 * test_win_handles.c: the child side's checks of the handle strings it is
 * given (pbp_channel_from_handles), on Windows: every bad string or
 * handle is PBP_EINVAL with a message that quotes the string, and a good
 * pair is accepted (so that the refusals mean something).
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdio.h>
#include <string.h>

#include <pbpipe/pbpipe.h>

#include "support.h"
#include "winrun.h"

#define T(name) Test(win_handles, name, .timeout = 20)

typedef struct pipes {
	HANDLE r1, w1, r2, w2; /* the child writes w1 and reads r2 */
	char w[32], r[32];     /* "w1", "r2" as handle strings */
} pipes;

static void
hstr(char *buf, size_t size, HANDLE h)
{
	snprintf(buf, size, "%llu", (unsigned long long)(uintptr_t)h);
}

static void
make_pipes(pipes *p)
{
	cr_assert(CreatePipe(&p->r1, &p->w1, NULL, 0));
	cr_assert(CreatePipe(&p->r2, &p->w2, NULL, 0));
	hstr(p->w, sizeof p->w, p->w1);
	hstr(p->r, sizeof p->r, p->r2);
}

static void
close_pipes(pipes *p)
{
	CloseHandle(p->r1);
	CloseHandle(p->w1);
	CloseHandle(p->r2);
	CloseHandle(p->w2);
}

/* pbp_channel_from_handles(w, r) must fail with PBP_EINVAL (or, where
 * noted, PBP_ESYS too), quoting `quoted` in its message. */
static void
refused(const char *w, const char *r, const char *quoted, int esys_ok)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *ch = NULL;
	pbp_error err;
	char want[64];
	int rc;

	memset(&err, 0, sizeof err);
	rc = pbp_channel_from_handles(&ch, w, r, &o, &err);
	cr_log_info("from_handles('%s', '%s'): %d: %s", w, r, rc, err.msg);
	cr_assert(rc == PBP_EINVAL || (esys_ok && rc == PBP_ESYS),
	          "from_handles('%s', '%s') gave %d (%s), not PBP_EINVAL", w, r, rc, err.msg);
	cr_assert_null(ch);
	cr_assert_eq(err.code, rc);
	snprintf(want, sizeof want, "'%s'", quoted);
	cr_assert(strstr(err.msg, want) != NULL, "the message does not quote %s: %s", want,
	          err.msg);
}

T(a_good_pair_is_accepted)
{
	pbp_channel_options o = pbt_options();
	pbp_channel *ch = NULL;
	pbp_error err;
	pipes p;
	int rc;

	make_pipes(&p);
	rc = pbp_channel_from_handles(&ch, p.w, p.r, &o, &err);
	cr_assert_eq(rc, 0, "from_handles('%s', '%s'): %s", p.w, p.r, err.msg);
	pbp_channel_free_keep_fds(ch);
	close_pipes(&p);
}

T(empty_string)
{
	pipes p;

	make_pipes(&p);
	refused("", p.r, "", 0);
	refused(p.w, "", "", 0);
	close_pipes(&p);
}

T(not_a_number)
{
	pipes p;

	make_pipes(&p);
	refused("abc", p.r, "abc", 0);
	refused(p.w, "12x", "12x", 0);
	close_pipes(&p);
}

T(negative_number)
{
	pipes p;

	make_pipes(&p);
	refused("-1", p.r, "-1", 0);
	close_pipes(&p);
}

T(a_file_is_not_a_pipe)
{
	WCHAR self[MAX_PATH];
	HANDLE f;
	char fs[32];
	pipes p;

	make_pipes(&p);
	cr_assert(GetModuleFileNameW(NULL, self, MAX_PATH) > 0);
	f = CreateFileW(self, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
	cr_assert_neq(f, INVALID_HANDLE_VALUE, "CreateFileW: %lu", GetLastError());
	hstr(fs, sizeof fs, f);
	refused(p.w, fs, fs, 0);
	/* Still open: a refused handle stays the caller's. */
	cr_assert_neq(GetFileType(f), FILE_TYPE_UNKNOWN);
	CloseHandle(f);
	close_pipes(&p);
}

T(the_same_handle_twice)
{
	pipes p;

	make_pipes(&p);
	refused(p.w, p.w, p.w, 0);
	close_pipes(&p);
}

T(a_read_end_given_as_the_write_handle)
{
	char rs[32];
	pipes p;

	make_pipes(&p);
	hstr(rs, sizeof rs, p.r1);
	refused(rs, p.r, rs, 0);
	/* And a write end as the read handle. */
	hstr(rs, sizeof rs, p.w2);
	refused(p.w, rs, rs, 0);
	close_pipes(&p);
}

T(a_handle_that_is_not_open)
{
	pipes p;
	char bad[32];

	make_pipes(&p);
	/* Handle values are multiples of 4; this one is not open. */
	hstr(bad, sizeof bad, (HANDLE)(uintptr_t)0x7ffff0);
	refused(p.w, bad, bad, 1);
	close_pipes(&p);
}
