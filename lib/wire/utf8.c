/*
 * utf8.c: UTF-8 checks for the strings pbpipe puts on the wire.
 *
 * Goodbye.detail and Message.error_message are proto3 `string` fields, and
 * stock proto3 parsers (C++, Java, Python, protobufjs) reject a whole frame
 * whose strings are not valid UTF-8.  Everything pbpipe sends therefore goes
 * through pbp__utf8_copy(), which replaces what is not UTF-8 and never cuts
 * a character in two.  Pure: no allocation, no locale.
 */
#include <string.h>

#include "pbp_internal.h"

/* U+FFFD REPLACEMENT CHARACTER. */
static const char replacement[3] = { '\xef', '\xbf', '\xbd' };

/*
 * Length of the well-formed UTF-8 character that starts s[0..n) (n >= 1),
 * per the Unicode Standard, table 3-7 (no overlong forms, no surrogates
 * U+D800..U+DFFF, nothing over U+10FFFF), or 0 if there is none.  Then
 * *bad is the length of the maximal subpart of an ill-formed sequence
 * there (at least 1), which is what one U+FFFD replaces (Unicode 3.9,
 * "U+FFFD substitution of maximal subparts", as WHATWG's decoder does).
 */
static size_t
char_len(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned c = s[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c < 0x80)
		return 1;
	if (c < 0xc2) {
		*bad = 1;  /* a continuation byte, or an overlong C0/C1 lead */
		return 0;
	}
	if (c < 0xe0) {
		need = 1;
	} else if (c < 0xf0) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c < 0xf5) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* over U+10FFFF */
	} else {
		*bad = 1;
		return 0;
	}
	for (i = 1; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

size_t
pbp__utf8_copy(char *dst, size_t size, const char *src, size_t srclen)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t in = 0, out = 0;

	if (size == 0)
		return 0;
	while (in < srclen && s[in] != '\0') {
		size_t bad = 0, k = char_len(s + in, srclen - in, &bad);
		const char *piece = k != 0 ? src + in : replacement;
		size_t plen = k != 0 ? k : sizeof replacement;

		if (plen > size - 1 - out)
			break; /* never half a character */
		memcpy(dst + out, piece, plen);
		out += plen;
		in += k != 0 ? k : bad;
	}
	dst[out] = '\0';
	return out;
}

int
pbp__utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i = 0;

	while (i < n) {
		size_t bad, k = char_len(p + i, n - i, &bad);

		if (k == 0)
			return 0;
		i += k;
	}
	return 1;
}
