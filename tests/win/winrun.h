/*
 * winrun.h: what the Windows tests (tests/win/) add to the Criterion
 * stand-in of tests/tsan/criterion/criterion.h, whose Test(), cr_assert*
 * and cr_log_info they use.  runner.c is the main() of every test
 * program:
 *
 *   test_x.exe                  runs every Test() in a new process of the
 *                               same program, one after the other, each
 *                               killed (TerminateProcess) after its
 *                               .timeout; prints "[PASS]"/"[FAIL]" lines
 *                               and last "N passed, M failed"; exits 1 if
 *                               any failed
 *   test_x.exe --only=SUITE::NAME  the same for that one test (ctest
 *                               registers each test of tests/win/ so)
 *   test_x.exe --filter=TEXT    the same for the tests whose SUITE::NAME
 *                               contains TEXT
 *   test_x.exe --run=SUITE::NAME  runs one test in this process
 *   test_x.exe --list           lists the tests
 *   test_x.exe --helper=NAME ARGS...
 *                               runs the Helper() NAME (a child program
 *                               for the spawn tests: the test spawns its
 *                               own .exe in a helper role) and exits with
 *                               what it returns
 * Other arguments (Criterion's --jobs=N) are ignored.
 */
#ifndef PBPTEST_WINRUN_H
#define PBPTEST_WINRUN_H

#include <criterion/criterion.h>

struct pbt_win_helper {
	const char *name;
	int (*fn)(int argc, char **argv);
	struct pbt_win_helper *next;
};
void pbt_win_register_helper(struct pbt_win_helper *h);

/* Helper(name) { ... }: a child role of this program, run by
 * `this.exe --helper=name ARGS...` with argv[0] the program and argv[1]
 * "--helper=name"; its return value is the exit code. */
#define Helper(hname)                                                         \
	static int hname##_helper_impl(int argc, char **argv);                \
	static struct pbt_win_helper hname##_helper = { #hname, hname##_helper_impl, NULL }; \
	__attribute__((constructor)) static void hname##_helper_reg(void)     \
	{                                                                     \
		pbt_win_register_helper(&hname##_helper);                     \
	}                                                                     \
	static int hname##_helper_impl(int argc, char **argv)

/* The full path of this program (UTF-8), and of a file next to it. */
const char *pbt_win_self(void);
/* dir_of_self\name into buf; returns buf. */
char *pbt_win_sibling(char *buf, size_t size, const char *name);

#endif
