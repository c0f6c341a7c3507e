# Install rules: headers, the static and shared libraries, the CMake package
# (pbpipe::pbpipe, pbpipe::pbpipe_shared, and the .proto helper) and
# pbpipe.pc.  Included from the top-level CMakeLists.txt.
include(CMakePackageConfigHelpers)

set(PBP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pbpipe)

install(TARGETS pbpipe pbpipe_shared EXPORT pbpipeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/pbpipe DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(EXPORT pbpipeTargets NAMESPACE pbpipe:: DESTINATION ${PBP_CMAKE_DIR})

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
  DESTINATION ${PBP_CMAKE_DIR})

# The .pc file finds its prefix relative to itself (${pcfiledir}), so it
# stays right after `cmake --install --prefix` or DESTDIR relocation.
file(RELATIVE_PATH PBP_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" PBP_PC_TO_PREFIX "${PBP_PC_TO_PREFIX}")
configure_file(cmake/pbpipe.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pbpipe.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pbpipe.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
