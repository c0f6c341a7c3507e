# Install rules: headers, the static and shared libraries, the CMake package
# (pbpipe::pbpipe, pbpipe::pbpipe_shared, the .proto helper and the m32
# toolchain file), pbpipe.pc and pbpipe-static.pc.  Included from the top-level CMakeLists.txt.
include(CMakePackageConfigHelpers)

set(PBP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pbpipe)

# Windows: the static library only (see the top-level CMakeLists.txt).
set(_pbp_install_libs pbpipe)
if(PBP_HAVE_SHARED)
  list(APPEND _pbp_install_libs pbpipe_shared)
endif()
install(TARGETS ${_pbp_install_libs} EXPORT pbpipeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/pbpipe DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(EXPORT pbpipeTargets NAMESPACE pbpipe:: DESTINATION ${PBP_CMAKE_DIR})

# nanopb built from source (PBP_NANOPB_FROM_SOURCE, the 32-bit tree): there
# is no system nanopb package for this target, so the install carries its
# own, pbpipe::nanopb (libpbpipe_nanopb.a and nanopb's headers), and
# pbpipeConfig.cmake defines nanopb::protobuf-nanopb-static from it.
if(TARGET pbp_nanopb)
  install(TARGETS pbp_nanopb EXPORT pbpipeNanopbTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT pbpipeNanopbTargets NAMESPACE pbpipe:: DESTINATION ${PBP_CMAKE_DIR})
  install(FILES ${PBP_NANOPB_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/pbpipe-nanopb)
  set(PBP_PC_NANOPB_LIBS "-lpbpipe_nanopb")
  set(PBP_PC_NANOPB_CFLAGS " -I\${includedir}/pbpipe-nanopb")
  set(PBP_CONFIG_NANOPB_FROM_SOURCE ON)
else()
  set(PBP_PC_NANOPB_LIBS "-lprotobuf-nanopb")
  set(PBP_PC_NANOPB_CFLAGS "")
  set(PBP_CONFIG_NANOPB_FROM_SOURCE OFF)
endif()

configure_package_config_file(cmake/pbpipeConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/pbpipeConfig.cmake
  INSTALL_DESTINATION ${PBP_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/pbpipeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/pbpipeConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/pbpipeConfigVersion.cmake
  cmake/PbpipeProtobuf.cmake
  cmake/PbpipeFingerprint.cmake
  cmake/m32.cmake
  DESTINATION ${PBP_CMAKE_DIR})

# The .pc file finds its prefix relative to itself (${pcfiledir}), so it
# stays right after `cmake --install --prefix` or DESTDIR relocation.
file(RELATIVE_PATH PBP_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" PBP_PC_TO_PREFIX "${PBP_PC_TO_PREFIX}")
# pbpipe.pc links libpbpipe.so; pbpipe-static.pc links libpbpipe.a, for
# programs that must not depend on finding libpbpipe.so at run time
# (README, "Installing").
set(PBP_PC_NAME pbpipe)
set(PBP_PC_DESC "")
set(PBP_PC_LIB "-lpbpipe")
configure_file(cmake/pbpipe.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pbpipe.pc @ONLY)
set(PBP_PC_NAME pbpipe-static)
set(PBP_PC_DESC " (static library)")
set(PBP_PC_LIB "-l:libpbpipe.a")
if(NOT WIN32)
  string(APPEND PBP_PC_LIB " -pthread") # the parent watch thread (watch.c)
endif()
configure_file(cmake/pbpipe.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pbpipe-static.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pbpipe.pc ${CMAKE_CURRENT_BINARY_DIR}/pbpipe-static.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
