/*
 * errors.c: error strings and error records.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pbp_internal.h"

const char *
pbp_strerror(int code)
{
	switch (code) {
	case PBP_OK: return "success";
	case PBP_EOF: return "end of stream";
	case PBP_ETRUNC: return "truncated frame";
	case PBP_EPROTO: return "protocol error";
	case PBP_EMSGSIZE: return "frame too large";
	case PBP_EDECODE: return "message decode failed";
	case PBP_EENCODE: return "message encode failed";
	case PBP_ETIMEDOUT: return "timed out";
	case PBP_ESYS: return "system call failed";
	case PBP_ENOMEM: return "out of memory";
	case PBP_EINVAL: return "invalid argument";
	case PBP_EPIPE: return "peer gone";
	case PBP_ETYPE: return "unknown message type";
	case PBP_EEXEC: return "cannot execute child";
	case PBP_EAGAIN: return "would block";
	case PBP_EREMOTE: return "the peer reported an error";
	case PBP_EUNANSWERED: return "stream ended with calls unanswered";
	case PBP_ELIMIT: return "limit reached";
	case PBP_ECANCELED: return "the reader cancelled the stream";
	case PBP_ENOTSUP: return "the peer does not accept streams";
	case PBP_ELOST: return "the helper died with the call in flight";
	case PBP_EDOWN: return "every helper of the pool is down";
	default: return "unknown error";
	}
}

int
pbp__seterr(pbp_error *err, int code, int sys_errno, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	err->sys_errno = sys_errno;
	err->remote_code = 0;
	va_start(ap, fmt);
	/* glibc's vsnprintf does not allocate for the plain %s/%d/%u/%x
	 * conversions used here, so this works when memory is exhausted. */
	if (vsnprintf(err->msg, sizeof err->msg, fmt, ap) < 0)
		strcpy(err->msg, pbp_strerror(code));
	va_end(ap);
	return code;
}

int
pbp__seterr_str(pbp_error *err, int code, const char *msg)
{
	size_t n = strlen(msg);

	if (err == NULL)
		return code;
	err->code = code;
	err->sys_errno = 0;
	err->remote_code = 0;
	if (n >= sizeof err->msg)
		n = sizeof err->msg - 1;
	memcpy(err->msg, msg, n);
	err->msg[n] = '\0';
	return code;
}
