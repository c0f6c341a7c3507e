/*
 * watch.c: the Windows platform's watch on a helper's parent (os.h:
 * pbp__os_watch_*).  Nothing to start: pbp_child_spawn() puts every child
 * in a Job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE before it runs
 * a single instruction (CREATE_SUSPENDED, AssignProcessToJobObject,
 * ResumeThread), and the parent holds the only handle to the job.
 * However the parent ends, TerminateProcess included, Windows closes that
 * handle and the job kills the helper and everything it started (about
 * 1 ms under wine; tests/win/test_spawn.c,
 * killing_the_parent_kills_the_helper).  There is no window before the
 * watch is armed, so nothing is recorded either: the pid is 0, which
 * turns off the handshake's start-of-life check (wire/handshake.c).
 *
 * Not done: a thread waiting on the parent's process handle.  Windows has
 * no getppid(); the parent's pid from the environment could name a
 * recycled pid by the time the helper opened it.  Where no job could be
 * made (Windows 7 inside a CI service's job: see proc.c) the helper is
 * not watched; docs/windows.md says so.
 */
#include <stdlib.h>

#include "win32.h"

struct pbp__os_watch {
	int unused;
};

int
pbp__os_watch_start(pbp__os_watch **out, pbp_error *err)
{
	pbp__os_watch *w = calloc(1, sizeof *w);

	if (w == NULL)
		return pbp__seterr(err, PBP_ENOMEM, 0, "out of memory watching the parent");
	*out = w;
	return 0;
}

int
pbp__os_pid_gone(uint32_t pid)
{
	(void)pid; /* never asked: no start-of-life race on Windows */
	return 0;
}

uint32_t
pbp__os_watch_ppid(const pbp__os_watch *w)
{
	(void)w;
	return 0;
}

void
pbp__os_watch_stop(pbp__os_watch *w)
{
	free(w);
}
