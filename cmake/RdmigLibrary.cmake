# librdmig: the library modules (common, transport, numa, engine) as one
# shared library that exports the public API only, and one static archive.
#
# The modules keep their own static targets (rdmig_common, ...), which the
# tools, tests and benchmarks link; librdmig reuses their object files, so
# nothing is compiled twice. A module joins the library by calling
# rdmig_library_part() in its CMakeLists.txt; the top level calls
# rdmig_library_build() once every module is defined.
#
# What is exported: the functions cmake/librdmig.map lists, which must be
# exactly those the headers in include/rdmig/ declare (tests/install checks
# both ways). Everything is compiled with -fvisibility=hidden; the public
# headers wrap their declarations in `#pragma GCC visibility push(default)`,
# and the version script makes anything else that slipped through local.
include(CheckLinkerFlag)

configure_file(${PROJECT_SOURCE_DIR}/include/rdmig/version.h.in
               ${PROJECT_BINARY_DIR}/include/rdmig/version.h @ONLY)

set(RDMIG_EXPORT_MAP ${CMAKE_CURRENT_LIST_DIR}/librdmig.map)

# rdmig_library_part(<static target>): compile the module position-independent
# with hidden symbols and put its objects into librdmig.
function(rdmig_library_part target)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON
                                             C_VISIBILITY_PRESET hidden)
  set_property(GLOBAL APPEND PROPERTY RDMIG_LIBRARY_PARTS ${target})
endfunction()

# What the parts link, sorted into imported pkg-config targets (with their
# module names, for rdmig.pc and the CMake package) and plain flags. A new kind
# of dependency stops configuration here rather than giving an installed
# librdmig that embedders cannot link.
function(_rdmig_library_deps parts)
  set(targets "")
  set(modules "")
  set(pairs "")
  set(flags "")
  foreach(part IN LISTS parts)
    get_target_property(links ${part} LINK_LIBRARIES)
    if(NOT links)
      continue()
    endif()
    foreach(l IN LISTS links)
      if(l IN_LIST parts)
        continue()
      elseif(l MATCHES "^rdmig::(.+)$")
        set(name ${CMAKE_MATCH_1})
        get_property(module GLOBAL PROPERTY RDMIG_DEP_MODULE_${name})
        get_target_property(real ${l} ALIASED_TARGET)
        if(NOT module OR NOT real)
          message(FATAL_ERROR "librdmig: ${part} links ${l}, which rdmig_dep() in "
                              "cmake/RdmigDeps.cmake did not define")
        endif()
        list(APPEND targets ${real})
        list(APPEND modules ${module})
        list(APPEND pairs "${name}=${module}")
      elseif(l STREQUAL "Threads::Threads")
        list(APPEND targets Threads::Threads)
        list(APPEND flags -pthread)
      elseif(l STREQUAL "m")
        list(APPEND targets m)
        list(APPEND flags -lm)
      else()
        message(FATAL_ERROR
          "librdmig: ${part} links '${l}', which is neither another library part, a "
          "pkg-config dependency (rdmig::NAME) nor libm/threads: teach "
          "cmake/RdmigLibrary.cmake how rdmig.pc and the CMake package pass it on")
      endif()
    endforeach()
  endforeach()
  foreach(v targets modules pairs flags)
    list(REMOVE_DUPLICATES ${v})
  endforeach()
  set(RDMIG_LIB_DEP_TARGETS "${targets}" PARENT_SCOPE)
  list(JOIN modules " " modules)
  set(RDMIG_PC_REQUIRES_PRIVATE "${modules}" PARENT_SCOPE)
  set(RDMIG_STATIC_PKG_DEPS "${pairs}" PARENT_SCOPE)
  list(JOIN flags " " flags)
  set(RDMIG_PC_LIBS_PRIVATE "${flags}" PARENT_SCOPE)
endfunction()

# Defines rdmig_shared (librdmig.so.N, exported as rdmig::rdmig) and
# rdmig_static (librdmig.a, exported as rdmig::rdmig_static), both in
# ${PROJECT_BINARY_DIR}/lib. Sets in the caller the dependency variables
# RdmigInstall.cmake writes into rdmig.pc and the CMake package.
macro(rdmig_library_build)
  get_property(_rdmig_parts GLOBAL PROPERTY RDMIG_LIBRARY_PARTS)
  if(NOT _rdmig_parts)
    message(FATAL_ERROR "librdmig: no module called rdmig_library_part()")
  endif()
  set(_rdmig_objs "")
  foreach(_p IN LISTS _rdmig_parts)
    list(APPEND _rdmig_objs $<TARGET_OBJECTS:${_p}>)
  endforeach()
  _rdmig_library_deps("${_rdmig_parts}")

  add_library(rdmig_shared SHARED ${_rdmig_objs})
  add_library(rdmig_static STATIC ${_rdmig_objs})
  foreach(_t rdmig_shared rdmig_static)
    # Objects only: nothing tells CMake which linker to use.
    set_target_properties(${_t} PROPERTIES OUTPUT_NAME rdmig LINKER_LANGUAGE C
                                           ARCHIVE_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib
                                           LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib)
    target_include_directories(${_t} INTERFACE
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  endforeach()
  # The shared library's dependencies are its own (DT_NEEDED); a static
  # archive hands them to whoever links it.
  target_link_libraries(rdmig_shared PRIVATE ${RDMIG_LIB_DEP_TARGETS})
  target_link_libraries(rdmig_static INTERFACE ${RDMIG_LIB_DEP_TARGETS})
  set_target_properties(rdmig_shared PROPERTIES
    VERSION ${PROJECT_VERSION} SOVERSION ${RDMIG_SOVERSION} EXPORT_NAME rdmig
    LINK_DEPENDS ${RDMIG_EXPORT_MAP})
  set_target_properties(rdmig_static PROPERTIES EXPORT_NAME rdmig_static)
  # --no-undefined: a dependency missing from the parts' links fails here,
  # not in an embedder's link. --no-undefined-version: a name in the map that
  # the library does not define (renamed, removed) fails too.
  target_link_options(rdmig_shared PRIVATE "LINKER:--version-script=${RDMIG_EXPORT_MAP}")
  # clang leaves a shared library's sanitizer runtime to the executable.
  if(NOT (RDMIG_SANITIZE AND CMAKE_C_COMPILER_ID MATCHES "Clang"))
    target_link_options(rdmig_shared PRIVATE "LINKER:--no-undefined")
  endif()
  check_linker_flag(C "LINKER:--no-undefined-version" RDMIG_LD_NO_UNDEFINED_VERSION)
  if(RDMIG_LD_NO_UNDEFINED_VERSION)
    target_link_options(rdmig_shared PRIVATE "LINKER:--no-undefined-version")
  endif()
  add_library(rdmig::rdmig ALIAS rdmig_shared)
  add_library(rdmig::rdmig_static ALIAS rdmig_static)
endmacro()
