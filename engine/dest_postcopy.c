/* SPDX-License-Identifier: MIT */
/*
 * Post-copy at the destination: the pages the guest lacks at the switch are
 * dropped from its RAM and the RAM is registered with userfaultfd for
 * missing-page faults; then, while the guest runs,
 *
 *   - the fault thread reads the guest's faults and queues their pages,
 *     and points the background cursor just past the last fault (a guest
 *     that touches one page tends to touch the next);
 *   - one fetcher per data channel takes a queued page if there is one,
 *     else the next run of missing pages from the cursor, fetches it into
 *     its own slot of a registered staging buffer (rdma: RDMA READ from the
 *     source's guest RAM; tcp: request and reply on the channel's stream),
 *     checks every page against the checksum the source took at the switch,
 *     and places it with UFFDIO_COPY, which also wakes the threads waiting
 *     on it.
 *
 * A page is fetched once: `missing` says it is not placed yet, `busy` that
 * a fetcher has it; both change under `lock`. A broken link stops the
 * fetchers; the guest then waits on its next missing page, and the caller's
 * thread takes a new connection from the source (PC_RESUME) within
 * opts.postcopy_recover_ns, after which the fetchers go on where they were.
 *
 * Why a copy and not a second mapping (docs/architecture.md, "Post-copy"):
 * guest RAM here is the VMM's own anonymous memory, and the write-back of a
 * fetched page must be atomic with respect to the guest, which UFFDIO_COPY
 * is (the page appears complete or not at all); a copy of 4 KiB costs far
 * less than the fetch itself.
 */
#include "postcopy.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "dirty_probe.h"
#include "log.h"
#include "mig_common.h"

/* Faults queued at most; more wait for the background cursor (or a slot). */
#define DEMAND_QUEUE 4096
/* A page whose copy does not match its checksum is fetched again this often. */
#define REFETCHES 3
/* How long a recovered connection may take to say PC_RESUME and expose the source's RAM. */
#define RESUME_MSG_MS 10000

struct pc_fault {
	uint32_t region;
	uint64_t page;
	uint64_t t; /* rdmig_now_ns() when the fault was read */
};

struct pc_fetcher {
	struct rdmig_pcd *p;
	pthread_t th;
	bool started;
	unsigned chan;
	uint8_t *slot; /* PC_BATCH_PAGES pages of the staging buffer */
	uint64_t slot_off;
	int ret;
	struct rdmig_err err;
};

struct rdmig_pcd {
	struct rdmig_pcd_cfg cfg;
	int uffd;
	int stop_fd;				  /* eventfd: the fault thread leaves */
	uint64_t *missing[RDMIG_MIG_MAX_REGIONS]; /* bit: not placed yet */
	uint64_t *busy[RDMIG_MIG_MAX_REGIONS];	  /* bit: a fetcher has it */
	uint64_t *sums[RDMIG_MIG_MAX_REGIONS];	  /* the source's checksum per page */
	uint64_t total;				  /* pages in the set */
	uint64_t named;				  /* pages PC_SET named so far */
	bool set_started, set_ended;

	struct rdmig_conn *c;  /* fetching over this one */
	struct rdmig_conn *rc; /* a recovered connection, ours to destroy */
	uint32_t rreg[RDMIG_MIG_MAX_REGIONS];
	uint32_t staging_id;
	uint8_t *staging;
	size_t staging_len;

	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct pc_fault queue[DEMAND_QUEUE];
	unsigned qhead, qlen;
	unsigned cur_region; /* background cursor */
	uint64_t cur_page;
	uint64_t placed, demand, bytes;
	atomic_bool stopping; /* fetchers leave (set under lock, read anywhere) */
	int fetch_ret;	      /* the first fetcher error (the link broke) */
	struct rdmig_err fetch_err;
	uint32_t *lat_us; /* on-demand fetch latencies */
	uint64_t nlat, lat_cap;
	unsigned recoveries;
	uint64_t t_start;

	pthread_t fault_th;
	bool fault_started;
	struct pc_fetcher f[RDMIG_MAX_CHANNELS];
	unsigned nf;
};

static bool bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}

static void clear_bit(uint64_t *b, uint64_t i)
{
	b[i / 64] &= ~(1ull << (i % 64));
}

