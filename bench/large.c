/*
 * large.c: the child side of the large-message benches, and how memory is
 * measured for them (bench.c, "large messages").
 *
 * A large-message child receives messages of whatever size they declare,
 * does the same cheap work on each (large_check: one byte per page), and
 * acknowledges each with their size and checksum, until end of stream.
 *
 *   pbpipe: the message is a bench.Blob whose bytes field is received
 *           with pbp_bytes_view, in place in the channel's receive buffer;
 *   raw:    an 8-byte length header, then the bytes, read into a buffer
 *           malloc'd for that message from its header and freed after it:
 *           what a raw-pipe application that does not know sizes in
 *           advance does.
 *
 * Streams (bench=large_stream) go through the same children:
 *
 *   pbpipe: a Blob that opens a stream (pbp_channel_last_stream()), read
 *           with pbp_stream_read_view, each piece in place;
 *   raw:    a header with LARGE_STREAM_BIT set, then the bytes, read
 *           through one buffer of LARGE_STREAM_PIECE bytes, as a raw
 *           application copies a stream through a buffer.
 *
 * Both check a stream with stream_check (the same bytes as large_check,
 * however the stream was cut) and acknowledge it once, at its end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench.pb.h"

uint64_t
large_check(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ n;
	size_t i;

	for (i = 0; i < n; i += 4096)
		h = (h ^ p[i]) * 1099511628211ull;
	if (n > 0)
		h = (h ^ p[n - 1]) * 1099511628211ull;
	return h;
}

void
stream_check_init(stream_check *c)
{
	c->h = 1469598103934665603ull;
	c->off = 0;
	c->last = 0;
}

void
stream_check_add(stream_check *c, const uint8_t *p, size_t n)
{
	/* The bytes at offsets 0, 4096, 8192, ... of the whole stream. */
	size_t i = (size_t)((4096 - c->off % 4096) % 4096);

	for (; i < n; i += 4096)
		c->h = (c->h ^ p[i]) * 1099511628211ull;
	if (n > 0)
		c->last = p[n - 1];
	c->off += n;
}

uint64_t
stream_check_end(const stream_check *c)
{
	return ((c->h ^ c->last) * 1099511628211ull) ^ c->off;
}

/* Reads stream s to its end; answers its size and check. */
static void
large_stream_pbpipe(pbp_channel *ch, uint64_t s)
{
	bench_Ack ack = { 1, 0, 0 };
	stream_check c;
	const void *p;
	size_t n;
	int rc;

	stream_check_init(&c);
	while ((rc = pbp_stream_read_view(ch, s, &p, &n)) == 0)
		stream_check_add(&c, p, n);
	if (rc != PBP_EOF)
		pb_check(ch, rc, "large: stream read");
	ack.bytes = c.off;
	ack.check = stream_check_end(&c);
	pb_check(ch, pbp_channel_send(ch, bench_Type_ACK, &ack), "large: send Ack");
}

int
large_serve_pbpipe(pbp_channel *ch)
{
	for (;;) {
		bench_Blob m = bench_Blob_init_zero;
		bench_Ack ack = { 1, 0, 0 };
		pbp_bytes in;
		uint32_t type;
		int rc;

		pbp_bytes_view(&m.data, &in);
		rc = pbp_channel_recv_msg(ch, &type, &m, sizeof m);
		if (rc == PBP_EOF)
			return rc;
		pb_check(ch, rc, "large: recv");
		if (type != bench_Type_BLOB)
			die("large: message type %" PRIu32 " instead of a Blob", type);
		if (pbp_channel_last_stream(ch) != 0) {
			large_stream_pbpipe(ch, pbp_channel_last_stream(ch));
			continue;
		}
		ack.bytes = in.size;
		ack.check = large_check(in.data, in.size);
		pb_check(ch, pbp_channel_send(ch, bench_Type_ACK, &ack), "large: send Ack");
	}
}

/* A raw stream of size bytes through one buffer. */
static void
large_stream_raw(int wfd, int rfd, uint64_t size)
{
	static uint8_t buf[LARGE_STREAM_PIECE];
	uint64_t ack[2];
	stream_check c;

	stream_check_init(&c);
	while (c.off < size) {
		ssize_t n = read(rfd, buf, size - c.off < sizeof buf ? (size_t)(size - c.off) : sizeof buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("raw large: end of stream inside a stream");
		stream_check_add(&c, buf, (size_t)n);
	}
	ack[0] = c.off;
	ack[1] = stream_check_end(&c);
	write_all(wfd, ack, sizeof ack, "raw large: ack");
}

void
large_serve_raw(int wfd, int rfd)
{
	uint64_t size, ack[2];

	while (read_exact(rfd, &size, sizeof size, "raw large: header") == 0) {
		uint8_t *buf;

		if (size & LARGE_STREAM_BIT) {
			large_stream_raw(wfd, rfd, size & ~LARGE_STREAM_BIT);
			continue;
		}
		buf = xmalloc((size_t)size);

		if (read_exact(rfd, buf, (size_t)size, "raw large") != 0)
			die("raw large: end of stream inside a message");
		ack[0] = size;
		ack[1] = large_check(buf, (size_t)size);
		/* Freed after the Ack, as pbpipe's receive buffer shrinks at
		 * the next receive: neither unmapping is timed. */
		write_all(wfd, ack, sizeof ack, "raw large: ack");
		free(buf);
	}
}

/* ---- memory ------------------------------------------------------------------ */

static void
proc_path(char *out, size_t n, long pid, const char *file)
{
	if (pid == 0)
		snprintf(out, n, "/proc/self/%s", file);
	else
		snprintf(out, n, "/proc/%ld/%s", pid, file);
}

static long
status_kb(long pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f;

	proc_path(path, sizeof path, pid, "status");
	f = fopen(path, "r");
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			v = strtol(line + klen + 1, NULL, 10);
			break;
		}
	if (f != NULL)
		fclose(f);
	return v;
}

long
mem_peak_kb(long pid)
{
	return status_kb(pid, "VmHWM");
}

long
mem_now_kb(long pid)
{
	return status_kb(pid, "VmRSS");
}

int
mem_peak_reset(long pid)
{
	char path[64];
	FILE *f;
	int ok;

	proc_path(path, sizeof path, pid, "clear_refs");
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	ok = fputs("5", f) >= 0;
	ok = fclose(f) == 0 && ok;
	/* Older kernels take the write and do nothing: check that it took
	 * (on ourselves: another process's memory may change meanwhile). */
	if (ok && pid == 0)
		ok = mem_peak_kb(0) <= mem_now_kb(0) + 64;
	return ok ? 0 : -1;
}
