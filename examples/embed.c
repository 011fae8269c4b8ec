/* SPDX-License-Identifier: MIT */
/*
 * Embedding librdmig's engine: a toy VMM migrates its "guest" to a second
 * instance of itself over loopback. The guest is a memfd mapping the VMM
 * owns and a writer thread that keeps dirtying pages; the VMM keeps its own
 * dirty bitmap (as it would with KVM_GET_DIRTY_LOG) and hands it to rdmig
 * through dirty_log. The destination provides its own memfd RAM, which
 * rdmig writes in place. At the end the two RAMs and the writer's state
 * must be identical. Usage: embed [tcp|rdma [ADDRESS]] (default tcp
 * 127.0.0.1). Both ends authenticate with the pre-shared key in the file
 * $RDMIG_KEY_FILE names (rdmig/auth.h); without one they do not, which is
 * for loopback testing only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <rdmig/rdmig.h>

#define RAM	(16u << 20)
#define PAGES	(RAM / RDMIG_PAGE_SIZE)
#define MAGIC	0x454d4244u /* "EMBD": the config blob says what kind of VM this is */
#define WAIT_MS 10000
#define DEV	100000 /* "device state": more than one control message carries */

struct vm {
	unsigned char *ram;
	_Atomic uint64_t dirty[PAGES / 64]; /* our own log: bit = page written */
	pthread_t writer;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool paused, quit;	/* the writer checks them under lock before each write */
	uint64_t rng, writes;	/* the "vCPU state": travels in the state blob */
	unsigned char dev[DEV]; /* and so does this */
	bool started;		/* destination: start() came */
};

static unsigned char *ram_new(void)
{
	int fd = memfd_create("embed-ram", MFD_CLOEXEC);
	void *p = MAP_FAILED;

	if (fd >= 0 && !ftruncate(fd, RAM))
		p = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd); /* the mapping keeps the memory */
	return p == MAP_FAILED ? NULL : p;
}

/* The guest writes RAM while rdmig reads it: that race is the point of live migration. */
__attribute__((no_sanitize("thread"))) static void guest_write(struct vm *v, uint64_t page)
{
	*(volatile uint64_t *)(void *)(v->ram + page * RDMIG_PAGE_SIZE) = v->writes;
}

static void *writer_main(void *arg)
{
	struct vm *v = arg;
	struct timespec nap = {0, 100000}; /* ~40 MB/s of dirty pages: converges on loopback */

	for (;;) {
		pthread_mutex_lock(&v->lock);
		while (v->paused && !v->quit)
			pthread_cond_wait(&v->cv, &v->lock);
		if (v->quit) {
			pthread_mutex_unlock(&v->lock);
			return NULL;
		}
		v->rng ^= v->rng << 13, v->rng ^= v->rng >> 7, v->rng ^= v->rng << 17;
		uint64_t page = v->rng % PAGES;
		v->writes++;
		guest_write(v, page);
		/* Logged after the write: a harvest in between reports it next time. */
		atomic_fetch_or(&v->dirty[page / 64], 1ull << (page % 64));
		pthread_mutex_unlock(&v->lock);
		nanosleep(&nap, NULL);
	}
}

static int vm_pause(void *ctx, struct rdmig_err *err)
{
	struct vm *v = ctx;

	(void)err;
	/* The writer writes under the lock: once we hold it, no write follows. */
	pthread_mutex_lock(&v->lock);
	v->paused = true;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static void vm_resume(void *ctx)
{
	struct vm *v = ctx;

	pthread_mutex_lock(&v->lock);
	v->paused = false;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->lock);
}

static int vm_dirty_log(void *ctx, unsigned region, uint64_t *bitmap, struct rdmig_err *err)
{
	struct vm *v = ctx;

	(void)region, (void)err; /* one region */
	for (unsigned w = 0; w < PAGES / 64; w++)
		bitmap[w] |= atomic_exchange(&v->dirty[w], 0); /* get and re-arm, per page */
	return 0;
}

static int vm_save(void *ctx, void *buf, size_t cap, size_t *len, struct rdmig_err *err)
{
	struct vm *v = ctx;
	uint64_t st[2] = {v->rng, v->writes};

	if (cap < sizeof(st) + DEV)
		return rdmig_seterr(err, -EOVERFLOW, "the state needs %zu bytes", sizeof(st) + DEV);
	memcpy(buf, st, sizeof(st));
	memcpy((unsigned char *)buf + sizeof(st), v->dev, DEV);
	*len = sizeof(st) + DEV;
	return 0;
}

static int dst_prepare(void *ctx, const void *config, size_t config_len,
		       const struct rdmig_vm_layout *lay, struct rdmig_vm_region *regions,
		       struct rdmig_err *err)
{
	struct vm *v = ctx;
	uint32_t magic;

	if (config_len != sizeof(magic) || (memcpy(&magic, config, 4), magic != MAGIC) ||
	    lay->nregions != 1 || lay->len[0] != RAM)
		return rdmig_seterr(err, -EINVAL, "not an embed VM of %u bytes", RAM);
	v->ram = ram_new();
	if (!v->ram)
		return rdmig_seterr_errno(err, -errno, "cannot map %u bytes of RAM", RAM);
	regions[0] = (struct rdmig_vm_region){.name = "ram", .addr = v->ram, .len = RAM};
	return 0;
}

static int dst_start(void *ctx, const void *state, size_t len, struct rdmig_err *err)
{
	struct vm *v = ctx;
	uint64_t st[2];

	if (len != sizeof(st) + DEV)
		return rdmig_seterr(err, -EPROTO, "state of %zu bytes, expected %zu", len,
				    sizeof(st) + DEV);
	memcpy(st, state, sizeof(st));
	memcpy(v->dev, (const unsigned char *)state + sizeof(st), DEV);
	v->rng = st[0], v->writes = st[1], v->started = true;
	return 0; /* a real VMM would now run its vCPUs from here */
}

