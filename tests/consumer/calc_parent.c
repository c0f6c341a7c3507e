/* The README's parent, as a user project builds it against an installed
 * pbpipe.  Usage: calc-parent [HELPER] (default ./calc-helper). */
#include <stdio.h>
#include "calc_types.h"

int main(int argc, char **argv) {
    pbp_channel_options co = calc_options();
    pbp_spawn_options so = PBP_SPAWN_OPTIONS_INIT;
    so.channel = &co;

    pbp_child *c; pbp_error err;
    if (pbp_child_spawn(&c, argc > 1 ? argv[1] : "./calc-helper", NULL, &so, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);         /* exec failure, handshake failure... */
        return 1;
    }
    pbp_channel *ch = pbp_child_channel(c);
    calc_Add add = { .a = 2, .b = 40 };
    union { calc_Sum sum; } in;
    uint32_t type;
    if (pbp_channel_send(ch, calc_Type_ADD, &add) != 0 ||
        pbp_channel_recv_msg(ch, &type, &in, sizeof in) != 0)
        fprintf(stderr, "%s\n", pbp_channel_errmsg(ch));
    else
        printf("2 + 40 = %lld\n", (long long)in.sum.value);

    pbp_exit_status st;                            /* Goodbye, close, wait, */
    int rc = pbp_child_close(c, 2000, &st);        /* then SIGTERM, SIGKILL */
    pbp_child_free(c);
    return rc == 0 && st.exited && st.code == 0 ? 0 : 1;
}
