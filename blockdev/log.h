/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* log.h - the library's one log sink (set by snap_set_log); the library never prints. */
#ifndef SNAP_LOG_H
#define SNAP_LOG_H

#include <stdbool.h>

#include "snapbundle.h"

/* True when a line at level would reach the sink (skip formatting otherwise). */
bool snap_log_enabled(enum snap_log_level level);
void snap_log(enum snap_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define snap_debug(...) snap_log(SNAP_LOG_DEBUG, __VA_ARGS__)
#define snap_info(...) snap_log(SNAP_LOG_INFO, __VA_ARGS__)
#define snap_warn(...) snap_log(SNAP_LOG_WARNING, __VA_ARGS__)

#endif
