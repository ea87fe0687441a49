/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hex.h - the one hex encoder (digests, key ids, image ids in messages and manifests). */
#ifndef SNAP_HEX_H
#define SNAP_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Lowercase hex of bin[0..len) into out (2 * len + 1 bytes, NUL terminated). */
void snap_hex(char *out, const uint8_t *bin, size_t len);

#endif
