// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-tar-reader.c - libFuzzer target for the tar reader. The input is pushed twice: whole,
 * and in chunks whose sizes come from the input's first byte, so the state machine sees every
 * split of headers, maps and data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tar-reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
	uint64_t next, size;
	int bad;
};

static int on_member(void *ud, const char *name, uint64_t size)
{
	struct sink *s = ud;
	s->size = size;
	return name && name[0] ? 0 : -1;
}

static int on_data(void *ud, uint64_t off, const uint8_t *buf, size_t len)
{
	struct sink *s = ud;
	/* invariant 3 of tar-reader.h; a violation is a bug, so crash for the fuzzer */
	if (off < s->next || len == 0 || off + len > s->size)
		abort();
	volatile uint8_t x = buf[0] ^ buf[len - 1];
	(void)x;
	s->next = off + len;
	return 0;
}

static void run(const uint8_t *data, size_t size, size_t chunk)
{
	struct snap_tar_ops ops = {.member = on_member, .data = on_data};
	struct sink s = {0};
	struct snap_tar_reader *tr;
	if (snap_tar_reader_new(&ops, &s, &tr) < 0)
		return;
	int r = 0;
	for (size_t o = 0; o < size && r >= 0; o += chunk)
		r = snap_tar_reader_push(tr, data + o, size - o < chunk ? size - o : chunk);
	if (r >= 0)
		r = snap_tar_reader_finish(tr);
	if (r < 0 && !snap_tar_reader_error(tr)[0])
		abort(); /* every failure must say why */
	snap_tar_reader_free(tr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size, size ? size : 1);
	if (size)
		run(data, size, (size_t)data[0] % 61 + 1);
	return 0;
}
