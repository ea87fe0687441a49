/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapbundle.h - the one public header of libsnapbundle.
 *
 * Conventions (docs/ARCHITECTURE.md, "The public API"):
 *  1. Every fallible call returns int: >= 0 on success, -errno on failure. Domain failures map
 *     the way the kernel's filesystems do: corrupt metadata -EUCLEAN, checksum or digest
 *     mismatch -EBADMSG, unknown incompatible feature -EOPNOTSUPP, cancelled -ECANCELED.
 *     snap_strerror() gives the text; each object's *_error() gives the detail (which file,
 *     which offset, which part).
 *  2. Objects are opaque. Constructors are snap_x_new(..., struct snap_x **ret); destructors
 *     accept NULL and return NULL. Out-parameters are named ret_*, come last and are untouched
 *     on failure.
 *  3. Tunables are set with snap_x_set_param(x, SNAP_PARAM_..., int64_t) and
 *     snap_job_set_string(); enum values are explicit and never reused, so the ABI grows.
 *  4. The library never prints: log lines go to the callback set with snap_set_log(), progress
 *     to the job's progress callback.
 *
 * Compiles as C99 and as C++.
 */
#ifndef SNAPBUNDLE_H
#define SNAPBUNDLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden; what this header declares is its ABI (the
 * version script engine/libsnapbundle.sym lists the same names). */
#if defined(__GNUC__) && !defined(SNAP_NO_VISIBILITY)
#pragma GCC visibility push(default)
#endif

#define SNAP_VERSION_MAJOR 0
#define SNAP_VERSION_MINOR 1
#define SNAP_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH". */
const char *snap_version(void);

/* Text for a negative errno returned by any snap_ call (also the library's own meanings of
 * EUCLEAN, EBADMSG, EOPNOTSUPP). Never NULL. */
const char *snap_strerror(int err);

/* ---------------------------------------------------------------------------------------- */
/* Logging                                                                                   */

enum snap_log_level {
	SNAP_LOG_ERROR = 0,
	SNAP_LOG_WARNING = 1,
	SNAP_LOG_INFO = 2,
	SNAP_LOG_DEBUG = 3,
};

typedef void (*snap_log_fn)(void *userdata, enum snap_log_level level, const char *msg);

/* Process-wide log sink; lines above max_level are not formatted at all. fn may be NULL. */
void snap_set_log(snap_log_fn fn, void *userdata, enum snap_log_level max_level);

/* ---------------------------------------------------------------------------------------- */
/* Caller-allocated structs (docs/api.md, "Struct sizes")                                    */

/*
 * Every struct the caller allocates and the library fills (snap_extent, snap_map_summary,
 * snap_partition_info, snap_store_info, snap_store_volume_info, snap_store_frame_info) begins
 * with `size_t struct_size`, which the caller sets to sizeof the struct it was compiled with:
 *
 *	struct snap_store_info info = {.struct_size = sizeof(info)};
 *	snap_store_image_info(img, &info);
 *
 * Members are only ever added at the end. The library writes only the bytes that struct_size
 * covers, so a caller built against an older header keeps working with a newer library; members
 * past the library's own sizeof (a newer header, an older library) are set to zero. A
 * struct_size smaller than sizeof(size_t) is -EINVAL and the struct is left untouched. Structs
 * the library owns and hands out (snap_disk_partition) carry the struct_size it filled.
 */

/* ---------------------------------------------------------------------------------------- */
/* Extent maps                                                                               */

enum snap_extent_kind {
	SNAP_EXTENT_DATA = 0,	/* must be read and kept */
	SNAP_EXTENT_ZERO = 1,	/* reads back as zeros: a hole or an all-zero block */
	SNAP_EXTENT_UNUSED = 2, /* content does not matter: free space, unpartitioned gaps */
};

/* Which layer decided an extent's kind. */
enum snap_extent_layer {
	SNAP_LAYER_SOURCE = 0,	 /* the default: everything is DATA */
	SNAP_LAYER_PTABLE = 1,	 /* partition table: critical regions, unpartitioned space */
	SNAP_LAYER_HOLE = 2,	 /* SEEK_HOLE of an image file */
	SNAP_LAYER_ZEROSCAN = 3, /* all-zero blocks found while reading */
	SNAP_LAYER_FS = 4,	 /* a filesystem's free-space map */
	SNAP_LAYER_MERGE = 5,	 /* a small gap merged into its DATA neighbours */
};
#define SNAP_LAYER_COUNT 6

struct snap_extent {
	size_t struct_size; /* set by the caller: sizeof(struct snap_extent) */
	uint64_t offset;
	uint64_t length;
	uint8_t kind;	   /* enum snap_extent_kind */
	uint8_t layer;	   /* enum snap_extent_layer */
	uint16_t reserved;
	uint32_t partition; /* partition number the extent lies in, 0 outside every partition */
};

