# xarch.cmake: pbpipe across pointer widths (README "A 32-bit helper").
# Included from tests/CMakeLists.txt in every tree, with or without
# Criterion.
#
# Every tree builds the driver `xarch` (xarch.c) and the target
# `xarch-programs`: what a tree of the other width runs.  With PBP_M32=ON,
# a 64-bit tree also configures and builds a 32-bit tree of the same
# sources in <build>/m32 (ExternalProject with cmake/m32.cmake, rebuilt on
# every build of this tree) and registers the tests that cross widths:
#
#   xarch_native              this tree's xarch -> this tree's children
#   xarch_64_parent_32_child  this tree's xarch -> the 32-bit children
#   xarch_32_parent_64_child  the 32-bit xarch  -> this tree's children
#   xarch_32_parent_32_child  the 32-bit xarch  -> the 32-bit children
#   demo_64_parent_32_child   pbpipe-parent --child <the 32-bit pbpipe-child>
#   legacy_host               legacy-host -> the 32-bit-only legacy-helper
#   pool_64_32_mix            pbpipe-pool with a 64-bit and a 32-bit
#                             pbpipe-child in one pool, helpers killed
#
# xarch's children are pbptest-peer and pbpipe-child (see xarch.c).
# xarch_native needs no PBP_M32.

add_executable(xarch xarch.c)
target_link_libraries(xarch PRIVATE pbpipe pbptest_proto)
target_compile_options(xarch PRIVATE ${PBP_WARNINGS})
if(TARGET demo_proto)
  # Calls to pbpipe-child --serve, whose schema is the demo's.
  target_link_libraries(xarch PRIVATE demo_proto)
  target_compile_definitions(xarch PRIVATE XARCH_HAVE_DEMO)
endif()

add_custom_target(xarch-programs)
add_dependencies(xarch-programs pbpipe pbpipe_shared pbptest-peer xarch)
foreach(_pbp_t pbpipe-parent pbpipe-child legacy-helper)
  if(TARGET ${_pbp_t})
    add_dependencies(xarch-programs ${_pbp_t})
  endif()
endforeach()

if(PBP_M32)
  if(NOT CMAKE_SIZEOF_VOID_P EQUAL 8)
    message(FATAL_ERROR "PBP_M32=ON builds a 32-bit tree beside a 64-bit one; "
                        "this tree is ${CMAKE_SIZEOF_VOID_P}-byte")
  endif()
  include(ExternalProject)
  set(PBP_M32_DIR ${PROJECT_BINARY_DIR}/m32)
  # Only the programs the tests run: the Criterion tests cannot be built
  # 32-bit (Debian's libcriterion-dev:i386 does not co-install).
  ExternalProject_Add(pbpipe_m32
    SOURCE_DIR ${PROJECT_SOURCE_DIR}
    BINARY_DIR ${PBP_M32_DIR}
    CMAKE_ARGS
      -DCMAKE_TOOLCHAIN_FILE=${PROJECT_SOURCE_DIR}/cmake/m32.cmake
      -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
      -DPBP_BUILD_TESTS=OFF -DPBP_BUILD_XARCH=ON -DPBP_BUILD_EXAMPLES=ON -DPBP_M32=OFF
      -DPBP_WERROR=${PBP_WERROR}
      -DPBP_NANOPB_SOURCE_DIR=${PBP_NANOPB_SOURCE_DIR}
    BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> --target xarch-programs
    INSTALL_COMMAND ""
    BUILD_ALWAYS ON)
endif()

