/* test_runtime_files.c: the runtime's file formats: safetensors (round trip and a corpus
 * of malformed headers), IDX (plain and gzip, malformed), PNG (decoded here with zlib:
 * signature, chunk CRCs, IHDR, pixels). */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rt.h"
#include "testutil.h"

/* Number of leftover temp files ("*.tmp.*") in dir. */
static int temp_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d)) != NULL;) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

/* ---- safetensors ---------------------------------------------------------------------- */
START_TEST(st_round_trip) {
  char *dir = tu_tmpdir(), path[600], err[512];
  snprintf(path, sizeof path, "%s/x.safetensors", dir);
  float a[6] = {1, 2, 3, 4, 5, 6};
  double b[1] = {-0.25};
  int32_t c[3] = {7, -8, 9};
  GrStTensor t[3] = {{"net.w \"q\"", GR_F32, 2, {2, 3}, a}, {"s", GR_F64, 0, {0}, b}, {"ema/i", GR_I32, 1, {3}, c}};
  GrStMeta meta[2] = {{"step", "12"}, {"note", "a \"quoted\"\nline"}};
  ck_assert_msg(gr_st_write(path, t, 3, meta, 2, err, sizeof err) == 0, "%s", err);
  GrStFile f;
  ck_assert_msg(gr_st_read(path, &f, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(f.nt, 3);
  const GrStTensor *w = gr_st_find(&f, "net.w \"q\"");
  ck_assert_ptr_nonnull(w);
  ck_assert_int_eq(w->rank, 2);
  ck_assert_int_eq(w->dims[1], 3);
  ck_assert(memcmp(w->data, a, sizeof a) == 0);
  const GrStTensor *s = gr_st_find(&f, "s");
  ck_assert_int_eq(s->rank, 0);
  ck_assert(memcmp(s->data, b, 8) == 0);
  ck_assert(memcmp(gr_st_find(&f, "ema/i")->data, c, sizeof c) == 0);
  ck_assert_str_eq(gr_st_meta(&f, "step"), "12");
  ck_assert_str_eq(gr_st_meta(&f, "note"), "a \"quoted\"\nline");
  /* the layout safetensors readers expect: u64 header length, multiple of 8, '{' first */
  uint64_t hl = 0;
  for (int i = 0; i < 8; i++) hl |= (uint64_t)f.buf[i] << (8 * i);
  ck_assert_int_eq(hl % 8, 0);
  ck_assert_int_eq(f.buf[8], '{');
  ck_assert_int_eq(f.len, 8 + hl + sizeof a + sizeof b + sizeof c);
  gr_st_free(&f);
  /* overwriting works, and no temp files are left behind */
  snprintf(path, sizeof path, "%s/x.safetensors", dir);
  ck_assert_msg(gr_st_write(path, t, 2, meta, 1, err, sizeof err) == 0, "%s", err);
  ck_assert_msg(gr_st_read(path, &f, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(f.nt, 2);
  gr_st_free(&f);
  ck_assert_int_eq(temp_files(dir), 0);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* A file image: header JSON as given, then ndata bytes. */
static unsigned char *make_st(const char *json, size_t ndata, size_t *len) {
  size_t hl = strlen(json);
  *len = 8 + hl + ndata;
  unsigned char *b = calloc(1, *len);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, json, hl);
  return b;
}

static const struct {
  const char *json;
  size_t ndata;
  const char *want; /* substring of the error */
} bad_st[] = {
    {"[]", 0, "not a JSON object"},
    {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "unsupported dtype"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "beyond the end"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "byte count"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "begin > end"},
    {"{\"__metadata__\":{\"step\":12}}", 0, "must be strings"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} xx", 4, "trailing"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflow"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,4]}}", 4, "overflow"},
    {"{\"a", 0, "unterminated"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "rank"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown key"},
};

START_TEST(st_malformed_headers) {
  char err[512];
  for (size_t k = 0; k < sizeof bad_st / sizeof *bad_st; k++) {
    size_t len;
    unsigned char *b = make_st(bad_st[k].json, bad_st[k].ndata, &len);
    GrStFile f;
    err[0] = 0;
    ck_assert_msg(gr_st_parse(b, len, "bad.safetensors", &f, err, sizeof err) != 0, "case %zu accepted", k);
    ck_assert_msg(strstr(err, bad_st[k].want) && strstr(err, "bad.safetensors"), "case %zu: %s", k, err);
    free(b);
  }
}
END_TEST

START_TEST(st_bad_lengths) {
  char err[512];
  GrStFile f;
  unsigned char tiny[5] = {1, 2, 3, 4, 5};
  ck_assert(gr_st_parse(tiny, 5, "t", &f, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "truncated"), "%s", err);
  size_t len;
  unsigned char *b = make_st("{}", 0, &len);
  b[0] = 200; /* header length beyond the file */
  ck_assert(gr_st_parse(b, len, "t", &f, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "exceeds the file size"), "%s", err);
  b[7] = 0xff; /* absurd header length (overflow bait) */
  ck_assert(gr_st_parse(b, len, "t", &f, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "implausible"), "%s", err);
  free(b);
  ck_assert(gr_st_read("/nonexistent/x.safetensors", &f, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "/nonexistent/x.safetensors"), "%s", err);
  /* truncations of a valid file at every length are refused, never crash */
  char *dir = tu_tmpdir(), path[600];
  snprintf(path, sizeof path, "%s/v.safetensors", dir);
  float a[4] = {1, 2, 3, 4};
  GrStTensor t = {"w", GR_F32, 1, {4}, a};
  GrStMeta m = {"k", "v"};
  ck_assert(gr_st_write(path, &t, 1, &m, 1, err, sizeof err) == 0);
  FILE *fp = fopen(path, "rb");
  unsigned char buf[512];
  size_t n = fread(buf, 1, sizeof buf, fp);
  fclose(fp);
  for (size_t cut = 0; cut < n; cut++) ck_assert_msg(gr_st_parse(buf, cut, "v", &f, err, sizeof err) != 0, "cut %zu", cut);
  ck_assert(gr_st_parse(buf, n, "v", &f, err, sizeof err) == 0);
  gr_st_free(&f);
  /* unwritable: error, and the existing file is untouched */
  ck_assert(gr_st_write("/nonexistent/dir/x.safetensors", &t, 1, &m, 1, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "cannot write checkpoint /nonexistent/dir/x.safetensors"), "%s", err);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- IDX ------------------------------------------------------------------------------- */
static void write_idx(const char *path, int gz, const unsigned char *hdr, size_t nh,
                      const unsigned char *data, size_t nd) {
  if (gz) {
    gzFile z = gzopen(path, "wb");
    gzwrite(z, hdr, (unsigned)nh);
    if (nd) gzwrite(z, data, (unsigned)nd);
    gzclose(z);
  } else {
    FILE *f = fopen(path, "wb");
    fwrite(hdr, 1, nh, f);
    fwrite(data, 1, nd, f);
    fclose(f);
  }
}

START_TEST(idx_plain_and_gz) {
  char *dir = tu_tmpdir(), path[600], lpath[600], err[512];
  unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3};
  unsigned char px[30], lh[8] = {0, 0, 8, 1, 0, 0, 0, 5}, lab[5] = {3, 1, 4, 1, 5};
  for (int i = 0; i < 30; i++) px[i] = (unsigned char)(i * 8);
  px[0] = 0, px[29] = 255;
  for (int gz = 0; gz < 2; gz++) {
    snprintf(path, sizeof path, "%s/set%d-images-idx3-ubyte%s", dir, gz, gz ? ".gz" : "");
    snprintf(lpath, sizeof lpath, "%s/set%d-labels-idx1-ubyte%s", dir, gz, gz ? ".gz" : "");
    write_idx(path, gz, hdr, 16, px, 30);
    write_idx(lpath, gz, lh, 8, lab, 5);
    int rank;
    int64_t dims[4];
    uint8_t *bytes;
    ck_assert_msg(gr_idx_read(path, &rank, dims, &bytes, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(rank, 3);
    ck_assert(dims[0] == 5 && dims[1] == 2 && dims[2] == 3);
    ck_assert(memcmp(bytes, px, 30) == 0);
    free(bytes);
    /* as a data source: rows of 6 pixels in [-1, 1], labels from the sibling file */
    GrData d;
    ck_assert_msg(gr_data_open(&d, path, 1, 0, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.row_elems, 6);
    ck_assert_int_eq(d.nrows, 5);
    ck_assert(d.has_labels);
    float x[30];
    int32_t l[5];
    ck_assert(gr_data_rows(&d, 0, 5, x, l, err, sizeof err) == 0);
    int seen[5] = {0};
    for (int r = 0; r < 5; r++) {
      int src = -1;
      for (int q = 0; q < 5; q++)
        if (fabsf(x[r * 6 + 1] - ((float)px[q * 6 + 1] / 127.5f - 1)) < 1e-6f) src = q;
      ck_assert(src >= 0);
      seen[src]++;
      ck_assert_int_eq(l[r], lab[src]);
      for (int k = 0; k < 6; k++) ck_assert(x[r * 6 + k] >= -1 && x[r * 6 + k] <= 1);
      if (src == 0) ck_assert(x[r * 6] == -1.0f);
      if (src == 4) ck_assert(x[r * 6 + 5] == 1.0f);
    }
    for (int q = 0; q < 5; q++) ck_assert_int_eq(seen[q], 1); /* an epoch is a permutation */
    gr_data_close(&d);
  }
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(idx_malformed) {
  char *dir = tu_tmpdir(), path[600], err[512];
  unsigned char good[16] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3}, px[64] = {0};
  struct {
    unsigned char hdr[16];
    size_t nh, nd;
    const char *want;
  } cases[] = {
      {{1, 2, 8, 3}, 16, 30, "bad magic"},
      {{0, 0, 0x0d, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3}, 16, 60, "not unsigned byte"},
      {{0, 0, 8, 3, 0, 0, 0, 5}, 8, 0, "truncated IDX header"},
      {{0}, 16, 29, "truncated"},                      /* one byte short */
      {{0}, 16, 40, "longer than its IDX header"},     /* lying header */
      {{0, 0, 8, 3, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 9}, 16, 30, "implausible"},
  };
  memcpy(cases[3].hdr, good, 16);
  memcpy(cases[4].hdr, good, 16);
  for (int gz = 0; gz < 2; gz++)
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
      snprintf(path, sizeof path, "%s/bad%zu-idx3%s", dir, k, gz ? ".gz" : "");
      write_idx(path, gz, cases[k].hdr, cases[k].nh, px, cases[k].nd);
      int rank;
      int64_t dims[4];
      uint8_t *bytes = NULL;
      ck_assert_msg(gr_idx_read(path, &rank, dims, &bytes, err, sizeof err) != 0, "case %zu gz %d accepted", k, gz);
      ck_assert_msg(strstr(err, cases[k].want) && strstr(err, path), "case %zu gz %d: %s", k, gz, err);
      ck_assert_ptr_null(bytes);
    }
  /* corrupt gzip stream */
  snprintf(path, sizeof path, "%s/corrupt-idx3.gz", dir);
  write_idx(path, 1, good, 16, px, 30);
  FILE *f = fopen(path, "r+b");
  fseek(f, 14, SEEK_SET);
  fputc(0xff, f), fputc(0x00, f), fputc(0x13, f);
  fclose(f);
  GrData d;
  ck_assert(gr_data_open(&d, path, 0, 0, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, path), "%s", err);
  ck_assert(gr_data_open(&d, "/nonexistent/x-idx3-ubyte", 0, 0, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "cannot open data file /nonexistent/x-idx3-ubyte"), "%s", err);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- PNG ------------------------------------------------------------------------------- */
static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes a PNG written by gr_png_write (one IDAT, filter 0): checks every CRC. Returns
 * the raw pixels (w*h*ch) or NULL. */
static unsigned char *png_decode(const char *path, int *w, int *h, int *ch) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (n < 8 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8) != 0) return NULL;
  size_t p = 8;
  unsigned char *out = NULL, *idat = NULL;
  size_t nidat = 0;
  int saw_end = 0;
  while (p + 12 <= n) {
    uint32_t len = be32(buf + p);
    if (p + 12 + len > n) return NULL;
    uLong crc = crc32(0, buf + p + 4, 4 + len);
    if (crc != be32(buf + p + 8 + len)) return NULL;
    const unsigned char *d = buf + p + 8;
    if (memcmp(buf + p + 4, "IHDR", 4) == 0) {
      if (len != 13 || d[8] != 8) return NULL;
      *w = (int)be32(d), *h = (int)be32(d + 4), *ch = d[9] == 2 ? 3 : 1;
    } else if (memcmp(buf + p + 4, "IDAT", 4) == 0) {
      idat = realloc(idat, nidat + len);
      memcpy(idat + nidat, d, len);
      nidat += len;
    } else if (memcmp(buf + p + 4, "IEND", 4) == 0) saw_end = 1;
    p += 12 + len;
  }
  if (!saw_end || !idat) return NULL;
  uLongf rawlen = (uLongf)((size_t)*w * *ch + 1) * (uLongf)*h;
  unsigned char *raw = malloc(rawlen);
  if (uncompress(raw, &rawlen, idat, nidat) == Z_OK && rawlen == (uLongf)((size_t)*w * *ch + 1) * (uLongf)*h) {
    out = malloc((size_t)*w * *h * *ch);
    for (int y = 0; y < *h; y++) {
      if (raw[(size_t)y * ((size_t)*w * *ch + 1)] != 0) break;
      memcpy(out + (size_t)y * *w * *ch, raw + (size_t)y * ((size_t)*w * *ch + 1) + 1, (size_t)*w * *ch);
    }
  }
  free(raw), free(idat);
  return out;
}

START_TEST(png_round_trip) {
  char *dir = tu_tmpdir(), path[600], err[512];
  snprintf(path, sizeof path, "%s/a.png", dir);
  uint8_t pix[3 * 2 * 3];
  for (int i = 0; i < 18; i++) pix[i] = (uint8_t)(i * 13);
  ck_assert_msg(gr_png_write(path, pix, 3, 2, 3, err, sizeof err) == 0, "%s", err);
  int w, h, ch;
  unsigned char *d = png_decode(path, &w, &h, &ch);
  ck_assert_ptr_nonnull(d);
  ck_assert(w == 3 && h == 2 && ch == 3);
  ck_assert(memcmp(d, pix, 18) == 0);
  free(d);
  /* scatter: 512x512 RGB with dark plotted points and axes */
  float xy[400];
  for (int i = 0; i < 200; i++) xy[2 * i] = (float)(i % 20) * 0.1f - 1, xy[2 * i + 1] = (float)(i / 20) * 0.2f;
  snprintf(path, sizeof path, "%s/s.png", dir);
  ck_assert_msg(gr_png_scatter(path, xy, 200, err, sizeof err) == 0, "%s", err);
  d = png_decode(path, &w, &h, &ch);
  ck_assert_ptr_nonnull(d);
  ck_assert(w == 512 && h == 512 && ch == 3);
  int blue = 0, black = 0;
  for (int i = 0; i < w * h; i++) {
    if (d[3 * i + 2] > d[3 * i] + 40) blue++;
    if (d[3 * i] == 0 && d[3 * i + 1] == 0 && d[3 * i + 2] == 0) black++;
  }
  ck_assert_msg(blue > 200 && black > 1000, "blue %d black %d", blue, black);
  free(d);
  /* grid of 5 gray 4x4 images: 3 columns, 2 rows */
  float imgs[80];
  for (int i = 0; i < 80; i++) imgs[i] = i < 16 ? -1.0f : 1.0f;
  snprintf(path, sizeof path, "%s/g.png", dir);
  ck_assert(gr_png_grid(path, imgs, 5, 4, 4, err, sizeof err) == 0);
  d = png_decode(path, &w, &h, &ch);
  ck_assert_ptr_nonnull(d);
  ck_assert(w == 3 * 10 + 2 && h == 2 * 10 + 2 && ch == 1); /* 4x4 drawn at 2x + 2 gap */
  ck_assert_int_eq(d[2 * w + 2], 0);     /* first image, black */
  ck_assert_int_eq(d[9 * w + 9], 0);
  ck_assert_int_eq(d[2 * w + 12], 255);  /* second image, white */
  ck_assert_int_eq(d[2 * w + 10], 128);  /* gap */
  free(d);
  ck_assert_int_eq(temp_files(dir), 0);
  ck_assert(gr_png_write("/nonexistent/a.png", pix, 3, 2, 3, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "/nonexistent/a.png"), "%s", err);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runtime_files");
  TCase *tc = tcase_create("files");
  tcase_add_test(tc, st_round_trip);
  tcase_add_test(tc, st_malformed_headers);
  tcase_add_test(tc, st_bad_lengths);
  tcase_add_test(tc, idx_plain_and_gz);
  tcase_add_test(tc, idx_malformed);
  tcase_add_test(tc, png_round_trip);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