static uint64_t words(uint64_t pages)
{
	return (pages + 63) / 64;
}

int rdmig_pcd_create(const struct rdmig_pcd_cfg *cfg, struct rdmig_pcd **out, struct rdmig_err *err)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct rdmig_pcd *p;
	int ret;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	p->cfg = *cfg;
	p->uffd = -1;
	p->stop_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	ret = rdmig_uffd_open(&p->uffd, NULL, err);
	if (!ret && ioctl(p->uffd, UFFDIO_API, &api) < 0)
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "UFFDIO_API");
	if (ret) {
		rdmig_err_prefix(err, "post-copy needs userfaultfd here");
		goto fail;
	}
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->stop_fd < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "eventfd");
		goto fail;
	}
	for (unsigned r = 0; r < cfg->nregions; r++) {
		p->missing[r] = calloc(words(cfg->pages[r]), 8);
		p->busy[r] = calloc(words(cfg->pages[r]), 8);
		p->sums[r] = malloc(cfg->pages[r] * 8);
		if (!p->missing[r] || !p->busy[r] || !p->sums[r]) {
			ret = rdmig_seterr(err, -ENOMEM, "out of memory for the post-copy set");
			goto fail;
		}
	}
	*out = p;
	return 0;
fail:
	rdmig_pcd_destroy(p);
	return ret;
}

int rdmig_pcd_set(struct rdmig_pcd *p, const struct rdmig_msg_manifest *mf, struct rdmig_err *err)
{
	struct rdmig_manifest_group g;
	size_t off = 0;

	if (p->set_ended)
		return rdmig_seterr(err, -EPROTO, "PC_SET after PC_SET_END");
	p->set_started = true;
	while (rdmig_manifest_next(mf, &off, &g)) {
		for (uint32_t i = 0; i < g.count; i++) {
			uint64_t pg = g.first_page + i;

			/* The decoder checked the bounds; a page named twice is the source's bug.
			 */
			if (bit(p->missing[g.region], pg))
				return rdmig_seterr(err, -EPROTO,
						    "PC_SET names page %" PRIu64
						    " of region %u twice",
						    pg, g.region);
			set_bit(p->missing[g.region], pg);
			p->sums[g.region][pg] = rdmig_get_be64(g.sums + 8 * i);
		}
		p->named += g.count;
	}
	return 0;
}

int rdmig_pcd_set_end(struct rdmig_pcd *p, uint64_t count, struct rdmig_err *err)
{
	if (p->set_ended)
		return rdmig_seterr(err, -EPROTO, "a second PC_SET_END");
	if (count != p->named)
		return rdmig_seterr(err, -EPROTO,
				    "PC_SET_END counts %" PRIu64 " pages, PC_SET named %" PRIu64,
				    count, p->named);
	p->set_started = true;
	p->set_ended = true;
	p->total = count;
	return 0;
}

bool rdmig_pcd_switching(const struct rdmig_pcd *p)
{
	return p && p->set_started;
}

bool rdmig_pcd_set_complete(const struct rdmig_pcd *p)
{
	return p && p->set_ended;
}

const uint64_t *rdmig_pcd_missing(const struct rdmig_pcd *p, unsigned r)
{
	return p->missing[r];
}

/*
 * Drop region r's stale copies of the set's pages, run by run. Private
 * anonymous memory: the copy goes and the next touch is a missing-page
 * fault. Remote access is revoked already, so nothing pins these pages.
 */
static int zap_missing(struct rdmig_pcd *p, unsigned r, struct rdmig_err *err)
{
	uint64_t n = p->cfg.pages[r], pg = 0;

	while (pg < n) {
		uint64_t end;

		if (!bit(p->missing[r], pg)) {
			pg++;
			continue;
		}
		for (end = pg; end < n && bit(p->missing[r], end); end++)
			;
		if (madvise(p->cfg.addr[r] + pg * RDMIG_PAGE_SIZE, (end - pg) * RDMIG_PAGE_SIZE,
			    MADV_DONTNEED))
			return rdmig_seterr_errno(err, rdmig_neg_errno(),
						  "post-copy: dropping %" PRIu64
						  " stale pages of region %u (madvise)",
						  end - pg, r);
		pg = end;
	}
	return 0;
}

