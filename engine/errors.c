// SPDX-License-Identifier: LGPL-2.1-or-later
/* errors.c - error texts and version. */
#include <errno.h>
#include <string.h>

#include "snapbundle.h"

const char *snap_version(void)
{
	return SNAP_VERSION_STRING;
}

const char *snap_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case EUCLEAN:
		return "corrupt metadata";
	case EBADMSG:
		return "checksum or digest mismatch";
	case EOPNOTSUPP:
		return "unsupported feature";
	case ECANCELED:
		return "cancelled";
	default:
		/* strerror() of glibc returns static strings for known codes */
		return strerror(err);
	}
}

const char *snap_extent_kind_name(int kind)
{
	static const char *const names[] = {"data", "zero", "unused"};
	return kind >= 0 && kind <= 2 ? names[kind] : "invalid";
}

const char *snap_extent_layer_name(int layer)
{
	static const char *const names[] = {"source", "ptable", "hole", "zeroscan", "fs", "merge"};
	return layer >= 0 && layer < SNAP_LAYER_COUNT ? names[layer] : "invalid";
}
