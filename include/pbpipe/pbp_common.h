/*
 * pbp_common.h: export macro and attributes shared by every pbpipe header.
 * Include <pbpipe/pbpipe.h> rather than this file.
 */
#ifndef PBPIPE_PBP_COMMON_H
#define PBPIPE_PBP_COMMON_H

#if defined(__GNUC__) || defined(__clang__)
#define PBP_API __attribute__((visibility("default")))
#define PBP_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define PBP_API
#define PBP_WARN_UNUSED
#endif

#endif /* PBPIPE_PBP_COMMON_H */
