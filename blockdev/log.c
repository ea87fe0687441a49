// SPDX-License-Identifier: LGPL-2.1-or-later
/* log.c - the process-wide log sink. Set once by a frontend before it starts jobs. */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static snap_log_fn log_fn;
static void *log_userdata;
static enum snap_log_level log_max = SNAP_LOG_WARNING;

void snap_set_log(snap_log_fn fn, void *userdata, enum snap_log_level max_level)
{
	log_fn = fn;
	log_userdata = userdata;
	log_max = max_level;
}

bool snap_log_enabled(enum snap_log_level level)
{
	return log_fn && level <= log_max;
}

void snap_log(enum snap_log_level level, const char *fmt, ...)
{
	if (!snap_log_enabled(level))
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fn(log_userdata, level, buf);
}
