/* SPDX-License-Identifier: MIT */
/*
 * rdmig doctor: the report (sections, findings, the JSON document) and the
 * command; the checks live in tools/doctor_*.c (see tools/doctor.h).
 */
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "doctor.h"
#include "rdmig/version.h"
#include "units.h"

#define CMD		   "doctor"
#define DEFAULT_GUEST_SIZE (1ULL << 30)

static const char *const level_key[] = {"ok", "warn", "fail"};
static const char *const level_tag[] = {"[ok]  ", "[warn]", "[fail]"};

/* ---- output ---------------------------------------------------------- */

void section(struct doctor *d, const char *key, const char *title)
{
	d->sec_key = key;
	d->sec = json_object();
	json_object_set_new(d->root, key, d->sec);
	if (!d->json)
		printf("\n== %s\n", title);
}

void finding(struct doctor *d, enum level lv, const char *fix, const char *fmt, ...)
{
	char what[1024];
	json_t *f;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	d->count[lv]++;
	f = json_object();
	cli_jset(f, "section", cli_jstr(d->sec_key));
	cli_jset(f, "level", cli_jstr(level_key[lv]));
	cli_jset(f, "what", cli_jstr(what));
	cli_jset(f, "fix", cli_jstr(fix));
	json_array_append_new(d->findings, f);
	if (!d->json) {
		printf("%s %s\n", level_tag[lv], what);
		if (fix)
			printf("       fix: %s\n", fix);
	}
}

void detail(struct doctor *d, const char *fmt, ...)
{
	va_list ap;

	if (d->json)
		return;
	fputs("       ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ---- small file helpers ---------------------------------------------- */

bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

int count_glob(const char *pattern)
{
	glob_t g;
	int n;

	if (glob(pattern, 0, NULL, &g) != 0)
		return 0;
	n = (int)g.gl_pathc;
	globfree(&g);
	return n;
}

/* "Key:   value kB" from a /proc file such as /proc/meminfo; -1 if absent. */
long long proc_field(const char *file, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long long v = -1;
	FILE *f = fopen(file, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 0);
			break;
		}
	fclose(f);
	return v;
}

/* ---- command --------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: rdmig doctor [--json] [--guest-size SIZE]\n"
		"\n"
		"Report what this host offers a migration: environment, RDMA devices and\n"
		"ports, memlock limit, NUMA topology, huge pages, dirty-page tracking and\n"
		"QEMU. Each finding is [ok], [warn] or [fail], with the fix where one applies.\n"
		"\n"
		"Options:\n"
		"  --guest-size SIZE  guest RAM to check the memlock limit against\n"
		"                     (default 1G; K, M, G, T suffixes)\n"
		"  --json             print one JSON object with every finding and fact\n"
		"  -h, --help         show this help\n"
		"\n"
		"Exit status: 0 unless a finding makes every migration impossible (none\n"
		"does today: the tcp backend needs nothing checked here), 1 if the report\n"
		"cannot be written, 2 on bad usage.\n");
}

int cmd_doctor(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_GUEST_SIZE };
	static const struct option opts[] = {
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {.name = "json", .has_arg = no_argument, .val = OPT_JSON},
	    {.name = "guest-size", .has_arg = required_argument, .val = OPT_GUEST_SIZE},
	    {0},
	};
	struct doctor d = {.guest_size = DEFAULT_GUEST_SIZE};
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *summary;
	int c, ret = RDMIG_EXIT_OK;

	opterr = 0; /* our own messages, naming the command */
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return RDMIG_EXIT_OK;
		case OPT_JSON:
			d.json = true;
			break;
		case OPT_GUEST_SIZE:
			if (rdmig_parse_size(optarg, &d.guest_size, &err))
				return cli_usage_error(CMD, "--guest-size: %s",
						       rdmig_err_str(&err));
			if (d.guest_size == 0)
				return cli_usage_error(CMD, "--guest-size must be more than 0");
			break;
		case ':':
			return cli_usage_error(CMD, "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);

	d.root = json_object();
	d.findings = json_array();
	if (!d.root || !d.findings) {
		fprintf(stderr, "rdmig doctor: out of memory\n");
		ret = RDMIG_EXIT_FAIL;
		goto out_free;
	}
	cli_jset(d.root, "event", json_string("report"));
	cli_jset(d.root, "command", json_string(CMD));
	cli_jset(d.root, "rdmig_version", cli_jstr(RDMIG_VERSION_STRING));
	/* What --backend auto means here (include/rdmig/transport.h decides). */
	cli_jset(d.root, "backend", json_string(rdmig_backend_name(rdmig_backend_auto())));
	if (!d.json)
		printf("rdmig %s doctor\n", RDMIG_VERSION_STRING);

	/* RDMA before memlock: the limit's severity depends on having a device. */
	check_environment(&d);
	check_rdma(&d);
	check_memlock(&d);
	check_numa(&d);
	check_hugepages(&d);
	check_dirty(&d);
	check_qemu(&d);

	summary = json_object();
	cli_jset(summary, "ok", json_integer(d.count[LV_OK]));
	cli_jset(summary, "warnings", json_integer(d.count[LV_WARN]));
	cli_jset(summary, "failures", json_integer(d.count[LV_FAIL]));
	/* No finding blocks the tcp backend, so none decides the exit status yet. */
	cli_jset(summary, "migration_possible", json_true());
	json_object_set(d.root, "findings", d.findings);
	cli_jset(d.root, "summary", summary);

	if (d.json) {
		if (cli_json_print(json_incref(d.root), true))
			ret = RDMIG_EXIT_FAIL;
	} else {
		printf("\nrdmig doctor: %d ok, %d warnings, %d failures\n", d.count[LV_OK],
		       d.count[LV_WARN], d.count[LV_FAIL]);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "rdmig doctor: writing the report: %s\n", strerror(errno));
		ret = RDMIG_EXIT_FAIL;
	}
out_free:
	json_decref(d.findings);
	json_decref(d.root);
	return ret;
}
