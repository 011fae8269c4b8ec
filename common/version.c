/* SPDX-License-Identifier: MIT */
#include "rdmig/version.h"

/*
 * Compiled into the library, unlike RDMIG_VERSION_STRING, which is compiled
 * into whoever includes the header: comparing the two tells an embedder that
 * the librdmig.so it loaded is not the one it was built against.
 */
const char *rdmig_version(void)
{
	return RDMIG_VERSION_STRING;
}
