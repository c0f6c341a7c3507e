/*
 * pbpipe-dump: prints the frames of a captured pbpipe stream, or of a trace
 * file written by the library (PBPIPE_TRACE, pbp_channel_set_trace()), one
 * line per frame, with the application payloads optionally decoded by
 * protoc.
 *
 * It parses with the library's own codec (the frame reader and
 * pbp__frame_decode from lib/frame.c), so it accepts and rejects exactly
 * what a channel would, with the same messages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pbp_internal.h"

/* Bytes asked of read() at a time. */
#define CHUNK (64u * 1024u)
/* Exit codes. */
#define EXIT_CLEAN 0
#define EXIT_BAD_INPUT 1
#define EXIT_USAGE 2

enum format { FMT_AUTO, FMT_RAW, FMT_TRACE };

/* A wire type number mapped to an application message for protoc. */
struct typemap {
	uint32_t type;
	char *decode_arg; /* "--decode=package.Message" */
};

/* The command line.  Arrays hold pointers into argv (never more than
 * argc entries each). */
struct opts {
	enum format format;
	const char *path;     /* NULL: stdin */
	const char **protos;
	size_t nprotos;
	const char **incl;
	size_t nincl;
	struct typemap *types;
	size_t ntypes;
	int decode_raw;
	char *first_proto;    /* a copy that dirname() may modify */
};

/* The input, read in chunks.  Buffered by hand rather than with stdio: a
 * single read() may return less than asked, so frames from a live pipe
 * are printed as they arrive instead of when a stdio buffer fills. */
struct input {
	int fd;
	const char *name;  /* for messages */
	uint8_t buf[CHUNK];
	size_t start, end; /* unread bytes in buf */
	uint64_t pos;      /* bytes handed out so far: the next one's offset */
	int eof;
	int err;           /* errno of a failed read, or 0 */
};

/* Runs protoc on payloads.  Its stdin and stderr are temporary files
 * created once and reused: stdin needs no feeding loop then, and stderr is
 * read after protoc exits, so protoc never blocks on a pipe that nobody
 * drains while we read its stdout. */
struct decoder {
	int in_fd, err_fd;     /* -1 when decoding is off */
	const char **argv;     /* protoc --decode=... -I ... FILES; argv[1] set per call */
	char *out;             /* protoc's stdout, kept between calls */
	size_t len, cap;
};

/* Where a frame was found. */
struct where {
	uint64_t offset;         /* of the frame, or of its trace record */
	size_t size;             /* length prefix plus body */
	const uint8_t *record;   /* the trace record header, or NULL */
};

struct dump {
	const struct opts *o;
	struct input in;
	pbp__reader rd;
	struct decoder dec;
	uint64_t frames;
	uint64_t consumed;       /* raw stream: offset of the next frame */
	uint64_t err_offset;
	pbp_error err;           /* why the input is bad, or an I/O error */
};

static int
usage(FILE *f, int code)
{
	fprintf(f,
	        "usage: pbpipe-dump [options] [FILE]\n"
	        "Prints the frames of a pbpipe stream read from FILE (default: stdin), one\n"
	        "line per frame: its offset, its size and what it holds (Hello, Goodbye,\n"
	        "an application message's type, id and payload size, ...).  It parses\n"
	        "with the library's own codec, so it accepts and rejects exactly what a\n"
	        "channel does, and says where a stream is truncated or malformed.\n"
	        "\n"
	        "Input formats (detected from the first 4 bytes unless forced):\n"
	        "  trace  a trace file written with PBPIPE_TRACE=FILE or\n"
	        "         pbp_channel_set_trace(): records starting with \"PBPT\", each\n"
	        "         with its direction (S sent, R received), pid and time\n"
	        "  raw    the bytes of one direction of a stream as they crossed the\n"
	        "         pipe (e.g. captured with strace or tee): frames back to back\n"
	        "\n"
	        "Options:\n"
	        "  --raw                  read FILE as a raw stream\n"
	        "  --trace                read FILE as a trace file\n"
	        "  --proto FILE.proto     the application schema, for --type (repeatable)\n"
	        "  -I DIR                 import directory for protoc (repeatable; default:\n"
	        "                         the directory of the first --proto)\n"
	        "  --type N=pkg.Message   decode payloads of wire type N as pkg.Message\n"
	        "                         with protoc --decode (repeatable; needs --proto)\n"
	        "  --decode-raw           show payloads of types without --type with\n"
	        "                         protoc --decode_raw (field numbers, no names)\n"
	        "  -h, --help             print this text and exit 0\n"
	        "\n"
	        "Example:\n"
	        "  PBPIPE_TRACE=/tmp/t.trace build/bin/pbpipe-parent\n"
	        "  pbpipe-dump --proto proto/demo.proto --type 1=demo.Greeting /tmp/t.trace\n"
	        "\n"
	        "Exit status:\n"
	        "  0  every frame read and printed, the input ended between frames\n"
	        "  1  truncated or malformed input (the frames before it are printed)\n"
	        "  2  usage error, unreadable FILE or .proto, or another I/O error\n");
	return code;
}

