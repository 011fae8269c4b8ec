/* SPDX-License-Identifier: MIT */
/* What the harness's files share with each other and nobody else. */
#ifndef RDMIG_TESTS_QEMU_INT_H
#define RDMIG_TESTS_QEMU_INT_H

#include <stdbool.h>

/* Kill every child still running, showing its output first when asked. */
void qh_kill_all(bool show_logs);

#endif
