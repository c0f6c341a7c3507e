#include "support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#endif

#include <pb_decode.h>
#include <pb_encode.h>

const pbp_msgtype pbt_types[] = {
	PBP_MSGTYPE(pbptest_Type_TEXT, pbptest_Text),
	PBP_MSGTYPE(pbptest_Type_NUMBERS, pbptest_Numbers),
	PBP_MSGTYPE(pbptest_Type_BLOB, pbptest_Blob),
	PBP_MSGTYPE(pbptest_Type_EMPTY, pbptest_Empty),
};
const size_t pbt_ntypes = sizeof pbt_types / sizeof pbt_types[0];

int
pbt_valgrind(void)
{
	return getenv("PBPTEST_VALGRIND") != NULL;
}

int
pbt_scale(int ms)
{
	return pbt_valgrind() ? ms * 10 : ms;
}

pbp_channel_options
pbt_options(void)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;

	o.types = pbt_types;
	o.ntypes = pbt_ntypes;
	o.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	o.handshake_timeout_ms = pbt_scale(2000);
	return o;
}

/* POSIX only: pipes, threads and fds (the Windows tests, tests/win/, use
 * the rest). */
#ifndef _WIN32
int
pbt_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert_not_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

void
pbt_pipes(int fds[4])
{
	int p1[2], p2[2];

	cr_assert_eq(pipe2(p1, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(p2, O_CLOEXEC), 0);
	fds[0] = p1[0];
	fds[1] = p1[1];
	fds[2] = p2[0];
	fds[3] = p2[1];
}

pthread_t
pbt_spawn_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
	return t;
}

void *
pbt_join(pthread_t t)
{
	void *ret = NULL;

	cr_assert_eq(pthread_join(t, &ret), 0);
	return ret;
}

void *
pbt_handshake_thread(void *arg)
{
	return (void *)(intptr_t)pbp_channel_handshake(arg);
}

void
pbt_pair(pbp_channel **a, pbp_channel **b, const pbp_channel_options *oa,
         const pbp_channel_options *ob)
{
	pbp_channel_options def = pbt_options();
	pbp_error err;
	pthread_t t;
	int fds[4], rc;

	pbt_pipes(fds);
	cr_assert_eq(pbp_channel_from_fds(a, fds[0], fds[3], oa ? oa : &def, &err), 0,
	             "%s", err.msg);
	cr_assert_eq(pbp_channel_from_fds(b, fds[2], fds[1], ob ? ob : &def, &err), 0,
	             "%s", err.msg);
	t = pbt_spawn_thread(pbt_handshake_thread, *b);
	rc = pbp_channel_handshake(*a);
	cr_assert_eq(rc, 0, "A handshake: %s", pbp_channel_errmsg(*a));
	rc = (int)(intptr_t)pbt_join(t);
	cr_assert_eq(rc, 0, "B handshake: %s", pbp_channel_errmsg(*b));
}

void
pbt_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
			usleep(100);
			continue;
		}
		cr_assert_gt(w, 0, "write: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
}

#endif /* !_WIN32 */

size_t
pbt_hello_frame(uint8_t *out, size_t cap, const pbpipe_Hello *h)
{
	pbpipe_Envelope env;
	size_t n = 0;

	memset(&env, 0, sizeof env);
	env.which_body = pbpipe_Envelope_hello_tag;
	env.body.hello = *h;
	cr_assert_eq(pbp__control_encode(out, cap, &env, &n, NULL), 0);
	return n;
}

pbpipe_Hello
pbt_good_hello(void)
{
	pbpipe_Hello h;

	memset(&h, 0, sizeof h);
	h.magic = PBP__MAGIC;
	h.major = PBP_PROTOCOL_MAJOR;
	h.minor = PBP_PROTOCOL_MINOR;
	h.pid = 1234;
	h.pointer_bits = 64;
	h.max_frame = PBP_DEFAULT_MAX_FRAME;
	h.schema_fingerprint = PBPTEST_SCHEMA_FINGERPRINT;
	return h;
}

uint8_t
pbt_pattern(uint32_t seed, size_t i)
{
	uint32_t x = seed ^ (uint32_t)(i * 2654435761u);

	x ^= x >> 13;
	return (uint8_t)(x * 0x5bd1e995u >> 24);
}

static bool
blob_encode(pb_ostream_t *os, const pb_field_t *field, void *const *arg)
{
	const pbt_blob_src *src = *arg;
	uint8_t chunk[4096];
	size_t i, n;

	if (!pb_encode_tag_for_field(os, field) || !pb_encode_varint(os, src->size))
		return false;
	for (i = 0; i < src->size; i += n) {
		size_t k;

		n = src->size - i < sizeof chunk ? src->size - i : sizeof chunk;
		for (k = 0; k < n; k++)
			chunk[k] = pbt_pattern(src->seed, i + k);
		if (!pb_write(os, chunk, n))
			return false;
	}
	return true;
}

static bool
blob_decode(pb_istream_t *is, const pb_field_t *field, void **arg)
{
	pbt_blob_sink *sink = *arg;
	uint8_t chunk[4096];

	(void)field;
	while (is->bytes_left > 0) {
		size_t n = is->bytes_left < sizeof chunk ? is->bytes_left : sizeof chunk, k;

		if (!pb_read(is, chunk, n))
			return false;
		for (k = 0; k < n; k++)
			if (chunk[k] != pbt_pattern(sink->seed, sink->got + k))
				sink->mismatch = 1;
		sink->got += n;
	}
	return true;
}

void
pbt_blob_set_source(pbptest_Blob *b, pbt_blob_src *src)
{
	b->data.funcs.encode = blob_encode;
	b->data.arg = src;
}

void
pbt_blob_set_sink(pbptest_Blob *b, pbt_blob_sink *sink)
{
	b->data.funcs.decode = blob_decode;
	b->data.arg = sink;
}
