/* SPDX-License-Identifier: MIT */
/* The placement planner on synthetic hwloc topologies, and the apply step on this host. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>
#include <jansson.h>
#include <sched.h>

#include "plan.h"

#define GIB (1024ull * 1024 * 1024)

static struct rdmig_numa_topo topo;
static struct rdmig_numa_plan plan;

static void load(const char *synthetic)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_numa_topo_load(&topo, NULL, synthetic, &err))
		fail_msg("load '%s': %s", synthetic, err.msg);
}

static bool has_note(const char *needle)
{
	for (unsigned i = 0; i < plan.nnotes; i++)
		if (strstr(plan.notes[i], needle))
			return true;
	return false;
}

static int worker_cpu(unsigned i)
{
	assert_int_equal(rdmig_cpuset_count(&plan.w[i].cpus), 1);
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS; c++)
		if (rdmig_cpuset_isset(&plan.w[i].cpus, c))
			return c;
	return -1;
}

static void do_plan(struct rdmig_numa_input *in)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	in->topo = &topo;
	if (rdmig_numa_plan(in, &plan, &err))
		fail_msg("plan: %s", err.msg);
}

static void test_cpuset_parse(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_cpuset s;
	char buf[64];

	(void)state;
	assert_int_equal(rdmig_cpuset_parse("0-3,8,10-11", &s, &err), 0);
	assert_string_equal(rdmig_cpuset_format(&s, buf, sizeof(buf)), "0-3,8,10-11");
	assert_int_equal(rdmig_cpuset_count(&s), 7);
	assert_int_equal(rdmig_cpuset_parse("3-1", &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "range 3-1 runs backwards"));
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_cpuset_parse("0,x", &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "expected a CPU number at 'x'"));
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_cpuset_parse("1,", &s, &err), -EINVAL);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_cpuset_parse("", &s, &err), -EINVAL);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_cpuset_parse("99999", &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "too large"));
}

static void test_policy_parse(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	enum rdmig_numa_policy p;
	struct rdmig_cpuset s;

	(void)state;
	assert_int_equal(rdmig_numa_policy_parse("auto", &p, &s, &err), 0);
	assert_int_equal(p, RDMIG_NUMA_AUTO);
	assert_int_equal(rdmig_numa_policy_parse("off", &p, &s, &err), 0);
	assert_int_equal(p, RDMIG_NUMA_OFF);
	assert_int_equal(rdmig_numa_policy_parse("2-3", &p, &s, &err), 0);
	assert_int_equal(p, RDMIG_NUMA_CPULIST);
	assert_true(rdmig_cpuset_isset(&s, 3));
	assert_int_equal(rdmig_numa_policy_parse("Auto", &p, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "--numa expects auto, off or a CPU list"));
}

static void test_one_node(void **state)
{
	struct rdmig_numa_region reg[] = {{.len = GIB, .node = 0}};
	struct rdmig_numa_input in = {.regions = reg, .nregions = 1, .dev_node = -1, .channels = 3};
	char buf[64];

	(void)state;
	load("numa:1 core:4 pu:1");
	assert_int_equal(topo.nnode, 1);
	do_plan(&in);
	assert_true(plan.trivial);
	assert_true(has_note("1 NUMA node: placement is trivial"));
	assert_int_equal(plan.nworkers, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(plan.w[i].chan, i);
		assert_int_equal(plan.w[i].node, 0);
		assert_string_equal(rdmig_cpuset_format(&plan.w[i].cpus, buf, sizeof(buf)), "0-3");
		assert_int_equal(plan.w[i].comp_vector, -1);
	}
	assert_int_equal(plan.region_node[0], -1); /* nothing to bind */
}

static void test_two_packages_nic_node1(void **state)
{
	/* Nodes 0..3, node 1 = CPUs 4-7 (cores {4,5} and {6,7}). */
	static const int vec_node[] = {0, 1, 0, 1};
	struct rdmig_numa_input in = {
	    .dev_node = 1, .channels = 2, .num_comp_vectors = 4, .comp_vector_node = vec_node};

	(void)state;
	load("pack:2 numa:2 core:2 pu:2");
	assert_int_equal(topo.nnode, 4);
	assert_int_equal(topo.npackages, 2);
	assert_int_equal(topo.node[1].package, 0);
	assert_int_equal(topo.node[2].package, 1);
	do_plan(&in);
	assert_false(plan.trivial);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(plan.w[i].node, 1);
	/* One core each before any SMT sibling. */
	assert_int_equal(worker_cpu(0), 4);
	assert_int_equal(worker_cpu(1), 6);
	/* Vectors local to node 1. */
	assert_int_equal(plan.w[0].comp_vector, 1);
	assert_int_equal(plan.w[1].comp_vector, 3);
	assert_int_equal(plan.node_workers[1], 2);

	/* Vector locality unknown: channel index modulo the count. */
	in.comp_vector_node = NULL;
	in.num_comp_vectors = 3;
	in.channels = 4;
	do_plan(&in);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(plan.w[i].comp_vector, (int)(i % 3));
}

