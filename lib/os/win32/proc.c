/*
 * proc.c: the parent side of spawning on Windows: the pipes, CreateProcessW
 * with exactly the handles the child should inherit, a Job object that
 * ends the child with us, waiting with a deadline, TerminateProcess.
 *
 * The parent's pipe ends are uniquely named pipes opened for overlapped
 * I/O (anonymous pipes have none, so no deadlines), the way libuv and
 * CPython's multiprocessing make theirs.  The child's two channel ends are
 * opened overlapped as well, so that a pbpipe child gets deadlines too
 * (io.c detects the mode, so a child handed CreatePipe's handles works as
 * well); its stderr end for PBP_STDIO_CAPTURE is synchronous, because a C
 * runtime writes its stdio handles with plain WriteFile.
 *
 * Inheritance.  Every handle here is created non-inheritable, so no
 * process that another thread spawns can inherit one.  The only exception
 * is a window of a few system calls in start(): the child's handles are
 * made inheritable, CreateProcessW runs with a
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST naming just them, and they are closed
 * right after.  A process that another thread starts inside that window
 * with bInheritHandles = TRUE and no handle list of its own would inherit
 * them too; no Windows API closes that window (every careful spawner,
 * ours included, passes a handle list, which is not affected).
 */
#define _CRT_RAND_S /* rand_s, before stdlib.h */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "win32.h"

#define PIPE_BUF_SIZE 65536u

struct pbp__proc {
	HANDLE process;
	HANDLE job;      /* NULL if the child could not be put in one */
	DWORD pid;
	int group;       /* PBP_SPAWN_PROCESS_GROUP: kill terminates the job */
	int reaped;      /* its exit code is in status */
	pbp_exit_status status;
};

static int
sys_error(pbp_error *err, const char *what, DWORD e)
{
	char msg[160];

	return pbp__seterr(err, PBP_ESYS, (int)e, "%s: %s", what,
	                   pbp__win_strerror(e, msg, sizeof msg));
}

/* ---- pipes ------------------------------------------------------------------- */

/*
 * A pipe whose server end (*srv, ours, overlapped) reads what the child
 * writes (child_writes) or writes what it reads, and whose client end
 * (*cli, the child's) is opened at once: the pipe has one instance, so
 * once we hold the client end no other process can connect, and
 * FILE_FLAG_FIRST_PIPE_INSTANCE makes CreateNamedPipeW fail rather than
 * join a pipe someone else created under our name first.  The name is
 * unique anyway (pid, counter, 64 random bits); a clash is retried.
 */
static int
make_pipe(int child_writes, int cli_overlapped, HANDLE *srv, HANDLE *cli, pbp_error *err)
{
	static volatile LONG counter;
	wchar_t name[96];
	int tries;

	for (tries = 0; tries < 8; tries++) {
		unsigned int r1 = 0, r2 = 0;
		DWORD e;

		if (rand_s(&r1) != 0 || rand_s(&r2) != 0)
			r1 = (unsigned)pbp__now_ns(), r2 = (unsigned)GetTickCount();
		swprintf(name, sizeof name / sizeof name[0], L"\\\\.\\pipe\\pbpipe-%lu-%ld-%08x%08x",
		         (unsigned long)GetCurrentProcessId(), (long)InterlockedIncrement(&counter),
		         r1, r2);
		*srv = CreateNamedPipeW(name,
		                        (child_writes ? PIPE_ACCESS_INBOUND : PIPE_ACCESS_OUTBOUND) |
		                                FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
		                        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT |
		                                PIPE_REJECT_REMOTE_CLIENTS,
		                        1, PIPE_BUF_SIZE, PIPE_BUF_SIZE, 0, NULL /* not inheritable */);
		if (*srv == INVALID_HANDLE_VALUE) {
			e = GetLastError();
			if (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)
				continue; /* the name is taken */
			return sys_error(err, "CreateNamedPipeW", e);
		}
		/* The access CreatePipe gives its ends: data one way, and the
		 * attributes the other (SetNamedPipeHandleState, queries). */
		*cli = CreateFileW(name,
		                   child_writes ? GENERIC_WRITE | FILE_READ_ATTRIBUTES
		                                : GENERIC_READ | FILE_WRITE_ATTRIBUTES,
		                   0, NULL /* not inheritable */, OPEN_EXISTING,
		                   cli_overlapped ? FILE_FLAG_OVERLAPPED : 0, NULL);
		e = GetLastError();
		if (*cli != INVALID_HANDLE_VALUE &&
		    (ConnectNamedPipe(*srv, NULL) || (e = GetLastError()) == ERROR_PIPE_CONNECTED))
			return 0;
		/* Another process connected first (ERROR_PIPE_BUSY): try a
		 * new pipe. */
		pbp__os_close(cli);
		pbp__os_close(srv);
		if (e != ERROR_PIPE_BUSY)
			return sys_error(err, "opening the child's end of a new pipe", e);
	}
	return pbp__seterr(err, PBP_ESYS, ERROR_PIPE_BUSY,
	                   "could not create a pipe with a unique name in 8 tries");
}

