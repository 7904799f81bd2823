/* score.c: the examples' scoring and plotting helper (sample files in, numbers and one
 * PNG out).
 *
 * Why a separate tool and not `prog eval`: the experiments compare many models and step
 * counts against the same 20,000 fresh data points. `prog eval` re-samples its reference
 * and recomputes every O(n^2) term (plus four RBF kernels) for each row, which costs
 * about 20 CPU-seconds per row at n = 20,000 on this machine. Here the reference's own
 * term E|Y - Y'| is computed once per reference file and shared by every sample file, and
 * only the two metrics the tables report are computed. The formulas are the runtime's
 * (runtime/metrics.c, the same definitions `prog eval` prints):
 *   energy  2 E|X - Y| - E|X - X'| - E|Y - Y'|   (V-statistics, f64 sums in row order)
 *   sw2     gr_sliced_w2, 128 directions, seed 0 (mean squared 1-D W2 of projections)
 *   fd      Frechet distance of Gaussian fits (gr_mean_cov + gr_frechet)
 *
 *   score dist REF.npy X.npy...          energy, sw2 (and fd for rows <= 64 values)
 *   score fd REF.npy X.npy...            Frechet distance only (any row size: features)
 *   score panels [--range R] [--labels N,N..] OUT.png A.npy B.npy...
 *        one PNG: density-shaded scatter plots of 2-D sets on the shared square [-R, R]^2
 *        (default 1.5), left to right; a "/" among the files starts a new row. Each panel
 *        has a number under its box (--labels, e.g. the step counts; default the panel
 *        index); a README says what the rows and numbers mean.
 *   score acc LOGITS.npy LABELS.npy      argmax accuracy (checks the feature classifier)
 * Output: one line per sample file, `name energy sw2 fd` (or `name fd`), tab-separated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef struct {
  const char *path;
  float *x; /* [n, d] */
  int64_t n, d;
  GrTensor t;
} Set;

/* Reads an f32 .npy of rank >= 1 as rows [n, d] (d = product of the other dims). */
static int load_set(const char *path, Set *s) {
  char err[512];
  memset(s, 0, sizeof *s);
  s->path = path;
  if (gr_npy_read(path, &s->t, err, sizeof err)) {
    fprintf(stderr, "error: %s\n", err);
    return -1;
  }
  if (s->t.dtype != GR_F32 || s->t.rank < 1) {
    fprintf(stderr, "error: %s: expected an f32 array of rank >= 1\n", path);
    gr_tensor_free(&s->t);
    return -1;
  }
  s->n = s->t.dims[0];
  s->d = 1;
  for (int k = 1; k < s->t.rank; k++) s->d *= s->t.dims[k];
  s->x = s->t.data;
  return 0;
}

/* E|a_i - b_j| over all pairs, f64, fixed order. a [n, d], b [m, d]. */
static double mean_dist(const float *a, int64_t n, const float *b, int64_t m, int64_t d) {
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    double row = 0;
    for (int64_t j = 0; j < m; j++) {
      double q = 0;
      for (int64_t k = 0; k < d; k++) {
        double t = (double)a[i * d + k] - (double)b[j * d + k];
        q += t * t;
      }
      row += sqrt(q);
    }
    total += row;
  }
  return total / ((double)n * (double)m);
}

static double frechet_sets(const Set *x, const Set *y) {
  int d = (int)x->d;
  double *m1 = malloc((size_t)d * sizeof *m1), *m2 = malloc((size_t)d * sizeof *m2);
  double *c1 = malloc((size_t)d * d * sizeof *c1), *c2 = malloc((size_t)d * d * sizeof *c2);
  double r = NAN;
  if (m1 && m2 && c1 && c2) {
    gr_mean_cov(x->x, x->n, d, m1, c1);
    gr_mean_cov(y->x, y->n, d, m2, c2);
    r = gr_frechet(m1, c1, m2, c2, d);
  }
  free(m1), free(m2), free(c1), free(c2);
  return r;
}

static int check_match(const Set *ref, const Set *x, int same_n) {
  if (x->d != ref->d || (same_n && x->n != ref->n)) {
    fprintf(stderr, "error: %s has %lld rows of %lld values; the reference %s has %lld of %lld\n",
            x->path, (long long)x->n, (long long)x->d, ref->path, (long long)ref->n,
            (long long)ref->d);
    return -1;
  }
  return 0;
}