const char *snap_extent_kind_name(int kind);   /* "data", "zero", "unused" */
const char *snap_extent_layer_name(int layer); /* "source", "ptable", "hole", ... */

/* ---------------------------------------------------------------------------------------- */
/* Disks: open a source, read its partition table and filesystems, build its extent map      */

struct snap_disk;

enum snap_disk_param {
	SNAP_DISK_KEEP_UNPARTITIONED = 1, /* bool: space outside partitions stays DATA */
	SNAP_DISK_MIN_GAP = 2,		  /* bytes: DATA extents closer than this merge (64 KiB) */
					  /* (0: the default; -1: never merge) */
	/* 3-5 are the data reader's settings: a disk object reads no data (only its table and
	 * filesystems), so snap_disk_set_param refuses them with -EOPNOTSUPP. Jobs take them as
	 * SNAP_PARAM_FORCE_PREAD, SNAP_PARAM_QUEUE_DEPTH and SNAP_PARAM_REQUEST_SIZE. */
	SNAP_DISK_FORCE_PREAD = 3,
	SNAP_DISK_QUEUE_DEPTH = 4,
	SNAP_DISK_REQUEST_SIZE = 5,
	SNAP_DISK_NO_DIRECT = 6,	  /* bool: buffered reads instead of O_DIRECT */
	SNAP_DISK_FS_SKIP = 7,		  /* bool: mark filesystem free space UNUSED (default 1) */
	SNAP_DISK_FREEZE = 8,		  /* bool: FIFREEZE mounted filesystems while reading */
	SNAP_DISK_NO_HOLES = 9,		  /* bool: do not look for SEEK_HOLE holes */
};

int snap_disk_new(struct snap_disk **ret);
struct snap_disk *snap_disk_free(struct snap_disk *disk);
int snap_disk_set_param(struct snap_disk *disk, int param, int64_t value);
/* Opens path read-only, reads its partition table, probes filesystems, builds the map. */
int snap_disk_open(struct snap_disk *disk, const char *path);
/* Detail of the last failure ("cannot read /dev/sdb at offset 4096: ..."), or "". */
const char *snap_disk_error(const struct snap_disk *disk);

uint64_t snap_disk_size(const struct snap_disk *disk);
uint32_t snap_disk_logical_sector_size(const struct snap_disk *disk);
uint32_t snap_disk_physical_sector_size(const struct snap_disk *disk);
int snap_disk_is_block_device(const struct snap_disk *disk);
/* "gpt", "dos" or NULL when there is no partition table. */
const char *snap_disk_ptable_type(const struct snap_disk *disk);
/* The disk identifier: GPT disk GUID or "0x%08x" MBR signature; NULL without a table. */
const char *snap_disk_ptable_id(const struct snap_disk *disk);

struct snap_partition_info {
	size_t struct_size;    /* sizeof(struct snap_partition_info): set by the caller of
				* snap_store_image_partition, by the library in snap_disk_partition */
	uint32_t number;       /* 1-based, as the kernel and sfdisk number them; 0 is the whole
				* disk of a source without a partition table that holds a
				* filesystem (then type is NULL) */
	uint64_t start;	       /* bytes */
	uint64_t size;	       /* bytes */
	const char *type;      /* GPT type GUID (upper case) or MBR type as "83" */
	const char *type_name; /* human name of the type, may be NULL */
	const char *name;      /* GPT partition name, may be NULL */
	const char *uuid;      /* GPT partition GUID, may be NULL */
	int container;	       /* 1 for an MBR extended partition */
	int bootable;
	const char *fs_type;  /* from libblkid: "ext4", "vfat", ..., NULL if none found */
	const char *fs_label; /* may be NULL */
	const char *fs_uuid;  /* may be NULL */
	/* Filesystem free-space skipping (see snap_disk_param SNAP_DISK_FS_SKIP): */
	int fs_mapped;		 /* 1 when free space was read from the filesystem's map */
	uint64_t fs_used_bytes;	 /* used space the filesystem reports (when fs_mapped) */
	uint64_t fs_skipped;	 /* bytes marked UNUSED or ZERO from the filesystem's map */
	const char *fs_note;	 /* why free space was not skipped, or what was kept */
};

size_t snap_disk_partition_count(const struct snap_disk *disk);
/* Library-owned, valid until the disk is freed; NULL when i is out of range. */
const struct snap_partition_info *snap_disk_partition(const struct snap_disk *disk, size_t i);

size_t snap_disk_extent_count(const struct snap_disk *disk);
int snap_disk_extent(const struct snap_disk *disk, size_t i, struct snap_extent *ret);

