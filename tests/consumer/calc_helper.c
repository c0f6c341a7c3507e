/* The README's helper. */
#include <stdio.h>
#include "calc_types.h"

int main(int argc, char **argv) {
    pbp_channel_options co = calc_options();
    pbp_channel *ch; pbp_error err;
    if (pbp_channel_from_argv(&ch, argc, argv, &co, &err) != 0) {
        fprintf(stderr, "%s\nusage: calc-helper WRITE_FD READ_FD\n", err.msg);
        return 2;
    }
    if (pbp_channel_handshake(ch) != 0) return 1;
    union { calc_Add add; } in;
    uint32_t type;
    int rc;
    while ((rc = pbp_channel_recv_msg(ch, &type, &in, sizeof in)) == 0) {
        calc_Sum s = { in.add.a + in.add.b };
        if (pbp_channel_send(ch, calc_Type_SUM, &s) != 0) return 1;
    }
    pbp_channel_free(ch);
    return rc == PBP_EOF ? 0 : 1;                  /* PBP_EOF: the parent ended it */
}
