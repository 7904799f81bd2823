/* metrics.c: how close are generated samples to held-out data?
 *
 * Three sample-based distances, all on flattened rows, accumulated in f64 in a fixed
 * order (so `prog eval` prints the same digits every run):
 *   energy distance  2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistics: exactly 0 for
 *                    identical sets, > 0 otherwise; Szekely & Rizzo)
 *   MMD^2, RBF       E k(X,X') + E k(Y,Y') - 2 E k(X,Y), k = exp(-|a-b|^2 / (2 h^2));
 *                    the driver picks h as multiples of the data's median distance
 *   sliced W2^2      mean over random unit directions of the 1-D squared Wasserstein-2
 *                    distance between the sorted projections (equal sample sizes); for
 *                    two Gaussians shifted by delta in d dimensions it is |delta|^2 / d.
 * and the Frechet distance between two Gaussians (for feature statistics):
 *   |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), via Jacobi eigensolves.
 * The pairwise sums are O(n m d); fine for the few thousand points eval uses.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static double row_dist2(const float *a, const float *b, int64_t d) {
  double s = 0;
  for (int64_t k = 0; k < d; k++) {
    double t = (double)a[k] - (double)b[k];
    s += t * t;
  }
  return s;
}

/* Means over all pairs (i, j) of |x_i - y_j| (out[0]) and of the RBF kernels
 * exp(-|x_i - y_j|^2 / (2 h_k^2)) (out[1 + k]). Rows of x are split over the pool; each
 * row's sums go to its own slot and are added up serially in row order, so the result
 * does not depend on the thread count. */
typedef struct {
  const float *x, *y;
  int64_t m, d;
  int nh;
  const double *inv; /* 1 / (2 h^2) per bandwidth */
  double *rows;      /* [n, 1 + nh] */
} PairEnv;

static void pair_rows(void *env, int64_t lo, int64_t hi) {
  PairEnv *e = env;
  for (int64_t i = lo; i < hi; i++) {
    double *r = e->rows + i * (1 + e->nh);
    for (int k = 0; k <= e->nh; k++) r[k] = 0;
    for (int64_t j = 0; j < e->m; j++) {
      double q = row_dist2(e->x + i * e->d, e->y + j * e->d, e->d);
      r[0] += sqrt(q);
      for (int k = 0; k < e->nh; k++) r[1 + k] += exp(-q * e->inv[k]);
    }
  }
}

static int pair_means(const float *x, int64_t n, const float *y, int64_t m, int64_t d,
                      const double *h, int nh, double *out, const GrRunCtx *rc) {
  double inv[16];
  if (nh > 16) return -1;
  for (int k = 0; k < nh; k++) inv[k] = 1.0 / (2 * h[k] * h[k]);
  PairEnv e = {x, y, m, d, nh, inv, malloc((size_t)n * (size_t)(1 + nh) * sizeof(double))};
  if (!e.rows) return -1;
  gr_parallel_for(rc, n, 16, pair_rows, &e);
  for (int k = 0; k <= nh; k++) out[k] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k <= nh; k++) out[k] += e.rows[i * (1 + nh) + k];
  for (int k = 0; k <= nh; k++) out[k] /= (double)n * (double)m;
  free(e.rows);
  return 0;
}

static double clamp0(double e) { return e < 0 && e > -1e-12 ? 0 : e; }

int gr_energy_mmd(const float *x, int64_t n, const float *y, int64_t m, int64_t d,
                  const double *h, int nh, double *energy, double *mmd, const GrRunCtx *rc) {
  double xy[17], xx[17], yy[17];
  if (pair_means(x, n, y, m, d, h, nh, xy, rc) || pair_means(x, n, x, n, d, h, nh, xx, rc) ||
      pair_means(y, m, y, m, d, h, nh, yy, rc))
    return -1;
  *energy = clamp0(2 * xy[0] - xx[0] - yy[0]);
  for (int k = 0; k < nh; k++) mmd[k] = clamp0(xx[1 + k] + yy[1 + k] - 2 * xy[1 + k]);
  return 0;
}

double gr_energy_distance(const float *x, int64_t n, const float *y, int64_t m, int64_t d) {
  double e, unused;
  return gr_energy_mmd(x, n, y, m, d, NULL, 0, &e, &unused, NULL) ? NAN : e;
}

double gr_mmd_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t d, double h) {
  double e, k;
  return gr_energy_mmd(x, n, y, m, d, &h, 1, &e, &k, NULL) ? NAN : k;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double gr_median_dist(const float *y, int64_t m, int64_t d) {
  /* at most 1000 rows: the median of ~500k distances is plenty */
  int64_t k = m < 1000 ? m : 1000;
  int64_t np = k * (k - 1) / 2;
  if (np <= 0) return 1;
  double *v = malloc((size_t)np * sizeof *v);
  if (!v) return 1;
  int64_t c = 0;
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = i + 1; j < k; j++) v[c++] = sqrt(row_dist2(y + i * d, y + j * d, d));
  qsort(v, (size_t)np, sizeof *v, cmp_double);
  double med = v[np / 2];
  free(v);
  return med > 0 ? med : 1;
}

