/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench.h - the snapbundle-bench program: stage micro-benchmarks, whole-job runs, the model
 * that predicts job times from stage speeds, reference tools, and the reports (terminal table,
 * JSON, SVG).
 *
 * Invariants:
 *  1. A benchmark measures; it never decides pass or fail on a timing. Every measurement
 *     carries what was measured (bytes, seconds, parameters) so the report can be reproduced.
 *  2. Nothing is silently omitted: a stage or job that cannot run in this build or on this
 *     machine is reported with available = false and a reason.
 *  3. Rates are bytes per second of the stage's own input, on one thread (per core); jobs are
 *     measured in a child process of their own so peak RSS (ru_maxrss) and CPU time are the
 *     job's alone.
 *  4. Everything the program writes lives in one temporary work directory, removed at exit.
 */
#ifndef SNAP_BENCH_H
#define SNAP_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "snapbundle.h"

#define BENCH_MAX_STAGES 48
#define BENCH_MAX_THREADS 64
#define BENCH_MAX_REFS 8
#define BENCH_JOB_KINDS 4

struct bench_opts {
	const char *source; /* NULL: generate one */
	uint64_t size;	    /* generated disk size */
	bool quick;
	bool json;
	bool reference;
	bool bound; /* --bound: measure the outside bound (bound.c) */
	const char *svg;
	const char *workdir_parent;
	unsigned threads[BENCH_MAX_THREADS];
	size_t nthreads;
	int level;			/* compression level of the jobs */
	bool skip_job[BENCH_JOB_KINDS]; /* --jobs: not selected */
	bool uniform;			/* --uniform: the same content mix along the disk */
	double min_time;		/* seconds each compute stage runs at least */
	uint64_t read_budget;		/* bytes each read configuration reads at most */
	uint64_t write_budget;
};

struct bench_stage {
	char name[48];	/* "sha1", "deflate-l1", "read-uring-direct-qd32-1m" */
	char group[16]; /* "read", "zero", "hash", "deflate", "cipher", "inflate", "write" */
	bool available;
	char reason[160];
	uint64_t bytes; /* input bytes processed */
	double seconds;
	double rate;	    /* bytes per second (bytes / seconds) */
	double cpu_seconds; /* compute stages: CPU time of the thread; 0 for read and write */
	double cpu_rate;    /* bytes per CPU second; 0 when not measured */
	double ratio;	    /* deflate: output / input; 0 when not applicable */
	double io_cpu_seconds; /* read, write: CPU the whole machine spent meanwhile */
	bool io_cpu_known;
	/* read configurations */
	char engine[8]; /* "uring", "pread" */
	bool direct;
	unsigned queue_depth;
	size_t request_size;
};

struct bench_source {
	char path[4096];
	bool generated;
	uint64_t size;
	bool mapped; /* extent map from the snap_disk API */
	char map_reason[160];
	uint64_t bytes[3]; /* by snap_extent_kind; without a map: allocated DATA, holes ZERO */
	uint64_t extents;
	char ptable[8];
	size_t partitions;
	struct snap_range_list {
		uint64_t offset, length;
	} * unused; /* UNUSED extents, whose content a restore need not give back */
	size_t nunused;
	struct snap_range_list *data; /* DATA extents (mapped sources): the stage corpus */
	size_t ndata;
};

/* One run of a job at one thread count. */
struct bench_run {
	unsigned threads;
	bool ok;
	char error[256];
	double seconds;	    /* wall time of snap_job_run */
	double cpu_seconds; /* user + system of the child process */
	uint64_t peak_rss_kib;
	uint64_t bytes_read, bytes_written;
	double rate;				      /* source DATA bytes per second */
	double rate_first_quarter, rate_last_quarter; /* bytes read per second; 0 when unknown */
	char timings[1024]; /* SNAP_RESULT_TIMINGS of the job (a JSON object as text), or "" */
	/* model */
	double model_seconds;
	double model_flat_seconds; /* the same terms as one window over the whole source */
	char model_bound[32];
	double model_bound_share; /* share of model_seconds spent in windows model_bound bounds */
	double host_speed;	  /* probe rate before this run / after the stages; 0 unknown */
	size_t model_windows;
	bool model_complete;	  /* every stage the model needs was measured */
	double model_cpu_seconds; /* CPU the compute stages need, at their per-CPU-second rates */
	double cpu_percent;	  /* model_cpu_seconds / cpu_seconds * 100 */
	double percent_of_limit;  /* model_seconds / seconds * 100 */
};

struct bench_job {
	const char *kind; /* "bundle", "unbundle", "store", "restore" */
	enum snap_job_kind job_kind;
	bool available;
	char reason[256];
	struct bench_run runs[BENCH_MAX_THREADS];
	size_t nruns;
	int identical;	    /* unbundle, restore: output equals the source: 1, 0, -1 not checked */
	char mismatch[160]; /* when identical is 0 or the comparison failed */
};

/* A term of the model: the time one stage needs at a thread count. */
struct bench_term {
	const char *stage;
	bool serial; /* one stream: cannot use more than one core */
	bool io;     /* bounded by the device, not by cores */
	bool available;
	double seconds;
	double cpu_seconds; /* compute terms: at the stage's CPU rate (0 for I/O) */
};

struct bench_ref {
	char name[32];
	char command[512];
	bool available;
	char reason[128];
	bool ok;
	double seconds, cpu_seconds;
	uint64_t peak_rss_kib;
	uint64_t output_bytes;
};

