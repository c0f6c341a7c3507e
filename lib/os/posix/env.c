/*
 * env.c: the environment a spawned child gets: the application's (or
 * ours) with PBPIPE_PARENT_PID=<our pid> (os.h: PBP__PARENT_PID_ENV), by
 * which the helper tells a parent that died before it could watch it
 * (wire/handshake.c).  Built as a new envp for posix_spawn: setenv() in
 * the parent would change the environment of the whole process, and race
 * with any thread that reads it.
 */
#include "pbp_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "posix.h"

extern char **environ;

char **
pbp__env_with_parent(char *const *envp, char *entry, size_t size)
{
	static const char name[] = PBP__PARENT_PID_ENV "=";
	char *const *src = envp != NULL ? envp : environ;
	size_t n = 0, i, k = 0;
	char **v;

	while (src != NULL && src[n] != NULL)
		n++;
	if ((v = calloc(n + 2, sizeof *v)) == NULL)
		return NULL;
	/* Any value the application or our own environment had is dropped:
	 * it names someone else (a stale one inherited from our parent). */
	for (i = 0; i < n; i++)
		if (strncmp(src[i], name, sizeof name - 1) != 0)
			v[k++] = src[i];
	snprintf(entry, size, "%s%ld", name, (long)getpid());
	v[k++] = entry;
	v[k] = NULL;
	return v;
}
