/* SPDX-License-Identifier: MIT */
/*
 * Levelled logging to stderr. The level comes from RDMIG_LOG
 * (error|warn|info|debug, default warn) or rdmig_log_set_level(); debug
 * messages on hot paths should be guarded by rdmig_log_enabled() so they cost
 * one branch when off. errno is preserved across a log call.
 */
#ifndef RDMIG_LOG_H
#define RDMIG_LOG_H

enum rdmig_log_level {
	RDMIG_LOG_ERROR = 0,
	RDMIG_LOG_WARN,
	RDMIG_LOG_INFO,
	RDMIG_LOG_DEBUG,
};

extern int rdmig_log_level;

void rdmig_log_init(void);
void rdmig_log_set_level(int level);
void rdmig_log_msg(int level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define rdmig_log_enabled(lvl) ((lvl) <= rdmig_log_level)
#define rdmig_log(lvl, ...)                                                                        \
	do {                                                                                       \
		if (rdmig_log_enabled(lvl))                                                        \
			rdmig_log_msg(lvl, __func__, __VA_ARGS__);                                 \
	} while (0)
#define log_err(...)   rdmig_log(RDMIG_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  rdmig_log(RDMIG_LOG_WARN, __VA_ARGS__)
#define log_info(...)  rdmig_log(RDMIG_LOG_INFO, __VA_ARGS__)
#define log_debug(...) rdmig_log(RDMIG_LOG_DEBUG, __VA_ARGS__)

#endif