/* ---- the child's stdio ------------------------------------------------------- */

/* A non-inheritable copy of our standard handle n, or NULL if we have
 * none (a GUI program) or it cannot be copied: the child then has none
 * either. */
static HANDLE
dup_std(DWORD n)
{
	HANDLE h = GetStdHandle(n), d = NULL;

	if (h == NULL || h == INVALID_HANDLE_VALUE ||
	    !DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &d, 0, FALSE,
	                     DUPLICATE_SAME_ACCESS))
		return NULL;
	return d;
}

static HANDLE
open_nul(void)
{
	HANDLE h = CreateFileW(L"NUL", GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
	                       OPEN_EXISTING, 0, NULL);

	return h == INVALID_HANDLE_VALUE ? NULL : h;
}

/* ---- starting ------------------------------------------------------------------ */

/* The handles the child inherits, all created non-inheritable, all ours
 * to close: its two channel ends and its stdio. */
enum { H_W, H_R, H_IN, H_OUT, H_ERR, H_N };

typedef struct launch {
	wchar_t *program, *cmdline, *env, *cwd;
	HANDLE h[H_N];
} launch;

/* Before Windows 8 console handles are not kernel handles but values
 * with the low two bits set: they cannot be made inheritable or listed in
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST (CreateProcessW would fail), and a
 * console child gets them through STARTUPINFO alone.  CPython's
 * subprocess filters them out the same way. */
static int
legacy_console(HANDLE h)
{
	return ((uintptr_t)h & 3) == 3 && GetFileType(h) == FILE_TYPE_CHAR;
}

/*
 * CreateProcessW, suspended, inheriting exactly l->h (the rules of
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST, followed to the letter since wine
 * does not check them: only inheritable handles, no duplicates, no pseudo
 * handles, bInheritHandles TRUE).  The handles are made inheritable here,
 * just before, and the caller closes them just after: the window the top
 * of this file describes.
 */
static int
start(launch *l, const char *path, PROCESS_INFORMATION *pi, pbp_error *err)
{
	STARTUPINFOEXW si;
	HANDLE list[H_N];
	SIZE_T size = 0;
	DWORD n = 0, e, i;
	BOOL ok;

	for (i = 0; i < H_N; i++) {
		if (l->h[i] == NULL || legacy_console(l->h[i]))
			continue;
		if (!SetHandleInformation(l->h[i], HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT))
			return sys_error(err, "SetHandleInformation(HANDLE_FLAG_INHERIT)", GetLastError());
		list[n++] = l->h[i];
	}
	memset(&si, 0, sizeof si);
	si.StartupInfo.cb = sizeof si;
	si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
	si.StartupInfo.hStdInput = l->h[H_IN];
	si.StartupInfo.hStdOutput = l->h[H_OUT];
	si.StartupInfo.hStdError = l->h[H_ERR];
	(void)InitializeProcThreadAttributeList(NULL, 1, 0, &size);
	if (size == 0 || (si.lpAttributeList = malloc(size)) == NULL)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	if (!InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size)) {
		e = GetLastError();
		free(si.lpAttributeList);
		return sys_error(err, "InitializeProcThreadAttributeList", e);
	}
	ok = UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
	                               list, n * sizeof list[0], NULL, NULL);
	e = GetLastError();
	if (ok) {
		ok = CreateProcessW(l->program, l->cmdline, NULL, NULL, TRUE,
		                    CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT |
		                            EXTENDED_STARTUPINFO_PRESENT,
		                    l->env, l->cwd, &si.StartupInfo, pi);
		e = GetLastError();
		if (!ok) {
			char msg[160];

			/* Not found, not a program, a bad cwd: all say
			 * that the child cannot be executed, as posix_spawn
			 * failing does. */
			pbp__seterr(err, PBP_EEXEC, (int)e, "cannot execute '%s': %s", path,
			            pbp__win_strerror(e, msg, sizeof msg));
		}
	} else {
		sys_error(err, "UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_HANDLE_LIST)", e);
	}
	DeleteProcThreadAttributeList(si.lpAttributeList);
	free(si.lpAttributeList);
	return ok ? 0 : err != NULL ? err->code : PBP_EEXEC;
}

/* A Job object that kills what is in it when its last handle closes:
 * ours, so the child (and its children) die with us, however we end. */
