// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * read-extents - test helper: reads byte ranges of a source through the extent reader and
 * writes them, concatenated in the order given, to stdout, so scripts can compare the result
 * with dd(1).
 *
 *   read-extents [--pread] [--qd N] [--rs BYTES] [--no-direct] [--fail-at OFF] [--verbose]
 *                SOURCE OFF:LEN...
 *
 * --fail-at makes the fault hook fail (EIO) the read that contains byte OFF. Exit status 0 on
 * success, 1 with "read-extents: <error>" on stderr otherwise; nothing is written for a chunk
 * that was not read.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "reader.h"
#include "source.h"

static int parse_u64(const char *s, uint64_t *ret, const char **ret_end)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	*ret = v;
	*ret_end = end;
	return 0;
}

static int fail_at_hook(void *userdata, uint64_t offset, size_t length)
{
	uint64_t at = *(const uint64_t *)userdata;
	return offset <= at && at - offset < length ? -EIO : 0;
}

static void log_stderr(void *userdata, enum snap_log_level level, const char *msg)
{
	(void)userdata;
	(void)level;
	fprintf(stderr, "read-extents: %s\n", msg);
}

static int write_all(const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: read-extents [--pread] [--qd N] [--rs BYTES] [--no-direct] "
			"[--fail-at OFF] [--verbose] SOURCE OFF:LEN...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"pread", no_argument, NULL, 'p'},
	    {"qd", required_argument, NULL, 'q'},
	    {"rs", required_argument, NULL, 'r'},
	    {"no-direct", no_argument, NULL, 'n'},
	    {"fail-at", required_argument, NULL, 'f'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	struct snap_reader_opts opts = {0};
	unsigned flags = 0;
	uint64_t v, fail_at = 0;
	const char *end;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			opts.force_pread = true;
			break;
		case 'q':
			if (parse_u64(optarg, &v, &end) < 0 || *end || v == 0 || v > 4096)
				usage();
			opts.queue_depth = (unsigned)v;
			break;
		case 'r':
			if (parse_u64(optarg, &v, &end) < 0 || *end || v == 0 || v > (1u << 30))
				usage();
			opts.request_size = (size_t)v;
			break;
		case 'n':
			flags |= SNAP_SRC_NO_DIRECT;
			break;
		case 'f':
			if (parse_u64(optarg, &fail_at, &end) < 0 || *end)
				usage();
			opts.fault = fail_at_hook;
			opts.fault_userdata = &fail_at;
			break;
		case 'v':
			snap_set_log(log_stderr, NULL, SNAP_LOG_DEBUG);
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	const char *path = argv[optind++];
	size_t n = (size_t)(argc - optind);
	struct snap_range *ranges = calloc(n ? n : 1, sizeof(*ranges));
	if (!ranges)
		return 1;
	for (size_t i = 0; i < n; i++) {
		const char *a = argv[optind + (int)i];
		if (parse_u64(a, &ranges[i].offset, &end) < 0 || *end != ':' ||
		    parse_u64(end + 1, &ranges[i].length, &end) < 0 || *end) {
			fprintf(stderr, "read-extents: bad range %s (want OFF:LEN)\n", a);
			return 2;
		}
	}

	struct snap_src *src;
	char *detail = NULL;
	int r = snap_src_open(path, flags, &src, &detail);
	if (r < 0) {
		fprintf(stderr, "read-extents: %s\n", detail ? detail : strerror(-r));
		return 1;
	}
	struct snap_reader *reader;
	r = snap_reader_new(src, &opts, &reader);
	if (r < 0) {
		fprintf(stderr, "read-extents: cannot set up the reader: %s\n", strerror(-r));
		return 1;
	}
	fprintf(stderr, "read-extents: %s, %s, queue depth %u, request size %zu\n",
		snap_reader_uses_uring(reader) ? "io_uring" : "pread",
		src->direct ? "O_DIRECT" : "buffered", snap_reader_queue_depth(reader),
		snap_reader_request_size(reader));
	r = snap_reader_start(reader, ranges, n);
	if (r < 0) {
		fprintf(stderr, "read-extents: bad range list: %s\n", strerror(-r));
		return 1;
	}
	struct snap_chunk chunk;
	int status = 0;
	while ((r = snap_reader_next(reader, &chunk)) > 0) {
		int w = write_all(chunk.data, chunk.length);
		snap_reader_release(reader, &chunk);
		if (w < 0) {
			fprintf(stderr, "read-extents: cannot write: %s\n", strerror(-w));
			status = 1;
			break;
		}
	}
	if (r < 0) {
		fprintf(stderr, "read-extents: %s\n", snap_reader_error(reader));
		status = 1;
	}
	snap_reader_free(reader);
	snap_src_free(src);
	free(ranges);
	free(detail);
	return status;
}
