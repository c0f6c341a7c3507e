/*
 * support.h: helpers shared by pbpipe's Criterion tests.
 */
#ifndef PBPTEST_SUPPORT_H
#define PBPTEST_SUPPORT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <pbpipe/pbpipe.h>

#include "pbp_internal.h"
#include "pbptest.pb.h"
#include "pbptest_fingerprint.h"

/* Every registered test type. */
extern const pbp_msgtype pbt_types[];
extern const size_t pbt_ntypes;

/* A union big enough for any registered type. */
typedef union pbt_any {
	pbptest_Text text;
	pbptest_Numbers numbers;
	pbptest_Blob blob;
	pbptest_Empty empty;
} pbt_any;

/* True when scripts/test runs the suite under valgrind (PBPTEST_VALGRIND
 * set): children start ten times slower, and valgrind's exec of a traced
 * child succeeds even for a file that is not executable. */
int pbt_valgrind(void);
/* A deadline in ms for something a real child must do, scaled under
 * valgrind. */
int pbt_scale(int ms);

/* Options with the test types and fingerprint, and a 2 s handshake. */
pbp_channel_options pbt_options(void);

/* The fds open in this process now (POSIX: /proc/self/fd). */
int pbt_count_fds(void);

/* Two pipes: fds[0] is A's read end, fds[1] B's write end (B -> A),
 * fds[2] B's read end, fds[3] A's write end (A -> B).  O_CLOEXEC. */
void pbt_pipes(int fds[4]);

/* Two channels A and B over two new pipes, already handshaken (B's side
 * runs on a thread).  Options may be NULL for pbt_options(). */
void pbt_pair(pbp_channel **a, pbp_channel **b, const pbp_channel_options *oa,
              const pbp_channel_options *ob);

/* Runs fn(arg) on a new thread. */
pthread_t pbt_spawn_thread(void *(*fn)(void *), void *arg);
void *pbt_join(pthread_t t);
/* Thread body: pbp_channel_handshake(arg), its result as (intptr_t). */
void *pbt_handshake_thread(void *ch);

/* Writes all bytes to a blocking or non-blocking fd; aborts on error. */
void pbt_write_all(int fd, const void *buf, size_t n);

/* The whole frame (length prefix included) of a Hello built from h. */
size_t pbt_hello_frame(uint8_t *out, size_t cap, const pbpipe_Hello *h);
/* A valid Hello with our magic, version and the test fingerprint. */
pbpipe_Hello pbt_good_hello(void);

/* Blob payloads: `size` bytes of a pattern derived from `seed`. */
typedef struct pbt_blob_src {
	size_t size;
	uint32_t seed;
} pbt_blob_src;
/* Checks incoming bytes against the pattern; counts them. */
typedef struct pbt_blob_sink {
	uint32_t seed;
	size_t got;
	int mismatch;
} pbt_blob_sink;
void pbt_blob_set_source(pbptest_Blob *b, pbt_blob_src *src);
void pbt_blob_set_sink(pbptest_Blob *b, pbt_blob_sink *sink);
uint8_t pbt_pattern(uint32_t seed, size_t i);

#endif
