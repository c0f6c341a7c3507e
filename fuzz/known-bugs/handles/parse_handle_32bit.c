/*
 * Reproducer for a signed overflow in parse_handle() (lib/handles.c) where
 * long is 32 bits (the 32-bit child).  The loop below is the loop in
 * parse_handle() at the time of writing, copied because the function is
 * static.  Ten digits overflow a 32-bit long; with wrapping, "4294967299"
 * becomes 3 and passes the v > INT_MAX check, so the child would take fd 3.
 *
 *   gcc -m32 -fsanitize=undefined -fno-sanitize-recover=undefined \
 *       fuzz/known-bugs/handles/parse_handle_32bit.c -o /tmp/ph && /tmp/ph 4294967299
 *   -> runtime error: signed integer overflow (UBSan); without UBSan: fd=3
 *
 * Fix: accumulate in uint64_t (or check v > (INT_MAX - d) / 10 before each
 * step).
 */
#include <limits.h>
#include <stdio.h>

static int
parse(const char *s, int *fd)
{
	long v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (i == 0 || v > INT_MAX)
		return -1;
	*fd = (int)v;
	return 0;
}

int
main(int argc, char **argv)
{
	int fd = -1;
	int rc = parse(argc > 1 ? argv[1] : "4294967299", &fd);

	printf("sizeof(long)=%zu rc=%d fd=%d\n", sizeof(long), rc, fd);
	return rc == 0 && fd == 3;
}
