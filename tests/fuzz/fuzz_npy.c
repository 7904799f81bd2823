/* fuzz_npy.c: libFuzzer target for both .npy readers.
 *
 * gr_npy_read_mem (runtime/npy.c, used by gradc for tensors) reads an exact-size heap
 * copy, so ASan sees any read past the end. The training executable's data reader
 * (gr_data_open on a path ending in .npy, runtime/data.c) memory-maps the file; after a
 * successful open the target reads a few rows, wrapping around the shuffled epoch, which
 * touches the first and the last row of the payload. Every failure must come with a
 * message naming the file.
 */
#include "data.h"
#include "fuzz_util.h"
#include "gradrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512] = "";
  uint8_t *copy = malloc(size ? size : 1);
  if (size) memcpy(copy, data, size);
  GrTensor t;
  memset(&t, 0, sizeof t);
  if (gr_npy_read_mem(copy, size, "fuzz.npy", &t, err, sizeof err) == 0) gr_tensor_free(&t);
  else fz_check_msg(err, "fuzz.npy");
  free(copy);

  const char *path = fz_write(0, "input.npy", data, size);
  GrData d;
  memset(&d, 0, sizeof d);
  err[0] = 0;
  if (gr_data_open(&d, path, 1, 0, err, sizeof err) == 0) {
    if (d.row_elems > 0 && d.row_elems <= 4096 && d.nrows > 0) {
      int64_t n = d.nrows < 4 ? d.nrows : 4;
      float *x = malloc((size_t)(n * d.row_elems) * sizeof *x);
      int32_t lab[4];
      /* rows [nrows - n/2, nrows + n/2): the end of epoch 0 and the start of epoch 1 */
      if (gr_data_rows(&d, d.nrows - n / 2, n, x, lab, err, sizeof err))
        fz_check_msg(err, "");
      free(x);
    }
    gr_data_close(&d);
  } else {
    fz_check_msg(err, path);
    gr_data_close(&d);
  }
  return 0;
}
