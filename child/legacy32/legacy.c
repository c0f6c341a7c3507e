/*
 * legacy.c: the "ledger98" library (legacy.h).  32-bit only, like the
 * library it stands for.
 */
#include <stdint.h>
#include <string.h>

#include "legacy.h"

#if UINTPTR_MAX != 0xffffffffu
#error "legacy library: 32-bit only"
#endif

unsigned long
ledger_checksum(const void *buf, unsigned long len)
{
	const unsigned char *p = buf;
	unsigned long h = 5381;

	/* Rotate left by 5, then mix in the byte.  The rotation is one only
	 * because unsigned long is 32 bits: built 64-bit, the same line keeps
	 * the high bits and (h >> 27) feeds them back into the low ones. */
	while (len-- > 0)
		h = ((h << 5) | (h >> 27)) ^ *p++;
	return h;
}

int
ledger_pack(unsigned char *out, size_t size, long id, long balance, const char *name)
{
	struct ledger_record r;
	size_t n = strlen(name);

	if (n > LEDGER_NAME_MAX)
		return LEDGER_ENAME;
	if (size < sizeof r)
		return LEDGER_ESPACE;
	memset(&r, 0, sizeof r);
	r.id = id;
	r.balance = balance;
	memcpy(r.name, name, n);
	memcpy(out, &r, sizeof r);
	return (int)sizeof r;
}

const char *
ledger_strerror(int code)
{
	switch (code) {
	case LEDGER_ESPACE:
		return "buffer too small";
	case LEDGER_ENAME:
		return "name too long";
	default:
		return "unknown error";
	}
}
