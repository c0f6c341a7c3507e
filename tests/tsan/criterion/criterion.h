/*
 * A stand-in for <criterion/criterion.h> in the ThreadSanitizer tree
 * (PBP_SANITIZER=thread; scripts/test-tsan).  Criterion cannot run under
 * ThreadSanitizer: its BoxFort arena is mapped at random addresses that
 * TSan reserves for its shadow memory, so every run aborts with "Could not
 * initialize inheritable arena" (Criterion issue 274).  This header gives
 * the threaded tests the part of Criterion's API they use (Test() with
 * .timeout, cr_assert*, cr_log_info), and runner.c runs each test in its
 * own forked process, like Criterion does.  The Windows tests (tests/win/)
 * use it too, with tests/win/runner.c, which runs each test in a new
 * process of the same program.
 */
#ifndef PBPTEST_TSAN_CRITERION_H
#define PBPTEST_TSAN_CRITERION_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct pbt_cr_opts {
	int unused_;  /* so that Test(s, n) with no options initialises */
	int timeout;  /* seconds, 0: none */
};

struct pbt_cr_test {
	const char *suite, *name;
	void (*fn)(void);
	const struct pbt_cr_opts *opts;
	struct pbt_cr_test *next;
};

void pbt_cr_register(struct pbt_cr_test *t);
void pbt_cr_fail(const char *file, int line, const char *expr, const char *fmt, ...);
/* mingw: "printf" names msvcrt's formats there; the Windows tests use
 * mingw's C99 printf (__USE_MINGW_ANSI_STDIO). */
#ifdef __MINGW32__
#define PBT_CR_PRINTF_ gnu_printf
#else
#define PBT_CR_PRINTF_ printf
#endif
void pbt_cr_log(const char *fmt, ...) __attribute__((format(PBT_CR_PRINTF_, 1, 2)));
void pbt_cr_skip(const char *fmt, ...) __attribute__((noreturn));

#define Test(suite, name, ...)                                                  \
	static void suite##_##name##_impl(void);                                \
	static const struct pbt_cr_opts suite##_##name##_opts = { 0, __VA_ARGS__ }; \
	static struct pbt_cr_test suite##_##name##_test = {                     \
		#suite, #name, suite##_##name##_impl, &suite##_##name##_opts, NULL \
	};                                                                      \
	__attribute__((constructor)) static void suite##_##name##_reg(void)     \
	{                                                                       \
		pbt_cr_register(&suite##_##name##_test);                        \
	}                                                                       \
	static void suite##_##name##_impl(void)

/* The message arguments are optional: a trailing "" keeps the macro's
 * variadic part non-empty, and pbt_cr_fail() ignores what its format
 * string does not use. */
#define PBT_CR_CHECK_(ok, expr, ...) \
	((ok) ? (void)0 : pbt_cr_fail(__FILE__, __LINE__, expr, "" __VA_ARGS__))
#define PBT_CR_ASSERT_(cond, ...) PBT_CR_CHECK_(cond, #cond, __VA_ARGS__)
#define PBT_CR_NOT_(cond, ...) PBT_CR_CHECK_(!(cond), "!(" #cond ")", __VA_ARGS__)
#define PBT_CR_NULL_(op, p, ...) PBT_CR_CHECK_((p) op NULL, #p " " #op " NULL", __VA_ARGS__)
#define PBT_CR_CMP_(op, a, b, ...) PBT_CR_CHECK_((a) op (b), #a " " #op " " #b, __VA_ARGS__)
#define PBT_CR_STR_(a, b, ...) \
	PBT_CR_CHECK_(strcmp((a), (b)) == 0, "strcmp(" #a ", " #b ") == 0", __VA_ARGS__)
#define PBT_CR_ARR_(a, b, n, ...) \
	PBT_CR_CHECK_(memcmp((a), (b), (n)) == 0, "memcmp(" #a ", " #b ", " #n ") == 0", __VA_ARGS__)

#define cr_assert(...) PBT_CR_ASSERT_(__VA_ARGS__, "")
#define cr_assert_not(...) PBT_CR_NOT_(__VA_ARGS__, "")
#define cr_assert_eq(...) PBT_CR_CMP_(==, __VA_ARGS__, "")
#define cr_assert_neq(...) PBT_CR_CMP_(!=, __VA_ARGS__, "")
#define cr_assert_lt(...) PBT_CR_CMP_(<, __VA_ARGS__, "")
#define cr_assert_leq(...) PBT_CR_CMP_(<=, __VA_ARGS__, "")
#define cr_assert_gt(...) PBT_CR_CMP_(>, __VA_ARGS__, "")
#define cr_assert_geq(...) PBT_CR_CMP_(>=, __VA_ARGS__, "")
#define cr_assert_str_eq(...) PBT_CR_STR_(__VA_ARGS__, "")
#define cr_assert_arr_eq(...) PBT_CR_ARR_(__VA_ARGS__, "")
#define cr_assert_null(...) PBT_CR_NULL_(==, __VA_ARGS__, "")
#define cr_assert_not_null(...) PBT_CR_NULL_(!=, __VA_ARGS__, "")
#define cr_assert_fail(...) PBT_CR_CHECK_(0, "cr_assert_fail", __VA_ARGS__)
#define cr_log_info(...) pbt_cr_log(__VA_ARGS__)
/* A skipped test exits with 77; the runner counts it apart. */
#define cr_skip_test(...) pbt_cr_skip("" __VA_ARGS__)

#endif