/* What each corpus piece costs at the jobs' level, in source order: the content changes
 * along a disk (text, binaries, compressed data), and with it the stage that bounds a job
 * (model.c's windows). Empty when the deflate stage at that level did not run. */
struct bench_profile {
	size_t npieces;
	size_t piece_bytes;
	double *deflate_cpu;   /* CPU seconds to deflate the piece */
	uint64_t *deflate_out; /* its compressed size */
	double *inflate_cpu;   /* CPU seconds to inflate it back (NULL: not measured) */
};

/* The outside bound (bound.c): the tools' figures on the source's DATA bytes. */
struct bench_bound {
	bool available;
	char reason[512];
	unsigned threads; /* the largest job thread count: pieces run in parallel, CPU divided */
	uint64_t data_bytes, compressed_bytes;
	/* user CPU seconds of the tools */
	double deflate_cpu;	/* igzip -1 of the pieces, summed */
	double inflate_cpu;	/* igzip -d of them */
	double sha256_cpu;	/* openssl dgst -sha256 of the compressed pieces */
	double sha1_cpu;	/* openssl dgst -sha1 of the DATA */
	double cipher_cpu;	/* openssl enc -aes-128-cbc of the compressed stream */
	double cipher_sha1_cpu; /* openssl dgst -sha1 of the ciphertext */
	/* wall seconds of dd, O_DIRECT, 4 MiB blocks */
	double read_data_seconds, write_compressed_seconds;
	double read_compressed_seconds, write_data_seconds;
	double seconds; /* the whole measurement */
};

struct bench_report {
	struct bench_opts opts;
	char cpu_model[128];
	unsigned online_cpus;
	double loadavg[3];
	char kernel[128];
	char started[32]; /* UTC, ISO 8601 */
	struct bench_source source;
	struct bench_stage stages[BENCH_MAX_STAGES];
	size_t nstages;
	struct bench_profile profile;
	bool shared_device;	/* the source and the work directory share a disk */
	uint8_t *probe;		/* a piece of the corpus for bench_probe (stages.c invariant 6) */
	size_t probe_len;
	double probe_base;	/* bench_probe's rate right after the stages; 0 unknown */
	char device_note[256];
	struct bench_job jobs[BENCH_JOB_KINDS];
	struct bench_ref refs[BENCH_MAX_REFS];
	size_t nrefs;
	struct bench_bound bound;
	double total_seconds;
};

/* gen-disk.c: a GPT disk image of realistic content (see the file's header). */
int bench_gen_disk(const char *path, uint64_t size, bool uniform, char **ret_detail);

/* stages.c */
/* sample_bytes in 1 MiB pieces spread evenly over the source's DATA extents (the allocated
 * space of an unmapped source) */
int bench_sample_source(const struct bench_source *src, size_t sample_bytes, uint8_t **ret,
			size_t *ret_len);
void bench_run_stages(struct bench_report *rep, const uint8_t *corpus, size_t corpus_len,
		      const char *workdir);
const struct bench_stage *bench_stage_find(const struct bench_report *rep, const char *name);
void bench_profile_free(struct bench_profile *p);
/* Deflate bytes per CPU second over data at level, for at least min_time; 0 on failure. */
double bench_probe(const uint8_t *data, size_t len, int level, double min_time);
/* The fastest available O_DIRECT read configuration (the jobs read direct), else the fastest
 * buffered one, or NULL. */
const struct bench_stage *bench_stage_best_read(const struct bench_report *rep);

/* source-map.c */
void bench_map_source(struct bench_source *src);
void bench_source_free(struct bench_source *src);
/* 1 when source and dir sit on one disk (its bandwidth is shared), 0 when not, -errno; note
 * says which devices. */
int bench_same_device(const char *source, const char *dir, char *note, size_t note_len);

/* jobs.c */
int bench_job_child_main(int argc, char **argv);
int bench_make_keys(const char *dir, char **ret_detail);
void bench_run_jobs(struct bench_report *rep, const char *workdir, const char *self_exe);

/* model.c: fills model_* of every run; returns the terms of one job at threads in terms[]. */
/* The terms summed over the windows; compute terms at the run's host_speed. */
size_t bench_model_terms(const struct bench_report *rep, const char *kind,
			 const struct bench_run *run, struct bench_term *terms, size_t max);
void bench_model_apply(struct bench_report *rep);

/* reference.c */
void bench_run_reference(struct bench_report *rep, const char *workdir);

/* bound.c */
void bench_bound_measure(struct bench_report *rep, const char *workdir);
/* The bound of job kind store, restore or bundle: CPU and device seconds; -ENODATA when the
 * bound is unavailable, -EINVAL for another kind. */
int bench_bound_job(const struct bench_bound *b, const char *kind, double *ret_cpu,
		    double *ret_device);
/* The tools' CPU seconds for kind's work, all threads together. */
double bench_bound_tools_cpu(const struct bench_bound *b, const char *kind);
/* The measured run of kind at the bound's thread count, or NULL. */
const struct bench_run *bench_bound_run(const struct bench_report *rep, const char *kind);

/* report.c */
void bench_print_table(const struct bench_report *rep);
int bench_write_json(const struct bench_report *rep, FILE *f);
/* svg.c */
int bench_write_svg(const struct bench_report *rep, const char *path, char **ret_detail);

/* util (snapbundle-bench.c, jobs.c) */
void bench_remove_tree(const char *path); /* rm -rf of a path inside the work directory */
double bench_now(void);
const char *bench_rate_str(char *buf, double bytes_per_s); /* "1234.5 MB/s", 32 bytes */
bool bench_interrupted(void);

#endif
