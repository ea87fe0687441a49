// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * snapbundle-plugin.c - nbdkit-snapbundle-plugin: one volume of a .bin store image (a file or
 * s3://BUCKET/KEY) served read-only as a network block device (docs/nbd.md). A thin frontend
 * over the public API: every byte comes from snap_store_reader_pread, which checks each frame
 * as restore does.
 *
 * Invariants:
 *  1. Nothing is served unless the image opened, its metadata and index authenticated (unlocked
 *     with the passphrase or key when encrypted) and, with signer=, its signature verified by
 *     that key: get_ready makes every check once, so a wrong key, a tampered index or a missing
 *     image makes nbdkit exit non-zero before it listens; each connection makes them again on
 *     its own image.
 *  2. One image and one reader per connection (snapbundle.h: a reader belongs to one thread, and
 *     so does its image), and SERIALIZE_REQUESTS: requests of a connection run one at a time,
 *     connections in parallel, each decoding on its own core with its own frame cache.
 *     Connections see the same bytes (read-only), hence can_multi_conn.
 *  3. The checked image of get_ready is closed again rather than handed to a connection: nbdkit
 *     may fork into the background after get_ready, and an S3 client's threads and connections
 *     do not survive a fork.
 *  4. Extents come from the volume's extent map, which the index authenticated: data extents
 *     are reported allocated, zero and unused extents as holes that read as zeros (which they
 *     do: no frame holds them).
 *  5. OpenSSL never cleans up at exit (OPENSSL_INIT_NO_ATEXIT, set in load before any other
 *     OpenSSL call): nbdkit's connection threads may still be ending when its main thread
 *     exits, and an atexit OPENSSL_cleanup would free the per-thread state those threads'
 *     destructors free again (a double free, seen under ASan). The process's exit frees it.
 */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS
#include <nbdkit-plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "snapbundle.h"

/* The parameters (config), read-only once config_complete passed. */
static char *image; /* a path made absolute, or an s3:// URL */
static char *volume_arg; /* volume=: a number, or a device name as restore --volume takes */
static char *passphrase, *key_path, *signer_path;
static char *s3_endpoint, *s3_region, *s3_profile;

struct handle {
	struct snap_job *job; /* an S3 image's client (it outlives img) */
	struct snap_store_image *img;
	struct snap_store_reader *rd;
	size_t volume; /* its index in the image */
	uint64_t size;
	struct snap_extent *ext; /* the volume's extent map, in offset order */
	size_t next;
};

/* Invariant 5. */
static void sb_load(void)
{
	if (!OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL))
		nbdkit_debug("OpenSSL would not initialise: the first request will say why");
}

static void sb_unload(void)
{
	free(image);
	free(volume_arg);
	if (passphrase)
		memset(passphrase, 0, strlen(passphrase));
	free(passphrase);
	free(key_path);
	free(signer_path);
	free(s3_endpoint);
	free(s3_region);
	free(s3_profile);
}

/* The first line of a file, without its line end. */
static char *read_passphrase(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		nbdkit_error("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	if (n <= 0) {
		nbdkit_error("empty passphrase in %s", path);
		free(line);
		return NULL;
	}
	return line;
}

static int set_string(char **dst, char *v, const char *key)
{
	if (!v) {
		nbdkit_error("cannot take %s: %s", key, strerror(errno));
		return -1;
	}
	free(*dst);
	*dst = v;
	return 0;
}

static int sb_config(const char *key, const char *value)
{
	if (!strcmp(key, "image"))
		return set_string(
		    &image, !strncmp(value, "s3://", 5) ? strdup(value) : nbdkit_realpath(value),
		    key);
	if (!strcmp(key, "volume"))
		return set_string(&volume_arg, strdup(value), key);
	if (!strcmp(key, "passphrase-file")) {
		char *p = read_passphrase(value);
		return p ? set_string(&passphrase, p, key) : -1;
	}
	if (!strcmp(key, "key"))
		return set_string(&key_path, nbdkit_realpath(value), key);
	if (!strcmp(key, "signer"))
		return set_string(&signer_path, nbdkit_realpath(value), key);
	if (!strcmp(key, "endpoint"))
		return set_string(&s3_endpoint, strdup(value), key);
	if (!strcmp(key, "region"))
		return set_string(&s3_region, strdup(value), key);
	if (!strcmp(key, "profile"))
		return set_string(&s3_profile, strdup(value), key);
	nbdkit_error("unknown parameter %s", key);
	return -1;
}

