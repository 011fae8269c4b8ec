/* SPDX-License-Identifier: MIT */
/* rdmig topo: this host's topology and the placement plan rdmig would use. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "guest.h"
#include "log.h"
#include "plan.h"
#include "units.h"

/* Name of this host's RDMA device into name when there is exactly one. */
static bool sole_ibdev(char *name, size_t len)
{
	DIR *d = opendir("/sys/class/infiniband");
	struct dirent *de;
	int n = 0;

	if (!d)
		return false;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && n++ == 0)
			snprintf(name, len, "%s", de->d_name);
	closedir(d);
	return n == 1;
}

/*
 * Completion vectors of RDMA device `name` (ibv_context.num_comp_vectors),
 * 0 when it cannot be opened: the planner then leaves vectors to the
 * transport.
 */
static int ibdev_comp_vectors(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	int n = 0;

	for (int i = 0; list && list[i]; i++) {
		struct ibv_context *ctx;

		if (strcmp(ibv_get_device_name(list[i]), name))
			continue;
		ctx = ibv_open_device(list[i]);
		if (ctx) {
			n = ctx->num_comp_vectors > 0 ? ctx->num_comp_vectors : 0;
			ibv_close_device(ctx);
		}
		break;
	}
	if (list)
		ibv_free_device_list(list);
	return n;
}

int cli_cpus_usable(const struct rdmig_cpuset *s, struct rdmig_err *err)
{
	cpu_set_t allowed;
	char buf[256];

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return 0; /* unknown: the pin itself warns */
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS; c++) {
		if (!rdmig_cpuset_isset(s, c))
			continue;
		if (c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed)) {
			struct rdmig_cpuset a;

			rdmig_cpuset_zero(&a);
			for (int k = 0; k < CPU_SETSIZE && k < RDMIG_NUMA_MAX_CPUS; k++)
				if (CPU_ISSET(k, &allowed))
					rdmig_cpuset_set(&a, k);
			return rdmig_seterr(err, -EINVAL,
					    "CPU %d is not available to this process (CPUs %s)", c,
					    rdmig_cpuset_format(&a, buf, sizeof(buf)));
		}
	}
	return 0;
}

int cli_numa_plan(const char *side, const char *numa_arg, unsigned channels,
		  const struct rdmig_guest *g, const struct rdmig_cpuset *avoid, bool show,
		  bool json, struct rdmig_numa_plan **out, struct rdmig_err *err)
{
	struct rdmig_numa_region reg[RDMIG_GUEST_MAX_REGIONS];
	struct rdmig_numa_input in = {.channels = channels, .dev_node = -1, .avoid = avoid};
	char dev[256];
	struct rdmig_numa_topo *topo;
	struct rdmig_numa_plan *plan;
	struct rdmig_cpuset cpus;
	int ret;

	*out = NULL;
	ret = rdmig_numa_policy_parse(numa_arg ? numa_arg : "auto", &in.policy, &cpus, err);
	if (ret)
		return ret;
	in.cpulist = &cpus;
	topo = malloc(sizeof(*topo));
	plan = malloc(sizeof(*plan));
	if (!topo || !plan) {
		ret = rdmig_seterr(err, -ENOMEM, "out of memory for the placement plan");
		goto out_free;
	}
	ret = rdmig_numa_topo_load(topo, NULL, NULL, err);
	if (ret)
		goto out_free;
	in.topo = topo;
	/* The device rdma_cm will pick, when there is no choice. */
	if (sole_ibdev(dev, sizeof(dev))) {
		in.dev_node = rdmig_topo_ibdev_numa_node(dev);
		in.num_comp_vectors = ibdev_comp_vectors(dev);
	}
	/* Source: where the guest's (warmed-up) RAM is now. */
	for (unsigned r = 0; g && r < rdmig_guest_cfg(g)->nregions; r++) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(g, r);

		reg[r].len = gr->len;
		reg[r].node = rdmig_numa_region_node(gr->addr, gr->len, 256, NULL);
		in.nregions = r + 1;
	}
	in.regions = reg;
	ret = rdmig_numa_plan(&in, plan, err);
	if (ret)
		goto out_free;
	if (show && json) {
		printf("{\"event\":\"plan\",\"side\":\"%s\",\"plan\":", side);
		rdmig_numa_plan_print_json(stdout, plan, topo);
		printf("}\n");
		fflush(stdout);
	} else if (show) {
		fprintf(stderr, "rdmig %s: placement\n", side);
		rdmig_numa_plan_print(stderr, plan, topo);
	}
	free(topo);
	*out = plan;
	return 0;

out_free:
	free(topo);
	free(plan);
	return ret;
}

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
	    "  -d, --device NAME    RDMA device whose NUMA node to prefer (e.g. mlx5_0)\n"
	    "      --numa P         auto (default), off, or a CPU list such as 0-3,8\n"
	    "      --xml PATH       plan for an hwloc XML export instead of this host\n"
	    "      --synthetic DESC plan for an hwloc synthetic topology, e.g.\n"
	    "                       'pack:2 numa:2 core:4 pu:2'\n"
	    "      --json           one JSON object on stdout\n"
	    "  -h, --help\n");
}

enum { OPT_JSON = 1000, OPT_NUMA, OPT_XML, OPT_SYNTH };

int cmd_topo(int argc, char **argv)
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
	static struct rdmig_numa_topo topo;
	static struct rdmig_numa_plan plan;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_numa_input in = {.dev_node = -1, .channels = 2};
	struct rdmig_cpuset cpus;
	const char *device = NULL, *xml = NULL, *synth = NULL;
	bool json = false;
	uint64_t v;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:d:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_NUMA_MAX_WORKERS, &v, &err))
				return cli_usage_error("topo", "--channels: %s", err.msg);
			in.channels = (unsigned)v;
			break;
		case 'd':
			device = optarg;
			break;
		case OPT_NUMA:
			if (rdmig_numa_policy_parse(optarg, &in.policy, &cpus, &err))
				return cli_usage_error("topo", "%s", err.msg);
			in.cpulist = &cpus;
			break;
		case OPT_XML:
			xml = optarg;
			break;
		case OPT_SYNTH:
			synth = optarg;
			break;
		case OPT_JSON:
			json = true;
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
	if (xml && synth)
		return cli_usage_error("topo", "--xml and --synthetic exclude each other");

	if (rdmig_numa_topo_load(&topo, xml, synth, &err)) {
		fprintf(stderr, "rdmig topo: %s\n", rdmig_err_str(&err));
		return RDMIG_EXIT_FAIL;
	}
	if (device) {
		in.dev_node = rdmig_topo_ibdev_numa_node(device);
		in.num_comp_vectors = ibdev_comp_vectors(device);
		if (in.dev_node < 0 && !json)
			fprintf(stderr,
				"rdmig topo: NUMA node of %s unknown (no such device, or "
				"it reports none)\n",
				device);
	}
	in.topo = &topo;
	if (rdmig_numa_plan(&in, &plan, &err)) {
		/* Only the user's CPU list can make a plan fail. */
		fprintf(stderr, "rdmig topo: %s\n", rdmig_err_str(&err));
		return RDMIG_EXIT_USAGE;
	}
	if (json) {
		int ret = rdmig_numa_plan_print_json(stdout, &plan, &topo);

		putchar('\n');
		return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
	}
	rdmig_numa_plan_print(stdout, &plan, &topo);
	return RDMIG_EXIT_OK;
}
