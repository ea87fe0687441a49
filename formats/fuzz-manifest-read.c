// SPDX-License-Identifier: LGPL-2.1-or-later
/* fuzz-manifest-read.c - libFuzzer target for the manifest reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest-read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_manifest_doc *m = NULL;
	char *detail = NULL;
	int r = snap_manifest_read(data, size, &m, &detail);
	if (r < 0 && !detail && r != -12)
		abort(); /* every refusal must say why (unless memory ran out) */
	if (r >= 0) {
		/* invariant 3 of manifest-read.h */
		if (!m || !m->nparts || !m->signed_text || !m->name)
			abort();
		for (size_t i = 0; i < m->nparts; i++)
			if (m->parts[i].index != i || strchr(m->parts[i].filename, '/'))
				abort();
	}
	free(detail);
	snap_manifest_doc_free(m);
	return 0;
}
