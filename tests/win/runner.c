/*
 * runner.c: the test runner of the Windows tests (see winrun.h).  Windows
 * has no fork(): each test runs in a new process of the same program
 * (`--run=SUITE::NAME`), started with CreateProcessW, so a crash, a failed
 * assertion (which exits the process) or a hang fails only that test.  A
 * test that outlives its .timeout is terminated with TerminateProcess.
 * The processes a test spawns through pbp_child_spawn() are in the
 * library's Job object, which dies with the test's process.
 *
 * The last line printed, on stdout, is always "N passed, M failed":
 * scripts/wine-run requires it, so a program that exits 0 without having
 * run anything (a 32-bit program under a wine without 32-bit DLLs) fails.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "winrun.h"

#define DEFAULT_TIMEOUT_S 60
#define EXIT_SKIP 77

static struct pbt_cr_test *head;
static struct pbt_win_helper *helpers;

/* mingw runs constructors last to first: prepending keeps the tests in
 * the order of their file. */
void
pbt_cr_register(struct pbt_cr_test *t)
{
	t->next = head;
	head = t;
}

void
pbt_win_register_helper(struct pbt_win_helper *h)
{
	h->next = helpers;
	helpers = h;
}

static void __attribute__((noreturn))
leave(int code)
{
	fflush(NULL);
	ExitProcess((UINT)code);
}