static void dst_discard(void *ctx)
{
	struct vm *v = ctx;

	if (v->ram)
		munmap(v->ram, RAM);
	v->ram = NULL;
}

struct dest {
	struct rdmig_listener *l;
	struct vm vm;
	int ret;
	struct rdmig_err err;
};

static void *dest_main(void *arg)
{
	static const struct rdmig_vm_dest_ops ops = {dst_prepare, dst_start, dst_discard};
	struct dest *d = arg;
	struct rdmig_vm_dest vd = {.ops = &ops, .ctx = &d->vm};
	struct rdmig_mig_opts o;
	struct rdmig_conn *c = NULL;

	rdmig_mig_opts_defaults(&o);
	d->ret = rdmig_accept(d->l, WAIT_MS, &c, &d->err);
	if (!d->ret)
		d->ret = rdmig_migrate_dest(c, &vd, &o, NULL, &d->err);
	rdmig_conn_destroy(c);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct rdmig_vm_ops ops = {.pause = vm_pause,
						.resume = vm_resume,
						.dirty_log = vm_dirty_log,
						.save_state = vm_save};
	static struct vm src = {.rng = 88172645463325252ull}; /* large: the bitmap */
	static struct dest d = {.err = RDMIG_ERR_INIT};
	static const uint32_t magic = MAGIC;
	struct rdmig_xport_cfg cfg = {.backend = RDMIG_BACKEND_TCP, .host = "127.0.0.1"};
	struct rdmig_vm vm = {.nregions = 1,
			      .config = &magic,
			      .config_len = sizeof(magic),
			      .running = true,
			      .ops = &ops,
			      .ctx = &src};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_stats st = {0};
	struct rdmig_mig_opts o;
	struct rdmig_conn *c = NULL;
	struct rdmig_auth_key *key = NULL;
	pthread_t t;
	int ret;

	if (strcmp(rdmig_version(), RDMIG_VERSION_STRING)) {
		fprintf(stderr, "embed: built with rdmig %s headers, running with librdmig %s\n",
			RDMIG_VERSION_STRING, rdmig_version());
		return 1;
	}
	if (argc > 1 && rdmig_backend_parse(argv[1], &cfg.backend, &err)) {
		fprintf(stderr, "embed: %s\nusage: embed [tcp|rdma [ADDRESS]]\n", err.msg);
		return 2;
	}
	if (argc > 2)
		cfg.host = argv[2];
	/* The same key on both ends; both are this process here. */
	ret = rdmig_auth_key_new(NULL, &key, &err);
	if (ret < 0) {
		fprintf(stderr, "embed: %s\n", rdmig_err_str(&err));
		return 1;
	}
	if (key) {
		cfg.auth = rdmig_auth_psk;
		cfg.auth_ctx = key;
	}
	pthread_mutex_init(&src.lock, NULL);
	pthread_cond_init(&src.cv, NULL);
	for (unsigned i = 0; i < DEV; i++)
		src.dev[i] = (unsigned char)(i * 7 + i / 251);
	src.ram = ram_new();
	if (!src.ram || pthread_create(&src.writer, NULL, writer_main, &src)) {
		fprintf(stderr, "embed: cannot set up the source VM\n");
		return 1;
	}
	vm.regions[0] =
	    (struct rdmig_vm_region){.name = "ram", .addr = src.ram, .len = RAM, .node = -1};
	ret = rdmig_listen(&cfg, &d.l, &err); /* port 0: an ephemeral one */
	if (!ret) {
		cfg.port = rdmig_listener_port(d.l);
		ret = pthread_create(&t, NULL, dest_main, &d)
			  ? rdmig_seterr(&err, -EAGAIN, "thread")
			  : 0;
	}
	if (!ret) {
		rdmig_mig_opts_defaults(&o);
		ret = rdmig_connect(&cfg, &c, &err);
		if (!ret)
			ret = rdmig_migrate_source(c, &vm, &o, &st, &err);
		rdmig_conn_destroy(c);
		pthread_join(t, NULL);
		if (!ret && d.ret)
			ret = d.ret, err = d.err;
	}
	/* Success leaves the source paused at switchover: its RAM is what went. */
	if (!ret && (!d.vm.started || d.vm.writes != src.writes || d.vm.rng != src.rng ||
		     memcmp(d.vm.dev, src.dev, DEV)))
		ret = rdmig_seterr(&err, -EIO, "the destination did not get the writer's state");
	if (!ret && memcmp(src.ram, d.vm.ram, RAM))
		ret = rdmig_seterr(&err, -EIO, "the destination's RAM differs from the source's");
	rdmig_listener_destroy(d.l);
	pthread_mutex_lock(&src.lock);
	src.quit = true;
	pthread_cond_broadcast(&src.cv);
	pthread_mutex_unlock(&src.lock);
	pthread_join(src.writer, NULL);
	rdmig_auth_key_free(key);
	if (ret) {
		fprintf(stderr, "embed: %s\n", rdmig_err_str(&err));
		return 1;
	}
	printf(
	    "embed: librdmig %s: %u bytes migrated over %s (%s) in %u rounds, %llu guest writes, "
	    "identical\n",
	    rdmig_version(), RAM, rdmig_backend_name(cfg.backend),
	    key ? "key-authenticated" : "unauthenticated", st.round,
	    (unsigned long long)src.writes);
	return 0;
}