if(PBP_BUILD_TESTS)
  math(EXPR _pbp_bits "${CMAKE_SIZEOF_VOID_P} * 8")
  # This tree's children; the 32-bit tree always has both.
  set(_pbp_here $<TARGET_FILE:pbptest-peer>)
  set(_pbp_m32 ${PBP_M32_DIR}/tests/pbptest-peer ${PBP_M32_DIR}/bin/pbpipe-child)
  if(TARGET pbpipe-child AND TARGET demo_proto)
    list(APPEND _pbp_here $<TARGET_FILE:pbpipe-child>)
  endif()
  set(_pbp_xtests xarch_native)
  add_test(NAME xarch_native COMMAND xarch --expect-bits ${_pbp_bits} ${_pbp_here})
  if(PBP_M32)
    list(APPEND _pbp_xtests xarch_64_parent_32_child xarch_32_parent_64_child
                            xarch_32_parent_32_child)
    if(NOT TARGET demo_proto)
      list(REMOVE_AT _pbp_m32 1) # this tree's xarch has no demo schema
    endif()
    add_test(NAME xarch_64_parent_32_child COMMAND xarch --expect-bits 32 ${_pbp_m32})
    add_test(NAME xarch_32_parent_64_child
             COMMAND ${PBP_M32_DIR}/tests/xarch --expect-bits 64 ${_pbp_here})
    add_test(NAME xarch_32_parent_32_child
             COMMAND ${PBP_M32_DIR}/tests/xarch --expect-bits 32
                     ${PBP_M32_DIR}/tests/pbptest-peer ${PBP_M32_DIR}/bin/pbpipe-child)
    if(TARGET pbpipe-parent)
      list(APPEND _pbp_xtests demo_64_parent_32_child)
      add_test(NAME demo_64_parent_32_child
               COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/expect-output.sh
                       "^child: received \"Hello from Process A!\"$"
                       "^parent: received \"Hello from Process B!\"$"
                       "^child: end of stream \\(parent said goodbye\\)"
                       "^parent: child exited with status 0$"
                       -- $<TARGET_FILE:pbpipe-parent> --child ${PBP_M32_DIR}/bin/pbpipe-child)
    endif()
    if(TARGET pbpipe-pool)
      # One pool of 4 slots, 64- and 32-bit pbpipe-child in turn, 20,000
      # concurrent calls, a random helper killed every 40 ms: no call
      # lost, and the ELF class of every slot's running helper, read at
      # the start and after each restart, must show both widths.
      list(APPEND _pbp_xtests pool_64_32_mix)
      add_test(NAME pool_64_32_mix
               COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/expect-output.sh
                       "^pool: slot [0-9]+ restarted as pid [0-9]+"
                       "^pool: 20000 calls ok, 0 lost, 0 failed, .* \\([1-9][0-9]* kills\\)"
                       "^pool: helper widths seen: 64-bit 32-bit$"
                       "^pool: all checks passed$"
                       -- $<TARGET_FILE:pbpipe-pool> --helpers 4 --calls 20000 --window 16
                          --kill-every-ms 40 --expect-widths
                          --child $<TARGET_FILE:pbpipe-child>
                          --child ${PBP_M32_DIR}/bin/pbpipe-child)
    endif()
    if(TARGET legacy-host)
      list(APPEND _pbp_xtests legacy_host)
      # The values a 32-bit build of the legacy library computes; a 64-bit
      # build would give other ones (child/legacy32/legacy.h).
      add_test(NAME legacy_host
               COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/expect-output.sh
                       "^host: 64-bit, helper pid [0-9]+ is 32-bit$"
                       "^helper: ledger98 3\\.1 \\(i386\\), long is 32 bits, a record is 20 bytes$"
                       "^checksum\\(\"Hello from Process A!\"\\) = 0xf6c76eb0$"
                       "^record 42 \"ACME Corp\" -1250: 2a000000 1efbffff 41434d4520436f7270000000$"
                       "^checksum\\(record\\) = 0xc89c7b64$"
                       "^pack \"An overly long name\": error -2 \\(name too long\\)$"
                       "^host: helper exited with status 0$"
                       -- $<TARGET_FILE:legacy-host> ${PBP_M32_DIR}/bin/legacy-helper)
    endif()
  endif()
  set_tests_properties(${_pbp_xtests} PROPERTIES TIMEOUT 120)
endif()

# xarch-process: the child's lifecycle without Criterion (fds, statuses,
# signal names, deadlines, kill, close, reaping), for the trees that have
# no Criterion tests: scripts/test-musl runs it there.  Here it is the
# ctest plain_process, and with PBP_M32 also plain_process_32.
add_executable(xarch-process xarch_process.c)
target_link_libraries(xarch-process PRIVATE pbpipe pbptest_proto)
target_compile_options(xarch-process PRIVATE ${PBP_WARNINGS})
add_dependencies(xarch-programs xarch-process)
if(PBP_BUILD_TESTS)
  add_test(NAME plain_process COMMAND xarch-process $<TARGET_FILE:pbptest-peer>)
  set_tests_properties(plain_process PROPERTIES TIMEOUT 120)
  if(PBP_M32)
    # The 32-bit library's spawning, with a 32-bit child.
    add_test(NAME plain_process_32
             COMMAND ${PBP_M32_DIR}/tests/xarch-process ${PBP_M32_DIR}/tests/pbptest-peer)
    set_tests_properties(plain_process_32 PROPERTIES TIMEOUT 120)
  endif()
endif()
