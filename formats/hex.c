// SPDX-License-Identifier: LGPL-2.1-or-later
/* hex.c - the one hex encoder (hex.h). */
#include "hex.h"

void snap_hex(char *out, const uint8_t *bin, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bin[i] >> 4];
		out[2 * i + 1] = digits[bin[i] & 15];
	}
	out[2 * len] = 0;
}
