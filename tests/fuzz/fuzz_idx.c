/* fuzz_idx.c: libFuzzer target for the IDX (MNIST format) reader, plain or gzip.
 *
 * The input is written as X-images-idx3-ubyte; when its first byte is odd, the second
 * half is also written as X-labels-idx1-ubyte so gr_data_open pairs images with labels
 * (and checks the counts agree). gr_idx_read decides gzip by content (zlib's gzopen reads
 * plain files too), so gzipped seeds exercise inflate. After a successful open the
 * target reads rows at the end of an epoch. Every failure must name a file.
 */
#include "data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512] = "";
  size_t nimg = size, nlab = 0;
  int with_labels = size > 0 && (data[0] & 1);
  if (with_labels) nimg = size / 2, nlab = size - nimg;
  const char *img = fz_write(0, "X-images-idx3-ubyte", data, nimg);
  const char *lab = fz_write(1, "X-labels-idx1-ubyte", data + nimg, nlab);
  if (!with_labels) unlink(lab);

  int rank = 0;
  int64_t dims[4];
  uint8_t *bytes = NULL;
  if (gr_idx_read(img, &rank, dims, &bytes, err, sizeof err) == 0) free(bytes);
  else fz_check_msg(err, img);

  GrData d;
  memset(&d, 0, sizeof d);
  err[0] = 0;
  if (gr_data_open(&d, img, 7, 0, err, sizeof err) == 0) {
    if (d.row_elems > 0 && d.row_elems <= 1 << 16 && d.nrows > 0) {
      int64_t n = d.nrows < 4 ? d.nrows : 4;
      float *x = malloc((size_t)(n * d.row_elems) * sizeof *x);
      int32_t labs[4];
      if (gr_data_rows(&d, d.nrows - n / 2, n, x, labs, err, sizeof err)) fz_check_msg(err, "");
      free(x);
    }
  } else if (!err[0]) {
    fprintf(stderr, "fuzz: gr_data_open failed without a message\n");
    abort();
  }
  gr_data_close(&d);
  return 0;
}
