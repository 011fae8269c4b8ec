/* SPDX-License-Identifier: MIT */
/*
 * QEMU process harness: the one place where the qemu tier (tests/qemu) and
 * bench/qemu_migrate find QEMU, start it, talk QMP to it, read its guest's
 * memory and stop it, whatever happens to the program that started it.
 *
 *   qemu_proc.c    the run: finding QEMU (or skipping loudly), the
 *                  temporary directory, child processes with their logs,
 *                  cleanup at exit and on signals, the test runner
 *   qemu_vm.c      QEMU VMs: command line, start-up, QMP commands, status
 *                  and event waits, migration polling
 *   qemu_guest.c   the incrementing test guests: disk image, pmemsave,
 *                  "it runs" and "memory intact" checks, KVM probe
 *   qemu_relay.c   `rdmig qemu src|dst|migrate` processes, and a TCP proxy
 *                  that can stall or cut the orchestrator's control session
 *   qemu_fake.c    unix sockets that answer, but not with QMP; a sink that
 *                  stands in for a destination QEMU's incoming socket
 *
 * Functions return 0 or a negative errno and fill `err`, as everywhere in
 * rdmig. The harness is single-threaded apart from qemu_fake.c's server.
 */
#ifndef RDMIG_TESTS_QEMU_HARNESS_H
#define RDMIG_TESTS_QEMU_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "qmp.h"
#include "rdmig/err.h"

/* Paths in the temporary directory; socket paths must stay under 108 bytes. */
#define QH_PATH 160

/* Exit status that ctest's SKIP_RETURN_CODE counts as skipped. */
#define QH_EXIT_SKIP 77

/* Timeout of one QMP command. */
#define QH_QMP_MS 10000

/* ---- the run (qemu_proc.c) -------------------------------------------------- */

/*
 * Find QEMU: $RDMIG_QEMU, else qemu-system-x86_64 on $PATH. Returns 0 when
 * found; otherwise prints "PROG: SKIP: ..." with the fix on stderr and
 * returns QH_EXIT_SKIP, for main() to return.
 */
int qh_need_qemu(const char *prog);

/* The QEMU binary qh_need_qemu() found. */
const char *qh_qemu(void);

/*
 * Create the run's temporary directory, $TMPDIR/NAME-XXXXXX (/tmp when
 * $TMPDIR is unset or too long for socket paths). At exit, and on SIGINT,
 * SIGTERM or SIGHUP, every child still running is killed and the directory
 * removed (RDMIG_KEEP_TMP=1 keeps it). SIGPIPE is ignored.
 */
int qh_setup(const char *name, struct rdmig_err *err);

/* The temporary directory ("" before qh_setup()). */
const char *qh_tmp(void);

/* "QEMU emulator version X.Y.Z" from `qemu --version` into ver[]. */
int qh_qemu_version(int ver[3], struct rdmig_err *err);

struct qh_proc {
	pid_t pid;	   /* 0 when not running */
	int status;	   /* once it has exited: its exit code, or 128 + signal */
	char name[24];	   /* names its files in the temporary directory */
	char log[QH_PATH]; /* TMP/NAME.log: stderr, and stdout unless kept apart */
	char out[QH_PATH]; /* TMP/NAME.out: stdout when kept apart, else "" */
};

/*
 * Start argv (argv[0] looked up on $PATH when it has no '/') with stdin
 * from /dev/null and its output in p->log (stdout in p->out when
 * `split_stdout`). The child is killed when this process dies. `p` is
 * remembered until the child has been reaped, so it must stay valid.
 */
int qh_spawn(struct qh_proc *p, const char *name, const char *const argv[], bool split_stdout,
	     struct rdmig_err *err);

/* Reap without waiting: true once the child has exited (p->status then set). */
bool qh_exited(struct qh_proc *p);

/*
 * Wait up to `timeout_ms` for the child to exit: 0 with p->status set, or
 * -ETIMEDOUT after killing it.
 */
int qh_wait(struct qh_proc *p, int timeout_ms, struct rdmig_err *err);

/* SIGKILL and reap; a process not running is left alone. */
void qh_kill(struct qh_proc *p);