struct snap_map_summary {
	size_t struct_size; /* set by the caller: sizeof(struct snap_map_summary) */
	uint64_t bytes[3];			/* by enum snap_extent_kind */
	uint64_t by_layer[3][SNAP_LAYER_COUNT]; /* by kind, then by the layer that decided */
	uint64_t extents;
};
int snap_disk_summary(const struct snap_disk *disk, struct snap_map_summary *ret);

/* ---------------------------------------------------------------------------------------- */
/* Jobs: bundle, unbundle, verify, store, restore                                            */

enum snap_job_kind {
	SNAP_JOB_BUNDLE = 1,	    /* source -> classic EC2 bundle (parts + manifest) */
	SNAP_JOB_UNBUNDLE = 2,	    /* classic bundle -> image file or block device */
	SNAP_JOB_VERIFY_BUNDLE = 3, /* every unbundle check, nothing written */
	SNAP_JOB_STORE = 4,	    /* sources -> single-object .bin store image */
	SNAP_JOB_RESTORE = 5,	    /* .bin -> image file or block device */
	SNAP_JOB_VERIFY_STORE = 6,  /* every restore check, nothing written */
	/* S3 transfers of classic bundles, as ec2-upload-bundle, ec2-download-bundle and
	 * ec2-delete-bundle (SNAP_SPARAM_S3_*), and aborting a store's multipart upload */
	SNAP_JOB_UPLOAD_BUNDLE = 7,   /* local manifest + parts -> bucket, manifest last */
	SNAP_JOB_DOWNLOAD_BUNDLE = 8, /* bucket -> local directory, manifest first */
	SNAP_JOB_DELETE_BUNDLE = 9,   /* the parts, then the manifest */
	SNAP_JOB_S3_ABORT = 10,	      /* SNAP_SPARAM_OUTPUT s3://...: abort its uploads */
	/* a mounted volume -> a new image of its file tree (rsync, the sensitive-file filter)
	 * -> a classic bundle, as ec2-bundle-vol (SNAP_PARAM_BV_*, SNAP_SPARAM_BV_*, and the
	 * bundle's own parameters); docs/bundle-vol.md */
	SNAP_JOB_BUNDLE_VOL = 11,
	/* ec2-migrate-manifest and ec2-migrate-bundle: a manifest re-keyed for
	 * SNAP_SPARAM_EC2_CERT, kernel and ramdisk mapped (SNAP_SPARAM_MAPPING_FILE,
	 * SNAP_SPARAM_MIGRATE_REGION) or set, re-signed; no part changes. Manifest: the
	 * SNAP_SPARAM_MANIFEST file in place, or written to SNAP_SPARAM_OUTPUT */
	SNAP_JOB_MIGRATE_MANIFEST = 12,
	/* SNAP_SPARAM_S3_BUCKET -> SNAP_SPARAM_DEST_BUCKET: server-side copies, manifest last */
	SNAP_JOB_MIGRATE_BUNDLE = 13,
	/* SNAP_SPARAM_INPUT .bin -> SNAP_SPARAM_OUTPUT (or itself, SNAP_PARAM_IN_PLACE) with new
	 * key slots, or a new data key, without recompressing (formats/STORE_FORMAT.md 14) */
	SNAP_JOB_REKEY = 14,
};

/* Integer parameters. Ranges: 1-99 common, 100-199 bundle, 200-299 unbundle,
 * 300-399 store and restore, 400-499 S3, 500-599 rekey, 600-699 bundle-vol, 700-799 migrate,
 * 800-899 inspection. Values are never reused. */
enum snap_job_param {
	SNAP_PARAM_THREADS = 1,		   /* worker threads, 0 = every online CPU */
	SNAP_PARAM_LEVEL = 2,		   /* compression level 0-3 (ISA-L): bundle default 2, store 1 */
	SNAP_PARAM_FORCE = 3,		   /* bool: overwrite existing output */
	SNAP_PARAM_KEEP_UNPARTITIONED = 4, /* bool, as SNAP_DISK_KEEP_UNPARTITIONED */
	SNAP_PARAM_FORCE_PREAD = 5,	   /* bool: never use io_uring (also SNAPBUNDLE_FORCE_PREAD=1) */
	SNAP_PARAM_QUEUE_DEPTH = 6,	   /* reader queue depth (0: the default, 32; at most 1024) */
	SNAP_PARAM_REQUEST_SIZE = 7,	   /* request bytes (0: 1 MiB; at most 64 MiB) */
	SNAP_PARAM_NO_DIRECT = 8,     /* bool: no O_DIRECT reads or writes (every job) */
	SNAP_PARAM_FS_SKIP = 9,	       /* bool, default 1 */
	SNAP_PARAM_FREEZE = 10,	       /* bool */
	SNAP_PARAM_NO_VERIFY = 11,     /* bool: skip verification (unbundle/restore) */
	SNAP_PARAM_PROGRESS_MS = 12,   /* minimum interval between progress callbacks, default 200 */
	SNAP_PARAM_MIN_GAP = 13,       /* as SNAP_DISK_MIN_GAP */