/* ---- command line ---------------------------------------------------- */

static int
parse_type(const char *arg, struct typemap *out)
{
	const char *eq = strchr(arg, '=');
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(arg, &end, 10);
	if (eq == NULL || end != eq || arg[0] < '0' || arg[0] > '9' || errno != 0 ||
	    n == 0 || n > UINT32_MAX || eq[1] == '\0') {
		fprintf(stderr, "pbpipe-dump: --type '%s': expected N=package.Message, N > 0\n",
		        arg);
		return -1;
	}
	out->type = (uint32_t)n;
	if (asprintf(&out->decode_arg, "--decode=%s", eq + 1) < 0) {
		out->decode_arg = NULL;
		fprintf(stderr, "pbpipe-dump: out of memory\n");
		return -1;
	}
	return 0;
}

static int
add_type(struct opts *o, const char *arg)
{
	size_t i;

	if (parse_type(arg, &o->types[o->ntypes]) != 0)
		return -1;
	o->ntypes++;
	for (i = 0; i + 1 < o->ntypes; i++)
		if (o->types[i].type == o->types[o->ntypes - 1].type) {
			fprintf(stderr, "pbpipe-dump: --type %" PRIu32 " given twice\n",
			        o->types[i].type);
			return -1;
		}
	return 0;
}

/* Applies one option.  Returns 0, or -1 after printing why. */
static int
apply_opt(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case 'r': o->format = FMT_RAW; return 0;
	case 't': o->format = FMT_TRACE; return 0;
	case 'p': o->protos[o->nprotos++] = arg; return 0;
	case 'I': o->incl[o->nincl++] = arg; return 0;
	case 'T': return add_type(o, arg);
	case 'd': o->decode_raw = 1; return 0;
	default: return -1; /* getopt has said what is wrong */
	}
}

/* Checks what getopt cannot: a schema for --type, readable .proto files,
 * and the default import directory. */
static int
check_opts(struct opts *o)
{
	size_t i;

	if (o->ntypes > 0 && o->nprotos == 0) {
		fprintf(stderr, "pbpipe-dump: --type needs --proto\n");
		return -1;
	}
	for (i = 0; i < o->nprotos; i++)
		if (access(o->protos[i], R_OK) != 0) {
			fprintf(stderr, "pbpipe-dump: cannot read '%s': %s\n", o->protos[i],
			        strerror(errno));
			return -1;
		}
	if (o->nprotos > 0 && o->nincl == 0) {
		o->first_proto = strdup(o->protos[0]);
		if (o->first_proto == NULL) {
			fprintf(stderr, "pbpipe-dump: out of memory\n");
			return -1;
		}
		o->incl[o->nincl++] = dirname(o->first_proto);
	}
	return 0;
}

static void
opts_free(struct opts *o)
{
	size_t i;

	for (i = 0; i < o->ntypes; i++)
		free(o->types[i].decode_arg);
	free(o->types);
	free(o->protos);
	free(o->incl);
	free(o->first_proto);
}

