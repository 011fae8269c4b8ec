/* SPDX-License-Identifier: MIT */
/* rdmig topo: this host's topology and the placement plan rdmig would use. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "plan.h"
#include "units.h"

static void topo_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: rdmig topo [--json] [--channels N] [--device NAME] [--numa auto|off|CPULIST]\n"
	    "                  [--xml PATH | --synthetic DESC]\n"
	    "\n"
	    "Print the NUMA topology and the placement plan for N data channels: the\n"
	    "node and CPUs of each worker and the completion vector of each channel.\n"
	    "\n"
	    "  -c, --channels N     data channels = workers (default 2)\n"
	    "  -d, --device NAME    RDMA device whose NUMA node to prefer (e.g. mlx5_0;\n"
	    "                       default: this host's only one, when it has one)\n"
	    "      --numa P         auto (default), off, or a CPU list such as 0-3,8\n"
	    "      --xml PATH       plan for an hwloc XML export instead of this host\n"
	    "      --synthetic DESC plan for an hwloc synthetic topology, e.g.\n"
	    "                       'pack:2 numa:2 core:4 pu:2'\n"
	    "      --json           one JSON object on stdout (the plan object of\n"
	    "                       docs/json.md)\n"
	    "  -h, --help\n");
}

enum { OPT_JSON = 1000, OPT_NUMA, OPT_XML, OPT_SYNTH };

struct topo_args {
	struct rdmig_numa_want want;
	struct rdmig_cpuset cpus;
	const char *device, *xml, *synth;
	bool json;
};

/* -1 to go on, else the exit status. */
static int parse(int argc, char **argv, struct topo_args *a)
{
	static const struct option lo[] = {
	    {"channels", required_argument, NULL, 'c'},
	    {"device", required_argument, NULL, 'd'},
	    {"numa", required_argument, NULL, OPT_NUMA},
	    {"xml", required_argument, NULL, OPT_XML},
	    {"synthetic", required_argument, NULL, OPT_SYNTH},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:d:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_NUMA_MAX_WORKERS, &v, &err))
				return cli_usage_error("topo", "--channels: %s", err.msg);
			a->want.channels = (unsigned)v;
			break;
		case 'd':
			a->device = optarg;
			break;
		case OPT_NUMA:
			if (rdmig_numa_policy_parse(optarg, &a->want.policy, &a->cpus, &err))
				return cli_usage_error("topo", "%s", err.msg);
			break;
		case OPT_XML:
			a->xml = optarg;
			break;
		case OPT_SYNTH:
			a->synth = optarg;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case 'h':
			topo_usage(stdout);
			return RDMIG_EXIT_OK;
		default:
			return cli_usage_error("topo", "unknown option");
		}
	}
	if (optind != argc)
		return cli_usage_error("topo", "unexpected argument '%s'", argv[optind]);
	if (a->xml && a->synth)
		return cli_usage_error("topo", "--xml and --synthetic exclude each other");
	return -1;
}

int cmd_topo(int argc, char **argv)
{
	struct topo_args a = {.want = {.channels = 2, .policy = RDMIG_NUMA_AUTO}};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_numa_host *h = malloc(sizeof(*h));
	struct rdmig_numa_plan *p = malloc(sizeof(*p));
	int ret;

	a.want.cpulist = &a.cpus;
	ret = parse(argc, argv, &a);
	if (ret >= 0)
		goto out_free;
	ret = RDMIG_EXIT_FAIL;
	if (!h || !p) {
		fprintf(stderr, "rdmig topo: out of memory\n");
		goto out_free;
	}
	if (rdmig_numa_host_load(h, a.device, a.xml, a.synth, &err)) {
		fprintf(stderr, "rdmig topo: %s\n", rdmig_err_str(&err));
		goto out_free;
	}
	if (a.device && h->dev_node < 0 && !a.json)
		fprintf(stderr, "rdmig topo: NUMA node of %s unknown (%s)\n", a.device,
			h->device_present ? "it reports none" : "no such RDMA device here");
	if (rdmig_numa_host_plan(h, &a.want, p, &err)) {
		/* Only the user's CPU list can make a plan fail. */
		fprintf(stderr, "rdmig topo: %s\n", rdmig_err_str(&err));
		ret = RDMIG_EXIT_USAGE;
		goto out_free;
	}
	ret = RDMIG_EXIT_OK;
	if (!a.json)
		rdmig_numa_plan_print(stdout, p, &h->topo);
	else if (cli_json_print(rdmig_numa_plan_to_json(p, &h->topo), false))
		ret = RDMIG_EXIT_FAIL;
out_free:
	free(h);
	free(p);
	return ret;
}
