/* fuzz_util.h: shared helpers for the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Some readers only take a path (the front end's import resolution, the IDX reader, the
 * data-file .npy reader), so a target writes its input into a private temporary folder
 * made once per process (mkdtemp) and removes it at exit. Writing a few KiB into the page
 * cache costs microseconds, far below the readers' own cost under ASan.
 */
#ifndef GRADC_FUZZ_UTIL_H
#define GRADC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The per-process scratch folder (created on first use). */
static char fz_dir[64];

static inline void fz_cleanup(void) {
  if (!fz_dir[0]) return;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
  if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz_dir);
}

static inline const char *fz_scratch(void) {
  if (!fz_dir[0]) {
    snprintf(fz_dir, sizeof fz_dir, "/tmp/gradc-fuzz-XXXXXX");
    if (!mkdtemp(fz_dir)) {
      perror("fuzz: mkdtemp");
      abort();
    }
    atexit(fz_cleanup);
  }
  return fz_dir;
}

/* Writes data[0, n) to scratch/name; returns the full path (static buffer per slot). */
static inline const char *fz_write(int slot, const char *name, const uint8_t *data, size_t n) {
  static char paths[4][128];
  snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_scratch(), name);
  FILE *f = fopen(paths[slot], "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
    perror("fuzz: write");
    abort();
  }
  return paths[slot];
}

/* An error message must be non-empty and name the input: a specific, located message. */
static inline void fz_check_msg(const char *err, const char *name) {
  if (!err[0] || !strstr(err, name)) {
    fprintf(stderr, "fuzz: failure without a message naming '%s': \"%s\"\n", name, err);
    abort();
  }
}

#endif