int rdmig_pcd_arm(struct rdmig_pcd *p, struct rdmig_err *err)
{
	int ret;

	for (unsigned r = 0; r < p->cfg.nregions; r++) {
		struct uffdio_register reg = {
		    .range = {.start = (uintptr_t)p->cfg.addr[r],
			      .len = p->cfg.pages[r] * RDMIG_PAGE_SIZE},
		    .mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		ret = zap_missing(p, r, err);
		if (ret)
			return ret;
		if (ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0)
			return rdmig_seterr_errno(
			    err, rdmig_neg_errno(),
			    "post-copy: registering guest region %u for missing-page faults "
			    "(UFFDIO_REGISTER; the VMM's RAM must be private anonymous memory)",
			    r);
		if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
			return rdmig_seterr(err, -EOPNOTSUPP,
					    "post-copy: guest region %u offers no UFFDIO_COPY", r);
	}
	return 0;
}

/* ---- faults ------------------------------------------------------------ */

static bool find_page(const struct rdmig_pcd *p, uint64_t addr, unsigned *r, uint64_t *pg)
{
	for (unsigned i = 0; i < p->cfg.nregions; i++) {
		uint64_t base = (uintptr_t)p->cfg.addr[i];

		if (addr >= base && addr < base + p->cfg.pages[i] * RDMIG_PAGE_SIZE) {
			*r = i;
			*pg = (addr - base) / RDMIG_PAGE_SIZE;
			return true;
		}
	}
	return false;
}

/* Under lock: the guest waits on this page. */
static void fault_in(struct rdmig_pcd *p, unsigned r, uint64_t pg, uint64_t t)
{
	bool queued = false;

	if (!bit(p->missing[r], pg)) {
		/* Placed meanwhile: its UFFDIO_COPY may have come before the fault was raised. */
		struct uffdio_range wake = {.start =
						(uintptr_t)p->cfg.addr[r] + pg * RDMIG_PAGE_SIZE,
					    .len = RDMIG_PAGE_SIZE};

		ioctl(p->uffd, UFFDIO_WAKE, &wake);
		return;
	}
	/* A page some fetcher already has is woken by its copy; no need to queue it. */
	for (unsigned i = 0; i < p->qlen && !queued; i++) {
		const struct pc_fault *q = &p->queue[(p->qhead + i) % DEMAND_QUEUE];

		queued = q->region == r && q->page == pg;
	}
	if (!bit(p->busy[r], pg) && !queued && p->qlen < DEMAND_QUEUE) {
		p->queue[(p->qhead + p->qlen) % DEMAND_QUEUE] =
		    (struct pc_fault){.region = r, .page = pg, .t = t};
		p->qlen++;
	}
	p->cur_region = r;
	p->cur_page = pg + 1 < p->cfg.pages[r] ? pg + 1 : pg;
	pthread_cond_broadcast(&p->cv);
}

static void *fault_main(void *arg)
{
	struct rdmig_pcd *p = arg;
	struct uffd_msg msg[64];

	pthread_setname_np(pthread_self(), "rdmig-pcfault");
	for (;;) {
		struct pollfd pf[2] = {{.fd = p->uffd, .events = POLLIN},
				       {.fd = p->stop_fd, .events = POLLIN}};
		ssize_t n;

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		n = read(p->uffd, msg, sizeof(msg));
		if (n <= 0)
			continue;
		pthread_mutex_lock(&p->lock);
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			unsigned r;
			uint64_t pg;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (find_page(p, msg[i].arg.pagefault.address, &r, &pg))
				fault_in(p, r, pg, rdmig_now_ns());
		}
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

/* ---- fetching ---------------------------------------------------------- */

struct pc_job {
	unsigned region;
	uint64_t first;
	uint32_t count;
	bool demand;
	uint64_t t;
};

/* Under lock: the next page the guest waits on, else the next run from the cursor. */
static bool pick(struct rdmig_pcd *p, struct pc_job *j)
{
	while (p->qlen) {
		struct pc_fault q = p->queue[p->qhead];

		p->qhead = (p->qhead + 1) % DEMAND_QUEUE;
		p->qlen--;
		if (!bit(p->missing[q.region], q.page) || bit(p->busy[q.region], q.page))
			continue;
		*j = (struct pc_job){q.region, q.page, 1, true, q.t};
		set_bit(p->busy[q.region], q.page);
		return true;
	}
	/* Background: from the cursor on, wrapping around once over every region. */
	for (unsigned k = 0; k <= p->cfg.nregions; k++) {
		unsigned r = (p->cur_region + k) % p->cfg.nregions;
		uint64_t n = p->cfg.pages[r], pg = k ? 0 : p->cur_page;

		while (pg < n) {
			uint64_t w = p->missing[r][pg / 64] & ~p->busy[r][pg / 64];

			w &= ~0ull << (pg % 64);
			if (!w) {
				pg = (pg / 64 + 1) * 64;
				continue;
			}
			pg = (pg / 64) * 64 + (uint64_t)__builtin_ctzll(w);
			if (pg >= n)
				break;
			*j = (struct pc_job){.region = r, .first = pg};
			while (j->count < PC_BATCH_PAGES && pg < n && bit(p->missing[r], pg) &&
			       !bit(p->busy[r], pg)) {
				set_bit(p->busy[r], pg);
				j->count++;
				pg++;
			}
			p->cur_region = r;
			p->cur_page = pg < n ? pg : 0;
			if (pg >= n)
				p->cur_region = (r + 1) % p->cfg.nregions;
			return true;
		}
	}
	return false;
}

/* Exactly `want` bytes of the channel's stream; gives up when the link fails or fetching stops. */
static int recv_exact(struct pc_fetcher *f, uint8_t *buf, size_t want, struct rdmig_err *err)
{
	struct rdmig_conn *c = f->p->c;
	size_t got = 0;

	while (got < want) {
		ssize_t n =
		    rdmig_stream_recv(c, f->chan, buf + got, want - got, RDMIG_POLL_MS, err);

		if (n == -ETIMEDOUT) {
			rdmig_err_clear(err);
			if (rdmig_conn_failed(c, err) || atomic_load(&f->p->stopping))
				return err && err->code ? err->code : -ECANCELED;
			continue;
		}
		if (n <= 0)
			return n ? (int)n
				 : rdmig_seterr(err, -ECONNRESET, "source ended the stream");
		got += (size_t)n;
	}
	return 0;
}

/* tcp: ask for the run on the channel's stream and take the reply into the slot. */
static int fetch_stream(struct pc_fetcher *f, const struct pc_job *j, struct rdmig_err *err)
{
	uint8_t req[PC_REQ_LEN], hdr[PC_REQ_LEN];
	int ret;

	pc_req_encode(req, j->region, j->count, j->first);
	ret = rdmig_stream_send(f->p->c, f->chan, req, sizeof(req), err);
	if (!ret)
		ret = recv_exact(f, hdr, sizeof(hdr), err);
	if (ret)
		return ret;
	if (memcmp(hdr, req, PC_REQ_LEN))
		return rdmig_seterr(err, -EPROTO, "post-copy: the source answered another request");
	return recv_exact(f, f->slot, (size_t)j->count * RDMIG_PAGE_SIZE, err);
}

static int fetch_read(struct pc_fetcher *f, const struct pc_job *j, struct rdmig_err *err)
{
	struct rdmig_run run = {.lreg = f->p->staging_id,
				.rreg = f->p->rreg[j->region],
				.loff = f->slot_off,
				.roff = j->first * RDMIG_PAGE_SIZE,
				.len = (uint64_t)j->count * RDMIG_PAGE_SIZE};

	return rdmig_read(f->p->c, f->chan, &run, 1, err);
}

/* Fetch, check and place one job; the checks run on the copy in the slot. */
static int fetch(struct pc_fetcher *f, const struct pc_job *j, struct rdmig_err *err)
{
	struct rdmig_pcd *p = f->p;
	uint32_t bad = UINT32_MAX;
	int ret = 0;

	for (unsigned attempt = 0; attempt <= REFETCHES; attempt++) {
		ret = rdmig_conn_backend(p->c) == RDMIG_BACKEND_RDMA ? fetch_read(f, j, err)
								     : fetch_stream(f, j, err);
		if (ret)
			return ret;
		__atomic_fetch_add(&p->bytes, (uint64_t)j->count * RDMIG_PAGE_SIZE,
				   __ATOMIC_RELAXED);
		bad = UINT32_MAX;
		for (uint32_t i = 0; i < j->count && bad == UINT32_MAX; i++)
			if (rdmig_page_sum(f->slot + (size_t)i * RDMIG_PAGE_SIZE) !=
			    p->sums[j->region][j->first + i])
				bad = i;
		if (bad == UINT32_MAX)
			break;
		log_warn("post-copy: page %" PRIu64 " of region %u does not match the source's "
			 "checksum: fetching it again",
			 j->first + bad, j->region);
	}
	if (bad != UINT32_MAX)
		return rdmig_seterr(err, -EILSEQ,
				    "post-copy: page %" PRIu64 " of region %u (offset 0x%" PRIx64
				    ") did not match the source's checksum in %d fetches",
				    j->first + bad, j->region, (j->first + bad) * RDMIG_PAGE_SIZE,
				    REFETCHES + 1);
	{
		struct uffdio_copy cp = {
		    .dst = (uintptr_t)p->cfg.addr[j->region] + j->first * RDMIG_PAGE_SIZE,
		    .src = (uintptr_t)f->slot,
		    .len = (uint64_t)j->count * RDMIG_PAGE_SIZE,
		};

		while (cp.len) {
			cp.copy = 0;
			if (!ioctl(p->uffd, UFFDIO_COPY, &cp))
				break;
			if (errno != EAGAIN || cp.copy < 0)
				return rdmig_seterr_errno(err, rdmig_neg_errno(),
							  "post-copy: placing page %" PRIu64
							  " of region %u (UFFDIO_COPY)",
							  j->first, j->region);
			cp.dst += (uint64_t)cp.copy;
			cp.src += (uint64_t)cp.copy;
			cp.len -= (uint64_t)cp.copy;
		}
	}
	return 0;
}

static void placed(struct rdmig_pcd *p, const struct pc_job *j)
{
	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < j->count; i++) {
		clear_bit(p->missing[j->region], j->first + i);
		clear_bit(p->busy[j->region], j->first + i);
	}
	p->placed += j->count;
	if (j->demand) {
		p->demand++;
		if (p->nlat == p->lat_cap) {
			uint64_t cap = p->lat_cap ? 2 * p->lat_cap : 1024;
			uint32_t *l = realloc(p->lat_us, cap * sizeof(*l));

			if (l) {
				p->lat_us = l;
				p->lat_cap = cap;
			}
		}
		if (p->nlat < p->lat_cap) {
			uint64_t us = (rdmig_now_ns() - j->t) / 1000;

			p->lat_us[p->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
		}
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}

static void unpick(struct rdmig_pcd *p, const struct pc_job *j)
{
	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < j->count; i++)
		clear_bit(p->busy[j->region], j->first + i);
	/* The guest may wait on it: it goes first once fetching resumes. */
	if (j->demand && p->qlen < DEMAND_QUEUE) {
		p->qhead = (p->qhead + DEMAND_QUEUE - 1) % DEMAND_QUEUE;
		p->queue[p->qhead] = (struct pc_fault){j->region, j->first, j->t};
		p->qlen++;
	}
	pthread_mutex_unlock(&p->lock);
}

static void *fetch_main(void *arg)
{
	struct pc_fetcher *f = arg;
	struct rdmig_pcd *p = f->p;
	char name[16];

	snprintf(name, sizeof(name), "rdmig-pc%u", f->chan);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		struct pc_job j;
		bool got;

		pthread_mutex_lock(&p->lock);
		while (!(got = !atomic_load(&p->stopping) && pick(p, &j)) &&
		       !atomic_load(&p->stopping) && p->placed < p->total)
			pthread_cond_wait(&p->cv, &p->lock);
		pthread_mutex_unlock(&p->lock);
		if (!got)
			break;
		f->ret = fetch(f, &j, &f->err);
		if (f->ret) {
			unpick(p, &j);
			pthread_mutex_lock(&p->lock);
			if (!p->fetch_ret) {
				p->fetch_ret = f->ret;
				p->fetch_err = f->err;
			}
			atomic_store(&p->stopping, true);
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->lock);
			break;
		}
		placed(p, &j);
		if (!j.demand && p->cfg.o->test_pc_pace_us)
			usleep(p->cfg.o->test_pc_pace_us);
	}
	return NULL;
}

