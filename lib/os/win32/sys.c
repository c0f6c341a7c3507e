/*
 * sys.c: the Windows platform's clock, process id, mutexes, handle values,
 * error texts, the ntdll queries the other files share, append-only files
 * (the frame trace) and exit status strings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <winternl.h>

#include "win32.h"

/* ---- clock, identity --------------------------------------------------------- */

/* QueryPerformanceCounter for both clocks (GetTickCount64 moves in steps
 * of about 15.6 ms): monotonic, never fails on XP and later, and the
 * frequency is fixed at boot, so caching it is safe. */
static int64_t
qpc_ns(void)
{
	static volatile LONGLONG freq;
	LARGE_INTEGER c, f;
	LONGLONG hz = freq;

	if (hz == 0) {
		QueryPerformanceFrequency(&f);
		hz = freq = f.QuadPart > 0 ? f.QuadPart : 1;
	}
	QueryPerformanceCounter(&c);
	/* Split so that the product cannot overflow at any uptime. */
	return (int64_t)(c.QuadPart / hz) * 1000000000 +
	       (int64_t)((c.QuadPart % hz) * 1000000000 / hz);
}

int64_t
pbp__now_ms(void)
{
	return qpc_ns() / 1000000;
}

int64_t
pbp__now_ns(void)
{
	return qpc_ns();
}

typedef VOID(WINAPI *filetime_fn)(LPFILETIME);

uint64_t
pbp__os_realtime_ns(void)
{
	/* GetSystemTimePreciseAsFileTime is Windows 8's; Windows 7 has only
	 * the coarse one. */
	static filetime_fn volatile precise;
	static volatile LONG looked;
	FILETIME ft;
	ULARGE_INTEGER u;

	if (!looked) {
		HMODULE k = GetModuleHandleW(L"kernel32.dll");
		FARPROC p = k ? GetProcAddress(k, "GetSystemTimePreciseAsFileTime") : NULL;

		precise = p ? (filetime_fn)(void (*)(void))p : GetSystemTimeAsFileTime;
		looked = 1;
	}
	(precise ? precise : GetSystemTimeAsFileTime)(&ft);
	u.LowPart = ft.dwLowDateTime;
	u.HighPart = ft.dwHighDateTime;
	/* 100 ns units since 1601-01-01; the Unix epoch is 11644473600 s later. */
	if (u.QuadPart < 116444736000000000ull)
		return 0;
	return (u.QuadPart - 116444736000000000ull) * 100u;
}

uint32_t
pbp__os_getpid(void)
{
	return (uint32_t)GetCurrentProcessId();
}

/* ---- mutexes ----------------------------------------------------------------- */

/* An SRWLOCK is one pointer, and SRWLOCK_INIT is all zero bits: os.h's
 * void *opaque is its storage.  SRW locks need no destroy. */
_Static_assert(sizeof(SRWLOCK) == sizeof(void *), "SRWLOCK is one pointer");

int
pbp__mutex_init(pbp__mutex *m)
{
	InitializeSRWLock((PSRWLOCK)&m->opaque);
	return 0;
}

void
pbp__mutex_destroy(pbp__mutex *m)
{
	(void)m;
}

void
pbp__mutex_lock(pbp__mutex *m)
{
	AcquireSRWLockExclusive((PSRWLOCK)&m->opaque);
}

int
pbp__mutex_trylock(pbp__mutex *m)
{
	return TryAcquireSRWLockExclusive((PSRWLOCK)&m->opaque) != 0;
}

void
pbp__mutex_unlock(pbp__mutex *m)
{
	ReleaseSRWLockExclusive((PSRWLOCK)&m->opaque);
}

/* ---- handles ----------------------------------------------------------------- */

int
pbp__os_close(pbp_os_handle *h)
{
	DWORD saved = GetLastError();
	int rc = 0;

	/* NULL is no handle either (what some calls return on failure). */
	if (*h != PBP_OS_HANDLE_INVALID && *h != NULL) {
		if (!CloseHandle(*h))
			rc = (int)GetLastError();
		*h = PBP_OS_HANDLE_INVALID;
	}
	SetLastError(saved);
	return rc;
}

uint64_t
pbp__os_handle_max(void)
{
	/* Handle values fit 32 bits on 64-bit Windows too (so that 32- and
	 * 64-bit processes can share them), so a handle string of a 64-bit
	 * parent also means something to a 32-bit child. */
	return 0xFFFFFFFFu;
}

pbp_os_handle
pbp__os_handle_from_u64(uint64_t v)
{
	return v > 0xFFFFFFFFu ? PBP_OS_HANDLE_INVALID : (pbp_os_handle)(uintptr_t)v;
}

