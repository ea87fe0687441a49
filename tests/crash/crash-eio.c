// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * crash-eio - test helper for tests/crash: runs a store or bundle job whose source reads fail
 * with EIO, as a failing disk's would. The job's reader gets the reader's fault hook through
 * a link-time wrapper of snap_reader_new (-Wl,--wrap, against the static library), so the
 * library itself carries no test switch.
 *
 *   crash-eio store  SOURCE OUTPUT.bin FAIL_AT [--force]
 *   crash-eio bundle SOURCE DESTDIR FAIL_AT CERT KEY EC2CERT [--force]
 *
 * FAIL_AT: the read that covers this source byte fails with EIO. Exit status 0 when the job
 * succeeded, 1 with "crash-eio: <error>" on stderr when it failed, 2 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reader.h"
#include "snapbundle.h"

static uint64_t fail_at;
static int faults;

static int fail_hook(void *userdata, uint64_t offset, size_t length)
{
	(void)userdata;
	if (offset <= fail_at && fail_at - offset < length) {
		__atomic_add_fetch(&faults, 1, __ATOMIC_RELAXED);
		return -EIO;
	}
	return 0;
}

int __real_snap_reader_new(struct snap_src *src, const struct snap_reader_opts *opts,
			   struct snap_reader **ret);
int __wrap_snap_reader_new(struct snap_src *src, const struct snap_reader_opts *opts,
			   struct snap_reader **ret);
int __wrap_snap_reader_new(struct snap_src *src, const struct snap_reader_opts *opts,
			   struct snap_reader **ret)
{
	struct snap_reader_opts o = {0};
	if (opts)
		o = *opts;
	o.fault = fail_hook;
	o.fault_userdata = NULL;
	return __real_snap_reader_new(src, &o, ret);
}

int main(int argc, char **argv)
{
	if (argc < 5 || (strcmp(argv[1], "store") && strcmp(argv[1], "bundle")) ||
	    (!strcmp(argv[1], "bundle") && argc < 8)) {
		fprintf(stderr, "usage: crash-eio store|bundle SOURCE OUTPUT FAIL_AT ...\n");
		return 2;
	}
	bool bundle = !strcmp(argv[1], "bundle");
	fail_at = strtoull(argv[4], NULL, 0);
	bool force = !strcmp(argv[argc - 1], "--force");
	struct snap_job *job = NULL;
	if (snap_job_new(bundle ? SNAP_JOB_BUNDLE : SNAP_JOB_STORE, &job) < 0) {
		fprintf(stderr, "crash-eio: cannot create the job\n");
		return 2;
	}
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_param(job, SNAP_PARAM_FORCE, force);
	if (bundle) {
		snap_job_set_string(job, SNAP_SPARAM_IMAGE, argv[2]);
		snap_job_set_string(job, SNAP_SPARAM_DESTINATION, argv[3]);
		snap_job_set_string(job, SNAP_SPARAM_CERT, argv[5]);
		snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, argv[6]);
		snap_job_set_string(job, SNAP_SPARAM_EC2_CERT, argv[7]);
		snap_job_set_string(job, SNAP_SPARAM_USER, "123456789012");
		snap_job_set_string(job, SNAP_SPARAM_ARCH, "x86_64");
	} else {
		snap_job_add_source(job, argv[2], NULL);
		snap_job_set_string(job, SNAP_SPARAM_OUTPUT, argv[3]);
	}
	int r = snap_job_run(job);
	if (r < 0) {
		const char *e = snap_job_error(job);
		fprintf(stderr, "crash-eio: %s (%s; %d reads failed by the hook)\n",
			e ? e : "(no error)", strerror(-r), faults);
	} else {
		fprintf(stderr, "crash-eio: job succeeded (%d reads failed by the hook)\n", faults);
	}
	snap_job_free(job);
	return r < 0 ? 1 : 0;
}
