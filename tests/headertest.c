/* The public header compiles alone, as C99 with -Wpedantic -Werror
 * (built as part of the tests; a failure breaks the build). */
#include <pbpipe/pbpipe.h>

int pbptest_header_compiles(void);

int
pbptest_header_compiles(void)
{
	pbp_channel_options o = PBP_CHANNEL_OPTIONS_INIT;
	pbp_spawn_options s = PBP_SPAWN_OPTIONS_INIT;

	return (int)o.version + (int)s.version + PBP_VERSION_MAJOR;
}
