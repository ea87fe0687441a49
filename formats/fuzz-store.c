// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-store.c - libFuzzer target for every .bin store decoder (header, record prefix, frame
 * header and the frame opener, footer, KEYS, META, INDEX, SIGNATURE). The first byte picks the
 * decoder so one corpus covers all; decoded objects are re-encoded to exercise the encoders on
 * whatever the decoder accepted. Built with -Dfuzz=true (clang -fsanitize=fuzzer, tests/fuzz.sh);
 * otherwise tests/fuzz-replay.c replays a corpus (formats/corpus-store).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gzip-chunk.h"
#include "store-format.h"
#include "store-frame.h"

/* A decoded frame whose record fits in the input is opened (digest, then inflate and CRC when
 * the digest matches), and its body is inflated on its own too, so that the inflater sees
 * fuzzed deflate streams without the fuzzer having to forge SHA-256. */
static void open_frame(const uint8_t *data, size_t size, const struct snap_store_frame *f)
{
	static struct snap_frame_codec *codec;
	static struct snap_inflate *inf;
	if (!codec && snap_frame_codec_new(-1, NULL, &codec) < 0)
		return;
	if (!inf && snap_inflate_new(&inf) < 0)
		return;
	uint64_t rlen = snap_store_frame_record_len(f);
	if (rlen > size || f->raw_len > (4u << 20))
		return;
	uint8_t *rec = malloc(rlen), *dst = malloc(f->raw_len);
	if (rec && dst) {
		memcpy(rec, data, rlen);
		const uint8_t *raw;
		const char *why;
		(void)snap_store_frame_open(codec, (const uint8_t *)"0123456789abcdef", rec, f, dst,
					    &raw, &why);
		if ((f->flags & SNAP_STORE_FRAME_DEFLATE) &&
		    f->stored_len >= SNAP_STORE_FRAME_TRAILER_SIZE)
			(void)snap_inflate_raw(inf, data + SNAP_STORE_FRAME_HEADER_SIZE,
					       f->stored_len - SNAP_STORE_FRAME_TRAILER_SIZE, dst,
					       f->raw_len);
	}
	free(rec);
	free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t which = data[0] % 8;
	data++;
	size--;
	const char *why = NULL;
	switch (which) {
	case 0: {
		struct snap_store_header h;
		uint8_t out[SNAP_STORE_HEADER_SIZE];
		if (snap_store_header_decode(data, size, &h, &why) == 0)
			snap_store_header_encode(&h, out);
		break;
	}
	case 1: {
		struct snap_store_prefix p;
		snap_store_prefix_decode(data, size, &p);
		snap_store_record_crc_ok(data, size);
		break;
	}
	case 2: {
		struct snap_store_frame f;
		uint8_t out[SNAP_STORE_FRAME_HEADER_SIZE];
		if (snap_store_frame_decode(data, size, SNAP_STORE_MAX_FRAME, &f, &why) == 0) {
			snap_store_frame_encode(&f, out);
			open_frame(data, size, &f);
		}
		break;
	}
	case 3: {
		struct snap_store_footer f;
		uint8_t out[SNAP_STORE_FOOTER_SIZE];
		if (snap_store_footer_decode(data, size, &f, &why) == 0)
			snap_store_footer_encode(&f, out);
		break;
	}
	case 4: {
		struct snap_store_keys k;
		if (snap_store_keys_decode(data, size, &k) == 0) {
			uint8_t *buf = NULL;
			size_t len = 0;
			if (snap_store_keys_encode(&k, &buf, &len) == 0)
				free(buf);
			snap_store_keys_clear(&k);
		}
		break;
	}
	case 5: {
		struct snap_store_meta m;
		if (snap_store_meta_decode(data, size, &m, &why) == 0) {
			uint8_t *buf = NULL;
			size_t len = 0;
			if (snap_store_meta_encode(&m, &buf, &len) == 0)
				free(buf);
			snap_store_meta_clear(&m);
		}
		break;
	}
	case 7: {
		struct snap_store_signature sg;
		if (snap_store_signature_decode(data, size, &sg) == 0) {
			uint8_t *buf = NULL;
			size_t len = 0;
			if (snap_store_signature_encode(&sg, &buf, &len) == 0)
				free(buf);
		}
		break;
	}
	default: {
		struct snap_store_index ix;
		if (snap_store_index_decode(data, size, NULL, 0, &ix, &why) == 0) {
			uint8_t *buf = NULL;
			size_t len = 0;
			if (snap_store_index_encode(&ix, &buf, &len) == 0)
				free(buf);
			snap_store_index_clear(&ix);
		}
		break;
	}
	}
	return 0;
}
