/* png.c: PNG files for samples, with no library beyond zlib.
 *
 * A PNG is the 8-byte signature and chunks (length, type, data, CRC-32 of type+data):
 * IHDR (size, 8-bit depth, gray or RGB), one IDAT holding the zlib-compressed scanlines
 * (each prefixed by filter byte 0), IEND. zlib's compress2 and crc32 do the work. Files
 * are written to a temp file and renamed, so a failed write leaves no partial image.
 *
 * Two pictures: a scatter plot of 2-D samples (512x512, shared x/y range with "nice" tick
 * steps of 1, 2 or 5 x 10^k, tick labels in a built-in 3x5 pixel font drawn at 2x, points
 * blended so dense regions darken), and a grid of gray images (MNIST-like samples) with
 * values in [-1, 1] mapped to 0..255.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt.h"

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static int write_chunk(FILE *f, const char *type, const unsigned char *data, uint32_t n) {
  unsigned char hdr[8], crcb[4];
  put_be32(hdr, n);
  memcpy(hdr + 4, type, 4);
  uLong crc = crc32(0L, (const Bytef *)type, 4);
  if (n) crc = crc32(crc, data, n);
  put_be32(crcb, (uint32_t)crc);
  return fwrite(hdr, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) &&
         fwrite(crcb, 1, 4, f) == 4;
}

int gr_png_write(const char *path, const uint8_t *pix, int w, int h, int channels,
                 char *err, size_t nerr) {
  size_t stride = (size_t)w * (size_t)channels;
  size_t rawlen = (stride + 1) * (size_t)h;
  unsigned char *raw = malloc(rawlen);
  uLongf zlen = compressBound((uLong)rawlen);
  unsigned char *z = malloc(zlen);
  if (!raw || !z) {
    free(raw), free(z);
    snprintf(err, nerr, "%s: out of memory", path);
    return -1;
  }
  for (int y = 0; y < h; y++) {
    raw[(size_t)y * (stride + 1)] = 0;
    memcpy(raw + (size_t)y * (stride + 1) + 1, pix + (size_t)y * stride, stride);
  }
  int zr = compress2(z, &zlen, raw, (uLong)rawlen, 6);
  free(raw);
  /* atomic: a temp file in the same folder, renamed over the target when complete */
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
  int fd = zr == Z_OK ? mkstemp(tmp) : -1;
  FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!f) {
    int e = errno;
    if (fd >= 0) close(fd), unlink(tmp);
    free(z);
    snprintf(err, nerr, "cannot write %s: %s", path, zr == Z_OK ? strerror(e) : "compression failed");
    return -1;
  }
  fchmod(fd, 0644);
  unsigned char ihdr[13];
  put_be32(ihdr, (uint32_t)w);
  put_be32(ihdr + 4, (uint32_t)h);
  ihdr[8] = 8;
  ihdr[9] = channels == 3 ? 2 : 0;
  ihdr[10] = ihdr[11] = ihdr[12] = 0;
  int ok = fwrite("\x89PNG\r\n\x1a\n", 1, 8, f) == 8 && write_chunk(f, "IHDR", ihdr, 13) &&
           write_chunk(f, "IDAT", z, (uint32_t)zlen) && write_chunk(f, "IEND", NULL, 0);
  ok = (fclose(f) == 0) && ok;
  int e = errno;
  free(z);
  if (!ok || rename(tmp, path) != 0) {
    if (ok) e = errno;
    unlink(tmp);
    snprintf(err, nerr, "cannot write %s: %s", path, strerror(e));
    return -1;
  }
  return 0;
}

/* ---- a tiny canvas ----------------------------------------------------------------------- */
typedef struct {
  int w, h;
  uint8_t *p; /* RGB */
} Canvas;

static void set_px(Canvas *c, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
  uint8_t *q = c->p + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
  q[0] = r, q[1] = g, q[2] = b;
}

/* 3x5 glyphs, one 3-bit row per entry, for "0123456789-." */
static const uint8_t font[12][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
    {0, 0, 7, 0, 0}, {0, 0, 0, 0, 2}};

static void draw_text(Canvas *c, int x, int y, const char *s) {
  for (; *s; s++, x += 8) {
    int g = *s >= '0' && *s <= '9' ? *s - '0' : *s == '-' ? 10 : *s == '.' ? 11 : -1;
    if (g < 0) continue;
    for (int r = 0; r < 5; r++)
      for (int b = 0; b < 3; b++)
        if (font[g][r] >> (2 - b) & 1)
          for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++) set_px(c, x + 2 * b + dx, y + 2 * r + dy, 0, 0, 0);
  }
}