static void fetchers_stop(struct rdmig_pcd *p)
{
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->stopping, true);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nf; i++)
		if (p->f[i].started) {
			pthread_join(p->f[i].th, NULL);
			p->f[i].started = false;
		}
}

/*
 * Fetch over `c`: the source's RAM (its layout, on rdma) and a staging
 * buffer registered on it, then one fetcher per channel.
 */
static int fetchers_start(struct rdmig_pcd *p, struct rdmig_conn *c, struct rdmig_err *err)
{
	bool rdma = rdmig_conn_backend(c) == RDMIG_BACKEND_RDMA;
	unsigned n = rdmig_conn_channels(c);
	int ret;

	p->c = c;
	if (rdma) {
		if (rdmig_remote_count(c) != p->cfg.nregions)
			return rdmig_seterr(err, -EPROTO,
					    "post-copy: the source exposed %u regions for a guest "
					    "of %u",
					    rdmig_remote_count(c), p->cfg.nregions);
		for (unsigned r = 0; r < p->cfg.nregions; r++) {
			const struct rdmig_remote_region *rr = rdmig_remote_get(c, r);

			if (rr->len != p->cfg.pages[r] * RDMIG_PAGE_SIZE ||
			    !(rr->flags & RDMIG_REG_REMOTE_READ))
				return rdmig_seterr(err, -EPROTO,
						    "post-copy: the source's region %u (%" PRIu64
						    " bytes, flags 0x%x) is not the guest's "
						    "region, readable",
						    r, rr->len, rr->flags);
			p->rreg[r] = rr->id;
		}
	}
	if (!p->staging) {
		p->staging_len = (size_t)RDMIG_MAX_CHANNELS * PC_BATCH_PAGES * RDMIG_PAGE_SIZE;
		p->staging = mmap(NULL, p->staging_len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p->staging == MAP_FAILED) {
			p->staging = NULL;
			return rdmig_seterr_errno(err, rdmig_neg_errno(),
						  "post-copy: staging buffer");
		}
	}
	if (rdma) {
		ret =
		    rdmig_reg(c, "pc-staging", p->staging, p->staging_len, 0, &p->staging_id, err);
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->stopping, false);
	p->fetch_ret = 0;
	rdmig_err_clear(&p->fetch_err);
	pthread_mutex_unlock(&p->lock);
	p->nf = n;
	for (unsigned i = 0; i < n; i++) {
		struct pc_fetcher *f = &p->f[i];

		*f = (struct pc_fetcher){.p = p, .chan = i, .err = RDMIG_ERR_INIT};
		f->slot_off = (uint64_t)i * PC_BATCH_PAGES * RDMIG_PAGE_SIZE;
		f->slot = p->staging + f->slot_off;
		if (pthread_create(&f->th, NULL, fetch_main, f))
			return rdmig_seterr(err, -EAGAIN, "post-copy: cannot start fetcher %u", i);
		f->started = true;
	}
	return 0;
}

