/*
 * pool_helper.h: the operations pbptest-pool-helper (pool_helper.c)
 * serves, shared with the pool tests (test_pool.c).
 *
 * A request is a pbptest_Numbers with i32 = an operation below and i64 =
 * its argument.  The reply is a pbptest_Numbers with u64 = the helper's
 * pid, i64 = argument + 1, i32 = its pointer width in bits and s64 = its
 * --tag (0 without one).
 */
#ifndef PBPTEST_POOL_HELPER_H
#define PBPTEST_POOL_HELPER_H

enum pool_op {
	POOL_OP_ECHO = 1,       /* reply at once */
	POOL_OP_SLEEP = 2,      /* sleep arg ms, then reply */
	POOL_OP_CRASH = 3,      /* write a line to stderr, then abort() */
	POOL_OP_CRASH_ONCE = 4, /* crash if this call is the first to create
	                           the --crash-flag file, else reply */
	POOL_OP_EXIT = 5,       /* exit(arg) inside the handler */
	POOL_OP_HANG = 6,       /* sleep for ever inside the handler */
	POOL_OP_APP_ERROR = 7,  /* answer with application error arg and the
	                           message "application error <arg>" */
	POOL_OP_ONEWAY = 8,     /* send arg one-way Numbers messages, then reply */
	POOL_OP_CALLBACK = 9,   /* call the parent back (a nested call: Numbers
	                           with i32 0, i64 arg), reply with i64 = its
	                           answer's i64 + 1; its error code passed on */
};

#endif
