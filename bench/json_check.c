/* SPDX-License-Identifier: MIT */
/*
 * Smoke check of the micro-benchmark binary (ctest bench_smoke):
 *
 *   bench_json_check [--may-skip PREFIX]... BINARY NAME...
 *
 * runs `BINARY --benchmark_min_time=0.01 --benchmark_format=json`, and
 * checks that it exits 0, that its output is one well-formed JSON document
 * with a context and a benchmarks array, that every NAME is in it and
 * nothing else is, and that each entry reports bytes_per_second and
 * ms_per_GiB as numbers. An entry may report an error (a skipped benchmark)
 * only when its name starts with a --may-skip PREFIX: a dirty source the
 * kernel lacks; the reason is printed. Never looks at the figures: speed
 * depends on the machine, not on the code under test.
 * Exit status: 0 pass, 1 fail, 2 usage.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PREFIXES 8

static int usage(void)
{
	fprintf(stderr, "usage: bench_json_check [--may-skip PREFIX]... BINARY NAME...\n");
	return 2;
}

/* Run argv, return its stdout (NUL-terminated, caller frees) and exit status. */
static char *capture(char *const argv[], size_t *len, int *status)
{
	int fds[2];
	char *buf = NULL;
	size_t cap = 0, n = 0;
	pid_t pid;

	if (pipe(fds)) {
		perror("bench_json_check: pipe");
		return NULL;
	}
	pid = fork();
	if (pid < 0) {
		perror("bench_json_check: fork");
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], argv);
		fprintf(stderr, "bench_json_check: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t got;

		if (cap - n < 4096) {
			char *nb = realloc(buf, cap ? cap * 2 : 65536);

			if (!nb) {
				fprintf(stderr, "bench_json_check: out of memory\n");
				break;
			}
			buf = nb;
			cap = cap ? cap * 2 : 65536;
		}
		got = read(fds[0], buf + n, cap - n - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	close(fds[0]);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

static bool may_skip(const char *name, char **prefixes, int nprefixes)
{
	for (int i = 0; i < nprefixes; i++) {
		if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
			return true;
	}
	return false;
}

static int check_entry(json_t *b, char **prefixes, int nprefixes, int *skipped)
{
	const char *name = json_string_value(json_object_get(b, "name"));

	if (json_is_true(json_object_get(b, "error_occurred"))) {
		const char *why = json_string_value(json_object_get(b, "error_message"));

		if (!may_skip(name, prefixes, nprefixes)) {
			fprintf(stderr, "bench_json_check: %s failed: %s\n", name,
				why ? why : "(no message)");
			return 1;
		}
		printf("SKIP: %s: %s\n", name, why ? why : "(no message)");
		(*skipped)++;
		return 0;
	}
	if (!json_is_number(json_object_get(b, "bytes_per_second")) ||
	    !json_is_number(json_object_get(b, "ms_per_GiB")) ||
	    !json_is_integer(json_object_get(b, "iterations"))) {
		fprintf(stderr,
			"bench_json_check: %s: expected numbers bytes_per_second, ms_per_GiB "
			"and iterations\n",
			name);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char *prefixes[MAX_PREFIXES], *out, *args[4];
	int nprefixes = 0, status = 0, fails = 0, skipped = 0, i = 1;
	json_t *root, *benches;
	json_error_t jerr;
	size_t len, k;
	json_t *b;

	for (; i + 1 < argc && !strcmp(argv[i], "--may-skip"); i += 2) {
		if (nprefixes == MAX_PREFIXES)
			return usage();
		prefixes[nprefixes++] = argv[i + 1];
	}
	if (argc - i < 2)
		return usage();

	args[0] = argv[i];
	args[1] = (char *)"--benchmark_min_time=0.01";
	args[2] = (char *)"--benchmark_format=json";
	args[3] = NULL;
	out = capture(args, &len, &status);
	if (!out)
		return 1;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "bench_json_check: %s did not exit 0 (wait status %d)\n", args[0],
			status);
		free(out);
		return 1;
	}
	root = json_loadb(out, len, 0, &jerr);
	free(out);
	if (!root) {
		fprintf(stderr, "bench_json_check: output is not JSON: line %d column %d: %s\n",
			jerr.line, jerr.column, jerr.text);
		return 1;
	}
	benches = json_object_get(root, "benchmarks");
	if (!json_is_object(json_object_get(root, "context")) || !json_is_array(benches)) {
		fprintf(stderr, "bench_json_check: expected a context object and a benchmarks "
				"array at the top\n");
		json_decref(root);
		return 1;
	}
	/* Every expected name present, with a well-formed entry. */
	for (int n = i + 1; n < argc; n++) {
		bool found = false;

		json_array_foreach(benches, k, b)
		{
			const char *name = json_string_value(json_object_get(b, "name"));

			if (name && !strcmp(name, argv[n])) {
				found = true;
				fails += check_entry(b, prefixes, nprefixes, &skipped);
				break;
			}
		}
		if (!found) {
			fprintf(stderr, "bench_json_check: benchmark %s missing from the output\n",
				argv[n]);
			fails++;
		}
	}
	/* Nothing unexpected: the list here and the tables stay in step. */
	json_array_foreach(benches, k, b)
	{
		const char *name = json_string_value(json_object_get(b, "name"));
		bool expected = false;

		for (int n = i + 1; name && n < argc; n++)
			expected |= !strcmp(name, argv[n]);
		if (!expected) {
			fprintf(stderr,
				"bench_json_check: unexpected benchmark %s (add it to the "
				"test's list)\n",
				name ? name : "(no name)");
			fails++;
		}
	}
	printf("bench_json_check: %zu benchmarks, %d skipped, %d problems\n",
	       json_array_size(benches), skipped, fails);
	json_decref(root);
	return fails ? 1 : 0;
}