static void test_guest_ram_split(void **state)
{
	struct rdmig_numa_region reg[] = {{.len = 3 * GIB, .node = 0}, {.len = GIB, .node = 2}};
	struct rdmig_numa_input in = {.regions = reg, .nregions = 2, .dev_node = 1, .channels = 4};
	unsigned on0 = 0, on2 = 0;

	(void)state;
	load("pack:2 numa:2 core:2 pu:2");
	do_plan(&in);
	for (unsigned i = 0; i < 4; i++) {
		on0 += plan.w[i].node == 0;
		on2 += plan.w[i].node == 2;
	}
	assert_int_equal(on0, 3);
	assert_int_equal(on2, 1);
	assert_int_equal(plan.region_node[0], 0);
	assert_int_equal(plan.region_node[1], 2);
	assert_int_equal(plan.node_bytes[0], 3 * GIB);

	/* Evenly spread memory: the odd channel goes to the NIC's node. */
	reg[0].len = GIB;
	reg[1].len = GIB;
	in.dev_node = 2;
	in.channels = 3;
	do_plan(&in);
	on0 = on2 = 0;
	for (unsigned i = 0; i < 3; i++) {
		on0 += plan.w[i].node == 0;
		on2 += plan.w[i].node == 2;
	}
	assert_int_equal(on0, 1);
	assert_int_equal(on2, 2);

	/* Unknown memory node, no device: every node evenly. */
	reg[0].node = reg[1].node = -1;
	in.dev_node = -1;
	in.channels = 4;
	do_plan(&in);
	for (unsigned n = 0; n < 4; n++)
		assert_int_equal(plan.node_workers[n], 1);
	assert_true(has_note("guest RAM node unknown"));
}

static void test_more_channels_than_cores(void **state)
{
	struct rdmig_numa_region reg[] = {{.len = GIB, .node = 0}};
	struct rdmig_numa_input in = {.regions = reg, .nregions = 1, .dev_node = -1, .channels = 5};

	(void)state;
	load("pack:1 numa:2 core:2 pu:1");
	do_plan(&in);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(plan.w[i].node, 0);
		assert_true(plan.w[i].shared);
		assert_int_equal(worker_cpu(i), (int)(i % 2));
	}
	assert_true(has_note("node 0: 5 workers on 2 CPU(s): workers share CPUs"));
}

static void test_cpulist_errors(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_cpuset list;
	struct rdmig_numa_input in = {.topo = &topo,
				      .dev_node = -1,
				      .channels = 3,
				      .policy = RDMIG_NUMA_CPULIST,
				      .cpulist = &list};

	(void)state;
	load("pack:2 numa:2 core:2 pu:2"); /* CPUs 0-15 */
	assert_int_equal(rdmig_cpuset_parse("4,99", &list, &err), 0);
	assert_int_equal(rdmig_numa_plan(&in, &plan, &err), -EINVAL);
	assert_string_equal(err.msg, "--numa: CPU 99 does not exist on this host (CPUs 0-15)");

	rdmig_err_clear(&err);
	topo.cpu_state[5] = RDMIG_CPU_OFFLINE;
	assert_int_equal(rdmig_cpuset_parse("4-5", &list, &err), 0);
	assert_int_equal(rdmig_numa_plan(&in, &plan, &err), -EINVAL);
	assert_string_equal(err.msg, "--numa: CPU 5 is not online (online CPUs: 0-4,6-15)");

	/* Valid list: round-robin, shared when short, node from the CPU. */
	rdmig_err_clear(&err);
	topo.cpu_state[5] = RDMIG_CPU_ONLINE;
	assert_int_equal(rdmig_cpuset_parse("5,12", &list, &err), 0);
	assert_int_equal(rdmig_numa_plan(&in, &plan, &err), 0);
	assert_int_equal(worker_cpu(0), 5);
	assert_int_equal(worker_cpu(1), 12);
	assert_int_equal(worker_cpu(2), 5);
	assert_int_equal(plan.w[0].node, 1);
	assert_int_equal(plan.w[1].node, 3);
	assert_true(plan.w[2].shared);
	assert_true(has_note("workers share CPUs"));
}

static void test_vcpu_avoidance(void **state)
{
	struct rdmig_cpuset avoid;
	struct rdmig_numa_input in = {.dev_node = 1, .channels = 2, .avoid = &avoid};

	(void)state;
	load("pack:2 numa:2 core:2 pu:2");
	rdmig_cpuset_zero(&avoid);
	rdmig_cpuset_set(&avoid, 4);
	rdmig_cpuset_set(&avoid, 6);
	do_plan(&in);
	assert_int_equal(worker_cpu(0), 5);
	assert_int_equal(worker_cpu(1), 7);
	assert_false(plan.w[0].shared);

	/* Every CPU of the node runs a vCPU: use them anyway, and say so. */
	for (int c = 4; c < 8; c++)
		rdmig_cpuset_set(&avoid, c);
	do_plan(&in);
	assert_int_equal(plan.w[0].node, 1);
	assert_int_equal(worker_cpu(0), 4);
	assert_true(has_note("node 1: every CPU runs a guest vCPU"));

	/* One node: the trivial plan still keeps off vCPU CPUs. */
	load("numa:1 core:4 pu:1");
	rdmig_cpuset_zero(&avoid);
	rdmig_cpuset_set(&avoid, 0);
	in.dev_node = -1;
	do_plan(&in);
	assert_false(rdmig_cpuset_isset(&plan.w[0].cpus, 0));
	assert_int_equal(rdmig_cpuset_count(&plan.w[0].cpus), 3);
}