/* Returns -1 to go on, or the exit code: 0 after --help, 2 on misuse. */
static int
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "raw", no_argument, NULL, 'r' },
		{ "trace", no_argument, NULL, 't' },
		{ "proto", required_argument, NULL, 'p' },
		{ "type", required_argument, NULL, 'T' },
		{ "decode-raw", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	size_t n = (size_t)argc;
	int c;

	memset(o, 0, sizeof *o);
	o->protos = calloc(n, sizeof *o->protos);
	o->incl = calloc(n + 1, sizeof *o->incl); /* + the default */
	o->types = calloc(n, sizeof *o->types);
	if (o->protos == NULL || o->incl == NULL || o->types == NULL) {
		fprintf(stderr, "pbpipe-dump: out of memory\n");
		return EXIT_USAGE;
	}
	while ((c = getopt_long(argc, argv, "I:h", longopts, NULL)) != -1) {
		if (c == 'h')
			return usage(stdout, EXIT_CLEAN);
		if (apply_opt(o, c, optarg) != 0)
			return usage(stderr, EXIT_USAGE);
	}
	if (argc - optind > 1)
		return usage(stderr, EXIT_USAGE);
	o->path = optind < argc ? argv[optind] : NULL;
	return check_opts(o) == 0 ? -1 : EXIT_USAGE;
}

/* ---- input ----------------------------------------------------------- */

/* One read(), retrying on EINTR.  Returns 0 at end of input or on error,
 * and records which. */
static size_t
in_read_once(struct input *in, uint8_t *dst, size_t n)
{
	ssize_t r;

	if (in->eof || in->err != 0)
		return 0;
	do
		r = read(in->fd, dst, n);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		in->err = errno;
		return 0;
	}
	if (r == 0)
		in->eof = 1;
	return (size_t)r;
}

/* Up to n (> 0) bytes: buffered ones, else from one read().  Returns 0
 * only at end of input or on error. */
static size_t
in_read_some(struct input *in, uint8_t *dst, size_t n)
{
	size_t k;

	if (in->start == in->end) {
		if (n >= sizeof in->buf) {
			/* A large request goes straight to its destination. */
			k = in_read_once(in, dst, n);
			in->pos += k;
			return k;
		}
		in->start = 0;
		in->end = in_read_once(in, in->buf, sizeof in->buf);
	}
	k = in->end - in->start < n ? in->end - in->start : n;
	memcpy(dst, in->buf + in->start, k);
	in->start += k;
	in->pos += k;
	return k;
}

/* Exactly n bytes unless the input ends first.  Returns the count. */
static size_t
in_read_full(struct input *in, uint8_t *dst, size_t n)
{
	size_t got = 0, k;

	while (got < n && (k = in_read_some(in, dst + got, n - got)) > 0)
		got += k;
	return got;
}

/* Buffers the first 4 bytes (without consuming them) to tell a trace file
 * from a raw stream. */
static int
in_is_trace(struct input *in)
{
	while (in->end < 4 && !in->eof && in->err == 0)
		in->end += in_read_once(in, in->buf + in->end, sizeof in->buf - in->end);
	return in->end >= 4 && memcmp(in->buf, "PBPT", 4) == 0;
}

/* ---- protoc ---------------------------------------------------------- */