static int cmd_dist(int argc, char **argv, int fd_only) {
  Set ref;
  if (argc < 2) {
    fprintf(stderr, "usage: score %s REF.npy X.npy...\n", fd_only ? "fd" : "dist");
    return 2;
  }
  if (load_set(argv[0], &ref)) return 1;
  double yy = fd_only ? 0 : mean_dist(ref.x, ref.n, ref.x, ref.n, ref.d);
  int rc = 0;
  for (int a = 1; a < argc; a++) {
    Set x;
    if (load_set(argv[a], &x) || check_match(&ref, &x, !fd_only)) {
      rc = 1;
      continue;
    }
    double fd = fd_only || ref.d <= 64 ? frechet_sets(&x, &ref) : NAN;
    if (fd_only) {
      printf("%s\t%.6g\n", argv[a], fd);
    } else {
      double e = 2 * mean_dist(x.x, x.n, ref.x, ref.n, ref.d) -
                 mean_dist(x.x, x.n, x.x, x.n, x.d) - yy;
      double sw = gr_sliced_w2(x.x, ref.x, x.n, x.d, 128, 0);
      printf("%s\t%.6g\t%.6g\t%.6g\n", argv[a], e < 0 && e > -1e-12 ? 0 : e, sw, fd);
    }
    fflush(stdout);
    gr_tensor_free(&x.t);
  }
  gr_tensor_free(&ref.t);
  return rc;
}

/* ---- panels ----------------------------------------------------------------------------- */
enum { PW = 200, GAP = 8, LAB = 24 }; /* panel size, gap between panels, label strip */

/* 3x5 digits, one 3-bit row per entry (as runtime/png.c draws its tick labels). */
static const uint8_t digit[10][5] = {{7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7},
                                     {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7},
                                     {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7},
                                     {7, 5, 7, 1, 7}};

static void put(uint8_t *p, int W, int H, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  uint8_t *q = p + ((size_t)y * W + x) * 3;
  q[0] = r, q[1] = g, q[2] = b;
}

static void draw_number(uint8_t *p, int W, int H, int x, int y, int v) {
  char s[16];
  snprintf(s, sizeof s, "%d", v);
  x -= (int)strlen(s) * 6;
  for (const char *c = s; *c; c++, x += 12)
    for (int r = 0; r < 5; r++)
      for (int b = 0; b < 3; b++)
        if (digit[*c - '0'][r] >> (2 - b) & 1)
          for (int dy = 0; dy < 3; dy++)
            for (int dx = 0; dx < 3; dx++) put(p, W, H, x + 3 * b + dx, y + 3 * r + dy, 0, 0, 0);
}

/* Panel k: the points of s inside [lo, hi]^2, density-shaded, in a black box. */
static void draw_panel(uint8_t *p, int W, int H, int ox, int oy, const Set *s, double lo,
                       double hi) {
  float *dens = calloc((size_t)PW * PW, sizeof *dens);
  if (!dens) return;
  for (int64_t i = 0; i < s->n; i++) {
    double u = s->x[2 * i], v = s->x[2 * i + 1];
    if (!(u >= lo && u <= hi && v >= lo && v <= hi)) continue;
    int px = (int)((u - lo) / (hi - lo) * (PW - 1)), py = PW - 1 - (int)((v - lo) / (hi - lo) * (PW - 1));
    dens[py * PW + px] += 1;
  }
  for (int y = 0; y < PW; y++)
    for (int x = 0; x < PW; x++) {
      float k = dens[y * PW + x];
      if (k <= 0) continue;
      double a = 1 - pow(0.6, k);
      put(p, W, H, ox + x, oy + GAP + y, (uint8_t)(255 - a * 224), (uint8_t)(255 - a * 136),
          (uint8_t)(255 - a * 75));
    }
  for (int k = -1; k <= PW; k++) {
    put(p, W, H, ox + k, oy + GAP - 1, 0, 0, 0), put(p, W, H, ox + k, oy + GAP + PW, 0, 0, 0);
    put(p, W, H, ox - 1, oy + GAP + k, 0, 0, 0), put(p, W, H, ox + PW, oy + GAP + k, 0, 0, 0);
  }
  free(dens);
}

