/*
 * fuzz_common.h: shared by the fuzz harnesses, the standalone replay driver
 * and the corpus generator.  Not part of the library.
 */
#ifndef PBP_FUZZ_COMMON_H
#define PBP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The libFuzzer entry point, which every harness defines.  libFuzzer calls
 * it with each input; the standalone driver calls it with each corpus
 * file.  It returns 0 and aborts when an invariant does not hold. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks an invariant; on failure prints where and why, then aborts, which
 * libFuzzer reports as a crash (and saves the input) and which fails a
 * replay test.  Never compiled out, unlike assert(). */
#define FUZZ_CHECK(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: invariant failed: %s: ",      \
			        __FILE__, __LINE__, #cond);                   \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
			abort();                                              \
		}                                                             \
	} while (0)

#endif /* PBP_FUZZ_COMMON_H */