	SNAP_PARAM_PART_SIZE = 100,    /* bytes per part, default 10 MiB (tests shrink it) */
	SNAP_PARAM_CHUNK_SIZE = 101,   /* bytes of tar stream per parallel deflate chunk */

	SNAP_PARAM_FRAME_SIZE = 300,   /* bytes of volume data per store frame */
	SNAP_PARAM_ENCRYPT = 301,      /* bool */
	SNAP_PARAM_CREATION_TIME = 302, /* seconds since the epoch, for reproducible images */
	SNAP_PARAM_STORE_TIME = 303,
	SNAP_PARAM_RANGE_OFFSET = 304,	/* restore only [offset, offset+length) of a volume */
	SNAP_PARAM_RANGE_LENGTH = 305,
	SNAP_PARAM_PARTITION = 306,	/* restore only this partition of the volume */
	/* Test-only (golden vectors): every random byte (image id, data key, salts, nonces) is
	 * derived from this seed, so an image is reproducible. Never use it for real images:
	 * two images made with one seed share their keys and nonces. 0 = off. */
	SNAP_PARAM_TEST_SEED = 307,
	SNAP_PARAM_SCRYPT_LOG_N = 308,	/* store: scrypt cost log2(N), default 15 */
	/* verify store: check an encrypted image without its key (1): every frame's stored bytes
	 * against its digest and the index, the index's structure and volume digests, and the
	 * signature when there is one; frames are not decrypted, and the metadata and index
	 * authenticate only through a signature (SNAP_RESULT_AUTHENTICATED says which). */
	SNAP_PARAM_WITHOUT_KEY = 309,
	/* 400-499: S3. Wherever a bundle, manifest or .bin is named, an s3://BUCKET/KEY URL is
	 * accepted; the service and the credentials come from SNAP_SPARAM_S3_* or the AWS chain
	 * (environment, ~/.aws, instance metadata). */
	SNAP_PARAM_S3_CONNECTIONS = 400, /* transfers at once, default 8 */
	SNAP_PARAM_S3_RETRIES = 401,	 /* per request, default 5 */
	SNAP_PARAM_S3_PART_SIZE = 402,	 /* store: multipart part size, 0 = chosen by size */
	SNAP_PARAM_RESUME = 403,	 /* bool, store -o s3://: continue the kept upload */
	SNAP_PARAM_NO_RESUME = 404,	 /* bool: a failed store aborts its upload, keeps nothing */
	SNAP_PARAM_SKIP_MANIFEST = 405,	 /* bool, upload-bundle: parts only */
	SNAP_PARAM_CLEAR = 406,		 /* bool, delete-bundle: also the bucket when empty */
	SNAP_PARAM_FIRST_PART = 407,	 /* upload-bundle: begin with this part (--part N) */
	/* 500-599: rekey (SNAP_JOB_REKEY) */
	SNAP_PARAM_NEW_DATA_KEY = 500,	  /* bool: re-encrypt every frame under a new data key */
	SNAP_PARAM_REMOVE_PASSPHRASE = 501, /* bool: drop the passphrase slots */
	SNAP_PARAM_IN_PLACE = 502,	  /* bool: replace SNAP_SPARAM_INPUT (a local file) */
	/* 600-699: bundle-vol (SNAP_JOB_BUNDLE_VOL) */
	SNAP_PARAM_BV_SIZE = 600,	    /* bytes of the new image, 0 = the volume's device */
	SNAP_PARAM_BV_NO_FILTER = 601,	    /* bool: keep the files the sensitive filter drops */
	SNAP_PARAM_BV_ALL = 602,	    /* bool: cross into every filesystem mounted below */
	SNAP_PARAM_BV_PARTITION = 603,	    /* enum snap_bv_partition */
	SNAP_PARAM_BV_CLONE_ONLY = 604,	    /* bool: stop after the image (DESTINATION/PREFIX) */
	SNAP_PARAM_BV_SNAPSHOT = 605,	    /* bool: bundle the frozen block device, no copy */
	SNAP_PARAM_BV_GENERATE_FSTAB = 606, /* bool: write the image's own /etc/fstab */
	SNAP_PARAM_BV_NO_SIZE_CHECKS = 607, /* bool: allow an image smaller than the used space */
	/* 700-799: migrate-manifest, migrate-bundle */
	SNAP_PARAM_NO_MAPPING = 700, /* bool: keep kernel and ramdisk ids unless set */
	/* 800-899: inspection. Verify bundle: read the manifest (and check its signature with
	 * SNAP_SPARAM_CERT), set SNAP_RESULT_MANIFEST_INFO, and stop: no part is read */
	SNAP_PARAM_MANIFEST_ONLY = 800,
};

