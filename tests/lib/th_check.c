/* SPDX-License-Identifier: MIT */
#include "th_check.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "th_peer.h"

static const char *g_role;
static bool g_verbose;
static bool g_have_seed;
static uint64_t g_seed;
static atomic_int g_failures;

void th_init(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	th_peer_init_(argc, argv);
}

void th_set_role(const char *role)
{
	g_role = role;
}

const char *th_role(void)
{
	return g_role;
}

void th_set_verbose(bool verbose)
{
	g_verbose = verbose;
}

int th_seed_init(const char *arg, uint64_t *seed)
{
	const char *env = getenv(TH_ENV_SEED);
	char *end;

	if (!arg && env && *env)
		arg = env;
	if (arg) {
		errno = 0;
		g_seed = strtoull(arg, &end, 0);
		if (errno || *end || !*arg) {
			fprintf(stderr, "seed '%s': expects a number (decimal or 0x...)\n", arg);
			return -EINVAL;
		}
	} else {
		g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	}
	g_have_seed = true;
	if (seed)
		*seed = g_seed;
	return 0;
}

bool th_seed(uint64_t *seed)
{
	if (g_have_seed && seed)
		*seed = g_seed;
	return g_have_seed;
}

int th_failures(void)
{
	return atomic_load(&g_failures);
}

void th_fail_count(void)
{
	atomic_fetch_add(&g_failures, 1);
}

/* "[role] " or nothing, into buf. */
static const char *prefix(char *buf, size_t len)
{
	if (g_role)
		snprintf(buf, len, "[%s] ", g_role);
	else
		buf[0] = '\0';
	return buf;
}

/* One whole line per write, so the lines of two processes and threads never mix. */
__attribute__((format(printf, 5, 0))) static void
report(bool ok, const char *detail, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024], seed[64] = "", pre[48];
	const char *base = strrchr(file, '/');

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (ok) {
		if (g_verbose)
			printf("%sok: %s\n", prefix(pre, sizeof(pre)), msg);
		return;
	}
	atomic_fetch_add(&g_failures, 1);
	if (g_have_seed)
		snprintf(seed, sizeof(seed), ", seed 0x%" PRIx64, g_seed);
	printf("%sFAIL: %s%s%s (%s:%d%s)\n", prefix(pre, sizeof(pre)), msg, detail ? ": " : "",
	       detail ? detail : "", base ? base + 1 : file, line, seed);
	fflush(stdout);
}

bool th_check_(bool ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(ok, NULL, file, line, fmt, ap);
	va_end(ap);
	return ok;
}

bool th_check_num_(bool ok, bool is_signed, uintmax_t a, uintmax_t b, const char *expr,
		   const char *file, int line, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	if (is_signed)
		snprintf(detail, sizeof(detail), "%s (%jd vs %jd)", expr, (intmax_t)a, (intmax_t)b);
	else
		snprintf(detail, sizeof(detail), "%s (%ju vs %ju)", expr, a, b);
	va_start(ap, fmt);
	report(ok, detail, file, line, fmt, ap);
	va_end(ap);
	return ok;
}

bool th_check_call_(int ret, const struct rdmig_err *err, const char *file, int line,
		    const char *fmt, ...)
{
	char detail[RDMIG_ERR_MSG_MAX + 32];
	va_list ap;

	snprintf(detail, sizeof(detail), "%s (%d)",
		 err && err->msg[0] ? err->msg : strerror(ret < 0 ? -ret : ret), ret);
	va_start(ap, fmt);
	report(ret >= 0, detail, file, line, fmt, ap);
	va_end(ap);
	return ret >= 0;
}

bool th_check_has_(const char *str, const char *needle, const char *file, int line, const char *fmt,
		   ...)
{
	bool ok = str && needle && strstr(str, needle);
	char detail[640];
	va_list ap;

	snprintf(detail, sizeof(detail), "\"%.400s\" does not contain \"%.200s\"", str ? str : "",
		 needle ? needle : "");
	va_start(ap, fmt);
	report(ok, detail, file, line, fmt, ap);
	va_end(ap);
	return ok;
}

int th_summary(const char *what, bool ok)
{
	char pre[48];
	int n = th_failures();

	if (n == 0 && ok) {
		printf("%s%s: passed\n", prefix(pre, sizeof(pre)), what);
		return TH_EXIT_PASS;
	}
	if (n)
		printf("%s%s: FAILED (%d failed check%s)\n", prefix(pre, sizeof(pre)), what, n,
		       n == 1 ? "" : "s");
	else
		printf("%s%s: FAILED\n", prefix(pre, sizeof(pre)), what);
	return TH_EXIT_FAIL;
}

const struct th_mode *th_mode_find(const struct th_mode *modes, const char *name)
{
	for (; name && modes->name; modes++)
		if (!strcmp(modes->name, name))
			return modes;
	return NULL;
}

int th_skip(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("SKIP: %s\n", msg);
	fflush(stdout);
	return TH_EXIT_SKIP;
}

void th_note(const char *fmt, ...)
{
	char msg[1024], pre[48];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("%s%s\n", prefix(pre, sizeof(pre)), msg);
}