/* A process's output (log, then stdout if apart) on stderr. */
void qh_show_log(const struct qh_proc *p);

/* A whole small file as a string, "" if it cannot be read; free() it. NULL: out of memory. */
char *qh_read_text(const char *path);

/*
 * After a test: close the QMP connection of every VM and kill every
 * process still running, showing their output first when the test failed.
 */
void qh_end_test(bool failed);

struct qh_test {
	const char *name;
	int (*fn)(void); /* 0 passed, non-zero failed (having said why) */
};

/*
 * Run the tests named in argv[first..argc) (all of them when none is),
 * each followed by qh_end_test(), with timings and a PASS/FAIL summary.
 * Returns main()'s exit status: 0 when all passed, 1 when any failed or a
 * name matched none.
 */
int qh_run_tests(const struct qh_test *tests, size_t n, int argc, char **argv, int first);

/* A test's failure: "FAIL file.c:LINE: ..." on stderr; returns -1. */
#define QH_FAIL(...) qh_fail_at(__FILE__, __LINE__, __VA_ARGS__)
int qh_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- VMs (qemu_vm.c) ---------------------------------------------------------- */

enum qh_incoming {
	QH_SOURCE,	   /* no -incoming */
	QH_INCOMING_UNIX,  /* -incoming unix:<vm->incoming> */
	QH_INCOMING_DEFER, /* -incoming defer: migrate-incoming comes later */
	QH_INCOMING_URI,   /* -incoming <cfg->uri> */
};

struct qh_vm_cfg {
	const char *name;	  /* names its files in the temporary directory */
	const char *const *extra; /* more QEMU arguments, NULL-terminated; may be NULL */
	const char *accel;	  /* -accel; NULL: tcg */
	unsigned mem_mib;	  /* -m */
	const char *disk;	  /* raw disk to boot (opened with snapshot=on), or NULL */
	const char *bios;	  /* firmware image for -bios, or NULL */
	bool paused;		  /* -S */
	bool second_qmp;	  /* a QMP socket for someone else, vm->qmp (relay, orchestrator) */
	enum qh_incoming incoming;
	const char *uri; /* with QH_INCOMING_URI */
};

struct qh_vm {
	struct qh_proc p;
	char qmp[QH_PATH];	/* TMP/NAME.qmp, left for another client (cfg.second_qmp) */
	char own_qmp[QH_PATH];	/* TMP/NAME.tq, this program's, open as `q` */
	char incoming[QH_PATH]; /* TMP/NAME.in, QEMU's incoming socket for unix: or a relay */
	struct rdmig_qmp *q;
};

/*
 * Start QEMU as `cfg` says and connect to its QMP socket (retrying while
 * QEMU creates it). `vm` must be zeroed or stopped. A QEMU that exits during
 * start-up has its output shown.
 */
int qh_vm_start(struct qh_vm *vm, const struct qh_vm_cfg *cfg, struct rdmig_err *err);

/* Close QMP and kill QEMU. */
void qh_vm_stop(struct qh_vm *vm);

/* One QMP command (args stolen, *ret as rdmig_qmp_cmd()); errors name the VM. */
int qh_cmd(struct qh_vm *vm, const char *cmd, json_t *args, json_t **ret, struct rdmig_err *err);

/* Run status ("running", "paused", "inmigrate", ...) into buf. */
int qh_status(struct qh_vm *vm, char *buf, size_t len, struct rdmig_err *err);

/* The run status is `want` now: else -EPROTO naming both. */
int qh_expect_status(struct qh_vm *vm, const char *want, struct rdmig_err *err);

/* Poll the run status until it is `want` (passing states are skipped). */
int qh_wait_status(struct qh_vm *vm, const char *want, int timeout_ms, struct rdmig_err *err);

/* Wait for QMP event `event`, dropping others. */
int qh_wait_event(struct qh_vm *vm, const char *event, int timeout_ms, struct rdmig_err *err);

/* A query-migrate status that means the migration is over (completed, failed, ...). */
bool qh_mig_ended(const char *status);

/* The "status" of a query-migrate reply, "none" when absent. */
const char *qh_mig_status(json_t *info);

