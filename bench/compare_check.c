/* SPDX-License-Identifier: MIT */
/*
 * Smoke check of bench/compare's output (ctest compare_smoke):
 *
 *   compare_check OUT
 *
 * checks that OUT/results.json is one well-formed JSON object with the meta
 * data (command, date, seconds, nproc, kernel), the sections raw_limits,
 * idle, throttle, qemu, qemu_written and not_run as arrays, a tcp row in
 * raw_limits and idle, the write-heavy runs (baseline, adaptive, step and the
 * two hybrid post-copy ones) completed with numeric total_ms, downtime_ms,
 * guest_work and bytes_over_size, the post-copy ones saying whether they
 * switched, a postcopy_fetch row for each native post-copy run and whichever
 * VM ones ran, with the fetch latencies and page counts where it switched,
 * every QEMU row with a status, every written-guest row saying whether it was
 * checked and how busy the host's CPUs were while it ran, and that
 * OUT/results.md exists, every .json file in OUT/raw parses and so does every
 * line starting with '{' of every .jsonl file there.
 * Never looks at the figures: speed depends on the machine.
 * Exit status: 0 pass, 1 fail, 2 usage.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

static int fails;

#define CHECK(c, ...)                                                                              \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "compare_check: FAIL: " __VA_ARGS__);                      \
			fputc('\n', stderr);                                                       \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

static json_t *array(json_t *root, const char *k)
{
	json_t *a = json_object_get(root, k);

	CHECK(json_is_array(a), "\"%s\" is not an array", k);
	return json_is_array(a) ? a : NULL;
}

static int has_number(json_t *o, const char *k)
{
	return json_is_number(json_object_get(o, k));
}

/* Every line starting with '{' in OUT/raw/<name> parses. */
static void check_raw_lines(const char *dir, const char *name)
{
	char path[8192], line[65536];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		json_error_t e;
		json_t *j;

		n++;
		if (line[0] != '{')
			continue;
		j = json_loads(line, 0, &e);
		CHECK(j, "%s:%d: %s", path, n, e.text);
		json_decref(j);
	}
	fclose(f);
}

/*
 * The fetch-latency rows: the native post-copy runs always run, the VM ones
 * only with the VM, so only the former are required; a row that switched
 * must carry its latencies, and an unmeasured VM ratio must be null.
 */
static void check_postcopy(json_t *root)
{
	static const char *const fields[] = {
	    "fetch_p50_us", "fetch_p99_us", "fetch_max_us", "pages", "demand_pages", "ms", NULL};
	int native = 0;
	json_t *a, *row, *r;
	size_t i;

	CHECK(json_is_object(json_object_get(root, "postcopy_targets")),
	      "no postcopy_targets object");
	r = json_object_get(root, "postcopy_fetch_ratio");
	CHECK(json_is_object(r) && (json_is_null(json_object_get(r, "p99_rdma_over_tcp_vm")) ||
				    has_number(r, "p99_rdma_over_tcp_vm")),
	      "postcopy_fetch_ratio missing or not a number");
	a = array(root, "postcopy_fetch");
	if (!a)
		return;
	json_array_foreach(a, i, row)
	{
		const char *k = json_string_value(json_object_get(row, "run"));
		json_t *sw = json_object_get(row, "switched");

		CHECK(k && json_is_string(json_object_get(row, "status")) && json_is_boolean(sw),
		      "postcopy_fetch[%zu] incomplete", i);
		native += k && !strncmp(k, "wh-", 3);
		if (!json_is_true(sw))
			continue;
		for (const char *const *fl = fields; *fl; fl++)
			CHECK(has_number(row, *fl), "postcopy_fetch[%zu] (%s): %s is not a number",
			      i, k ? k : "?", *fl);
	}
	CHECK(native == 3,
	      "%d native post-copy rows in postcopy_fetch, expected wh-postcopy, "
	      "wh-postcopy-2 and wh-postcopy-0",
	      native);
}

