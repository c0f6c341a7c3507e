/*
 * aux.c: the auxiliary input of os.h, a child's captured stderr, read in
 * the background of every wait: its own overlapped read and event, which
 * the transport (io.c) and pbp__proc_wait (proc.c) add to the handles
 * they wait on, and a lock so that the two threads of a duplex channel can
 * both pump it; the sink then sees the bytes in stream order, one call at
 * a time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#define AUX_CAP 16384u

struct pbp__os_aux {
	HANDLE h;
	HANDLE ev;          /* ov.hEvent, manual reset */
	OVERLAPPED ov;
	int ovl;            /* h was opened for overlapped I/O */
	int pending;        /* a read is in flight */
	volatile LONG done; /* its end was seen (and the sink told) */
	pbp__mutex lock;    /* everything above but done, and the sink calls */
	pbp__aux_sink sink;
	void *arg;
	char buf[AUX_CAP];
};

int
pbp__os_aux_open(pbp__os_aux **out, pbp_os_handle h, pbp__aux_sink sink, void *arg,
                 pbp_error *err)
{
	pbp__os_aux *a = calloc(1, sizeof *a);

	if (a == NULL || (a->ev = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL) {
		DWORD e = GetLastError();

		free(a);
		pbp__os_close(&h);
		return a == NULL ? pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory")
		                 : pbp__seterr(err, PBP_ESYS, (int)e, "CreateEvent failed (error %lu)",
		                               (unsigned long)e);
	}
	(void)SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
	a->h = h;
	/* Spawn makes our end overlapped; any other handle is read only as
	 * far as PeekNamedPipe says, whenever a wait wakes or a drain asks. */
	a->ovl = pbp__win_is_overlapped(h) == 1;
	a->sink = sink;
	a->arg = arg;
	(void)pbp__mutex_init(&a->lock);
	*out = a;
	return 0;
}

/* The end: the writer closed (or reading failed, which ends it too: the
 * tail is diagnostics, not data).  The sink hears it once. */
static void
ended(pbp__os_aux *a)
{
	a->pending = 0;
	InterlockedExchange(&a->done, 1);
	a->sink(a->arg, NULL, 0);
}

/* One bufferful from a synchronous handle, without blocking: 1 if more
 * may follow. */
static int
pump_sync(pbp__os_aux *a)
{
	DWORD avail = 0, n = 0;

	if (!PeekNamedPipe(a->h, NULL, 0, NULL, &avail, NULL)) {
		ended(a);
		return 0;
	}
	if (avail == 0)
		return 0;
	if (!ReadFile(a->h, a->buf, avail < AUX_CAP ? avail : AUX_CAP, &n, NULL)) {
		ended(a);
		return 0;
	}
	if (n > 0)
		a->sink(a->arg, a->buf, n);
	return 1;
}

/* Under the lock: finishes the read in flight and starts the next, for as
 * long as reads complete at once.  1 if another round could make
 * progress. */
static int
pump_step(pbp__os_aux *a)
{
	DWORD n = 0, e;

	if (!a->ovl)
		return pump_sync(a);
	if (!a->pending) {
		memset(&a->ov, 0, sizeof a->ov);
		a->ov.hEvent = a->ev;
		if (!ReadFile(a->h, a->buf, AUX_CAP, NULL, &a->ov) &&
		    GetLastError() != ERROR_IO_PENDING) {
			ended(a);
			return 0;
		}
		a->pending = 1;
	}
	if (GetOverlappedResult(a->h, &a->ov, &n, FALSE)) {
		a->pending = 0;
		if (n > 0)
			a->sink(a->arg, a->buf, n);
		return 1;
	}
	e = GetLastError();
	if (e == ERROR_IO_INCOMPLETE)
		return 0;
	if (e == ERROR_MORE_DATA) {
		a->pending = 0;
		a->sink(a->arg, a->buf, n);
		return 1;
	}
	if (e == ERROR_OPERATION_ABORTED) { /* cancelled by someone else */
		a->pending = 0;
		return 1;
	}
	ended(a);
	return 0;
}

int
pbp__win_aux_pump(pbp__os_aux *a)
{
	if (a == NULL || a->done)
		return 0;
	/* Blocking, not trylock: a thread woken by the event waits here while
	 * the other one handles the completion (it restarts the read, which
	 * resets the event), rather than spinning on a signalled event. */
	pbp__mutex_lock(&a->lock);
	while (!a->done && pump_step(a))
		;
	pbp__mutex_unlock(&a->lock);
	return !a->done;
}

HANDLE
pbp__win_aux_event(pbp__os_aux *a)
{
	/* Once the end was seen the event stays signalled: waiting on it
	 * then would spin.  NULL (no aux, as for pbp__os_aux_drain): none. */
	return a == NULL || a->done || !a->ovl ? NULL : a->ev;
}

/* NULL is "no captured stderr": nothing to read, as on POSIX. */
int
pbp__os_aux_drain(pbp__os_aux *a)
{
	return pbp__win_aux_pump(a);
}

void
pbp__os_aux_drain_until(pbp__os_aux *a, int64_t deadline)
{
	while (pbp__win_aux_pump(a)) {
		HANDLE ev = pbp__win_aux_event(a);
		DWORD timeout = pbp__win_timeout(deadline);

		if (timeout == 0)
			return;
		if (ev == NULL) /* a synchronous handle: look every 10 ms */
			Sleep(timeout < 10 ? timeout : 10);
		else if (WaitForSingleObject(ev, timeout) == WAIT_FAILED)
			return;
	}
}

void
pbp__os_aux_free(pbp__os_aux *a)
{
	DWORD n;

	if (a == NULL)
		return;
	/* The system may still write into buf: cancel, then wait for it. */
	if (a->pending) {
		(void)CancelIoEx(a->h, &a->ov);
		(void)GetOverlappedResult(a->h, &a->ov, &n, TRUE);
	}
	pbp__os_close(&a->h);
	CloseHandle(a->ev);
	pbp__mutex_destroy(&a->lock);
	free(a);
}
