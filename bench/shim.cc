// SPDX-License-Identifier: MIT
//
// The only C++ in bench/: registers every entry of the C tables
// (bench/bench.h) with Google Benchmark, times their run(), and reports
// bytes/s (SetBytesProcessed) plus ms_per_GiB. No benchmark logic here.
// Google Benchmark's own flags pass through (--benchmark_filter,
// --benchmark_format=json, --benchmark_out=FILE, --benchmark_min_time=...).
// Rates are per CPU second of the benchmark thread (user + system, so a
// harvest's syscalls count), the library's default: on a shared machine that
// moves less with other people's load than wall time does.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench.h"

namespace
{

struct entry {
	const rdmig_bench *b;
	int64_t arg;
};

// The one live context (bench.h: set up on the first call for an entry,
// torn down when another entry runs or at exit). A failed setup or run is
// remembered so re-entries report the same message without retrying.
struct live {
	const entry *e = nullptr;
	void *ctx = nullptr;
	uint64_t bytes = 0;
	int ret = 0;
	char msg[RDMIG_BENCH_MSG_MAX] = "";
};
live cur;

void release()
{
	if (cur.e && !cur.ret && cur.e->b->teardown)
		cur.e->b->teardown(cur.ctx);
	cur = live();
}

void acquire(const entry *e)
{
	if (cur.e == e)
		return;
	release();
	cur.e = e;
	cur.ret = rdmig_bench_setup(e->b, e->arg, &cur.ctx, &cur.bytes, cur.msg, sizeof(cur.msg));
}

void run(benchmark::State &st, const entry *e)
{
	const rdmig_bench *b = e->b;
	char msg[RDMIG_BENCH_MSG_MAX] = "";
	int ret = 0;

	acquire(e);
	if (cur.ret) {
		st.SkipWithError(cur.msg);
		return;
	}
	for (auto _ : st) {
		if (b->prepare) {
			st.PauseTiming();
			ret = rdmig_bench_prepare(b, cur.ctx, msg, sizeof(msg));
			st.ResumeTiming();
			if (ret)
				break;
		}
		ret = rdmig_bench_run(b, cur.ctx, msg, sizeof(msg));
		if (ret)
			break;
	}
	if (ret) {
		// The context may be inconsistent now: drop it, keep the message.
		st.SkipWithError(msg);
		release();
		cur.e = e;
		cur.ret = ret;
		snprintf(cur.msg, sizeof(cur.msg), "%s", msg);
		return;
	}
	st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * cur.bytes));
	// Shown as elapsed / (iterations * value): milliseconds per GiB.
	st.counters["ms_per_GiB"] = benchmark::Counter(
	    static_cast<double>(cur.bytes) / (1024.0 * 1024.0 * 1024.0) / 1000.0,
	    benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
	if (b->counter)
		st.counters[b->counter_name] = b->counter(cur.ctx);
}

} // namespace

int main(int argc, char **argv)
{
	std::vector<entry> entries;
	char seed[32];

	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 2;
	for (size_t t = 0; rdmig_bench_tables[t]; t++) {
		for (const rdmig_bench *b = rdmig_bench_tables[t]; b->name; b++) {
			for (int i = 0; i < RDMIG_BENCH_MAX_ARGS && (i == 0 || b->args[i]); i++)
				entries.push_back(entry{b, b->args[i]});
		}
	}
	// entries is complete: the pointers handed out below stay valid.
	for (const entry &e : entries) {
		std::string name = e.b->name;

		if (e.b->arg_name)
			name += "/" + std::string(e.b->arg_name) + ":" + std::to_string(e.arg);
		benchmark::RegisterBenchmark(name.c_str(), [p = &e](benchmark::State &st) {
			run(st, p);
		})->Unit(benchmark::kMillisecond);
	}
	snprintf(seed, sizeof(seed), "0x%llx", static_cast<unsigned long long>(RDMIG_BENCH_SEED));
	benchmark::AddCustomContext("rdmig_bench_seed", seed);
	benchmark::RunSpecifiedBenchmarks();
	release();
	benchmark::Shutdown();
	return 0;
}
