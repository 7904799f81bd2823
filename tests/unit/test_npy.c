/* test_npy.c: .npy round trips and a corpus of malformed files built in the test.
 *
 * The reader must reject every lying or broken header with a message naming the file and
 * the problem, and must never read past the buffer (the ASan build checks that). */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gradrt.h"
#include "philox.h"
#include "testutil.h"

/* A .npy image: magic, version major.0, the header text as given (no padding added), then
 * `ndata` bytes of data (0x11 filler). */
static unsigned char *make_npy(int major, const char *header, size_t ndata, size_t *len) {
  size_t hl = strlen(header), pre = major == 1 ? 10 : 12;
  *len = pre + hl + ndata;
  unsigned char *b = malloc(*len);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)major;
  b[7] = 0;
  for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(hl >> (8 * i));
  memcpy(b + pre, header, hl);
  memset(b + pre + hl, 0x11, ndata);
  return b;
}

/* ---- round trips ---------------------------------------------------------------------- */
static const Shape rt_shapes[] = {{0, {0}}, {1, {7}}, {2, {3, 5}}, {3, {2, 1, 4}},
                                  {6, {1, 2, 1, 3, 1, 2}}, {2, {0, 3}}};

START_TEST(round_trip) {
  char *dir = tu_tmpdir();
  ck_assert_ptr_nonnull(dir);
  char path[512], err[512];
  snprintf(path, sizeof path, "%s/t.npy", dir);
  for (int dt = 0; dt < DT_COUNT; dt++)
    for (size_t k = 0; k < sizeof rt_shapes / sizeof rt_shapes[0]; k++) {
      GrTensor t = tu_tensor((DType)dt, rt_shapes[k]), r;
      tu_fill_uniform(&t, -1000, 1000, 17 + k);
      ck_assert_msg(gr_npy_write(path, &t, err, sizeof err) == 0, "%s", err);
      ck_assert_msg(gr_npy_read(path, &r, err, sizeof err) == 0, "%s", err);
      ck_assert_int_eq(r.dtype, dt);
      ck_assert(tu_shape_is(&r, rt_shapes[k]));
      size_t bytes = (size_t)tu_numel(&t) * gr_dtype_size(dt);
      ck_assert(memcmp(r.data, t.data, bytes) == 0);
      /* version 1.0, data 64-byte aligned, header ends in a newline */
      FILE *f = fopen(path, "rb");
      unsigned char hdr[10];
      ck_assert(fread(hdr, 1, 10, f) == 10);
      fclose(f);
      size_t hlen = (size_t)hdr[8] | (size_t)hdr[9] << 8;
      ck_assert_int_eq(hdr[6], 1);
      ck_assert_int_eq((10 + hlen) % 64, 0);
      gr_tensor_free(&t);
      gr_tensor_free(&r);
    }
  /* the atomic writer leaves no temporary file behind */
  DIR *d = opendir(dir);
  int files = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') files++;
  closedir(d);
  ck_assert_int_eq(files, 1);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Headers exactly as NumPy writes them, in versions 1.0, 2.0 and 3.0. */
START_TEST(numpy_headers) {
  static const struct { int major; const char *h; int dt; Shape s; } cases[] = {
      {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }          \n", GR_F64, {2, {2, 3}}},
      {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }\n", GR_F32, {1, {5}}},
      {3, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n", GR_I64, {0, {0}}},
      {1, "{\"shape\": (2L, 2L), \"descr\": \"<i4\", \"fortran_order\": False}\n", GR_I32, {2, {2, 2}}},
      {1, "{'descr':'<f4','fortran_order':False,'shape':(1,2,3,)}", GR_F32, {3, {1, 2, 3}}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    size_t nd = (size_t)shape_numel(&cases[k].s) * gr_dtype_size(cases[k].dt), len;
    unsigned char *b = make_npy(cases[k].major, cases[k].h, nd, &len);
    GrTensor r;
    char err[512];
    ck_assert_msg(gr_npy_read_mem(b, len, "mem.npy", &r, err, sizeof err) == 0, "case %zu: %s", k, err);
    ck_assert_int_eq(r.dtype, cases[k].dt);
    ck_assert(tu_shape_is(&r, cases[k].s));
    ck_assert(nd == 0 || ((unsigned char *)r.data)[nd - 1] == 0x11);
    gr_tensor_free(&r);
    free(b);
  }
}
END_TEST

/* ---- malformed files ---------------------------------------------------------------------- */
typedef struct {
  const char *what;
  int major;
  const char *header; /* NULL: raw bytes below */
  long ndata;         /* bytes of data after the header */
  const char *raw;    /* raw file contents when header is NULL */
  size_t rawlen;
  const char *expect; /* substring of the error */
} Bad;

static const Bad bads[] = {
    {"bad magic", 1, NULL, 0, "\x93NUMPX\x01\x00\x10\x00{}", 12, "bad magic"},
    {"tiny file", 1, NULL, 0, "\x93NU", 3, "bad magic"},
    {"empty file", 1, NULL, 0, "", 0, "bad magic"},
    {"version 4.0", 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4, NULL, 0, "version 4.0"},
    {"version 1.1", 1, NULL, 0, "\x93NUMPY\x01\x01\x00\x00", 10, "version 1.1"},
    {"truncated v2 preamble", 1, NULL, 0, "\x93NUMPY\x02\x00\x05", 9, "truncated"},
    {"header beyond file", 1, NULL, 0, "\x93NUMPY\x01\x00\xff\x7f{'descr'", 17, "beyond the end"},
    {"data too short", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 95, NULL, 0, "shorter"},
    {"data too long", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 9, NULL, 0, "unexpected bytes"},
    {"negative dim", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 0, NULL, 0, "negative"},
    {"numel overflow", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0,
     NULL, 0, "too large"},
    {"huge dim", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0, NULL, 0,
     "too large"},
    {"rank 7", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1), }", 4, NULL, 0, "rank"},
    {"garbage dict", 1, "hello world", 0, NULL, 0, "malformed"},
    {"fortran order", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, NULL, 0, "fortran"},
    {"uint8", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 4, NULL, 0, "'|u1'"},
    {"big endian", 1, "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", 8, NULL, 0, "big-endian"},
    {"missing key", 1, "{'descr': '<f4', 'shape': (1,), }", 4, NULL, 0, "missing key 'fortran_order'"},
    {"unknown key", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4, NULL, 0, "'x'"},
    {"repeated key", 1, "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", 4, NULL, 0,
     "repeated"},
    {"unterminated string", 1, "{'descr': '<f4", 0, NULL, 0, "unterminated"},
    {"unclosed shape", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2", 8, NULL, 0, "malformed"},
    {"shape not a tuple", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': 12}", 0, NULL, 0, "malformed"},
    {"float dim", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}", 0, NULL, 0, "malformed"},
    {"bool not bool", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", 4, NULL, 0, "True or False"},
    {"text after dict", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", 4, NULL, 0, "after the dict"},
    {"NUL in header", 1, NULL, 0, "\x93NUMPY\x01\x00\x04\x00{\x00}\n", 14, "NUL"},
    {"huge v2 header", 2, NULL, 0, "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14, "implausibly large"},
};

static void check_bad(const Bad *b, const char *name, int from_file, const char *dir) {
  unsigned char *buf;
  size_t len;
  if (b->header) {
    buf = make_npy(b->major, b->header, (size_t)b->ndata, &len);
  } else {
    len = b->rawlen;
    buf = malloc(len ? len : 1);
    memcpy(buf, b->raw, len);
  }
  GrTensor r;
  char err[512] = "", path[512];
  int rc;
  if (from_file) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert(tu_write_file(path, buf, len) == 0);
    rc = gr_npy_read(path, &r, err, sizeof err);
  } else {
    /* an exact-size heap copy, so ASan catches any read past the end */
    rc = gr_npy_read_mem(buf, len, name, &r, err, sizeof err);
    snprintf(path, sizeof path, "%s", name);
  }
  ck_assert_msg(rc == -1, "%s: accepted", b->what);
  ck_assert_ptr_null(r.data);
  ck_assert_msg(strstr(err, b->expect), "%s: error '%s' lacks '%s'", b->what, err, b->expect);
  ck_assert_msg(strstr(err, path), "%s: error '%s' does not name the file", b->what, err);
  free(buf);
}

START_TEST(malformed_mem) { check_bad(&bads[_i], "bad_in_memory.npy", 0, NULL); }
END_TEST

START_TEST(malformed_file) {
  char *dir = tu_tmpdir();
  check_bad(&bads[_i], "bad.npy", 1, dir);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Every truncation of a valid file is rejected, and random byte corruptions of its header
 * either parse to a self-consistent tensor or fail with a message; never a crash or an
 * out-of-bounds read (run under ASan). */
START_TEST(truncations_and_mutations) {
  size_t len;
  unsigned char *good = make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }\n", 24, &len);
  char err[512];
  GrTensor r;
  for (size_t cut = 0; cut < len; cut++) {
    unsigned char *b = malloc(cut ? cut : 1);
    memcpy(b, good, cut);
    ck_assert_msg(gr_npy_read_mem(b, cut, "cut.npy", &r, err, sizeof err) == -1, "truncated at %zu accepted", cut);
    ck_assert(strstr(err, "cut.npy") && !r.data);
    free(b);
  }
  int accepted = 0;
  for (uint64_t k = 0; k < 3000; k++) {
    unsigned char *b = malloc(len);
    memcpy(b, good, len);
    int nflip = 1 + (int)(gr_uniform_f64(9, 0, 1, k) * 3);
    for (int j = 0; j < nflip; j++) {
      size_t pos = (size_t)(gr_uniform_f64(9, 0, 2, k * 8 + (uint64_t)j) * (double)(len - 24));
      b[pos] = (unsigned char)(gr_uniform_f64(9, 0, 3, k * 8 + (uint64_t)j) * 256);
    }
    if (gr_npy_read_mem(b, len, "mut.npy", &r, err, sizeof err) == 0) {
      int64_t n = 1;
      for (int d = 0; d < r.rank; d++) n *= r.dims[d];
      ck_assert((size_t)n * gr_dtype_size(r.dtype) == 24);
      gr_tensor_free(&r);
      accepted++;
    } else {
      ck_assert(strstr(err, "mut.npy") && !r.data);
    }
    free(b);
  }
  ck_assert(accepted > 0); /* some mutations (padding, equivalent text) are harmless */
  free(good);
}
END_TEST

START_TEST(io_errors) {
  GrTensor r, t = tu_tensor(DT_F32, TU_SHAPE(2));
  char err[512];
  ck_assert_int_eq(gr_npy_read("/nonexistent/x.npy", &r, err, sizeof err), -1);
  ck_assert(strstr(err, "/nonexistent/x.npy") && strstr(err, "cannot open"));
  ck_assert_int_eq(gr_npy_read("/tmp", &r, err, sizeof err), -1); /* a folder */
  ck_assert(strstr(err, "not a regular file"));
  char *dir = tu_tmpdir(), fifo[512];
  snprintf(fifo, sizeof fifo, "%s/pipe.npy", dir);
  ck_assert(mkfifo(fifo, 0600) == 0);
  ck_assert_int_eq(gr_npy_read(fifo, &r, err, sizeof err), -1); /* must not block */
  ck_assert(strstr(err, "not a regular file"));
  tu_rmtree(dir);
  free(dir);
  ck_assert_int_eq(gr_npy_write("/nonexistent/dir/x.npy", &t, err, sizeof err), -1);
  ck_assert(strstr(err, "/nonexistent/dir/x.npy"));
  GrTensor bad = t;
  bad.dtype = 9;
  ck_assert_int_eq(gr_npy_write("/tmp/never-written.npy", &bad, err, sizeof err), -1);
  bad = t;
  bad.dims[0] = -1;
  ck_assert_int_eq(gr_npy_write("/tmp/never-written.npy", &bad, err, sizeof err), -1);
  ck_assert(strstr(err, "negative"));
  gr_tensor_free(&t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("npy");
  TCase *tc = tcase_create("core");
  int nb = (int)(sizeof bads / sizeof bads[0]);
  tcase_add_test(tc, round_trip);
  tcase_add_test(tc, numpy_headers);
  tcase_add_loop_test(tc, malformed_mem, 0, nb);
  tcase_add_loop_test(tc, malformed_file, 0, nb);
  tcase_add_test(tc, truncations_and_mutations);
  tcase_add_test(tc, io_errors);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