double gr_sliced_w2(const float *x, const float *y, int64_t n, int64_t d, int ndir,
                    uint64_t seed) {
  double *dir = malloc((size_t)d * sizeof *dir), *px = malloc((size_t)n * sizeof *px),
         *py = malloc((size_t)n * sizeof *py);
  double total = 0;
  if (!dir || !px || !py) {
    free(dir), free(px), free(py);
    return NAN;
  }
  for (int k = 0; k < ndir; k++) {
    double nrm = 0;
    for (int64_t j = 0; j < d; j++) {
      dir[j] = gr_normal_f64(seed, (uint64_t)k, GR_STREAM_SW, (uint64_t)j);
      nrm += dir[j] * dir[j];
    }
    nrm = sqrt(nrm);
    for (int64_t j = 0; j < d; j++) dir[j] /= nrm;
    for (int64_t i = 0; i < n; i++) {
      double a = 0, b = 0;
      for (int64_t j = 0; j < d; j++) {
        a += dir[j] * x[i * d + j];
        b += dir[j] * y[i * d + j];
      }
      px[i] = a;
      py[i] = b;
    }
    qsort(px, (size_t)n, sizeof *px, cmp_double);
    qsort(py, (size_t)n, sizeof *py, cmp_double);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (px[i] - py[i]) * (px[i] - py[i]);
    total += s / (double)n;
  }
  free(dir), free(px), free(py);
  return total / ndir;
}

void gr_mean_cov(const float *x, int64_t n, int d, double *mu, double *cov) {
  memset(mu, 0, (size_t)d * sizeof *mu);
  memset(cov, 0, (size_t)d * (size_t)d * sizeof *cov);
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++) mu[j] += x[i * d + j];
  for (int j = 0; j < d; j++) mu[j] /= (double)n;
  for (int64_t i = 0; i < n; i++)
    for (int a = 0; a < d; a++)
      for (int b = a; b < d; b++)
        cov[a * d + b] += ((double)x[i * d + a] - mu[a]) * ((double)x[i * d + b] - mu[b]);
  for (int a = 0; a < d; a++)
    for (int b = a; b < d; b++) cov[b * d + a] = cov[a * d + b] /= (double)(n > 1 ? n - 1 : 1);
}

/* Symmetric eigen-decomposition by cyclic Jacobi: a [d, d] (destroyed) -> w [d], v [d, d]
 * (columns are eigenvectors). */
static void jacobi(double *a, int d, double *w, double *v) {
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) v[i * d + j] = i == j;
  for (int sweep = 0; sweep < 100; sweep++) {
    double off = 0;
    for (int i = 0; i < d; i++)
      for (int j = i + 1; j < d; j++) off += a[i * d + j] * a[i * d + j];
    if (off < 1e-30) break;
    for (int p = 0; p < d; p++)
      for (int q = p + 1; q < d; q++) {
        double apq = a[p * d + q];
        if (fabs(apq) < 1e-300) continue;
        double th = (a[q * d + q] - a[p * d + p]) / (2 * apq);
        double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
        double c = 1 / sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < d; k++) {
          double akp = a[k * d + p], akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (int k = 0; k < d; k++) {
          double apk = a[p * d + k], aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < d; k++) {
          double vkp = v[k * d + p], vkq = v[k * d + q];
          v[k * d + p] = c * vkp - s * vkq;
          v[k * d + q] = s * vkp + c * vkq;
        }
      }
  }
  for (int i = 0; i < d; i++) w[i] = a[i * d + i];
}

/* out = V f(W) V^T for symmetric c, f = sqrt of max(w, 0). */
static int sym_sqrt(const double *c, int d, double *out) {
  size_t dd = (size_t)d * (size_t)d;
  double *a = malloc(dd * sizeof *a), *v = malloc(dd * sizeof *v), *w = malloc((size_t)d * sizeof *w);
  if (!a || !v || !w) {
    free(a), free(v), free(w);
    return -1;
  }
  memcpy(a, c, dd * sizeof *a);
  jacobi(a, d, w, v);
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) {
      double s = 0;
      for (int k = 0; k < d; k++) s += v[i * d + k] * sqrt(w[k] > 0 ? w[k] : 0) * v[j * d + k];
      out[i * d + j] = s;
    }
  free(a), free(v), free(w);
  return 0;
}

double gr_frechet(const double *mu1, const double *c1, const double *mu2, const double *c2,
                  int d) {
  size_t dd = (size_t)d * (size_t)d;
  double *s1 = malloc(dd * sizeof *s1), *m = malloc(dd * sizeof *m), *t = malloc(dd * sizeof *t);
  double r = -1;
  if (!s1 || !m || !t || sym_sqrt(c1, d, s1)) goto out;
  /* m = s1 c2 s1 (symmetric) */
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) {
      double s = 0;
      for (int k = 0; k < d; k++) s += c2[i * d + k] * s1[k * d + j];
      t[i * d + j] = s;
    }
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) {
      double s = 0;
      for (int k = 0; k < d; k++) s += s1[i * d + k] * t[k * d + j];
      m[i * d + j] = s;
    }
  if (sym_sqrt(m, d, t)) goto out;
  r = 0;
  for (int i = 0; i < d; i++) {
    r += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    r += c1[i * d + i] + c2[i * d + i] - 2 * t[i * d + i];
  }
out:
  free(s1), free(m), free(t);
  return r;
}