/* SNAP_PARAM_BV_PARTITION: the new image's partition table. */
enum snap_bv_partition {
	SNAP_BV_PARTITION_AUTO = 0, /* as the volume's disk has it: none, mbr or gpt */
	SNAP_BV_PARTITION_NONE = 1, /* the filesystem from byte 0 */
	SNAP_BV_PARTITION_MBR = 2,
	SNAP_BV_PARTITION_GPT = 3,
};

/* String parameters; snap_job_add_string() appends to the list-valued ones. */
enum snap_job_sparam {
	SNAP_SPARAM_IMAGE = 1,	     /* bundle: source path; store: use snap_job_add_source */
	SNAP_SPARAM_DESTINATION = 2, /* bundle: directory for parts and manifest */
	SNAP_SPARAM_PREFIX = 3,	     /* bundle name */
	SNAP_SPARAM_CERT = 4,	     /* user X.509 certificate (PEM) */
	SNAP_SPARAM_PRIVATE_KEY = 5, /* user RSA private key (PEM) */
	SNAP_SPARAM_USER = 6,	     /* AWS account number */
	SNAP_SPARAM_ARCH = 7,	     /* i386, x86_64, arm64 */
	SNAP_SPARAM_EC2_CERT = 8,    /* EC2 certificate (PEM) */
	SNAP_SPARAM_KERNEL = 9,
	SNAP_SPARAM_RAMDISK = 10,
	SNAP_SPARAM_BLOCK_DEVICE_MAPPING = 11, /* list: "virtual=device" */
	SNAP_SPARAM_PRODUCT_CODES = 12,	       /* list */
	SNAP_SPARAM_ANCESTOR = 13,	       /* list: ancestor AMI ids */
	SNAP_SPARAM_MANIFEST = 14,	       /* unbundle, verify: manifest path */
	SNAP_SPARAM_SOURCE_DIR = 15,	       /* unbundle: directory holding the parts */
	SNAP_SPARAM_OUTPUT = 16,	       /* unbundle, restore: image file or block device */
	SNAP_SPARAM_INPUT = 17,		       /* restore, verify store: .bin path or "-" */
	SNAP_SPARAM_NAME = 18,		       /* store: image name; restore: new name */
	SNAP_SPARAM_DESCRIPTION = 19,
	SNAP_SPARAM_BOOT_MODE = 20,	  /* legacy-bios, uefi, uefi-preferred */
	SNAP_SPARAM_OWNER = 21,
	SNAP_SPARAM_TAG = 22,		  /* list: "key=value" */
	SNAP_SPARAM_RECIPIENT_CERT = 23,  /* list: X.509 certificates to wrap the data key for */
	SNAP_SPARAM_PASSPHRASE = 24,
	SNAP_SPARAM_VOLUME = 25,	  /* restore: device name of the one volume to restore */
	SNAP_SPARAM_SIGNING_KEY = 26,	  /* store: key to sign index and metadata */
	SNAP_SPARAM_OUTPUT_DIR = 27,	  /* unbundle: destination directory (ec2-unbundle -d) */
	SNAP_SPARAM_IMAGE_ID = 28,	  /* store: AMI id the object is named after */
	SNAP_SPARAM_TRUSTED_SIGNER = 29,  /* restore, verify store: require a signature by this
					   * key (PEM certificate, public or private key) */
	/* S3 (SNAP_PARAM_S3_*): each unset one is looked up by the AWS chain */
	SNAP_SPARAM_S3_ENDPOINT = 40,	   /* http(s)://host[:port] */
	SNAP_SPARAM_S3_REGION = 41,
	SNAP_SPARAM_S3_ACCESS_KEY = 42,
	SNAP_SPARAM_S3_SECRET_KEY = 43,
	SNAP_SPARAM_S3_SESSION_TOKEN = 44,
	SNAP_SPARAM_S3_PROFILE = 45,
	SNAP_SPARAM_S3_ACL = 46,	   /* canned ACL of every object uploaded */
	SNAP_SPARAM_S3_BUCKET = 47,	   /* upload/download/delete-bundle: BUCKET[/PREFIX] */
	SNAP_SPARAM_S3_LOCATION = 48,	   /* upload-bundle: create the bucket there if missing */
	/* rekey: SNAP_SPARAM_RECIPIENT_CERT adds recipients, SNAP_SPARAM_PASSPHRASE opens */
	SNAP_SPARAM_REMOVE_RECIPIENT = 60, /* list: certificates whose slots are removed */
	SNAP_SPARAM_ADD_PASSPHRASE = 61,   /* a passphrase that opens the re-keyed image too */
	/* bundle-vol (SNAP_JOB_BUNDLE_VOL); DESTINATION and PREFIX name the bundle */
	SNAP_SPARAM_BV_VOLUME = 70,	 /* mount point of the volume, default "/" */
	SNAP_SPARAM_BV_EXCLUDE = 71,	 /* list: absolute directories left out */
	SNAP_SPARAM_BV_INCLUDE = 72,	 /* list: absolute files kept despite the filter */
	SNAP_SPARAM_BV_FSTAB = 73,	 /* file copied to the image's /etc/fstab */
	SNAP_SPARAM_BV_SCRATCH_DIR = 74, /* where the image is made for -d s3:// (/tmp) */
	/* migrate-manifest, migrate-bundle */
	SNAP_SPARAM_MIGRATE_REGION = 80, /* the region kernel and ramdisk ids are mapped to */
	SNAP_SPARAM_MAPPING_FILE = 81,	 /* lines "REGION SOURCE-ID DESTINATION-ID" */
	SNAP_SPARAM_DEST_BUCKET = 82,	 /* migrate-bundle: BUCKET[/PREFIX] copied to */
};