static int sb_config_complete(void)
{
	if (!image) {
		nbdkit_error("no image given: image=FILE.bin or image=s3://BUCKET/KEY");
		return -1;
	}
	if ((s3_endpoint || s3_region || s3_profile) && strncmp(image, "s3://", 5) != 0) {
		nbdkit_error("endpoint, region and profile need an s3:// image, not %s", image);
		return -1;
	}
	return 0;
}

static void close_handle(struct handle *h)
{
	if (!h)
		return;
	snap_store_reader_free(h->rd);
	snap_store_image_free(h->img);
	snap_job_free(h->job); /* after the image: its client serves the image's reads */
	free(h->ext);
	free(h);
}

/* The S3 settings the command's options set on a job (SNAP_SPARAM_S3_*); unset ones come from
 * the AWS chain. */
static int s3_job(struct snap_job **ret)
{
	struct snap_job *job = NULL;
	int r = snap_job_new(SNAP_JOB_VERIFY_STORE, &job);
	if (r == 0 && s3_endpoint)
		r = snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT, s3_endpoint);
	if (r == 0 && s3_region)
		r = snap_job_set_string(job, SNAP_SPARAM_S3_REGION, s3_region);
	if (r == 0 && s3_profile)
		r = snap_job_set_string(job, SNAP_SPARAM_S3_PROFILE, s3_profile);
	if (r < 0) {
		snap_job_free(job);
		return r;
	}
	*ret = job;
	return 0;
}

/* Opens and checks the image (invariant 1) and reads the volume's extent map. */
static struct handle *open_handle(void)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h) {
		nbdkit_error("cannot serve %s: out of memory", image);
		return NULL;
	}
	const char *what = "cannot open";
	int r = snap_store_image_new(&h->img);
	if (r == 0 && !strncmp(image, "s3://", 5)) {
		if ((r = s3_job(&h->job)) == 0)
			r = snap_store_image_open_s3(h->img, h->job, image);
	} else if (r == 0) {
		r = snap_store_image_open(h->img, image);
	}
	if (r == 0) {
		what = "cannot unlock";
		r = snap_store_image_unlock(h->img, passphrase, key_path);
	}
	if (r == 0 && signer_path) {
		what = "refusing to serve";
		r = snap_store_image_check_signer(h->img, signer_path);
	}
	struct snap_store_volume_info vi = {.struct_size = sizeof(vi)};
	const char *vol = volume_arg ? volume_arg : "0";
	if (r == 0 && vol[strspn(vol, "0123456789")] != 0) {
		what = "cannot serve";
		r = snap_store_image_find_volume(h->img, vol, &h->volume);
	} else if (r == 0) {
		unsigned n;
		if (nbdkit_parse_unsigned("volume", vol, &n) < 0)
			goto fail;
		h->volume = n;
	}
	if (r == 0 && (r = snap_store_image_volume(h->img, h->volume, &vi)) < 0) {
		nbdkit_error("cannot serve %s: the image has no volume %s", image, vol);
		goto fail;
	}
	if (r == 0)
		r = snap_store_reader_new(h->img, h->volume, &h->rd);
	if (r < 0) {
		const char *detail = h->img ? snap_store_image_error(h->img) : "";
		if (strstr(detail, image)) /* the image's error names it already */
			nbdkit_error("%s", detail);
		else
			nbdkit_error("%s %s: %s", what, image, *detail ? detail : snap_strerror(r));
		goto fail;
	}
	h->size = vi.size;
	h->ext = calloc(vi.extents ? vi.extents : 1, sizeof(*h->ext));
	if (!h->ext) {
		nbdkit_error("cannot serve %s: out of memory", image);
		goto fail;
	}
	for (h->next = 0; h->next < vi.extents; h->next++) {
		h->ext[h->next].struct_size = sizeof(*h->ext);
		if (snap_store_image_extent(h->img, h->volume, h->next, &h->ext[h->next]) < 0) {
			nbdkit_error("cannot serve %s: extent %zu of volume %zu unreadable", image,
				     h->next, h->volume);
			goto fail;
		}
	}
	return h;
