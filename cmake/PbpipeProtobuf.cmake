# PbpipeProtobuf.cmake: generate nanopb C code from .proto files at build time.
#
# pbpipe_generate_c(
#   PROTOS <file.proto>...        .proto files (absolute or relative to the
#                                 current source dir), all under PROTO_DIR
#   [PROTO_DIR <dir>]             import root (-I); default: dir of the first
#   [FINGERPRINT <NAME>]          also write <NAME>_fingerprint.h defining
#                                 <NAME>_SCHEMA_FINGERPRINT (see below)
#   OUT_DIR <var> OUT_SRCS <var> OUT_HDRS <var>)
#
# pbpipe_add_proto_library(<target> PROTOS ... [PROTO_DIR ...] [FINGERPRINT NAME])
#   Creates a STATIC library <target> holding the generated code, with the
#   output directory as a PUBLIC include directory and nanopb linked.
#   Link it from every target that uses the messages; list the generated
#   sources in no other target.
#
# Each <name>.options file next to a .proto is applied.  An options line that
# matches no field fails the build (--error-on-unmatched).  Editing any
# .proto or .options regenerates everything on the next build.
#
# The schema fingerprint is the first 8 bytes (as a big-endian 64-bit number)
# of the SHA-256 of the FileDescriptorSet that `protoc --descriptor_set_out`
# writes for the sorted PROTOS without source info: comments and whitespace
# do not change it; any change to messages, fields, numbers or types does.
# Pass it as schema_fingerprint in pbp_channel_options so that a parent and a
# child built from different schemas refuse each other at the handshake.

include_guard(GLOBAL)
set(_PBPIPE_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(_pbpipe_find_tools)
  # Debian's /usr/bin/nanopb_generator.py, run as the script itself: its
  # shebang is /usr/bin/python3, which has python3-protobuf.  /usr/bin is
  # searched alone first: find_program() searches the CMAKE_PREFIX_PATH
  # prefixes before HINTS, and a prefix may hold another generator (nanopb's
  # own `cmake --install` puts one in <prefix>/bin, which runs with the
  # first python3 on PATH, often without protobuf: "No module named
  # 'google'").  Only where /usr/bin has none is the usual search used.
  # -DNANOPB_GENERATOR=... or -DPBPIPE_PROTOC=... choose others.
  if(NOT NANOPB_GENERATOR)
    find_program(NANOPB_GENERATOR NAMES nanopb_generator.py nanopb_generator
                 PATHS /usr/bin NO_DEFAULT_PATH)
  endif()
  if(NOT NANOPB_GENERATOR)
    find_program(NANOPB_GENERATOR NAMES nanopb_generator.py nanopb_generator REQUIRED)
  endif()
  if(NOT PBPIPE_PROTOC)
    find_program(PBPIPE_PROTOC NAMES protoc PATHS /usr/bin NO_DEFAULT_PATH)
  endif()
  if(NOT PBPIPE_PROTOC)
    find_program(PBPIPE_PROTOC NAMES protoc REQUIRED)
  endif()
endfunction()

function(pbpipe_generate_c)
  cmake_parse_arguments(G "" "PROTO_DIR;FINGERPRINT;OUT_DIR;OUT_SRCS;OUT_HDRS"
                        "PROTOS" ${ARGN})
  if(NOT G_PROTOS)
    message(FATAL_ERROR "pbpipe_generate_c: PROTOS is required")
  endif()
  _pbpipe_find_tools()
  set(protos "")
  foreach(p IN LISTS G_PROTOS)
    get_filename_component(abs "${p}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND protos "${abs}")
  endforeach()
  list(SORT protos)
  if(G_PROTO_DIR)
    get_filename_component(pdir "${G_PROTO_DIR}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  else()
    list(GET protos 0 first)
    get_filename_component(pdir "${first}" DIRECTORY)
  endif()
  string(MAKE_C_IDENTIFIER "${pdir}" tag)
  string(MD5 tag "${tag};${protos}")
  string(SUBSTRING "${tag}" 0 8 tag)
  set(gen "${CMAKE_CURRENT_BINARY_DIR}/pbpipe_gen_${tag}")

  set(srcs "")
  set(hdrs "")
  set(deps "")
  foreach(abs IN LISTS protos)
    file(RELATIVE_PATH rel "${pdir}" "${abs}")
    if(rel MATCHES "^\\.\\./")
      message(FATAL_ERROR "pbpipe_generate_c: ${abs} is not under PROTO_DIR ${pdir}")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    list(APPEND srcs "${gen}/${stem}.pb.c")
    list(APPEND hdrs "${gen}/${stem}.pb.h")
    list(APPEND deps "${abs}")
    get_filename_component(odir "${abs}" DIRECTORY)
    get_filename_component(oname "${abs}" NAME_WE)
    # An .options file that does not exist yet is still a dependency
    # candidate: CONFIGURE_DEPENDS globbing catches one added later.
    file(GLOB opt CONFIGURE_DEPENDS "${odir}/${oname}.options")
    list(APPEND deps ${opt})
  endforeach()

  set(fp_cmd "")
  if(G_FINGERPRINT)
    string(TOLOWER "${G_FINGERPRINT}" fplower)
    set(fp_header "${gen}/${fplower}_fingerprint.h")
    list(APPEND hdrs "${fp_header}")
    set(fp_cmd COMMAND ${CMAKE_COMMAND} "-DPROTOC=${PBPIPE_PROTOC}"
        "-DPROTO_DIR=${pdir}" "-DPROTOS=${protos}" "-DNAME=${G_FINGERPRINT}"
        "-DOUT=${fp_header}" -P "${_PBPIPE_CMAKE_DIR}/PbpipeFingerprint.cmake")
  endif()

  add_custom_command(
    OUTPUT ${srcs} ${hdrs}
    COMMAND ${CMAKE_COMMAND} -E make_directory "${gen}"
    COMMAND "${NANOPB_GENERATOR}" -q --error-on-unmatched -I "${pdir}" -D "${gen}" ${protos}
    ${fp_cmd}
    DEPENDS ${deps} "${_PBPIPE_CMAKE_DIR}/PbpipeFingerprint.cmake"
    COMMENT "nanopb: generating C from ${G_PROTOS}"
    VERBATIM)
  set(${G_OUT_DIR} "${gen}" PARENT_SCOPE)
  set(${G_OUT_SRCS} "${srcs}" PARENT_SCOPE)
  set(${G_OUT_HDRS} "${hdrs}" PARENT_SCOPE)
endfunction()

function(pbpipe_add_proto_library target)
  cmake_parse_arguments(L "" "PROTO_DIR;FINGERPRINT" "PROTOS" ${ARGN})
  set(extra "")
  if(L_PROTO_DIR)
    list(APPEND extra PROTO_DIR "${L_PROTO_DIR}")
  endif()
  if(L_FINGERPRINT)
    list(APPEND extra FINGERPRINT "${L_FINGERPRINT}")
  endif()
  pbpipe_generate_c(PROTOS ${L_PROTOS} ${extra}
                    OUT_DIR dir OUT_SRCS srcs OUT_HDRS hdrs)
  add_library(${target} STATIC ${srcs} ${hdrs})
  target_include_directories(${target} PUBLIC "$<BUILD_INTERFACE:${dir}>")
  target_link_libraries(${target} PUBLIC nanopb::protobuf-nanopb-static)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
