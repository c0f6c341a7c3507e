/*
 * instr.c: bench=instr, the user-space instructions an operation costs,
 * both processes together, as callgrind (valgrind) counts them.
 *
 * Each figure runs this program under "valgrind --tool=callgrind
 * --trace-children=yes" twice, doing N1 and then N2 operations between one
 * parent and one child (pbpipe-bench --instr-run KIND SIZE N), and sums
 * the totals of every process of each run.  What starting, handshaking and
 * ending cost is the same in both runs, so
 *
 *     instructions per operation = (total(N2) - total(N1)) / (N2 - N1)
 *
 * Counting instructions has no noise from the machine (no timing, no
 * scheduling), which is what makes small changes to the per-message path
 * visible.  It does not see the time system calls take: the rtt and stream
 * benches measure that.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "bench.h"

#define N1 2000u
#define N2 12000u

/* The valgrind to run: $VALGRIND, else valgrind from PATH.  0 if found. */
static int
find_valgrind(char *out, size_t n)
{
	const char *env = getenv("VALGRIND"), *path = getenv("PATH");
	char buf[4096];
	char *tok, *save;

	if (env != NULL && *env != '\0') {
		snprintf(out, n, "%s", env);
		return access(out, X_OK) == 0 ? 0 : -1;
	}
	if (path == NULL)
		return -1;
	snprintf(buf, sizeof buf, "%s", path);
	for (tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		snprintf(out, n, "%s/valgrind", tok);
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -1;
}

/* The instructions callgrind counted in one output file ("summary:" or
 * "totals:", the first event being Ir). */
static uint64_t
file_total(const char *path)
{
	char line[512];
	uint64_t v = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		die("instr: cannot open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof line, f) != NULL) {
		unsigned long long x;

		if (sscanf(line, "summary: %llu", &x) == 1 || sscanf(line, "totals: %llu", &x) == 1)
			v = (uint64_t)x;
	}
	fclose(f);
	if (v == 0)
		die("instr: no total in %s", path);
	return v;
}

/* Runs one counted run (N operations of kind) and returns the
 * instructions of all its processes. */
static uint64_t
counted_run(const char *vg, const char *kind, size_t size, uint64_t n)
{
	char dir[] = "/tmp/pbpipe-bench-instr.XXXXXX", out[PATH_MAX + 64], log[PATH_MAX + 64];
	char sz[24], cnt[24];
	char path[PATH_MAX + 300];
	uint64_t total = 0;
	struct dirent *de;
	int st, files = 0;
	DIR *d;
	pid_t pid;

	if (mkdtemp(dir) == NULL)
		die("instr: mkdtemp: %s", strerror(errno));
	snprintf(out, sizeof out, "--callgrind-out-file=%s/cg.%%p", dir);
	snprintf(log, sizeof log, "--log-file=%s/log.%%p", dir);
	snprintf(sz, sizeof sz, "%zu", size);
	snprintf(cnt, sizeof cnt, "%" PRIu64, n);
	pid = fork();
	if (pid < 0)
		die("instr: fork: %s", strerror(errno));
	if (pid == 0) {
		const char *argv[] = { vg, "-q", "--tool=callgrind", "--trace-children=yes", out, log,
		                       self_exe, "--instr-run", kind, sz, cnt, NULL };

		execv(vg, (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("instr: waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("instr: '%s ... %s --instr-run %s %zu %" PRIu64 "' failed (%s %d; valgrind's "
		    "logs: %s/log.*)", vg, self_exe, kind, size, n,
		    WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
		    dir);
	if ((d = opendir(dir)) == NULL)
		die("instr: opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (strncmp(de->d_name, "cg.", 3) == 0) {
			total += file_total(path);
			files++;
		}
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
	if (files < 2)
		die("instr: %d callgrind output file(s) for %s: the child was not traced", files,
		    kind);
	return total;
}

static double
per_op(const char *vg, const char *kind, size_t size)
{
	uint64_t a = counted_run(vg, kind, size, N1), b = counted_run(vg, kind, size, N2);

	return b > a ? (double)(b - a) / (double)(N2 - N1) : 0.0;
}

void
bench_instr(options *o)
{
	char vg[4096];

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	fprintf(o->json ? stderr : stdout, "# instr skipped: a sanitizer build cannot run under valgrind\n");
	return;
#endif
	if (o->quick) {
		fprintf(o->json ? stderr : stdout, "# instr skipped with --quick\n");
		return;
	}
	if (find_valgrind(vg, sizeof vg) != 0) {
		fprintf(o->json ? stderr : stdout,
		        "# instr skipped: no valgrind (Debian package valgrind; or set VALGRIND)\n");
		return;
	}
	emit(o, "instr_rtt", 64, "instructions", per_op(vg, "rtt", 64), per_op(vg, "rtt-raw", 64),
	     o->json ? "\"per\": \"round trip, both processes\"" : "per=round_trip_both_processes");
	emit(o, "instr_stream_coalesce", 64, "instructions", per_op(vg, "stream", 64),
	     per_op(vg, "stream-raw", 64),
	     o->json ? "\"per\": \"frame, both processes\"" : "per=frame_both_processes");
}

int
instr_run(int argc, char **argv)
{
	size_t size;
	uint64_t n;

	if (argc != 5)
		die("usage: pbpipe-bench --instr-run rtt|rtt-raw|stream|stream-raw SIZE N");
	size = (size_t)parse_num(argv[3], "SIZE");
	n = parse_num(argv[4], "N");
	if (size < STAMP)
		die("--instr-run: SIZE must be at least %d", STAMP);
	if (strcmp(argv[2], "rtt") == 0 || strcmp(argv[2], "rtt-raw") == 0)
		bench_ops(strcmp(argv[2], "rtt-raw") == 0, 0, size, n);
	else if (strcmp(argv[2], "stream") == 0 || strcmp(argv[2], "stream-raw") == 0)
		bench_ops(strcmp(argv[2], "stream-raw") == 0, 1, size, n);
	else
		die("--instr-run: unknown kind '%s'", argv[2]);
	return 0;
}