static HANDLE
make_job(void)
{
	JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
	HANDLE job = CreateJobObjectW(NULL, NULL); /* not inheritable */

	if (job == NULL)
		return NULL;
	memset(&li, 0, sizeof li);
	li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
	if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &li, sizeof li)) {
		CloseHandle(job);
		return NULL;
	}
	return job;
}

/* Puts the suspended child in the job and lets it run.  Without a job
 * (Windows 7 cannot nest one inside the job a CI service may run us in:
 * AssignProcessToJobObject says ERROR_ACCESS_DENIED) the child runs
 * anyway; it then outlives a parent that dies without pbp_child_free. */
static int
run(pbp__proc *p, PROCESS_INFORMATION *pi, pbp_error *err)
{
	DWORD e;

	p->job = make_job();
	if (p->job != NULL && !AssignProcessToJobObject(p->job, pi->hProcess))
		pbp__os_close(&p->job);
	if (ResumeThread(pi->hThread) == (DWORD)-1) {
		e = GetLastError();
		TerminateProcess(pi->hProcess, 1);
		WaitForSingleObject(pi->hProcess, INFINITE);
		return sys_error(err, "ResumeThread", e);
	}
	return 0;
}

static int
prepare(launch *l, const pbp__spawn_req *rq, HANDLE *srv, pbp_error *err)
{
	int rc, bad = 0;

	if ((rc = pbp__win_program(&l->program, rq->path, err)) != 0 ||
	    (rc = make_pipe(1, 1, &srv[0], &l->h[H_W], err)) != 0 ||
	    (rc = make_pipe(0, 1, &srv[1], &l->h[H_R], err)) != 0 ||
	    (rq->stderr_mode == PBP_STDIO_CAPTURE &&
	     (rc = make_pipe(1, 0, &srv[2], &l->h[H_ERR], err)) != 0))
		return rc;
	l->h[H_IN] = dup_std(STD_INPUT_HANDLE);
	l->h[H_OUT] = rq->stdout_mode == PBP_STDIO_DEVNULL ? open_nul() : dup_std(STD_OUTPUT_HANDLE);
	if (rq->stderr_mode == PBP_STDIO_DEVNULL)
		l->h[H_ERR] = open_nul();
	else if (rq->stderr_mode != PBP_STDIO_CAPTURE)
		l->h[H_ERR] = dup_std(STD_ERROR_HANDLE);
	if ((rc = pbp__win_cmdline(&l->cmdline, rq->path, rq->argv, l->h[H_W], l->h[H_R], err)) != 0 ||
	    (rc = pbp__win_envblock(&l->env, rq->envp, err)) != 0)
		return rc;
	if (rq->cwd != NULL && (l->cwd = pbp__win_wide(rq->cwd, &bad)) == NULL)
		return bad ? pbp__seterr(err, PBP_EINVAL, 0, "cwd '%s' is not valid UTF-8", rq->cwd)
		           : pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	return 0;
}

int
pbp__proc_spawn(pbp__proc **out, const pbp__spawn_req *rq, pbp_os_handle *rd,
                pbp_os_handle *wr, pbp_os_handle *errrd, pbp_error *err)
{
	/* srv: our ends: what the child writes, what it reads, its stderr. */
	HANDLE srv[3] = { INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE };
	PROCESS_INFORMATION pi;
	launch l;
	pbp__proc *p;
	int rc, i;

	if (rq->path == NULL || rq->path[0] == '\0')
		return pbp__seterr(err, PBP_EINVAL, 0, "empty path");
	if ((rq->stdout_mode != PBP_STDIO_INHERIT && rq->stdout_mode != PBP_STDIO_DEVNULL) ||
	    rq->stderr_mode < PBP_STDIO_INHERIT || rq->stderr_mode > PBP_STDIO_CAPTURE)
		return pbp__seterr(err, PBP_EINVAL, 0, "bad stdout_mode %d or stderr_mode %d",
		                   rq->stdout_mode, rq->stderr_mode);
	if ((p = calloc(1, sizeof *p)) == NULL)
		return pbp__seterr(err, PBP_ENOMEM, ENOMEM, "out of memory");
	memset(&l, 0, sizeof l);
	memset(&pi, 0, sizeof pi);
	p->group = rq->new_group != 0;
	rc = prepare(&l, rq, srv, err);
	if (rc == 0)
		rc = start(&l, rq->path, &pi, err);
	/* Our copies of the child's ends go on every path: while one stays
	 * open here, we would never see end of stream from the child. */
	for (i = 0; i < H_N; i++)
		if (l.h[i] != NULL)
			pbp__os_close(&l.h[i]);
	free(l.program);
	free(l.cmdline);
	free(l.env);
	free(l.cwd);
	if (rc == 0) {
		rc = run(p, &pi, err);
		CloseHandle(pi.hThread);
		if (rc != 0)
			CloseHandle(pi.hProcess);
	}
	if (rc != 0) {
		for (i = 0; i < 3; i++)
			pbp__os_close(&srv[i]);
		pbp__os_close(&p->job);
		free(p);
		return rc;
	}
	p->process = pi.hProcess;
	p->pid = pi.dwProcessId;
	*rd = srv[0];
	*wr = srv[1];
	*errrd = srv[2];
	*out = p;
	return 0;
}

