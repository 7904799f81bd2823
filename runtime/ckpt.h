/* ckpt.h: safetensors files (safetensors.c): the checkpoint format.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON (padded with spaces to a
 * multiple of 8), then the raw tensor bytes. The JSON maps each tensor name to
 * {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets relative to the
 * end of the header) and "__metadata__" to an object of string values. The reader checks
 * every length and offset against the file size (no overflow, no overlap outside the
 * buffer, shape consistent with the byte count) and fails with a message naming the file.
 */
#ifndef GRADC_CKPT_H
#define GRADC_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "gradrt.h"

typedef struct {
  const char *name;
  int32_t dtype; /* GrDType */
  int32_t rank;
  int64_t dims[GR_MAXRANK];
  const void *data; /* into the file buffer when read */
} GrStTensor;

typedef struct {
  const char *key, *val;
} GrStMeta;

typedef struct {
  unsigned char *buf; /* the whole file */
  size_t len;
  GrStTensor *t;
  int nt;
  GrStMeta *meta;
  int nmeta;
  void *strings; /* owned copies of names, keys and values */
} GrStFile;

/* Writes atomically: temp file in the same folder, fsync, rename, fsync the folder. On
 * failure nothing at `path` changes. */
int gr_st_write(const char *path, const GrStTensor *t, int nt, const GrStMeta *meta,
                int nmeta, char *err, size_t nerr);
/* Removes PATH.tmp.XXXXXX files left by a killed gr_st_write; returns how many. */
int gr_st_remove_stale(const char *path);
int gr_st_read(const char *path, GrStFile *f, char *err, size_t nerr);
/* Parses a buffer (copied). `name` is used in messages. */
int gr_st_parse(const void *buf, size_t len, const char *name, GrStFile *f, char *err,
                size_t nerr);
const GrStTensor *gr_st_find(const GrStFile *f, const char *name);
const char *gr_st_meta(const GrStFile *f, const char *key);
void gr_st_free(GrStFile *f);

#endif