static void test_policy_off_and_json(void **state)
{
	struct rdmig_numa_region reg[] = {{.len = GIB, .node = 2}};
	struct rdmig_numa_input in = {.regions = reg, .nregions = 1, .dev_node = 1, .channels = 2};
	struct rdmig_cpuset avoid;
	json_error_t jerr;
	json_t *j, *w;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	load("pack:2 numa:2 core:2 pu:2");
	in.policy = RDMIG_NUMA_OFF;
	do_plan(&in);
	assert_int_equal(rdmig_cpuset_count(&plan.w[0].cpus), 0);
	assert_int_equal(plan.region_node[0], -1);
	assert_true(has_note("placement off"));

	in.policy = RDMIG_NUMA_AUTO;
	in.num_comp_vectors = 3;
	rdmig_cpuset_zero(&avoid);
	rdmig_cpuset_set(&avoid, 0);
	rdmig_cpuset_set(&avoid, 1);
	in.avoid = &avoid;
	do_plan(&in);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	assert_int_equal(rdmig_numa_plan_print_json(f, &plan, &topo), 0);
	fclose(f);
	j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("plan JSON does not parse: %s: %s", jerr.text, text);
	assert_string_equal(json_string_value(json_object_get(j, "policy")), "auto");
	assert_int_equal(json_integer_value(json_object_get(j, "device_node")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "comp_vectors")), 3);
	assert_string_equal(json_string_value(json_object_get(j, "vcpu_cpus")), "0-1");
	w = json_array_get(json_object_get(j, "workers"), 0);
	assert_int_equal(json_integer_value(json_object_get(w, "node")), 2);
	assert_string_equal(json_string_value(json_object_get(w, "cpus")), "8");
	assert_int_equal(json_array_size(json_object_get(json_object_get(j, "topology"), "nodes")),
			 4);
	json_decref(j);
	free(text);

	text = NULL;
	f = open_memstream(&text, &len);
	rdmig_numa_plan_print(f, &plan, &topo);
	fclose(f);
	assert_non_null(strstr(text, "worker 0  channel 0  node 2"));
	assert_non_null(strstr(text, "region 0  1.00 GiB   bind to node 2"));
	assert_non_null(strstr(text, "device node 1, 3 completion vector(s)"));
	assert_non_null(strstr(text, "vCPU CPUs 0-1 (workers kept off them where possible)"));
	free(text);
}

static void test_bad_input(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_numa_input in = {.topo = &topo, .dev_node = -1, .channels = 0};

	(void)state;
	load("numa:1 core:1 pu:1");
	assert_int_equal(rdmig_numa_plan(&in, &plan, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "channels must be 1..64"));
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_numa_topo_load(&topo, NULL, "bogus:7", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid synthetic topology 'bogus:7'"));
}

/* The apply step on this machine: pin, bind, query. */
static void test_apply_here(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_numa_input in = {.dev_node = -1, .channels = 1};
	uint64_t bytes[RDMIG_TOPO_MAX_NODES] = {0};
	size_t len = 64 * 4096;
	cpu_set_t set;
	uint8_t *mem;

	(void)state;
	if (rdmig_numa_topo_load(&topo, NULL, NULL, &err))
		fail_msg("%s", err.msg);
	do_plan(&in);
	assert_int_equal(rdmig_numa_pin_self(&plan, 0, &err), 0);
	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = 0; c < 64; c++)
		assert_int_equal(!!CPU_ISSET(c, &set), rdmig_cpuset_isset(&plan.w[0].cpus, c));
	assert_int_equal(rdmig_numa_pin_self(&plan, 5, &err), -EINVAL);
	assert_int_equal(rdmig_numa_pin_self(NULL, 0, &err), 0);

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	/* Untouched pages live nowhere yet. */
	assert_int_equal(rdmig_numa_region_node(mem, len, 16, NULL), -1);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_numa_bind(mem, len, topo.node[0].os_index, &err), 0);
	memset(mem, 1, len);
	assert_int_equal(rdmig_numa_region_node(mem, len, 16, bytes), topo.node[0].os_index);
	assert_int_equal(bytes[topo.node[0].os_index], len);
	assert_int_equal(rdmig_numa_bind(mem + 1, len, 0, &err), -EINVAL);
	munmap(mem, len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cpuset_parse),
	    cmocka_unit_test(test_policy_parse),
	    cmocka_unit_test(test_one_node),
	    cmocka_unit_test(test_two_packages_nic_node1),
	    cmocka_unit_test(test_guest_ram_split),
	    cmocka_unit_test(test_more_channels_than_cores),
	    cmocka_unit_test(test_cpulist_errors),
	    cmocka_unit_test(test_vcpu_avoidance),
	    cmocka_unit_test(test_policy_off_and_json),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_apply_here),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