/* ---- the child's life ---------------------------------------------------------- */

pbp_pid
pbp__proc_pid(const pbp__proc *p)
{
	return p->pid;
}

int
pbp__proc_owned(const pbp__proc *p)
{
	(void)p; /* no fork() here: the spawner is always the owner */
	return 1;
}

pbp_os_handle
pbp__proc_exit_handle(const pbp__proc *p)
{
	return p->process != NULL ? (pbp_os_handle)p->process : PBP_OS_HANDLE_INVALID;
}

/* The child is gone: its exit code, and the last of its stderr. */
static void
gone(pbp__proc *p, pbp__os_aux *aux)
{
	DWORD code = 0;

	memset(&p->status, 0, sizeof p->status);
	if (GetExitCodeProcess(p->process, &code)) {
		p->status.exited = 1;
		p->status.code = (int)code;
	} else {
		p->status.unknown = 1;
	}
	p->reaped = 1;
	if (aux != NULL)
		(void)pbp__win_aux_pump(aux);
}

int
pbp__proc_wait(pbp__proc *p, pbp__os_aux *aux, pbp__os_io *discard, int64_t deadline,
               pbp_exit_status *st, pbp_error *err)
{
	for (;;) {
		HANDLE evs[3], ev;
		DWORD n = 0, rc, timeout;

		if (p->reaped) {
			*st = p->status;
			return 0;
		}
		/* The process first: WaitForMultipleObjects reports the
		 * lowest signalled index. */
		evs[n++] = p->process;
		if (aux != NULL && pbp__win_aux_pump(aux) && (ev = pbp__win_aux_event(aux)) != NULL)
			evs[n++] = ev;
		if (discard != NULL && (ev = pbp__win_io_discard(discard)) != NULL)
			evs[n++] = ev;
		timeout = pbp__win_timeout(deadline);
		rc = WaitForMultipleObjects(n, evs, FALSE, timeout);
		if (rc == WAIT_OBJECT_0) {
			gone(p, aux);
		} else if (rc == WAIT_TIMEOUT && timeout == 0) {
			return PBP_ETIMEDOUT; /* err left alone: the caller words it */
		} else if (rc == WAIT_FAILED) {
			return sys_error(err, "waiting for the child", GetLastError());
		}
	}
}

int
pbp__proc_kill(pbp__proc *p, int sig, pbp_error *err)
{
	char msg[160];
	DWORD e;

	/* As kill(): 0 only checks, and a number no signal has is EINVAL
	 * (128 + sig must stay a plain exit code). */
	if (sig < 0 || sig > 127)
		return pbp__seterr(err, PBP_ESYS, EINVAL, "signal %d to child pid %lu: Invalid argument",
		                   sig, (unsigned long)p->pid);
	if (sig == 0 || p->reaped || WaitForSingleObject(p->process, 0) == WAIT_OBJECT_0)
		return 0;
	/* No signals on Windows: the exit code says which one was meant, as
	 * a POSIX shell reports a death by signal (128 + sig).  The job holds
	 * the child and everything it started (PBP_SPAWN_PROCESS_GROUP); it
	 * is ours alone, and cannot outlive our handle to it. */
	if (p->group && p->job != NULL && TerminateJobObject(p->job, 128u + (unsigned)sig))
		return 0;
	if (TerminateProcess(p->process, 128u + (unsigned)sig))
		return 0;
	e = GetLastError();
	/* ERROR_ACCESS_DENIED while it is already exiting. */
	if (WaitForSingleObject(p->process, 0) == WAIT_OBJECT_0)
		return 0;
	return pbp__seterr(err, PBP_ESYS, (int)e, "signal %d to child pid %lu: %s", sig,
	                   (unsigned long)p->pid, pbp__win_strerror(e, msg, sizeof msg));
}

int
pbp__os_sigterm(void)
{
	return 15;
}

int
pbp__os_sigkill(void)
{
	return 9;
}

void
pbp__proc_free(pbp__proc *p)
{
	if (p == NULL)
		return;
	/* Closing the job kills whatever still runs in it
	 * (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE): the child and its children.
	 * That is what we want here, though os.h says free "does not kill":
	 * the portable code frees a proc only once the child is gone, or from
	 * pbp_child_free, which kills it anyway. */
	pbp__os_close(&p->job);
	pbp__os_close(&p->process);
	free(p);
}
