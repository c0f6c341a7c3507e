/*
 * cmdline.c: what CreateProcessW is given besides handles: the program
 * (found as os.h says: searched like a command when the path has no
 * directory, ".exe" appended when its name has no extension), the command
 * line, quoted so that the child's C runtime (CommandLineToArgvW's rules)
 * splits it back into exactly our argv, and a UTF-16 environment block.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "win32.h"

/* CreateProcessW's limit, in characters, with the terminating NUL. */
#define CMDLINE_MAX 32767

typedef struct wbuf {
	wchar_t *p;
	size_t len, cap;
	int oom;
} wbuf;

static void
put(wbuf *b, const wchar_t *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		wchar_t *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap * sizeof *p)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n * sizeof *s);
	b->len += n;
	b->p[b->len] = L'\0';
}

static void
putc_n(wbuf *b, wchar_t c, size_t n)
{
	while (n-- > 0)
		put(b, &c, 1);
}

/*
 * One argument after the first, as the Microsoft C runtime and
 * CommandLineToArgvW parse it: inside quotes, 2n backslashes before a
 * quote mean n backslashes and the quote ends (or starts) quoting, 2n+1
 * mean n backslashes and a literal quote; backslashes not before a quote
 * are literal.  So a run of backslashes is doubled before a quote and
 * before the closing quote, and each quote gets one more.
 */
static void
quote_arg(wbuf *b, const wchar_t *a)
{
	const wchar_t *p = a;

	if (*a != L'\0' && wcspbrk(a, L" \t\n\v\"") == NULL) {
		put(b, a, wcslen(a));
		return;
	}
	put(b, L"\"", 1);
	for (;;) {
		size_t bs = 0;

		while (*p == L'\\') {
			p++;
			bs++;
		}
		if (*p == L'\0') {
			putc_n(b, L'\\', bs * 2);
			break;
		}
		if (*p == L'"') {
			putc_n(b, L'\\', bs * 2 + 1);
		} else {
			putc_n(b, L'\\', bs);
		}
		put(b, p, 1);
		p++;
	}
	put(b, L"\"", 1);
}

/* argv[0] is parsed differently: up to the next quote if it starts with
 * one, else up to white space, backslashes always literal.  So it can be
 * quoted but cannot hold a quote. */
static int
quote_arg0(wbuf *b, const wchar_t *a)
{
	if (wcschr(a, L'"') != NULL)
		return -1;
	if (*a != L'\0' && wcspbrk(a, L" \t\n\v") == NULL) {
		put(b, a, wcslen(a));
	} else {
		put(b, L"\"", 1);
		put(b, a, wcslen(a));
		put(b, L"\"", 1);
	}
	return 0;
}

int
pbp__win_cmdline(wchar_t **out, const char *path, const char *const *argv, HANDLE child_w,
                 HANDLE child_r, pbp_error *err)
{
	static const char *const none[] = { NULL };
	wbuf b = { NULL, 0, 0, 0 };
	wchar_t num[24];
	int i, bad = 0;

	if (argv == NULL || argv[0] == NULL)
		argv = none;
	for (i = 0; bad == 0 && (i == 0 || argv[i] != NULL); i++) {
		const char *s = i == 0 && argv[0] == NULL ? path : argv[i];
		wchar_t *w = pbp__win_wide(s, &bad);

		if (w == NULL) {
			free(b.p);
			return bad ? pbp__seterr(err, PBP_EINVAL, 0, "argv[%d] is not valid UTF-8", i)
			           : pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
		}
		if (i > 0)
			put(&b, L" ", 1);
		if (i == 0 && quote_arg0(&b, w) != 0)
			bad = 1;
		else if (i > 0)
			quote_arg(&b, w);
		free(w);
		if (i == 0 && argv[0] == NULL)
			break;
	}
	if (bad) {
		free(b.p);
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "argv[0] '%s' holds a '\"', which a Windows command line cannot "
		                   "pass in its first word",
		                   argv[0] ? argv[0] : path);
	}
	/* The two handle strings: the handle the child writes to first.  An
	 * inherited handle has the same value in the child. */
	swprintf(num, sizeof num / sizeof num[0], L" %llu", (unsigned long long)(uintptr_t)child_w);
	put(&b, num, wcslen(num));
	swprintf(num, sizeof num / sizeof num[0], L" %llu", (unsigned long long)(uintptr_t)child_r);
	put(&b, num, wcslen(num));
	if (b.oom) {
		free(b.p);
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	}
	if (b.len >= CMDLINE_MAX) {
		free(b.p);
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   "the command line is %lu characters long; Windows takes at most %d",
		                   (unsigned long)b.len, CMDLINE_MAX - 1);
	}
	*out = b.p;
	return 0;
}