/* A number member of `obj` (integer or real), 0 when absent. */
double qh_num(json_t *obj, const char *key);

/* Called with every query-migrate reply; true stops the polling. */
typedef bool (*qh_mig_fn)(json_t *info, void *arg);

/*
 * Poll query-migrate every `period_ms` until the migration has ended,
 * `until` (may be NULL) says so, or `timeout_ms` has passed (-ETIMEDOUT).
 * *last receives the last reply read, whatever the outcome (NULL if none;
 * the caller's reference).
 */
int qh_poll_migrate(struct qh_vm *vm, int period_ms, int timeout_ms, qh_mig_fn until, void *arg,
		    json_t **last, struct rdmig_err *err);

/* ---- the test guests (qemu_guest.c) ----------------------------------------- */

/* First page tests/qemu/guest.S increments (its range ends at GUEST_END there). */
#define QH_GUEST_START 0x00100000u

/*
 * The boot sector `img` (tests/qemu/guest.S, built into the build tree)
 * copied to TMP/NAME padded to a 1 MiB disk; the copy's path into `out`.
 */
int qh_guest_disk(const char *img, const char *name, char *out, size_t len, struct rdmig_err *err);

/* Guest-physical memory [addr, addr + len) into buf, by pmemsave. */
int qh_read_guest(struct qh_vm *vm, uint64_t addr, size_t len, void *buf, struct rdmig_err *err);

/*
 * The guest runs: the counter byte at `addr` changes within 10 s. seen[0]
 * and seen[1] (seen may be NULL) receive its value before and after.
 */
int qh_guest_runs(struct qh_vm *vm, uint64_t addr, uint8_t seen[2], struct rdmig_err *err);

/*
 * A stopped incrementing guest is intact: [addr, addr + len) does not
 * change, the checker (rdmig_check_incr_image) is shown to catch a stale
 * counter and a stray byte on doctored copies, then the image passes it.
 * With `lossy` (qh_tcg_lossy()) damage is printed as a WARN and not
 * counted. Prints one line with the result.
 */
int qh_check_incr(struct qh_vm *vm, uint64_t addr, size_t len, bool lossy, struct rdmig_err *err);

/* The written guest (guest.S built with FILL): every dword is its address ^ QH_FILL_XOR. */
#define QH_FILL_XOR	  0x5a5aa5a5u
#define QH_FILL_DONE_ADDR 0x600u
#define QH_FILL_MAGIC	  0x46494c4cu

/* Wait until the written guest has written all of its range (its done marker). */
int qh_wait_filled(struct qh_vm *vm, int timeout_ms, struct rdmig_err *err);

/*
 * Every dword of [addr, addr + len) of the stopped written guest holds its
 * address ^ QH_FILL_XOR, read by pmemsave; else -EIO naming the first bad
 * dword and how many are bad.
 */
int qh_check_fill(struct qh_vm *vm, uint64_t addr, size_t len, struct rdmig_err *err);

/*
 * TCG of QEMU before 9.0 is known to lose dirty pages (see qemu_guest.c),
 * unless RDMIG_QEMU_STRICT is set: damaged memory is then not the test's
 * subject.
 */
bool qh_tcg_lossy(const char *accel, const int ver[3]);

/*
 * -accel for tests: RDMIG_QEMU_ACCEL when set, else kvm when `guest` (its
 * accel ignored) boots and its counter at `addr` moves under KVM here, else
 * tcg.
 */
const char *qh_pick_accel(const struct qh_vm_cfg *guest, uint64_t addr);

/* ---- rdmig relay processes (qemu_relay.c) ------------------------------------ */

struct qh_relay {
	const char *rdmig;    /* the rdmig binary (looked up on $PATH without a '/') */
	const char *host;     /* address of the destination relay */
	const char *backend;  /* tcp or rdma */
	const char *key_file; /* --key-file of every process; NULL: none (they warn) */
};

/*
 * `rdmig qemu dst` in front of `dst` (passing it dst->qmp when `with_qmp`);
 * *port from its "listening PORT" line.
 */