DWORD
pbp__win_timeout(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return INFINITE;
	left = deadline - pbp__now_ms();
	return left <= 0 ? 0 : left > 1000000000 ? 1000000000 : (DWORD)left;
}

/* ---- texts --------------------------------------------------------------------- */

const char *
pbp__win_strerror(DWORD e, char *buf, size_t size)
{
	wchar_t w[256];
	DWORD n, i;
	int m = 0;

	if (size == 0)
		return buf;
	n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS |
	                   FORMAT_MESSAGE_MAX_WIDTH_MASK,
	                   NULL, e, 0, w, sizeof w / sizeof w[0], NULL);
	/* Windows ends its texts with ". " or ".\r\n": cut that, to read as
	 * strerror's do inside a longer message. */
	while (n > 0 && (w[n - 1] == L' ' || w[n - 1] == L'\r' || w[n - 1] == L'\n' ||
	                 w[n - 1] == L'.'))
		n--;
	/* Some texts name an insert they were not given ("%1 is not a valid
	 * Win32 application"): say "it" rather than "%1". */
	for (i = 0; i + 1 < n; i++) {
		if (w[i] == L'%' && w[i + 1] == L'1') {
			w[i] = L'i';
			w[i + 1] = L't';
		}
	}
	if (n > 0 && size > 16)
		m = WideCharToMultiByte(CP_UTF8, 0, w, (int)n, buf, (int)size - 16, NULL, NULL);
	snprintf(buf + m, size - (size_t)m, m > 0 ? " (error %lu)" : "error %lu",
	         (unsigned long)e);
	return buf;
}

wchar_t *
pbp__win_wide(const char *s, int *bad)
{
	int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
	wchar_t *w;

	if (bad != NULL)
		*bad = n <= 0;
	if (n <= 0 || (w = malloc((size_t)n * sizeof *w)) == NULL)
		return NULL;
	MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
	return w;
}

/* ---- ntdll --------------------------------------------------------------------- */

/* Two documented ntdll calls, looked up at run time so that no import
 * library beyond kernel32's is needed.  Both work under wine 8 (measured:
 * FileModeInformation says 0x20 for CreatePipe's handles and 0 for ones
 * opened with FILE_FLAG_OVERLAPPED; ObjectBasicInformation gives the
 * granted access, ObjectNameInformation "\Device\NamedPipe\<name>", the
 * same for both ends of a pipe, anonymous ones included). */
typedef LONG(NTAPI *query_file_fn)(HANDLE, IO_STATUS_BLOCK *, void *, ULONG, int);
typedef LONG(NTAPI *query_object_fn)(HANDLE, int, void *, ULONG, ULONG *);

#define FILE_MODE_INFORMATION 16 /* FILE_INFORMATION_CLASS FileModeInformation */
#define SYNC_IO_FLAGS 0x30u      /* FILE_SYNCHRONOUS_IO_ALERT | _NONALERT */

static FARPROC
ntdll(const char *name)
{
	HMODULE nt = GetModuleHandleW(L"ntdll.dll");

	return nt != NULL ? GetProcAddress(nt, name) : NULL;
}

int
pbp__win_is_overlapped(HANDLE h)
{
	static query_file_fn volatile fn;
	IO_STATUS_BLOCK iosb;
	ULONG mode = 0;

	if (fn == NULL)
		fn = (query_file_fn)(void (*)(void))ntdll("NtQueryInformationFile");
	if (fn == NULL || fn(h, &iosb, &mode, sizeof mode, FILE_MODE_INFORMATION) < 0)
		return -1;
	return (mode & SYNC_IO_FLAGS) == 0;
}

static query_object_fn
query_object(void)
{
	static query_object_fn volatile fn;

	if (fn == NULL)
		fn = (query_object_fn)(void (*)(void))ntdll("NtQueryObject");
	return fn;
}

ACCESS_MASK
pbp__win_granted_access(HANDLE h, int *ok)
{
	query_object_fn fn = query_object();
	PUBLIC_OBJECT_BASIC_INFORMATION obi;
	ULONG len = 0;

	memset(&obi, 0, sizeof obi);
	*ok = fn != NULL && fn(h, 0 /* ObjectBasicInformation */, &obi, sizeof obi, &len) >= 0;
	return *ok ? obi.GrantedAccess : 0;
}

