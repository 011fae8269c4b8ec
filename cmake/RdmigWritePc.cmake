# Runs at install time (cmake/RdmigInstall.cmake): writes RDMIG_PC_OUT from
# RDMIG_PC_IN for the prefix being installed to, which `cmake --install
# --prefix` may have changed since configuration. Relative directories become
# ${prefix}/DIR, so `pkg-config --define-variable=prefix=DIR` moves them all.
foreach(_d LIBDIR INCLUDEDIR)
  if(NOT IS_ABSOLUTE "${RDMIG_PC_${_d}}")
    set(RDMIG_PC_${_d} "\${prefix}/${RDMIG_PC_${_d}}")
  endif()
endforeach()
set(RDMIG_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
configure_file("${RDMIG_PC_IN}" "${RDMIG_PC_OUT}" @ONLY)
