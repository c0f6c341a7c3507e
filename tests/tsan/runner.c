/*
 * The test runner behind tests/tsan/criterion/criterion.h: runs every
 * registered test in its own forked process, --jobs at a time, each
 * killed after its .timeout, and prints Criterion's closing line.  Exits
 * 1 if any test failed, crashed or timed out.
 * Usage: test_<module> [--jobs=N | -jN] [other Criterion options, ignored]
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

static struct pbt_cr_test *head, **tail = &head;

void
pbt_cr_register(struct pbt_cr_test *t)
{
	*tail = t;
	tail = &t->next;
}

void
pbt_cr_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[----] %s:%d: Assertion failed: %s", file, line, expr);
	if (fmt[0] != '\0') {
		fputs(": ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	fflush(NULL);
	_exit(1);
}

void
pbt_cr_log(const char *fmt, ...)
{
	va_list ap;

	fputs("[----] ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
pbt_cr_skip(const char *fmt, ...)
{
	va_list ap;

	fputs("[SKIP] ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(NULL);
	_exit(77);
}

struct running {
	pid_t pid;
	struct pbt_cr_test *t;
	struct timespec start;
};

static double
since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

int
main(int argc, char **argv)
{
	struct running *run;
	struct pbt_cr_test *t, *next = head;
	int jobs = 2, i, nrun = 0, tested = 0, passing = 0, failing = 0, crashing = 0, skipped = 0;

	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--jobs=", 7) == 0)
			jobs = atoi(argv[i] + 7);
		else if (strncmp(argv[i], "-j", 2) == 0 && argv[i][2] != '\0')
			jobs = atoi(argv[i] + 2);
	}
	if (jobs < 1)
		jobs = 1;
	run = calloc((size_t)jobs, sizeof *run);
	if (run == NULL)
		return 2;
	signal(SIGPIPE, SIG_DFL);
	fflush(NULL);
	while (next != NULL || nrun > 0) {
		int st;
		pid_t pid;

		while (next != NULL && nrun < jobs) {
			t = next;
			next = t->next;
			pid = fork();
			if (pid < 0) {
				perror("fork");
				return 2;
			}
			if (pid == 0) {
				setpgid(0, 0);
				if (t->opts->timeout > 0)
					alarm((unsigned)t->opts->timeout);
				t->fn();
				fflush(NULL);
				_exit(0);
			}
			for (i = 0; run[i].pid != 0; i++)
				;
			run[i].pid = pid;
			run[i].t = t;
			clock_gettime(CLOCK_MONOTONIC, &run[i].start);
			nrun++;
		}
		pid = wait(&st);
		if (pid < 0)
			break;
		for (i = 0; i < jobs && run[i].pid != pid; i++)
			;
		if (i == jobs)
			continue; /* not one of ours */
		t = run[i].t;
		tested++;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			tested--;
			skipped++;
			fprintf(stderr, "[SKIP] %s::%s: skipped\n", t->suite, t->name);
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			passing++;
			fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, since(&run[i].start));
		} else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
			failing++;
			fprintf(stderr, "[FAIL] %s::%s: Timed out. (%.2fs)\n", t->suite, t->name,
			        since(&run[i].start));
		} else if (WIFSIGNALED(st)) {
			failing++;
			crashing++;
			fprintf(stderr, "[FAIL] %s::%s: CRASH! (signal %d)\n", t->suite, t->name,
			        WTERMSIG(st));
		} else {
			failing++;
			fprintf(stderr, "[FAIL] %s::%s: exit status %d\n", t->suite, t->name,
			        WEXITSTATUS(st));
		}
		/* A test's own children die with it (its process group). */
		kill(-pid, SIGKILL);
		run[i].pid = 0;
		nrun--;
	}
	fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n",
	        tested, passing, failing, crashing);
	if (skipped > 0)
		fprintf(stderr, "[====] %d test(s) SKIPPED, not run\n", skipped);
	free(run);
	return failing == 0 ? 0 : 1;
}
