# What `cmake --install` puts where (GNUInstallDirs; paths below are relative
# to the prefix, /usr/local by default). README "Installing" and
# docs/embedding.md describe the result; tests/install checks it.
#
#   bin/rdmig                                   the tool
#   lib/librdmig.so.N.M.P, .so.N, .so; librdmig.a
#   lib/pkgconfig/rdmig.pc
#   lib/cmake/rdmig/                            rdmigConfig.cmake, version, targets
#   include/rdmig/*.h                           the public headers
#   share/man/man1/rdmig.1
#   share/doc/rdmig/LICENSE, examples/
#   share/rdmig/soft-roce-setup/                rxe-host, rxe-vm, rxe-pair, README.md
#
# Components: "runtime" is what running rdmig needs, "dev" what building
# against librdmig needs, for packagers who split them.
include(CMakePackageConfigHelpers)

set(RDMIG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/rdmig)

install(TARGETS rdmig RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(TARGETS rdmig_shared EXPORT rdmigTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev)
install(TARGETS rdmig_static EXPORT rdmigStaticTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)

# Every header in include/rdmig/ is public: tests/install checks that each
# function they declare is exported.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/rdmig
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/rdmig/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/rdmig COMPONENT dev)

# rdmig.pc is written at install time, so that `cmake --install --prefix DIR`
# (a staging tree, a package root) gets a prefix= line naming DIR.
install(CODE "
  set(RDMIG_PC_IN \"${CMAKE_CURRENT_LIST_DIR}/rdmig.pc.in\")
  set(RDMIG_PC_OUT \"${PROJECT_BINARY_DIR}/rdmig.pc\")
  set(RDMIG_PC_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(RDMIG_PC_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(RDMIG_PC_VERSION \"${PROJECT_VERSION}\")
  set(RDMIG_PC_REQUIRES_PRIVATE \"${RDMIG_PC_REQUIRES_PRIVATE}\")
  set(RDMIG_PC_LIBS_PRIVATE \"${RDMIG_PC_LIBS_PRIVATE}\")
  include(\"${CMAKE_CURRENT_LIST_DIR}/RdmigWritePc.cmake\")
" COMPONENT dev)
install(FILES ${PROJECT_BINARY_DIR}/rdmig.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# The CMake package: find_package(rdmig) gives rdmig::rdmig (shared);
# find_package(rdmig COMPONENTS static) also rdmig::rdmig_static.
install(EXPORT rdmigTargets NAMESPACE rdmig:: DESTINATION ${RDMIG_CMAKE_DIR} COMPONENT dev)
install(EXPORT rdmigStaticTargets NAMESPACE rdmig:: DESTINATION ${RDMIG_CMAKE_DIR}
        COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/rdmigConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/rdmigConfig.cmake
                              INSTALL_DESTINATION ${RDMIG_CMAKE_DIR})
# Until 1.0 a minor release may change the API, so 0.x asks for the same minor.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_rdmig_compat SameMinorVersion)
else()
  set(_rdmig_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/rdmigConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY ${_rdmig_compat})
install(FILES ${PROJECT_BINARY_DIR}/rdmigConfig.cmake
              ${PROJECT_BINARY_DIR}/rdmigConfigVersion.cmake
        DESTINATION ${RDMIG_CMAKE_DIR} COMPONENT dev)

install(FILES ${PROJECT_SOURCE_DIR}/man/rdmig.1
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR}
        COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/examples/embed.c
              ${PROJECT_SOURCE_DIR}/examples/CMakeLists.txt
              ${PROJECT_SOURCE_DIR}/examples/Makefile
              ${PROJECT_SOURCE_DIR}/examples/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples COMPONENT dev)

# The SoftRoCE scripts stay together: rxe-host points at rxe-vm next to it.
set(_rdmig_rxe_dir ${CMAKE_INSTALL_DATADIR}/rdmig/soft-roce-setup)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/soft-roce-setup/rxe-host
                 ${PROJECT_SOURCE_DIR}/soft-roce-setup/rxe-vm
                 ${PROJECT_SOURCE_DIR}/soft-roce-setup/rxe-pair
        DESTINATION ${_rdmig_rxe_dir} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/soft-roce-setup/README.md DESTINATION ${_rdmig_rxe_dir}
        COMPONENT runtime)