int rdmig_pcd_start(struct rdmig_pcd *p, struct rdmig_conn *c, struct rdmig_err *err)
{
	p->t_start = rdmig_now_ns();
	if (pthread_create(&p->fault_th, NULL, fault_main, p))
		return rdmig_seterr(err, -EAGAIN, "post-copy: cannot start the fault thread");
	p->fault_started = true;
	return fetchers_start(p, c, err);
}

/* ---- the end, and recovery --------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void figures(struct rdmig_pcd *p, struct rdmig_msg_pc_done *d)
{
	d->pages = p->placed;
	d->demand = p->demand;
	d->bytes = __atomic_load_n(&p->bytes, __ATOMIC_RELAXED);
	d->recoveries = p->recoveries;
	d->p50_us = d->p99_us = d->max_us = 0;
	if (p->nlat) {
		qsort(p->lat_us, p->nlat, sizeof(*p->lat_us), cmp_u32);
		d->p50_us = p->lat_us[(p->nlat - 1) / 2];
		d->p99_us = p->lat_us[(p->nlat - 1) * 99 / 100];
		d->max_us = p->lat_us[p->nlat - 1];
	}
}

/* Wait until every page is placed (0) or the fetchers stopped on an error (it). */
static int wait_placed(struct rdmig_pcd *p, struct rdmig_err *err)
{
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	while (p->placed < p->total && !p->fetch_ret) {
		struct timespec ts = rdmig_abstime_ms(CLOCK_REALTIME, RDMIG_POLL_MS);

		pthread_cond_timedwait(&p->cv, &p->lock, &ts);
		/* A link that dies with every fetcher idle still counts. */
		if (p->placed < p->total && !p->fetch_ret && rdmig_conn_failed(p->c, &p->fetch_err))
			p->fetch_ret = p->fetch_err.code ? p->fetch_err.code : -ECONNRESET;
	}
	if (p->placed < p->total) {
		ret = p->fetch_ret;
		if (err && !err->code)
			*err = p->fetch_err;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/*
 * One connection from the listener within the recovery window: PC_RESUME
 * for this migration. Then PC_RESUMED (or, all pages placed, PC_DONE) and
 * the source's layout. Anything else is refused and dropped.
 */
static int take_resume(struct rdmig_pcd *p, struct rdmig_conn *nc, bool done, struct rdmig_err *err)
{
	uint8_t buf[RDMIG_PC_DONE_LEN + 300];
	uint16_t type;
	size_t len;
	int ret;

	ret = rdmig_ctrl_recv(nc, &type, buf, sizeof(buf), &len, RESUME_MSG_MS, err);
	if (ret)
		return ret;
	if (type != RDMIG_EMSG_PC_RESUME) {
		size_t n = rdmig_msg_cancel_encode(buf, -EBUSY,
						   "this destination is recovering a post-copy");

		rdmig_ctrl_send(nc, RDMIG_EMSG_CANCEL, buf, n, NULL);
		return rdmig_seterr(err, -EPROTO, "message 0x%x where PC_RESUME was due", type);
	}
	ret = rdmig_msg_id_decode(buf, len, p->cfg.id, "PC_RESUME", err);
	if (ret)
		return ret;
	if (done) {
		struct rdmig_msg_pc_done d;

		figures(p, &d);
		return rdmig_ctrl_send(nc, RDMIG_EMSG_PC_DONE, buf,
				       rdmig_msg_pc_done_encode(buf, p->cfg.id, &d), err);
	}
	ret = rdmig_ctrl_send(nc, RDMIG_EMSG_PC_RESUMED, buf, rdmig_msg_id_encode(buf, p->cfg.id),
			      err);
	if (!ret && rdmig_conn_backend(nc) == RDMIG_BACKEND_RDMA)
		ret = rdmig_recv_layout(nc, RESUME_MSG_MS, err);
	return ret;
}

/*
 * The link broke (the cause in err): take connections until the source's
 * PC_RESUME comes, within the window. 0 with p->c the new connection.
 */
static int recover(struct rdmig_pcd *p, bool done, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = p->cfg.o;
	uint64_t deadline = rdmig_now_ns() + o->postcopy_recover_ns;
	char cause[RDMIG_ERR_MSG_MAX];
	struct rdmig_err e = RDMIG_ERR_INIT;

	snprintf(cause, sizeof(cause), "%s", rdmig_err_str(err));
	if (!o->postcopy_recover_ns || !o->settle_conn)
		return rdmig_seterr(err, RDMIG_MIG_EPCLOST,
				    "post-copy: the link to the source broke (%s) and recovery is "
				    "off",
				    cause);
	log_warn("post-copy: the link to the source broke (%s): the guest waits on its next "
		 "missing page; waiting up to %.0f s for the source to reconnect",
		 cause, (double)o->postcopy_recover_ns / 1e9);
	while (rdmig_now_ns() < deadline) {
		struct rdmig_conn *nc = NULL;
		int left = (int)((deadline - rdmig_now_ns()) / 1000000) + 1;
		int ret;

		rdmig_err_clear(&e);
		ret = o->settle_conn(o->settle_ctx, left, &nc, &e);
		if (ret) {
			if (ret != -ETIMEDOUT)
				usleep(100000);
			continue;
		}
		ret = take_resume(p, nc, done, &e);
		if (ret) {
			log_warn("post-copy: a connection that did not resume it: %s",
				 rdmig_err_str(&e));
			rdmig_conn_destroy(nc);
			continue;
		}
		if (p->rc) {
			rdmig_conn_destroy(p->rc);
		}
		p->rc = nc;
		p->c = nc;
		p->recoveries++;
		log_info("post-copy: the source is back (recovery %u)", p->recoveries);
		return 0;
	}
	rdmig_err_clear(err);
	return rdmig_seterr(err, RDMIG_MIG_EPCLOST,
			    "post-copy: the link to the source broke (%s) and it did not come "
			    "back within %.0f s (--postcopy-recover)%s%s",
			    cause, (double)o->postcopy_recover_ns / 1e9, e.code ? "; last: " : "",
			    e.code ? rdmig_err_str(&e) : "");
}

int rdmig_pcd_finish(struct rdmig_pcd *p, struct rdmig_mig_stats *st, struct rdmig_err *err)
{
	struct rdmig_msg_pc_done d;
	uint8_t buf[RDMIG_PC_DONE_LEN + 300];
	uint16_t type;
	size_t len;
	int ret;

	for (;;) {
		ret = wait_placed(p, err);
		if (!ret)
			break;
		fetchers_stop(p);
		/* Old keys and buffers go with the broken connection. */
		rdmig_revoke(p->c);
		ret = recover(p, false, err);
		if (ret)
			return ret;
		rdmig_err_clear(err);
		ret = fetchers_start(p, p->c, err);
		if (ret)
			return ret;
	}
	fetchers_stop(p);
	figures(p, &d);
	st->postcopy = true;
	st->pc_pages = p->total;
	st->pc_demand = d.demand;
	st->pc_bytes = d.bytes;
	st->pc_ms = (double)(rdmig_now_ns() - p->t_start) / 1e6;
	st->pc_fetch_p50_us = d.p50_us;
	st->pc_fetch_p99_us = d.p99_us;
	st->pc_fetch_max_us = d.max_us;
	st->pc_recoveries = p->recoveries;
	log_info("post-copy: all %" PRIu64 " pages placed in %.0f ms (%" PRIu64
		 " on demand, fetch p50 %u us, p99 %u us)",
		 p->total, st->pc_ms, d.demand, d.p50_us, d.p99_us);
	/* The guest is whole here: the source may let go of its copy. */
	{
		struct rdmig_err e = RDMIG_ERR_INIT;

		ret = rdmig_ctrl_send(p->c, RDMIG_EMSG_PC_DONE, buf,
				      rdmig_msg_pc_done_encode(buf, p->cfg.id, &d), &e);
		if (!ret)
			ret = rdmig_ctrl_recv(p->c, &type, buf, sizeof(buf), &len,
					      (int)(p->cfg.o->commit_timeout_ns / 1000000), &e);
		if (!ret && type == RDMIG_EMSG_DONE &&
		    !rdmig_msg_id_decode(buf, len, p->cfg.id, "DONE", &e))
			return 0;
		if (!ret)
			rdmig_seterr(&e, -EPROTO, "message 0x%x where DONE was due", type);
		/* The source may not have heard: it comes back for PC_DONE within the window. */
		if (recover(p, true, &e))
			log_warn("post-copy: every page is here and the guest runs, but the "
				 "source may not know: %s",
				 rdmig_err_str(&e));
	}
	return 0;
}

void rdmig_pcd_destroy(struct rdmig_pcd *p)
{
	if (!p)
		return;
	fetchers_stop(p);
	if (p->fault_started) {
		uint64_t one = 1;

		if (write(p->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("post-copy: cannot stop the fault thread");
		pthread_join(p->fault_th, NULL);
	}
	/* Unregisters every range and lets any waiting thread go on. */
	if (p->uffd >= 0)
		close(p->uffd);
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	if (p->rc)
		rdmig_conn_destroy(p->rc);
	if (p->staging)
		munmap(p->staging, p->staging_len);
	for (unsigned r = 0; r < RDMIG_MIG_MAX_REGIONS; r++) {
		free(p->missing[r]);
		free(p->busy[r]);
		free(p->sums[r]);
	}
	free(p->lat_us);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cv);
	free(p);
}
