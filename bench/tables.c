/* SPDX-License-Identifier: MIT */
/* Every benchmark table, in the order the shim registers them. */
#include <stddef.h>

#include "bench.h"

const struct rdmig_bench *const rdmig_bench_tables[] = {
    rdmig_bench_mem, rdmig_bench_page, rdmig_bench_dirty, rdmig_bench_runs, rdmig_bench_zstd, NULL,
};
