/* The message types both sides register (the README's example). */
#ifndef CALC_TYPES_H
#define CALC_TYPES_H
#include <pbpipe/pbpipe.h>
#include "calc.pb.h"
#include "calc_fingerprint.h"

static const pbp_msgtype types[] = {
    PBP_MSGTYPE(calc_Type_ADD, calc_Add),
    PBP_MSGTYPE(calc_Type_SUM, calc_Sum),
};

static pbp_channel_options
calc_options(void)
{
    pbp_channel_options co = PBP_CHANNEL_OPTIONS_INIT;
    co.types = types;
    co.ntypes = 2;
    co.schema_fingerprint = CALC_SCHEMA_FINGERPRINT;
    return co;
}
#endif
