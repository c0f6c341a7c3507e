/*
 * handles.c: the child side's check of a handle named on its command line
 * (os.h: pbp__os_handle_check): open, a pipe, open in the right direction,
 * and which pipe it is, so that the portable code can refuse one pipe for
 * both directions.
 *
 * What is asked, and how it behaved under wine 8 (measured; Windows
 * documents the same): GetHandleInformation fails for a value that names
 * no handle; GetFileType says FILE_TYPE_PIPE for CreatePipe's and named
 * pipes' ends alike (and for sockets), FILE_TYPE_DISK for files,
 * FILE_TYPE_CHAR for NUL and consoles, FILE_TYPE_UNKNOWN with an error
 * for other objects (an event: then NtQueryObject names its type);
 * NtQueryObject(ObjectBasicInformation) gives the access granted, where
 * FILE_READ_DATA (1) and FILE_WRITE_DATA (2) say the direction
 * (CreatePipe's read end 0x120189, its write end 0x120196); and
 * NtQueryObject(ObjectNameInformation) names the pipe, the same name for
 * both its ends ("\Device\NamedPipe\Win32.Pipes.<pid>.<n>" for CreatePipe's
 * under wine).  GetFileInformationByHandleEx(FileIdInfo) does not work on
 * pipes (ERROR_INVALID_FUNCTION), so the pipe's id is a hash of that
 * name.
 */
#include <stdio.h>
#include <string.h>

#include "win32.h"

static const char *
describe(HANDLE h, DWORD type, char *buf, size_t size)
{
	char t[64];

	switch (type) {
	case FILE_TYPE_DISK:
		return "a disk file";
	case FILE_TYPE_CHAR:
		return "a console or character device";
	case FILE_TYPE_REMOTE:
		return "a remote file";
	default:
		pbp__win_object_type(h, t, sizeof t);
		if (t[0] == '\0')
			return "of unknown type";
		snprintf(buf, size, "not a file but a '%s' object", t);
		return buf;
	}
}

int
pbp__os_handle_check(pbp_os_handle h, int for_write, const char *role, const char *quoted,
                     pbp__handle_info *info, pbp_error *err)
{
	char msg[160], what[96];
	DWORD flags = 0, type, e;
	ACCESS_MASK access;
	int known, kind, r, w;

	memset(info, 0, sizeof *info);
	if (h == NULL || h == INVALID_HANDLE_VALUE || !GetHandleInformation(h, &flags)) {
		e = h == NULL || h == INVALID_HANDLE_VALUE ? ERROR_INVALID_HANDLE : GetLastError();
		return pbp__seterr(err, PBP_EINVAL, (int)e, "%s handle %s is not an open handle (%s)",
		                   role, quoted, pbp__win_strerror(e, msg, sizeof msg));
	}
	type = GetFileType(h);
	if (type != FILE_TYPE_PIPE)
		return pbp__seterr(err, PBP_EINVAL, 0, "%s handle %s is %s; it must be a pipe", role,
		                   quoted, describe(h, type, what, sizeof what));
	kind = pbp__win_object_id(h, info->id);
	access = pbp__win_granted_access(h, &known);
	if (!known)
		return 0; /* no ntdll answer: ReadFile or WriteFile will say */
	r = (access & FILE_READ_DATA) != 0;
	w = (access & FILE_WRITE_DATA) != 0;
	if (for_write && !w)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   r ? "%s handle %s is open for reading only (handles in the wrong order?)"
		                     : "%s handle %s is not open for writing",
		                   role, quoted);
	if (!for_write && !r)
		return pbp__seterr(err, PBP_EINVAL, 0,
		                   w ? "%s handle %s is open for writing only (handles in the wrong order?)"
		                     : "%s handle %s is not open for reading",
		                   role, quoted);
	/* A socket, or a duplex named pipe's end: one handle carries both
	 * directions, as a POSIX stream socket does. */
	info->duplex = kind == 2 || (r && w);
	return 0;
}