enum snap_stage {
	SNAP_STAGE_PREPARE = 0, /* opening, mapping, keys */
	SNAP_STAGE_DATA = 1,	/* streaming data */
	SNAP_STAGE_FINISH = 2,	/* manifest, index, renames */
	SNAP_STAGE_VERIFY = 3,
	SNAP_STAGE_DONE = 4,
};

struct snap_progress {
	int stage;		/* enum snap_stage */
	uint64_t bytes_total;	/* logical bytes the job covers (source or image size) */
	uint64_t bytes_done;	/* logical bytes covered so far, read or skipped */
	uint64_t bytes_read;	/* bytes actually read from the source */
	uint64_t bytes_skipped; /* bytes not read: ZERO and UNUSED extents */
	uint64_t bytes_written; /* bytes written to the output */
	double elapsed;		/* seconds since snap_job_run started */
	double percent;		/* 0..100, what DescribeStoreImageTasks would report */
	/* S3 jobs: payload bytes sent to and received from the service so far (members added at
	 * the end: the library allocates the struct, callbacks only read it) */
	uint64_t bytes_uploaded, bytes_downloaded;
	/* the bytes the job must read from its sources, set once before its data stage, 0 when
	 * the job does not say: store, bundle: their DATA extents; restore, verify of a .bin
	 * (a file or s3://, not a pipe): every byte of the image it reads, the records of the
	 * frames of the selected volumes, partition or range plus head, index and footer;
	 * unbundle, verify of a bundle: the parts' sizes. bytes_read of bytes_data is the
	 * reader's progress and ends equal to it on success, where percent also counts the
	 * space skipped as the reader passes it */
	uint64_t bytes_data;
};

/* Called from the thread running snap_job_run, at most every SNAP_PARAM_PROGRESS_MS and once
 * at each stage change. Return non-zero to cancel the job. */
typedef int (*snap_progress_fn)(void *userdata, const struct snap_progress *progress);

struct snap_job;

int snap_job_new(enum snap_job_kind kind, struct snap_job **ret);
struct snap_job *snap_job_free(struct snap_job *job);
enum snap_job_kind snap_job_kind(const struct snap_job *job);
int snap_job_set_param(struct snap_job *job, int param, int64_t value);
int snap_job_get_param(const struct snap_job *job, int param, int64_t *ret);
int snap_job_set_string(struct snap_job *job, int sparam, const char *value);
int snap_job_add_string(struct snap_job *job, int sparam, const char *value);
/* Store: one source per volume with its device name ("/dev/xvda"); bundle: exactly one. */
int snap_job_add_source(struct snap_job *job, const char *path, const char *device_name);
void snap_job_set_progress(struct snap_job *job, snap_progress_fn fn, void *userdata);

/* Runs the job to completion in the calling thread (it starts workers of its own). On failure
 * every output it created is removed. Returns 0 or -errno; -ECANCELED after snap_job_cancel. */
int snap_job_run(struct snap_job *job);

/* Safe from any thread and from a signal handler. */
void snap_job_cancel(struct snap_job *job);

/* Detail of the failure: what went wrong and where (file, offset, part). "" when none. */
const char *snap_job_error(const struct snap_job *job);