static double nice_step(double range) {
  double raw = range / 5, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void fmt_tick(double v, double step, char *buf, size_t n) {
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (fabs(v) < step * 1e-6) v = 0;
  snprintf(buf, n, "%.*f", dec, v);
}

int gr_png_scatter(const char *path, const float *xy, int64_t n, char *err, size_t nerr) {
  enum { W = 512, H = 512, ML = 64, MR = 16, MT = 16, MB = 40 };
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < 2 * n; i++)
    if (isfinite(xy[i])) lo = fmin(lo, xy[i]), hi = fmax(hi, xy[i]);
  if (!(hi > lo)) lo = -1, hi = 1;
  double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  Canvas c = {W, H, malloc((size_t)W * H * 3)};
  float *dens = calloc((size_t)W * H, sizeof *dens);
  if (!c.p || !dens) {
    free(c.p), free(dens);
    snprintf(err, nerr, "%s: out of memory", path);
    return -1;
  }
  memset(c.p, 255, (size_t)W * H * 3);
  int pw = W - ML - MR, ph = H - MT - MB;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
    int px = ML + (int)((xy[2 * i] - lo) / (hi - lo) * (pw - 1));
    int py = MT + ph - 1 - (int)((xy[2 * i + 1] - lo) / (hi - lo) * (ph - 1));
    for (int dy = 0; dy < 2; dy++)
      for (int dx = 0; dx < 2; dx++)
        if (px + dx < W && py + dy < H) dens[(py + dy) * W + px + dx] += 1;
  }
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      float k = dens[y * W + x];
      if (k <= 0) continue;
      double a = 1 - pow(0.7, k);
      set_px(&c, x, y, (uint8_t)(255 - a * (255 - 31)), (uint8_t)(255 - a * (255 - 119)),
             (uint8_t)(255 - a * (255 - 180)));
    }
  /* axes box and ticks */
  for (int x = ML; x < ML + pw; x++) set_px(&c, x, MT + ph, 0, 0, 0), set_px(&c, x, MT - 1, 0, 0, 0);
  for (int y = MT; y <= MT + ph; y++) set_px(&c, ML - 1, y, 0, 0, 0), set_px(&c, ML + pw, y, 0, 0, 0);
  double step = nice_step(hi - lo);
  for (double v = ceil(lo / step) * step; v <= hi; v += step) {
    char lab[32];
    fmt_tick(v, step, lab, sizeof lab);
    int len = (int)strlen(lab);
    int px = ML + (int)((v - lo) / (hi - lo) * (pw - 1));
    int py = MT + ph - 1 - (int)((v - lo) / (hi - lo) * (ph - 1));
    for (int k = 0; k < 6; k++) set_px(&c, px, MT + ph + k, 0, 0, 0), set_px(&c, ML - 1 - k, py, 0, 0, 0);
    draw_text(&c, px - len * 4, MT + ph + 10, lab);
    draw_text(&c, ML - 10 - len * 8, py - 5, lab);
  }
  int r = gr_png_write(path, c.p, W, H, 3, err, nerr);
  free(c.p), free(dens);
  return r;
}

int gr_png_grid(const char *path, const float *imgs, int64_t n, int ih, int iw, char *err,
                size_t nerr) {
  if (n > 100) n = 100;
  if (n < 1) n = 1;
  int sc = iw < 64 && ih < 64 ? 2 : 1; /* small images (MNIST) drawn at 2x */
  int cols = (int)ceil(sqrt((double)n)), rows = (int)((n + cols - 1) / cols);
  int tw = iw * sc + 2, th = ih * sc + 2;
  int W = cols * tw + 2, H = rows * th + 2;
  uint8_t *p = malloc((size_t)W * (size_t)H);
  if (!p) {
    snprintf(err, nerr, "%s: out of memory", path);
    return -1;
  }
  memset(p, 128, (size_t)W * (size_t)H);
  for (int64_t k = 0; k < n; k++) {
    int ox = 2 + (int)(k % cols) * tw, oy = 2 + (int)(k / cols) * th;
    for (int y = 0; y < ih * sc; y++)
      for (int x = 0; x < iw * sc; x++) {
        double v = imgs[(k * ih + y / sc) * iw + x / sc];
        v = isfinite(v) ? (v + 1) * 127.5 : 0;
        p[(size_t)(oy + y) * (size_t)W + (size_t)(ox + x)] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
      }
  }
  int r = gr_png_write(path, p, W, H, 1, err, nerr);
  free(p);
  return r;
}