/* An unlinked temporary file, so nothing is left behind on any exit. */
static int
temp_fd(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd;

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	if ((size_t)snprintf(path, sizeof path, "%s/pbpipe-dump.XXXXXX", dir) >= sizeof path)
		return -1;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* Sets up protoc's argv: protoc, a --decode slot, -I DIR..., FILE... */
static int
decoder_open(struct decoder *dec, const struct opts *o)
{
	size_t i, k = 2;

	memset(dec, 0, sizeof *dec);
	dec->in_fd = dec->err_fd = -1;
	if (o->ntypes == 0 && !o->decode_raw)
		return 0;
	dec->argv = calloc(3 + 2 * o->nincl + o->nprotos, sizeof *dec->argv);
	if (dec->argv == NULL)
		return PBP_ENOMEM;
	dec->argv[0] = "protoc";
	for (i = 0; i < o->nincl; i++) {
		dec->argv[k++] = "-I";
		dec->argv[k++] = o->incl[i];
	}
	for (i = 0; i < o->nprotos; i++)
		dec->argv[k++] = o->protos[i];
	dec->in_fd = temp_fd();
	dec->err_fd = temp_fd();
	return dec->in_fd < 0 || dec->err_fd < 0 ? PBP_ESYS : 0;
}

static void
decoder_close(struct decoder *dec)
{
	if (dec->in_fd >= 0)
		close(dec->in_fd);
	if (dec->err_fd >= 0)
		close(dec->err_fd);
	free(dec->argv);
	free(dec->out);
}

/* Empties both temporary files and writes the payload as protoc's stdin.
 * The child shares the files' offsets, so both are rewound each time. */
static int
stage_payload(struct decoder *dec, const uint8_t *p, size_t n)
{
	size_t done = 0;
	ssize_t w;

	if (ftruncate(dec->in_fd, 0) != 0 || ftruncate(dec->err_fd, 0) != 0 ||
	    lseek(dec->err_fd, 0, SEEK_SET) != 0)
		return -1;
	while (done < n) {
		w = pwrite(dec->in_fd, p + done, n - done, (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return lseek(dec->in_fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

/* Reads protoc's stdout until EOF into dec->out.  On failure it stops
 * reading; closing the pipe then ends protoc with SIGPIPE. */
static int
collect(struct decoder *dec, int fd)
{
	ssize_t r;

	dec->len = 0;
	for (;;) {
		if (dec->cap - dec->len < CHUNK) {
			char *nb = realloc(dec->out, dec->cap + CHUNK);

			if (nb == NULL)
				return -1;
			dec->out = nb;
			dec->cap += CHUNK;
		}
		r = read(fd, dec->out + dec->len, dec->cap - dec->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : 0;
		dec->len += (size_t)r;
	}
}

/* Describes a failed protoc run: its first stderr line, or its status. */
static void
describe_failure(const struct decoder *dec, int status, char *note, size_t size)
{
	char line[160];
	ssize_t n = pread(dec->err_fd, line, sizeof line - 1, 0);

	line[n > 0 ? n : 0] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (WIFSIGNALED(status))
		snprintf(note, size, "protoc killed by signal %d", WTERMSIG(status));
	else if (line[0] != '\0')
		snprintf(note, size, "protoc: %s", line);
	else
		snprintf(note, size, "protoc exited with status %d", WEXITSTATUS(status));
}

static int
spawn_protoc(struct decoder *dec, int out_fd, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	int rc;

	if (posix_spawn_file_actions_init(&fa) != 0)
		return ENOMEM;
	rc = posix_spawn_file_actions_adddup2(&fa, dec->in_fd, 0);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, dec->err_fd, 2);
	/* Every other fd of ours is close-on-exec. */
	if (rc == 0)
		rc = posix_spawnp(pid, "protoc", &fa, NULL, (char *const *)dec->argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

/* Runs protoc with the payload on stdin.  Returns 0 with its text output
 * in dec->out, or -1 with note saying why not. */
static int
run_protoc(struct decoder *dec, const uint8_t *p, size_t n, char *note, size_t size)
{
	int pfd[2], status = 0, rc, got;
	pid_t pid;

	if (stage_payload(dec, p, n) != 0 || pipe2(pfd, O_CLOEXEC) != 0) {
		snprintf(note, size, "protoc not run: %s", strerror(errno));
		return -1;
	}
	rc = spawn_protoc(dec, pfd[1], &pid);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		snprintf(note, size, "cannot run protoc: %s", strerror(rc));
		return -1;
	}
	got = collect(dec, pfd[0]);
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != 0) {
		snprintf(note, size, "reading protoc's output failed");
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		describe_failure(dec, status, note, size);
		return -1;
	}
	return 0;
}

/* The --decode argument for a type, "--decode_raw", or NULL. */
static const char *
decode_arg(const struct opts *o, uint32_t type)
{
	size_t i;

	for (i = 0; i < o->ntypes; i++)
		if (o->types[i].type == type)
			return o->types[i].decode_arg;
	return o->decode_raw ? "--decode_raw" : NULL;
}

/* Decodes a payload if the options ask for it.  Returns 1 with text in
 * dec->out, 0 when not asked, -1 with a note. */
static int
decode_payload(struct dump *d, const pbp__frame *f, char *note, size_t size)
{
	const char *arg = decode_arg(d->o, f->type);
	const char *saved;
	int rc;

	/* An empty payload decodes to no text: no need to ask protoc. */
	if (arg == NULL || f->payload_len == 0)
		return 0;
	d->dec.argv[1] = arg;
	/* --decode_raw takes no schema: cut the argv after it. */
	saved = d->dec.argv[2];
	if (strcmp(arg, "--decode_raw") == 0)
		d->dec.argv[2] = NULL;
	rc = run_protoc(&d->dec, f->payload, f->payload_len, note, size);
	d->dec.argv[2] = saved;
	return rc == 0 ? 1 : -1;
}

/* ---- output ---------------------------------------------------------- */

static uint64_t
get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

/* Nanoseconds since the epoch as UTC ISO-8601, e.g.
 * 2025-01-02T03:04:05.123456789Z. */
static const char *
format_time(uint64_t ns, char *buf, size_t size)
{
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;
	size_t n;

	if (gmtime_r(&sec, &tm) == NULL ||
	    (n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
		snprintf(buf, size, "@%" PRIu64 "ns", ns);
	else
		snprintf(buf + n, size - n, ".%09" PRIu64 "Z", ns % 1000000000u);
	return buf;
}

/* Prints n bytes of text quoted, with C escapes for quotes, backslashes
 * and anything outside printable ASCII: the text comes from the peer and
 * must not drive the terminal. */
static void
print_quoted(const char *s, size_t n)
{
	size_t i;

	putchar('"');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			putchar(c);
		else
			printf("\\x%02x", c);
	}
	putchar('"');
}

static void
print_where(const struct where *w)
{
	char ts[64];

	printf("@%" PRIu64, w->offset);
	if (w->record != NULL)
		printf(" %c pid %" PRIu64 " %s", w->record[5], get_le(w->record + 8, 4),
		       format_time(get_le(w->record + 12, 8), ts, sizeof ts));
	printf(" %zu bytes: ", w->size);
}

static void
print_hello(const pbpipe_Hello *h)
{
	printf("Hello magic=0x%08" PRIx32 " version=%" PRIu32 ".%" PRIu32 " pid=%" PRIu32
	       " pointer_bits=%" PRIu32 " max_frame=%" PRIu32 " schema_fingerprint=0x%016" PRIx64,
	       h->magic, h->major, h->minor, h->pid, h->pointer_bits, h->max_frame,
	       h->schema_fingerprint);
}

static void
print_goodbye(const pbpipe_Goodbye *g)
{
	static const char *const reasons[] = { "UNSPECIFIED", "DONE", "ERROR", "SHUTDOWN" };
	int reason = (int)g->reason;

	/* Receivers accept unknown reasons; show them as numbers. */
	if (reason >= 0 && reason < 4)
		printf("Goodbye reason=%s detail=", reasons[reason]);
	else
		printf("Goodbye reason=%d detail=", reason);
	print_quoted(g->detail, strlen(g->detail));
}

static void
print_message(const pbp__frame *f)
{
	printf("Message type=%" PRIu32 " id=%" PRIu64 " payload=%zu bytes", f->type, f->id,
	       f->payload_len);
#ifdef pbpipe_Envelope_sync_tag
	/* Protocol 1.1 reply fields, shown only when set. */
	if (f->reply_to != 0)
		printf(" reply_to=%" PRIu64, f->reply_to);
	if (f->error_code != 0) {
		printf(" error_code=%" PRIu32 " error=", f->error_code);
		print_quoted(f->error_msg != NULL ? f->error_msg : "", f->error_len);
	}
#endif
}

static void
print_body(const pbp__frame *f)
{
	switch (f->kind) {
	case PBP__FRAME_HELLO: print_hello(&f->hello); break;
	case PBP__FRAME_GOODBYE: print_goodbye(&f->goodbye); break;
	case PBP__FRAME_MESSAGE: print_message(f); break;
#ifdef pbpipe_Envelope_sync_tag
	/* Protocol 1.1 barriers; compiled in when the wire schema has them. */
	case pbpipe_Envelope_sync_tag: printf("Sync id=%" PRIu64, f->sync_id); break;
	case pbpipe_Envelope_sync_ack_tag: printf("SyncAck id=%" PRIu64, f->sync_id); break;
#endif
	default: printf("envelope body %d", f->kind); break;
	}
}

/* protoc's text output, indented under the frame line. */
static void
print_indented(const char *s, size_t n)
{
	size_t i = 0, e;

	while (i < n) {
		for (e = i; e < n && s[e] != '\n'; e++)
			;
		printf("    %.*s\n", (int)(e - i), s + i);
		i = e + 1;
	}
}

/* Decodes one frame body and prints it.  Returns 0, or the codec's error
 * (kept in d->err) for an invalid envelope. */
static int
show_frame(struct dump *d, const struct where *w, const uint8_t *body, size_t len)
{
	char note[256];
	pbp__frame f;
	int rc = pbp__frame_decode(body, len, &f, &d->err);

	if (rc != 0) {
		d->err_offset = w->offset;
		return rc;
	}
	d->frames++;
	rc = f.kind == PBP__FRAME_MESSAGE ? decode_payload(d, &f, note, sizeof note) : 0;
	print_where(w);
	print_body(&f);
	if (rc < 0)
		printf(" (%s)", note);
	putchar('\n');
	if (rc > 0)
		print_indented(d->dec.out, d->dec.len);
	return 0;
}

/* ---- the two input formats ------------------------------------------- */

/* An input error, as opposed to bad input: exit status 2. */
static int
io_error(struct dump *d)
{
	return pbp__seterr(&d->err, PBP_ESYS, d->in.err, "error reading '%s': %s",
	                   d->in.name, strerror(d->in.err));
}

/* Shows every whole frame buffered in the reader.  Returns 0 when it needs
 * more input, PBP_EOF at a clean end, or an error. */
static int
raw_drain(struct dump *d)
{
	struct where w = { 0, 0, NULL };
	const uint8_t *body;
	size_t len, before;
	int rc;

	for (;;) {
		before = pbp__reader_pending(&d->rd);
		rc = pbp__reader_next(&d->rd, &body, &len);
		if (rc != 1)
			break;
		w.offset = d->consumed;
		w.size = before - pbp__reader_pending(&d->rd);
		d->consumed += w.size;
		rc = show_frame(d, &w, body, len);
		if (rc != 0)
			return rc;
	}
	if (rc < 0 && rc != PBP_EOF) {
		d->err = d->rd.error;
		d->err_offset = d->consumed;
	}
	return rc;
}

/* A raw stream: read chunks into the reader, which checks each declared
 * length against the limit before it makes room for the body. */
static int
dump_raw(struct dump *d)
{
	uint8_t *p;
	size_t n;
	int rc;

	while ((rc = raw_drain(d)) == 0) {
		if (pbp__reader_space(&d->rd, &p, &n) != 0)
			return pbp__seterr(&d->err, PBP_ENOMEM, 0, "out of memory");
		n = in_read_some(&d->in, p, n);
		if (d->in.err != 0)
			return io_error(d);
		if (n == 0)
			pbp__reader_set_eof(&d->rd);
		pbp__reader_commit(&d->rd, n);
	}
	return rc;
}

/* Bytes still missing from the frame being fed to the (otherwise empty)
 * reader: one more while the length prefix is incomplete.  Only called
 * after pbp__reader_next() returned 0, so the prefix is valid and within
 * the limit.  Reads the reader's buffer directly because the reader has
 * no call for "how much more": a channel just reads whatever comes. */
static size_t
frame_missing(const pbp__reader *r)
{
	size_t pending = pbp__reader_pending(r), hdr;
	uint32_t len;

	if (pbp__frame_length(r->buf + r->start, pending, &len, &hdr) != 1)
		return 1;
	return hdr + len - pending;
}

/* Feeds the frame of one trace record to the reader, never reading past
 * it (the next record follows), and takes it out. */
static int
trace_frame(struct dump *d, const uint8_t **body, size_t *len)
{
	uint8_t *p;
	size_t n, want;
	int rc;

	while ((rc = pbp__reader_next(&d->rd, body, len)) == 0) {
		want = frame_missing(&d->rd);
		if (pbp__reader_space(&d->rd, &p, &n) != 0)
			return pbp__seterr(&d->err, PBP_ENOMEM, 0, "out of memory");
		n = in_read_some(&d->in, p, n < want ? n : want);
		if (d->in.err != 0)
			return io_error(d);
		if (n == 0)
			pbp__reader_set_eof(&d->rd);
		pbp__reader_commit(&d->rd, n);
	}
	/* The reader calls a stream that ends between frames clean; here it
	 * ended between a record header and its frame. */
	if (rc == PBP_EOF)
		return pbp__seterr(&d->err, PBP_ETRUNC, 0,
		                   "end of stream after a trace record header");
	if (rc < 0)
		d->err = d->rd.error;
	return rc;
}

/* Checks a trace record header (see lib/trace.c). */
static int
check_record(struct dump *d, const uint8_t *hdr, size_t got)
{
	if (got < PBP__TRACE_HEADER)
		return pbp__seterr(&d->err, PBP_ETRUNC, 0,
		                   "end of stream inside a trace record header (%zu of %d bytes)",
		                   got, PBP__TRACE_HEADER);
	if (memcmp(hdr, "PBPT", 4) != 0)
		return pbp__seterr(&d->err, PBP_EPROTO, 0,
		                   "not a trace record (no \"PBPT\" magic)");
	if (hdr[4] != 1)
		return pbp__seterr(&d->err, PBP_EPROTO, 0,
		                   "trace record version %u, expected 1", hdr[4]);
	if (hdr[5] != 'S' && hdr[5] != 'R')
		return pbp__seterr(&d->err, PBP_EPROTO, 0,
		                   "trace record direction 0x%02x, expected 'S' or 'R'", hdr[5]);
	return 0;
}

/* Reads and shows one trace record.  Returns 0, PBP_EOF after the last
 * record, or an error. */
static int
trace_record(struct dump *d)
{
	uint8_t hdr[PBP__TRACE_HEADER];
	struct where w = { d->in.pos, 0, hdr };
	const uint8_t *body;
	size_t got = in_read_full(&d->in, hdr, sizeof hdr), len;
	int rc;

	if (d->in.err != 0)
		return io_error(d);
	if (got == 0)
		return PBP_EOF;
	d->err_offset = w.offset;
	rc = check_record(d, hdr, got);
	if (rc == 0)
		rc = trace_frame(d, &body, &len);
	if (rc != 1)
		return rc;
	w.size = (size_t)(d->in.pos - w.offset) - PBP__TRACE_HEADER;
	return show_frame(d, &w, body, len);
}

static int
dump_trace(struct dump *d)
{
	int rc;

	while ((rc = trace_record(d)) == 0)
		;
	return rc;
}

/* ---- main ------------------------------------------------------------ */

static int
open_input(struct input *in, const char *path)
{
	in->fd = 0;
	in->name = "<stdin>";
	if (path == NULL)
		return 0;
	in->name = path;
	in->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0) {
		fprintf(stderr, "pbpipe-dump: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Prints the summary line (or the reason for exit status 2) and returns
 * the exit status. */
static int
finish(struct dump *d, int rc)
{
	if (rc == PBP_EOF) {
		printf("end: clean, %" PRIu64 " frames, %" PRIu64 " bytes\n", d->frames, d->in.pos);
		return EXIT_CLEAN;
	}
	if (rc == PBP_ESYS || rc == PBP_ENOMEM) {
		fflush(stdout);
		fprintf(stderr, "pbpipe-dump: %s\n", d->err.msg);
		return EXIT_USAGE;
	}
	printf("error at offset %" PRIu64 ": %s: %s\n", d->err_offset, pbp_strerror(rc),
	       d->err.msg);
	return EXIT_BAD_INPUT;
}

static int
run(struct dump *d, const struct opts *o)
{
	int trace;

	if (pbp__reader_init(&d->rd, PBP_MAX_MAX_FRAME, PBP__READER_INITIAL_CAP) != 0)
		return pbp__seterr(&d->err, PBP_ENOMEM, 0, "out of memory");
	if (decoder_open(&d->dec, o) != 0)
		return pbp__seterr(&d->err, PBP_ESYS, errno, "temporary file for protoc: %s",
		                   strerror(errno));
	trace = o->format == FMT_TRACE || (o->format == FMT_AUTO && in_is_trace(&d->in));
	if (d->in.err != 0)
		return io_error(d);
	return trace ? dump_trace(d) : dump_raw(d);
}

int
main(int argc, char **argv)
{
	static struct dump d; /* 64 KiB of input buffer: not on the stack */
	struct opts o;
	int rc = parse_args(argc, argv, &o);

	if (rc < 0)
		rc = open_input(&d.in, o.path) == 0 ? -1 : EXIT_USAGE;
	if (rc < 0) {
		d.o = &o;
		d.dec.in_fd = d.dec.err_fd = -1;
		rc = finish(&d, run(&d, &o));
		pbp__reader_free(&d.rd);
		decoder_close(&d.dec);
		if (o.path != NULL)
			close(d.in.fd);
	}
	opts_free(&o);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "pbpipe-dump: writing the output: %s\n", strerror(errno));
		return EXIT_USAGE;
	}
	return rc;
}