enum snap_job_result {
	SNAP_RESULT_BYTES_TOTAL = 1,   /* u64 */
	SNAP_RESULT_BYTES_READ = 2,    /* u64 */
	SNAP_RESULT_BYTES_SKIPPED = 3, /* u64 */
	SNAP_RESULT_BYTES_WRITTEN = 4, /* u64 */
	SNAP_RESULT_ELAPSED_NS = 5,    /* u64 */
	SNAP_RESULT_PARTS = 6,	       /* u64: part count */
	SNAP_RESULT_STREAM_BYTES = 7,  /* u64: tar stream length */
	SNAP_RESULT_FRAMES = 8,	       /* u64 */
	SNAP_RESULT_FRAMES_READ = 9,   /* u64: restore/verify store: frames read and checked */
	/* u64, verify store: 2 metadata and index authenticated by the data key (or, unencrypted,
	 * by their digests only: no secret), 1 by a valid signature only (SNAP_PARAM_WITHOUT_KEY),
	 * 0 not authenticated (without key and unsigned: integrity of the stored bytes only) */
	SNAP_RESULT_AUTHENTICATED = 10,
	SNAP_RESULT_BYTES_UPLOADED = 11,   /* u64: S3 payload bytes sent, retries included */
	SNAP_RESULT_BYTES_DOWNLOADED = 12, /* u64: S3 payload bytes received */
	SNAP_RESULT_S3_REQUESTS = 13,	   /* u64 */
	SNAP_RESULT_S3_RETRIES = 14,	   /* u64 */
	/* u64, upload/download-bundle: parts not transferred because the other side already had
	 * them (same MD5 in the bucket, same size and SHA-1 on disk) */
	SNAP_RESULT_PARTS_SKIPPED = 15,
	SNAP_RESULT_MANIFEST_PATH = 100, /* string */
	SNAP_RESULT_DIGEST = 101,	 /* string: manifest digest (SHA-1 of the tar stream) */
	SNAP_RESULT_OUTPUT_PATH = 102,	 /* string */
	SNAP_RESULT_TIMINGS = 103,	 /* string: JSON object, seconds per stage */
	SNAP_RESULT_OBJECT_URL = 104,	 /* string: s3://BUCKET/KEY written (store -o s3://) */
	SNAP_RESULT_ETAG = 105,		 /* string: that object's ETag */
	/* string, abort: the uploads aborted, one "s3://BUCKET/KEY UPLOAD-ID" a line ("" none) */
	SNAP_RESULT_S3_ABORTED = 106,
	/* string, verify bundle: the manifest's fields as one JSON object (docs/json.md,
	 * "bundle-manifest"): version, bundler, arch, kernel_id, ramdisk_id, product_codes,
	 * block_device_mappings, name, user, type, size, bundled_size, digest, parts, signed */
	SNAP_RESULT_MANIFEST_INFO = 107,
};

int snap_job_result_u64(const struct snap_job *job, int result, uint64_t *ret);
/* NULL when the result is not known. Valid until the job is freed. */
const char *snap_job_result_string(const struct snap_job *job, int result);

/* ---------------------------------------------------------------------------------------- */
/* Store images: inspecting a .bin (formats/STORE_FORMAT.md)                                 */

/* An opened .bin store image: header, metadata, volumes, extent maps and the frame index.
 * Opening checks every CRC, the index structure, the binding of index to metadata and the
 * volume digests; unencrypted images are then authenticated (SHA-256). Encrypted images are
 * authenticated (HMAC-SHA256) once snap_store_image_unlock() recovered the data key. Reading
 * frame data is the restore and verify jobs' work. */
struct snap_store_image;

/* 1 when path begins with the store image magic, 0 when not, -errno when unreadable. */
int snap_store_image_probe(const char *path);
int snap_store_image_new(struct snap_store_image **ret);
struct snap_store_image *snap_store_image_free(struct snap_store_image *img);
/* A seekable .bin file: one read of the head, one of the footer, one of the index. */
int snap_store_image_open(struct snap_store_image *img, const char *path);
/* The same for an S3 object (s3://BUCKET/KEY): ranged GETs of the object as it was when opened
 * (an object replaced meanwhile fails with -ESTALE), through the client of job, which holds the
 * service and credentials (SNAP_SPARAM_S3_*, else the AWS chain) and must outlive img. */
int snap_store_image_open_s3(struct snap_store_image *img, struct snap_job *job,
			     const char *url);
/* Recovers the data key (passphrase or PEM private key path; one may be NULL) and checks the
 * metadata and index tags: -EKEYREJECTED wrong passphrase, -ENOKEY key not a recipient,
 * -EBADMSG tampered. A no-op for unencrypted images. */
int snap_store_image_unlock(struct snap_store_image *img, const char *passphrase,
			    const char *private_key_path);
const char *snap_store_image_error(const struct snap_store_image *img);

struct snap_store_info {
	size_t struct_size; /* set by the caller: sizeof(struct snap_store_info) */
	uint32_t version, compat, incompat, ro_compat;
	uint32_t frame_size;
	int encrypted;
	int authenticated;	/* metadata and index tags verified */
	const char *image_uuid; /* the 16-byte image id in hex */
	const char *name, *description, *arch, *boot_mode, *owner;
	const char *image_id; /* AMI id the object is named after */
	uint64_t creation_time, store_time; /* seconds since the epoch */
	uint64_t image_size;		    /* bytes of the .bin */
	uint64_t volumes, frames, keyslots;
	uint64_t logical_bytes; /* sum of the volume sizes */
	uint64_t data_bytes;	/* bytes held in frames */
	uint64_t stored_bytes;	/* frame payload bytes after compression */
	int signed_image;	/* 1: a signature over header, keys, metadata and index verified */
	const char *signer_key_id; /* SHA-256 of the signer's DER public key in hex, or NULL */
};
/* Strings valid until the image is freed. */
int snap_store_image_info(const struct snap_store_image *img, struct snap_store_info *ret);

