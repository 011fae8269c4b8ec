/* SPDX-License-Identifier: MIT */
/* rdmig: command dispatcher. Sub-commands live in tools/cmd_*.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "rdmig/version.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
    {"doctor", cmd_doctor, "report what this host offers a migration, with fixes"},
    {"listen", cmd_listen, "receive a live migration (destination)"},
    {"migrate", cmd_migrate, "live-migrate a synthetic guest (source)"},
    {"qemu", cmd_qemu, "carry stock QEMU's live migration over rdmig (src|dst|migrate)"},
    {"bw", cmd_bw, "measure one-sided write bandwidth between two hosts"},
    {"topo", cmd_topo, "NUMA topology and the worker placement plan"},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: rdmig [--version] [--help] COMMAND [ARGS]\n"
		     "\n"
		     "Live migration of virtual machines over RDMA, with a TCP fallback.\n"
		     "\n"
		     "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n"
		     "Run 'rdmig COMMAND --help' for the options of one command.\n"
		     "Environment: RDMIG_LOG=error|warn|info|debug sets the log level.\n");
}

int main(int argc, char **argv)
{
	rdmig_log_init();
	if (argc < 2) {
		usage(stderr);
		return RDMIG_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return RDMIG_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("rdmig %s\n", RDMIG_VERSION_STRING);
		return RDMIG_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "rdmig: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return RDMIG_EXIT_USAGE;
}
