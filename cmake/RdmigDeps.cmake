# Every dependency comes from Debian's packages and is found through
# pkg-config. A missing one stops configuration with the package to install,
# because "Package 'x' not found" alone sends people searching.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config "
                      "(or run scripts/install-deps)")
endif()

# rdmig_dep(<target suffix> <pkg-config module> <Debian package>)
# defines the imported target rdmig::<suffix>.
function(rdmig_dep name module debpkg)
  pkg_check_modules(RDMIG_${name} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT RDMIG_${name}_FOUND)
    message(FATAL_ERROR
      "missing dependency '${module}': apt-get install ${debpkg} "
      "(or run scripts/install-deps, which installs everything rdmig needs)")
  endif()
  add_library(rdmig::${name} ALIAS PkgConfig::RDMIG_${name})
  # rdmig.pc and the CMake package name the module a static librdmig needs.
  set_property(GLOBAL PROPERTY RDMIG_DEP_MODULE_${name} ${module})
  message(STATUS "rdmig: ${module} ${RDMIG_${name}_VERSION}")
endfunction()

rdmig_dep(ibverbs libibverbs libibverbs-dev)
rdmig_dep(rdmacm librdmacm librdmacm-dev)
rdmig_dep(numa numa libnuma-dev)
rdmig_dep(hwloc hwloc libhwloc-dev)
rdmig_dep(zstd libzstd libzstd-dev)
rdmig_dep(jansson jansson libjansson-dev)
rdmig_dep(crypto libcrypto libssl-dev)
rdmig_dep(ssl libssl libssl-dev)
rdmig_dep(xxhash libxxhash libxxhash-dev)
if(RDMIG_BUILD_TESTS)
  rdmig_dep(cmocka cmocka libcmocka-dev)
endif()
if(RDMIG_BUILD_BENCH)
  rdmig_dep(benchmark benchmark libbenchmark-dev)
endif()
find_package(Threads REQUIRED)