void
pbt_cr_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[----] %s:%d: Assertion failed: %s", file, line, expr);
	if (fmt[0] != '\0') {
		fputs(": ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	leave(1);
}

void
pbt_cr_log(const char *fmt, ...)
{
	va_list ap;

	fputs("[----] ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

void
pbt_cr_skip(const char *fmt, ...)
{
	va_list ap;

	fputs("[SKIP] ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	leave(EXIT_SKIP);
}

const char *
pbt_win_self(void)
{
	static char path[MAX_PATH * 3];
	WCHAR w[MAX_PATH];
	DWORD n;

	if (path[0] == '\0') {
		n = GetModuleFileNameW(NULL, w, MAX_PATH);
		if (n == 0 || n >= MAX_PATH ||
		    WideCharToMultiByte(CP_UTF8, 0, w, -1, path, sizeof path, NULL, NULL) == 0) {
			fprintf(stderr, "runner: GetModuleFileNameW failed (%lu)\n", GetLastError());
			leave(2);
		}
	}
	return path;
}

char *
pbt_win_sibling(char *buf, size_t size, const char *name)
{
	const char *self = pbt_win_self();
	const char *slash = strrchr(self, '\\');
	int dir = slash != NULL ? (int)(slash - self) : 0;

	if ((size_t)snprintf(buf, size, "%.*s%s%s", dir, self, dir > 0 ? "\\" : "", name) >= size) {
		fprintf(stderr, "runner: path too long for %s\n", name);
		leave(2);
	}
	return buf;
}

static double
seconds_since(LARGE_INTEGER t0)
{
	LARGE_INTEGER now, f;

	QueryPerformanceCounter(&now);
	QueryPerformanceFrequency(&f);
	return (double)(now.QuadPart - t0.QuadPart) / (double)f.QuadPart;
}

/* Makes the standard handles inheritable, so that the tests' processes
 * write where this one does. */
static void
share_stdio(STARTUPINFOW *si)
{
	static const DWORD which[3] = { STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE };
	HANDLE h[3];
	int i;

	for (i = 0; i < 3; i++) {
		h[i] = GetStdHandle(which[i]);
		if (h[i] != NULL && h[i] != INVALID_HANDLE_VALUE)
			SetHandleInformation(h[i], HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
	}
	si->dwFlags |= STARTF_USESTDHANDLES;
	si->hStdInput = h[0];
	si->hStdOutput = h[1];
	si->hStdError = h[2];
}

/* Runs t in a new process; returns its exit code, or -1 after its
 * timeout (it is then terminated), or -2 if it could not start. */
static long
run_isolated(const struct pbt_cr_test *t)
{
	WCHAR self[MAX_PATH], cmd[MAX_PATH * 3 + 600];
	char narrow[MAX_PATH * 3 + 600];
	STARTUPINFOW si;
	PROCESS_INFORMATION pi;
	DWORD code = 0, wait, timeout_ms;

	if (GetModuleFileNameW(NULL, self, MAX_PATH) == 0)
		return -2;
	if ((size_t)snprintf(narrow, sizeof narrow, "\"%s\" --run=%s::%s", pbt_win_self(),
	                     t->suite, t->name) >= sizeof narrow ||
	    MultiByteToWideChar(CP_UTF8, 0, narrow, -1, cmd, (int)(sizeof cmd / sizeof cmd[0])) == 0)
		return -2;
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	share_stdio(&si);
	fflush(NULL);
	if (!CreateProcessW(self, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
		fprintf(stderr, "runner: CreateProcessW failed (%lu)\n", GetLastError());
		return -2;
	}
	CloseHandle(pi.hThread);
	timeout_ms = (DWORD)(t->opts->timeout > 0 ? t->opts->timeout : DEFAULT_TIMEOUT_S) * 1000u;
	wait = WaitForSingleObject(pi.hProcess, timeout_ms);
	if (wait == WAIT_TIMEOUT) {
		TerminateProcess(pi.hProcess, 124);
		WaitForSingleObject(pi.hProcess, 5000);
		CloseHandle(pi.hProcess);
		return -1;
	}
	if (wait != WAIT_OBJECT_0 || !GetExitCodeProcess(pi.hProcess, &code)) {
		CloseHandle(pi.hProcess);
		return -2;
	}
	CloseHandle(pi.hProcess);
	return (long)code;
}

/* A crash ends the test's process at once with the exception code (which
 * the runner reports), instead of starting a debugger (wine's winedbg). */
static LONG WINAPI
crashed(EXCEPTION_POINTERS *ep)
{
	DWORD code = ep->ExceptionRecord->ExceptionCode;

	fprintf(stderr, "[----] CRASH: exception 0x%08lx at %p\n", (unsigned long)code,
	        ep->ExceptionRecord->ExceptionAddress);
	fflush(NULL);
	TerminateProcess(GetCurrentProcess(), code);
	return EXCEPTION_EXECUTE_HANDLER;
}

static int
run_one(const char *spec)
{
	struct pbt_cr_test *t;
	size_t sl;

	for (t = head; t != NULL; t = t->next) {
		sl = strlen(t->suite);
		if (strncmp(spec, t->suite, sl) == 0 && strncmp(spec + sl, "::", 2) == 0 &&
		    strcmp(spec + sl + 2, t->name) == 0) {
			setvbuf(stderr, NULL, _IONBF, 0);
			SetUnhandledExceptionFilter(crashed);
			t->fn();
			leave(0);
		}
	}
	fprintf(stderr, "runner: no test %s\n", spec);
	return 2;
}

static int
run_helper(const char *name, int argc, char **argv)
{
	struct pbt_win_helper *h;

	for (h = helpers; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0) {
			int rc = h->fn(argc, argv);

			leave(rc);
		}
	fprintf(stderr, "runner: no helper %s\n", name);
	return 2;
}

int
main(int argc, char **argv)
{
	struct pbt_cr_test *t;
	const char *filter = NULL, *only = NULL;
	int i, passed = 0, failed = 0, skipped = 0, matched = 0;
	LARGE_INTEGER t0;
	long rc;

	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--helper=", 9) == 0)
			return run_helper(argv[i] + 9, argc, argv);
		if (strncmp(argv[i], "--run=", 6) == 0)
			return run_one(argv[i] + 6);
		if (strcmp(argv[i], "--list") == 0) {
			for (t = head; t != NULL; t = t->next)
				printf("%s::%s\n", t->suite, t->name);
			return 0;
		}
		if (strncmp(argv[i], "--filter=", 9) == 0)
			filter = argv[i] + 9; /* a substring of SUITE::NAME */
		if (strncmp(argv[i], "--only=", 7) == 0)
			only = argv[i] + 7; /* exactly SUITE::NAME */
	}
	/* Never a dialog box for a crash: the process just ends. */
	SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
	for (t = head; t != NULL; t = t->next) {
		char full[256];

		snprintf(full, sizeof full, "%s::%s", t->suite, t->name);
		if ((filter != NULL && strstr(full, filter) == NULL) ||
		    (only != NULL && strcmp(full, only) != 0))
			continue;
		matched++;
		QueryPerformanceCounter(&t0);
		rc = run_isolated(t);
		if (rc == 0) {
			passed++;
			printf("[PASS] %s (%.2fs)\n", full, seconds_since(t0));
		} else if (rc == EXIT_SKIP) {
			skipped++;
			printf("[SKIP] %s: SKIPPED, not run\n", full);
		} else if (rc == -1) {
			failed++;
			printf("[FAIL] %s: Timed out after %d s\n", full,
			       t->opts->timeout > 0 ? t->opts->timeout : DEFAULT_TIMEOUT_S);
		} else if (rc == -2) {
			failed++;
			printf("[FAIL] %s: could not be started\n", full);
		} else if ((unsigned long)rc >= 0xC0000000ul) {
			failed++;
			printf("[FAIL] %s: CRASH! (exception 0x%08lx)\n", full, (unsigned long)rc);
		} else {
			failed++;
			printf("[FAIL] %s: exit code %ld (%.2fs)\n", full, rc, seconds_since(t0));
		}
		fflush(stdout);
	}
	if (matched == 0 && (filter != NULL || only != NULL)) {
		printf("[FAIL] no test matches %s\n", only != NULL ? only : filter);
		failed++;
	}
	if (skipped > 0)
		printf("%d SKIPPED (not run, not counted as passed)\n", skipped);
	printf("%d passed, %d failed\n", passed, failed);
	fflush(NULL);
	return failed == 0 ? 0 : 1;
}