/* ---- the program ------------------------------------------------------------- */

static int
exec_error(pbp_error *err, const char *path, DWORD e)
{
	char msg[160];

	return pbp__seterr(err, PBP_EEXEC, (int)e, "cannot execute '%s': %s", path,
	                   pbp__win_strerror(e, msg, sizeof msg));
}

int
pbp__win_program(wchar_t **out, const char *path, pbp_error *err)
{
	int bad = 0;
	wchar_t *w = pbp__win_wide(path, &bad), *name, *full;
	DWORD n;

	if (w == NULL)
		return bad ? pbp__seterr(err, PBP_EINVAL, 0, "path '%s' is not valid UTF-8", path)
		           : pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	for (name = w + wcslen(w); name > w && wcschr(L"\\/:", name[-1]) == NULL; name--)
		;
	if (name == w) {
		/* A bare name: searched as SearchPathW does (the program's
		 * folder, the current one, the system folders, PATH), with
		 * ".exe" added when it has no extension. */
		n = SearchPathW(NULL, w, L".exe", 0, NULL, NULL);
		if (n == 0 || (full = malloc(n * sizeof *full)) == NULL ||
		    SearchPathW(NULL, w, L".exe", n, full, NULL) == 0) {
			DWORD e = n == 0 ? GetLastError() : ERROR_NOT_ENOUGH_MEMORY;

			free(w);
			return exec_error(err, path, e == 0 ? ERROR_FILE_NOT_FOUND : e);
		}
		free(w);
		*out = full;
		return 0;
	}
	if (wcschr(name, L'.') == NULL) {
		/* CreateProcessW adds no extension to lpApplicationName. */
		size_t len = wcslen(w);

		if ((full = malloc((len + 5) * sizeof *full)) == NULL) {
			free(w);
			return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
		}
		memcpy(full, w, len * sizeof *w);
		memcpy(full + len, L".exe", 5 * sizeof *w);
		free(w);
		w = full;
	}
	*out = w;
	return 0;
}

/* ---- the environment --------------------------------------------------------- */

/* Windows keeps environment blocks sorted by name, ignoring case (the
 * documented rule for blocks passed to CreateProcess); names such as
 * "=C:" start with '='. */
static int
env_cmp(const void *pa, const void *pb)
{
	const wchar_t *a = *(wchar_t *const *)pa, *b = *(wchar_t *const *)pb;
	const wchar_t *ea = a[0] ? wcschr(a + 1, L'=') : NULL, *eb = b[0] ? wcschr(b + 1, L'=') : NULL;
	int na = ea ? (int)(ea - a) : (int)wcslen(a), nb = eb ? (int)(eb - b) : (int)wcslen(b);

	return CompareStringOrdinal(a, na, b, nb, TRUE) - CSTR_EQUAL;
}

int
pbp__win_envblock(wchar_t **out, char *const *envp, pbp_error *err)
{
	size_t n = 0, i, total = 1;
	wchar_t **v, *block, *p;
	int bad = 0, rc = 0;

	*out = NULL;
	if (envp == NULL)
		return 0;
	while (envp[n] != NULL)
		n++;
	if ((v = calloc(n + 1, sizeof *v)) == NULL)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	for (i = 0; i < n && rc == 0; i++) {
		if ((v[i] = pbp__win_wide(envp[i], &bad)) == NULL)
			rc = bad ? pbp__seterr(err, PBP_EINVAL, 0, "envp[%lu] is not valid UTF-8", (unsigned long)i)
			         : pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
		else if (v[i][0] == L'\0')
			rc = pbp__seterr(err, PBP_EINVAL, 0, "envp[%lu] is empty", (unsigned long)i);
		else
			total += wcslen(v[i]) + 1;
	}
	if (rc == 0) {
		qsort(v, n, sizeof *v, env_cmp);
		/* An empty block is two NULs. */
		if ((block = p = malloc((total + 1) * sizeof *block)) == NULL) {
			rc = pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
		} else {
			for (i = 0; i < n; i++) {
				size_t len = wcslen(v[i]) + 1;

				memcpy(p, v[i], len * sizeof *p);
				p += len;
			}
			*p++ = L'\0';
			if (n == 0)
				*p = L'\0';
			*out = block;
		}
	}
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return rc;
}
