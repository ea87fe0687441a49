/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-internal.h - shared by store.c, restore.c and store-image.c (the .bin reader).
 */
#ifndef SNAP_STORE_INTERNAL_H
#define SNAP_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Builds a non-frame record: prefix, payload, then the tag (SHA-256, or HMAC-SHA256 under
 * mac_key) over the npre buffers pre and the record up to the tag; then the CRC. */
int snap_store_build_record(uint32_t type, const uint8_t *payload, size_t len,
			    const uint8_t *mac_key, const void *const *pre, const size_t *pre_lens,
			    size_t npre, uint8_t **ret, size_t *ret_len);

#endif
