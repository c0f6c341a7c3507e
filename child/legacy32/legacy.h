/*
 * legacy.h: "ledger98", a stand-in for a vendor library that exists only as
 * 32-bit x86 code, which is why pbpipe exists (README "A 32-bit helper").
 * Its interface bakes in the i386 ABI, as such libraries do:
 *
 *   - `long` is 32 bits, and ledger_checksum() rotates an unsigned long
 *     as if it were 32 bits: the same source built 64-bit computes other
 *     checksums, which no longer match the ones in existing files;
 *   - a record is the raw bytes of struct ledger_record: 20 bytes on i386,
 *     32 on x86-64 (two 8-byte longs and padding).
 *
 * legacy.c refuses to compile for anything but a 32-bit target.
 */
#ifndef LEGACY_LEDGER_H
#define LEGACY_LEDGER_H

#include <stddef.h>

#define LEDGER_VERSION "ledger98 3.1 (i386)"
#define LEDGER_NAME_MAX 12

/* Errors: negative return values. */
#define LEDGER_ESPACE (-1) /* the output buffer is too small */
#define LEDGER_ENAME (-2)  /* the name does not fit a record */

/* One account, as stored on disk. */
struct ledger_record {
	long id;
	long balance;                /* in cents */
	char name[LEDGER_NAME_MAX];  /* NUL-padded; NUL-terminated if shorter */
};

/* The vendor's checksum of len bytes: rotate-and-xor in an unsigned long. */
unsigned long ledger_checksum(const void *buf, unsigned long len);

/* Writes the record for (id, balance, name) into out: its size, or
 * LEDGER_ESPACE or LEDGER_ENAME. */
int ledger_pack(unsigned char *out, size_t size, long id, long balance, const char *name);

/* A fixed description of an error code. */
const char *ledger_strerror(int code);

#endif /* LEGACY_LEDGER_H */