enum snap_store_list {
	SNAP_STORE_LIST_TAGS = 1,		    /* "key=value" */
	SNAP_STORE_LIST_BLOCK_DEVICE_MAPPINGS = 2, /* "virtual=device" */
	SNAP_STORE_LIST_S3_METADATA = 3,	    /* "x-amz-meta-...=value" an uploader sets */
};
size_t snap_store_image_list_count(const struct snap_store_image *img, int list);
const char *snap_store_image_list(const struct snap_store_image *img, int list, size_t i);

struct snap_store_volume_info {
	size_t struct_size; /* set by the caller: sizeof(struct snap_store_volume_info) */
	const char *device;
	uint64_t size;
	uint32_t logical_sector, physical_sector;
	const char *ptable_type, *ptable_id;
	uint64_t partitions, extents, first_frame, frames;
	uint64_t bytes[3];	/* by enum snap_extent_kind */
	uint64_t stored_bytes;	/* frame payload bytes */
	const char *digest;	/* volume digest in hex (valid until the next call) */
};
int snap_store_image_volume(const struct snap_store_image *img, size_t i,
			    struct snap_store_volume_info *ret);
/* The index of the volume whose device is name, whole (/dev/sdb) or its last component (sdb),
 * as restore --volume matches it: -ENOENT none, -EUCLEAN two (a forged image). */
int snap_store_image_find_volume(struct snap_store_image *img, const char *name, size_t *ret);
int snap_store_image_partition(const struct snap_store_image *img, size_t vol, size_t i,
			       struct snap_partition_info *ret);
int snap_store_image_extent(const struct snap_store_image *img, size_t vol, size_t i,
			    struct snap_extent *ret);

struct snap_store_frame_info {
	size_t struct_size; /* set by the caller: sizeof(struct snap_store_frame_info) */
	uint64_t index, file_offset, volume, offset;
	uint32_t raw_len, stored_len;
	int compressed, encrypted;
	uint8_t digest[32];
};
int snap_store_image_frame(const struct snap_store_image *img, uint64_t i,
			   struct snap_store_frame_info *ret);

/* Requires a valid signature by the key in a PEM file (certificate, public or private key), as
 * verify-store's --signer: -EKEYREJECTED when unsigned or signed by another key. */
int snap_store_image_check_signer(struct snap_store_image *img, const char *pem_path);

/* ---------------------------------------------------------------------------------------- */
/* Store images: reading a volume's bytes (engine/store-image-read.c)                         */

/* Random reads of one volume's logical bytes from an opened (and, when encrypted, unlocked)
 * image, without restoring it: what a block device server serves (docs/nbd.md). Each frame is
 * checked exactly as restore checks it (header, index entry, digest, GCM tag, inflate, CRC)
 * before any byte of it is returned; bytes no frame holds (zero and unused extents) read as
 * zeros. A cache of the last SNAP_STORE_READER_CACHE frames opened makes small sequential reads
 * decode each frame once: a reader holds SNAP_STORE_READER_CACHE frames and one frame record,
 * about (SNAP_STORE_READER_CACHE + 1) x the image's frame size (4 MiB by default), allocated by
 * snap_store_reader_new.
 * Threads: a reader is used by one thread at a time, and it reads through its image (file or
 * S3 reader, counters, error), so the readers of one image must not read at once either: one
 * image and one reader per thread. */
#define SNAP_STORE_READER_CACHE 4
struct snap_store_reader;

/* A reader of volume i of img (which must outlive it): -EINVAL no such volume or no index,
 * -ENOKEY an encrypted image not unlocked. -ENOMEM. */
int snap_store_reader_new(struct snap_store_image *img, size_t volume,
			  struct snap_store_reader **ret);
struct snap_store_reader *snap_store_reader_free(struct snap_store_reader *rd);
/* The volume's bytes [offset, offset + len) into buf: 0, or -errno with the image's error
 * (snap_store_image_error) naming the image, the frame and its file offset: -EINVAL past the
 * end of the volume, -EBADMSG a tampered or corrupt frame, -EUCLEAN a truncated image, -EIO,
 * -ESTALE an S3 object replaced since it was opened. Each read that fails replaces the error. */
int snap_store_reader_pread(struct snap_store_reader *rd, void *buf, size_t len, uint64_t offset);

#if defined(__GNUC__) && !defined(SNAP_NO_VISIBILITY)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SNAPBUNDLE_H */
