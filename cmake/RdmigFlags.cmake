# Warnings for every target of ours; CI adds -Werror via RDMIG_WERROR.
set(RDMIG_WARN_C
    -Wall -Wextra -Wshadow -Wformat=2 -Wformat-security -Wpointer-arith
    -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition
    -Wundef -Wvla -Wcast-align -Wwrite-strings -Wno-unused-parameter
    -Wno-missing-field-initializers)
set(RDMIG_WARN_CXX -Wall -Wextra -Wno-unused-parameter)
if(RDMIG_WERROR)
  list(APPEND RDMIG_WARN_C -Werror)
  list(APPEND RDMIG_WARN_CXX -Werror)
endif()
add_compile_options("$<$<COMPILE_LANGUAGE:C>:${RDMIG_WARN_C}>"
                    "$<$<COMPILE_LANGUAGE:CXX>:${RDMIG_WARN_CXX}>")
add_compile_definitions(_GNU_SOURCE)

if(RDMIG_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(RDMIG_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT RDMIG_SANITIZE STREQUAL "")
  message(FATAL_ERROR "RDMIG_SANITIZE must be empty, 'address' or 'thread'")
endif()
