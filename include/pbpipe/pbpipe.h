/*
 * pbpipe.h: the one header to include.
 *
 * pbpipe puts a helper process behind a typed, binary message channel over
 * two anonymous pipes: length-prefixed protobuf frames (nanopb), a
 * handshake, typed application messages and clean end-of-stream detection.
 */
#ifndef PBPIPE_PBPIPE_H
#define PBPIPE_PBPIPE_H

/* The one place the version is written; CMake parses these lines. */
#define PBP_VERSION_MAJOR 0
#define PBP_VERSION_MINOR 1
#define PBP_VERSION_PATCH 0
#define PBP_VERSION_STRING "0.1.0"

/* Wire protocol version spoken (Hello.major / Hello.minor). */
#define PBP_PROTOCOL_MAJOR 1
#define PBP_PROTOCOL_MINOR 2

#include <pbpipe/pbp_common.h>
#include <pbpipe/pbp_errors.h>
#include <pbpipe/pbp_channel.h>
#include <pbpipe/pbp_child.h>
#include <pbpipe/pbp_call.h>
#include <pbpipe/pbp_bytes.h>
#include <pbpipe/pbp_stream.h>
#include <pbpipe/pbp_pool.h>

#endif /* PBPIPE_PBPIPE_H */