int qh_relay_dst_start(struct qh_proc *p, const char *name, const struct qh_relay *r,
		       const struct qh_vm *dst, bool with_qmp, unsigned *port,
		       struct rdmig_err *err);

/*
 * `rdmig qemu dst --qemu-incoming unix:INCOMING [--qmp QMP] EXTRA...`
 * (qmp and extra may be NULL; extra NULL-terminated); *port as above.
 */
int qh_relay_dst_spawn(struct qh_proc *p, const char *name, const struct qh_relay *r,
		       const char *incoming, const char *qmp, const char *const *extra,
		       unsigned *port, struct rdmig_err *err);

/*
 * `rdmig qemu src --connect HOST:PORT --socket SOCK EXTRA...`, returned
 * once SOCK is a socket (it serves then).
 */
int qh_relay_src_start(struct qh_proc *p, const char *name, const struct qh_relay *r, unsigned port,
		       const char *sock, const char *const *extra, struct rdmig_err *err);

/*
 * `rdmig qemu migrate --src-qmp SRC_QMP --dst HOST:PORT --backend B --json
 * EXTRA...` (extra NULL-terminated, may be NULL); its JSON lands in p->out.
 */
int qh_relay_migrate_start(struct qh_proc *p, const char *name, const struct qh_relay *r,
			   const char *src_qmp, unsigned port, const char *const *extra,
			   struct rdmig_err *err);

/*
 * A TCP proxy on 127.0.0.1 in front of a tcp destination relay, which
 * recognises the orchestrator's control session by its HELLO (plain text
 * without --tls) and can hold it up while streams go on: what a network
 * that drops one connection, or a relay that stops answering, looks like
 * to `rdmig qemu migrate`.
 */
enum qh_proxy_mode {
	QH_PROXY_FORWARD,	/* everything both ways */
	QH_PROXY_STALL_CONTROL, /* control sessions' bytes held up both ways */
	QH_PROXY_CUT_CONTROL,	/* control sessions closed, new connections refused */
};

struct qh_proxy;

int qh_proxy_start(uint16_t upstream, struct qh_proxy **out, struct rdmig_err *err);
uint16_t qh_proxy_port(const struct qh_proxy *px);
void qh_proxy_set(struct qh_proxy *px, enum qh_proxy_mode mode);
/* Control sessions seen so far. */
unsigned qh_proxy_controls(struct qh_proxy *px);
/* Close everything and free; NULL is a no-op. */
void qh_proxy_stop(struct qh_proxy *px);

/* ---- sockets that are not QMP (qemu_fake.c) ----------------------------------- */

enum qh_fake_mode {
	QH_FAKE_GARBAGE,   /* a line of another protocol (an SSH banner) */
	QH_FAKE_JSON,	   /* JSON, but not a QMP greeting */
	QH_FAKE_SILENT,	   /* accepts and says nothing */
	QH_FAKE_HANGUP,	   /* accepts and closes */
	QH_FAKE_HUGE,	   /* more than RDMIG_QMP_MAX_LINE bytes without a newline */
	QH_FAKE_BAD_REPLY, /* QMP greeting, then a reply that is not JSON */
	QH_FAKE_ODD_REPLY, /* QMP greeting, then a JSON object without return/error */
};

struct qh_fake {
	enum qh_fake_mode mode;
	int lfd;
	bool serving;
	char path[QH_PATH];
	pthread_t thread;
};

/* Listen on `path` and answer every client as `mode` says, from a thread. */
int qh_fake_start(struct qh_fake *fk, const char *path, enum qh_fake_mode mode,
		  struct rdmig_err *err);

/* Stop serving and remove the socket. */
void qh_fake_stop(struct qh_fake *fk);

/*
 * A listener standing in for the destination QEMU's incoming socket: it
 * accepts every connection and counts connections and bytes received.
 */
struct qh_sink {
	int lfd;
	bool serving;
	char path[QH_PATH];
	pthread_t thread;
	_Atomic unsigned conns;
	_Atomic uint64_t bytes;
};

int qh_sink_start(struct qh_sink *sk, const char *path, struct rdmig_err *err);
void qh_sink_stop(struct qh_sink *sk);

#endif