static int cmd_panels(int argc, char **argv) {
  double range = 1.5;
  const char *labels = NULL;
  int a = 0;
  for (; argc - a >= 2 && argv[a][0] == '-'; a += 2) {
    if (strcmp(argv[a], "--range") == 0) range = atof(argv[a + 1]);
    else if (strcmp(argv[a], "--labels") == 0) labels = argv[a + 1];
    else break;
  }
  if (argc - a < 2 || !(range > 0)) {
    fprintf(stderr, "usage: score panels [--range R] [--labels N,N,...] OUT.png A.npy B.npy...\n");
    return 2;
  }
  const char *out = argv[a++];
  /* layout: "/" among the files starts a new row */
  int rows = 1, cols = 0, c = 0;
  for (int k = a; k < argc; k++) {
    if (strcmp(argv[k], "/") == 0) rows++, c = 0;
    else if (++c > cols) cols = c;
  }
  int W = cols * (PW + GAP) + GAP, H = rows * (GAP + PW + LAB);
  uint8_t *p = malloc((size_t)W * H * 3);
  if (!p) return 1;
  memset(p, 255, (size_t)W * H * 3);
  int row = 0, col = 0, idx = 0;
  const char *q = labels;
  for (int k = a; k < argc; k++) {
    if (strcmp(argv[k], "/") == 0) {
      row++, col = 0;
      continue;
    }
    Set s;
    if (load_set(argv[k], &s)) return free(p), 1;
    if (s.d != 2) {
      fprintf(stderr, "error: %s: panels need 2-D points, rows have %lld values\n", s.path, (long long)s.d);
      gr_tensor_free(&s.t), free(p);
      return 1;
    }
    int ox = GAP + col * (PW + GAP), oy = row * (GAP + PW + LAB);
    draw_panel(p, W, H, ox, oy, &s, -range, range);
    int lab = idx; /* the next comma-separated number, else the panel index */
    if (q && *q) {
      lab = atoi(q);
      q = strchr(q, ',');
      q = q ? q + 1 : NULL;
    }
    draw_number(p, W, H, ox + PW / 2, oy + GAP + PW + 5, lab);
    gr_tensor_free(&s.t);
    col++, idx++;
  }
  char err[512];
  int rc = gr_png_write(out, p, W, H, 3, err, sizeof err);
  if (rc) fprintf(stderr, "error: %s\n", err);
  free(p);
  return rc ? 1 : 0;
}

/* Accuracy of logits [n, C] (f32) against labels [n] (i32): the argmax rule. */
static int cmd_acc(int argc, char **argv) {
  GrTensor z, y;
  char err[512];
  if (argc != 2) {
    fprintf(stderr, "usage: score acc LOGITS.npy LABELS.npy\n");
    return 2;
  }
  if (gr_npy_read(argv[0], &z, err, sizeof err)) return fprintf(stderr, "error: %s\n", err), 1;
  if (gr_npy_read(argv[1], &y, err, sizeof err)) {
    gr_tensor_free(&z);
    return fprintf(stderr, "error: %s\n", err), 1;
  }
  int rc = 0;
  if (z.dtype != GR_F32 || z.rank != 2 || y.dtype != GR_I32 || y.rank != 1 || y.dims[0] != z.dims[0]) {
    fprintf(stderr, "error: expected f32 logits [n, C] and i32 labels [n]\n");
    rc = 1;
  } else {
    const float *l = z.data;
    const int32_t *lab = y.data;
    int64_t n = z.dims[0], c = z.dims[1], right = 0;
    for (int64_t i = 0; i < n; i++) {
      int64_t best = 0;
      for (int64_t j = 1; j < c; j++)
        if (l[i * c + j] > l[i * c + best]) best = j;
      right += best == lab[i];
    }
    printf("accuracy\t%.4f\t(%lld of %lld)\n", (double)right / (double)n, (long long)right, (long long)n);
  }
  gr_tensor_free(&z), gr_tensor_free(&y);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "dist") == 0) return cmd_dist(argc - 2, argv + 2, 0);
  if (argc >= 2 && strcmp(argv[1], "fd") == 0) return cmd_dist(argc - 2, argv + 2, 1);
  if (argc >= 2 && strcmp(argv[1], "panels") == 0) return cmd_panels(argc - 2, argv + 2);
  if (argc >= 2 && strcmp(argv[1], "acc") == 0) return cmd_acc(argc - 2, argv + 2);
  fprintf(stderr, "usage: score dist|fd REF.npy X.npy...\n       score panels [--range R] "
                  "[--labels N,N..] OUT.png A.npy...\n       score acc LOGITS.npy LABELS.npy\n");
  return 2;
}