int main(int argc, char **argv)
{
	char path[4096];
	json_error_t e;
	json_t *root, *meta, *a, *row;
	const char *k;
	size_t i;
	int tcp_raw = 0, tcp_idle = 0, runs = 0;
	DIR *d;
	struct dirent *de;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: compare_check OUT\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/results.json", argv[1]);
	root = json_load_file(path, 0, &e);
	if (!root) {
		fprintf(stderr, "compare_check: FAIL: %s:%d: %s\n", path, e.line, e.text);
		return 1;
	}
	CHECK(json_is_object(root), "results.json is not an object");
	meta = json_object_get(root, "meta");
	CHECK(json_is_object(meta), "no meta object");
	for (const char *const *m = (const char *const[]){"command", "date", "kernel", NULL}; *m;
	     m++)
		CHECK(json_is_string(json_object_get(meta, *m)), "meta.%s is not a string", *m);
	CHECK(has_number(meta, "seconds") && has_number(meta, "nproc"),
	      "meta.seconds or meta.nproc is not a number");

	if ((a = array(root, "raw_limits")))
		json_array_foreach(a, i, row)
		{
			k = json_string_value(json_object_get(row, "kind"));
			CHECK(k && has_number(row, "peer_gbps") && has_number(row, "rdmig_gbps"),
			      "raw_limits[%zu] incomplete", i);
			tcp_raw += k && !strcmp(k, "tcp");
		}
	CHECK(tcp_raw, "no tcp row in raw_limits");
	if ((a = array(root, "idle")))
		json_array_foreach(a, i, row)
		{
			k = json_string_value(json_object_get(row, "backend"));
			CHECK(k && has_number(row, "total_ms") && has_number(row, "ram_bytes"),
			      "idle[%zu] incomplete", i);
			tcp_idle += k && !strcmp(k, "tcp");
		}
	CHECK(tcp_idle, "no tcp row in idle");
	if ((a = array(root, "throttle")))
		json_array_foreach(a, i, row)
		{
			k = json_string_value(json_object_get(row, "status"));
			CHECK(k && !strcmp(k, "completed"), "throttle[%zu] did not complete", i);
			CHECK(has_number(row, "total_ms") && has_number(row, "downtime_ms") &&
				  has_number(row, "guest_work") &&
				  has_number(row, "bytes_over_size"),
			      "throttle[%zu] incomplete", i);
			k = json_string_value(json_object_get(row, "run"));
			CHECK(k, "throttle[%zu] has no run name", i);
			CHECK(!k || strncmp(k, "postcopy", 8) ||
				  json_is_boolean(json_object_get(row, "switched")),
			      "throttle[%zu] (%s) does not say whether it switched to post-copy", i,
			      k ? k : "?");
			runs++;
		}
	CHECK(runs == 6,
	      "%d write-heavy runs, expected baseline, adaptive, step, postcopy, "
	      "postcopy-2 and postcopy-0",
	      runs);
	check_postcopy(root);
	if ((a = array(root, "qemu")))
		json_array_foreach(a, i, row) CHECK(
		    json_is_string(json_object_get(row, "status")) && has_number(row, "total_ms"),
		    "qemu[%zu] incomplete", i);
	/* The written guest: a row that ran must say whether its fill was checked. */
	if ((a = array(root, "qemu_written")))
		json_array_foreach(a, i, row) CHECK(
		    json_is_string(json_object_get(row, "status")) && has_number(row, "total_ms") &&
			json_is_boolean(json_object_get(row, "checked")) &&
			has_number(json_object_get(row, "cpu"), "host_busy"),
		    "qemu_written[%zu] incomplete", i);
	array(root, "not_run");
	json_decref(root);

	snprintf(path, sizeof(path), "%s/results.md", argv[1]);
	f = fopen(path, "r");
	CHECK(f, "%s missing", path);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/raw", argv[1]);
	d = opendir(path);
	CHECK(d, "%s missing", path);
	while (d && (de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n > 6 && !strcmp(de->d_name + n - 6, ".jsonl")) {
			check_raw_lines(path, de->d_name);
		} else if (n > 5 && !strcmp(de->d_name + n - 5, ".json")) {
			char p2[4096 + 256];
			json_t *j;

			snprintf(p2, sizeof(p2), "%s/%s", path, de->d_name);
			j = json_load_file(p2, 0, &e);
			CHECK(j, "%s:%d: %s", p2, e.line, e.text);
			json_decref(j);
		}
	}
	if (d)
		closedir(d);
	if (fails)
		return 1;
	printf("compare_check: %s is well-formed\n", argv[1]);
	return 0;
}
