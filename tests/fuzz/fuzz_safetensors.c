/* fuzz_safetensors.c: libFuzzer target for the checkpoint (safetensors) reader.
 *
 * gr_st_parse checks every length and offset against the buffer (runtime/ckpt.h). On
 * success the target walks every tensor and metadata entry and reads the first and last
 * byte of each tensor's data, so a tensor whose offsets escape the buffer is an ASan
 * report, not a silent bad read; it also looks up a name and a metadata key the way
 * --resume does. On failure the message must name the file.
 */
#include "ckpt.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t dtype_size(int32_t dt) {
  switch (dt) {
  case GR_F64: case GR_I64: return 8;
  default: return 4;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512] = "";
  GrStFile f;
  if (gr_st_parse(data, size, "fuzz.safetensors", &f, err, sizeof err)) {
    fz_check_msg(err, "fuzz.safetensors");
    return 0;
  }
  volatile unsigned sum = 0;
  for (int i = 0; i < f.nt; i++) {
    const GrStTensor *t = &f.t[i];
    size_t n = dtype_size(t->dtype);
    if (t->rank < 0 || t->rank > GR_MAXRANK) abort();
    for (int k = 0; k < t->rank; k++) {
      if (t->dims[k] < 0) abort();
      n *= (size_t)t->dims[k];
    }
    sum += (unsigned)strlen(t->name);
    if (n) {
      const unsigned char *b = t->data;
      if (b < f.buf || b + n > f.buf + f.len) abort();
      sum += b[0] + b[n - 1];
    }
    if (gr_st_find(&f, t->name) == NULL) abort();
  }
  for (int i = 0; i < f.nmeta; i++) sum += (unsigned)(strlen(f.meta[i].key) + strlen(f.meta[i].val));
  (void)gr_st_find(&f, "net.w");
  (void)gr_st_meta(&f, "step");
  gr_st_free(&f);
  return 0;
}