int
pbp__win_object_id(HANDLE h, uint64_t id[2])
{
	static const wchar_t afd[] = L"\\Device\\Afd";
	query_object_fn fn = query_object();
	union {
		UNICODE_STRING u;
		char raw[2048];
	} name;
	ULONG len = 0, i, n;
	uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;

	id[0] = id[1] = 0;
	/* A name query on a synchronous file handle waits for the I/O in
	 * flight on it, if another thread is blocked reading it (the known
	 * hang of handle-listing tools); the child calls this at start, before
	 * anything reads its handles. */
	if (fn == NULL || fn(h, 1 /* ObjectNameInformation */, &name, sizeof name, &len) < 0 ||
	    name.u.Length == 0)
		return 0;
	n = name.u.Length / sizeof(WCHAR);
	/* Sockets say FILE_TYPE_PIPE too; all of them are named \Device\Afd. */
	if (n >= 11 && _wcsnicmp(name.u.Buffer, afd, 11) == 0)
		return 2;
	/* Two FNV-1a hashes with different bases: the id names the pipe
	 * (both its ends have one name), and 128 bits make a collision
	 * between two different pipes of one process negligible. */
	for (i = 0; i < n; i++) {
		a = (a ^ name.u.Buffer[i]) * 0x100000001b3ull;
		b = (b ^ name.u.Buffer[i]) * 0x100000001b3ull + i;
	}
	id[0] = a | 1; /* never both 0: that means "unknown" */
	id[1] = b;
	return 1;
}

void
pbp__win_object_type(HANDLE h, char *buf, size_t size)
{
	query_object_fn fn = query_object();
	union {
		UNICODE_STRING u;
		char raw[1024];
	} t;
	ULONG len = 0;
	int m = 0;

	if (fn != NULL && fn(h, 2 /* ObjectTypeInformation */, &t, sizeof t, &len) >= 0 &&
	    t.u.Length > 0 && size > 1)
		m = WideCharToMultiByte(CP_UTF8, 0, t.u.Buffer, t.u.Length / 2, buf, (int)size - 1,
		                        NULL, NULL);
	buf[m > 0 ? m : 0] = '\0';
}

/* ---- files ------------------------------------------------------------------- */

int
pbp__os_file_append_open(const char *path, pbp_os_handle *h, pbp_error *err)
{
	SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, FALSE }; /* not inheritable */
	char msg[160];
	wchar_t *w = pbp__win_wide(path, NULL);
	HANDLE t;
	DWORD e;

	if (w == NULL)
		return pbp__seterr(err, PBP_EINVAL, 0, "trace file '%s': not valid UTF-8 (or out of memory)",
		                   path);
	/* FILE_APPEND_DATA without FILE_WRITE_DATA: every write goes to the
	 * end of the file, atomically with respect to other appenders. */
	t = CreateFileW(w, FILE_APPEND_DATA | SYNCHRONIZE,
	                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa, OPEN_ALWAYS,
	                FILE_ATTRIBUTE_NORMAL, NULL);
	e = GetLastError();
	free(w);
	if (t == INVALID_HANDLE_VALUE)
		return pbp__seterr(err, PBP_ESYS, (int)e, "trace file '%s': %s", path,
		                   pbp__win_strerror(e, msg, sizeof msg));
	*h = t;
	return 0;
}

void
pbp__os_file_append(pbp_os_handle h, const pbp__piece *pieces, int n)
{
	char stack[4096], *buf = stack;
	size_t total = 0, off = 0;
	DWORD done;
	int i;

	for (i = 0; i < n; i++)
		total += pieces[i].n;
	if (total == 0 || total > 0xFFFFFFFFu)
		return;
	if (total > sizeof stack && (buf = malloc(total)) == NULL)
		return; /* best effort, as the header says */
	/* One WriteFile per record: with FILE_APPEND_DATA the record lands
	 * whole after whatever another process appended. */
	for (i = 0; i < n; i++) {
		if (pieces[i].n > 0)
			memcpy(buf + off, pieces[i].p, pieces[i].n);
		off += pieces[i].n;
	}
	(void)WriteFile(h, buf, (DWORD)total, &done, NULL);
	if (buf != stack)
		free(buf);
}

/* ---- exit status --------------------------------------------------------------- */

const char *
pbp__os_exit_status_str(const pbp_exit_status *st, char *buf, size_t size)
{
	if (buf == NULL || size == 0)
		return buf;
	/* Windows has no signals: a process always ends with an exit code
	 * (pbp__proc_kill's 128 + sig included). */
	if (st == NULL)
		snprintf(buf, size, "unknown");
	else if (st->unknown)
		snprintf(buf, size, "exit status unknown");
	else if (st->exited && st->code < 0)
		/* An NTSTATUS such as 0xC0000005 (access violation): the
		 * process died of an exception. */
		snprintf(buf, size, "exited with status 0x%08X", (unsigned)st->code);
	else if (st->exited)
		snprintf(buf, size, "exited with status %d", st->code);
	else if (st->signal != 0)
		snprintf(buf, size, "killed by signal %d", st->signal);
	else
		snprintf(buf, size, "still running");
	return buf;
}
