/*
 * standalone_driver.c: replays inputs through a harness without libFuzzer,
 * so corpora and crashers run as ordinary ctest tests with any compiler.
 *
 * Usage: <harness>_replay PATH...
 * Each PATH is a file or a directory; every regular file in a directory
 * (not recursive, hidden files skipped) is one input.  Inputs run in name
 * order.  Prints one line per input with -v as first argument.  Exits 0
 * after replaying at least one input, 1 if nothing was replayed (a corpus
 * that went missing must not pass silently) or an input could not be read;
 * an input that breaks an invariant aborts (exit by SIGABRT).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

static int verbose;

static int
replay_file(const char *path, size_t *count)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;

	if (fp == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t got;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			uint8_t *nb = realloc(buf, ncap);

			if (nb == NULL) {
				fprintf(stderr, "replay: %s: out of memory\n", path);
				rc = -1;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(fp)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		rc = -1;
		goto out;
	}
	{
		/* An exact-size copy, so AddressSanitizer sees reads past the
		 * end as libFuzzer's own copy would show them. */
		uint8_t *input = malloc(len > 0 ? len : 1);

		if (input == NULL) {
			rc = -1;
			goto out;
		}
		if (len > 0)
			memcpy(input, buf, len);
		if (verbose)
			fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
		(void)LLVMFuzzerTestOneInput(input, len);
		free(input);
		(*count)++;
	}
out:
	free(buf);
	fclose(fp);
	return rc;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
replay_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	int rc = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **nn = realloc(names, ncap * sizeof *nn);

			if (nn == NULL) {
				rc = -1;
				break;
			}
			names = nn;
			cap = ncap;
		}
		names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2);
		if (names[n] == NULL) {
			rc = -1;
			break;
		}
		sprintf(names[n], "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, cmp_names);
	for (i = 0; i < n; i++) {
		struct stat st;

		if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode) &&
		    replay_file(names[i], count) != 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	size_t count = 0;
	int i, failed = 0;

	for (i = 1; i < argc; i++) {
		struct stat st;

		if (i == 1 && strcmp(argv[i], "-v") == 0) {
			verbose = 1;
			continue;
		}
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			failed = 1;
		} else if (S_ISDIR(st.st_mode)) {
			if (replay_dir(argv[i], &count) != 0)
				failed = 1;
		} else if (replay_file(argv[i], &count) != 0) {
			failed = 1;
		}
	}
	printf("replay: %zu inputs replayed\n", count);
	if (count == 0) {
		fprintf(stderr, "replay: no inputs replayed\n");
		return 1;
	}
	return failed;
}
