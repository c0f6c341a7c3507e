#include <inttypes.h>
#include <stdio.h>

#include "app.pb.h"
#include "app_fingerprint.h"

int
main(void)
{
	app_Note n = app_Note_init_zero;

	printf("fingerprint=%016" PRIx64 " text_size=%zu\n", (uint64_t)APP_SCHEMA_FINGERPRINT,
	       sizeof n.text);
	return 0;
}