fail:
	close_handle(h);
	return NULL;
}

/* Invariants 1 and 3: fail before serving, serve from a fresh open. */
static int sb_get_ready(void)
{
	struct handle *h = open_handle();
	if (!h)
		return -1;
	nbdkit_debug("%s: volume %zu, %llu bytes, %zu extents", image, h->volume,
		     (unsigned long long)h->size, h->next);
	close_handle(h);
	return 0;
}

static void *sb_open(int readonly)
{
	(void)readonly; /* served read-only either way: can_write is false */
	return open_handle();
}

static void sb_close(void *handle)
{
	close_handle(handle);
}

static int64_t sb_get_size(void *handle)
{
	return (int64_t)((struct handle *)handle)->size;
}

static int sb_can_write(void *handle)
{
	(void)handle;
	return 0;
}

static int sb_can_multi_conn(void *handle)
{
	(void)handle;
	return 1;
}

static int sb_can_extents(void *handle)
{
	(void)handle;
	return 1;
}

static int sb_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct handle *h = handle;
	(void)flags;
	int r = snap_store_reader_pread(h->rd, buf, count, offset);
	if (r < 0) {
		nbdkit_error("%s", snap_store_image_error(h->img));
		/* NBD knows few errors: a frame that fails its checks is an I/O error there */
		nbdkit_set_error(r == -ENOMEM ? ENOMEM : r == -EINVAL ? EINVAL : EIO);
		return -1;
	}
	return 0;
}

/* Invariant 4. The map is in offset order: the first extent ending after offset by binary
 * search, then each one until the request is covered (or one with REQ_ONE). */
static int sb_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
		      struct nbdkit_extents *extents)
{
	struct handle *h = handle;
	size_t lo = 0, hi = h->next;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (h->ext[mid].offset + h->ext[mid].length <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	uint64_t pos = offset, end = offset + count;
	for (size_t i = lo; pos < end && i < h->next; i++) {
		const struct snap_extent *e = &h->ext[i];
		if (e->offset > pos) { /* outside the map: data, as far as a client knows */
			if (nbdkit_add_extent(extents, pos, e->offset - pos, 0) < 0)
				return -1;
			if (flags & NBDKIT_FLAG_REQ_ONE)
				return 0;
		}
		uint32_t type =
		    e->kind == SNAP_EXTENT_DATA ? 0 : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
		if (nbdkit_add_extent(extents, e->offset, e->length, type) < 0)
			return -1;
		pos = e->offset + e->length;
		if (flags & NBDKIT_FLAG_REQ_ONE)
			return 0;
	}
	if (pos < end && nbdkit_add_extent(extents, pos, end - pos, 0) < 0)
		return -1;
	return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "snapbundle",
    .longname = "snapbundle .bin store image (read-only)",
    .version = SNAP_VERSION_STRING,
    .description = "serves one volume of a snapbundle .bin store image, every frame checked",
    .load = sb_load,
    .unload = sb_unload,
    .config = sb_config,
    .config_complete = sb_config_complete,
    .config_help = "image=FILE.bin|s3://BUCKET/KEY  (required) the store image\n"
		   "volume=N|NAME                    the volume to serve: its number (default 0)\n"
		   "                                 or device (/dev/sdb or sdb)\n"
		   "passphrase-file=FILE             an encrypted image's passphrase\n"
		   "key=KEY.pem                      ... or a recipient's private key\n"
		   "signer=CERT.pem                  serve only if signed by this key\n"
		   "endpoint=URL region=R profile=P  S3 settings (else the AWS chain)",
    .magic_config_key = "image",
    .get_ready = sb_get_ready,
    .open = sb_open,
    .close = sb_close,
    .get_size = sb_get_size,
    .can_write = sb_can_write,
    .can_multi_conn = sb_can_multi_conn,
    .can_extents = sb_can_extents,
    .pread = sb_pread,
    .extents = sb_extents,
    .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
