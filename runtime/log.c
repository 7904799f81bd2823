/* log.c: training logs and the progress bar.
 *
 * A run writes one row every --every steps to a CSV file (header
 * "step,loss,lr,grad_norm,steps_per_s") or, when the path ends in .jsonl, to JSON lines
 * ({"step":..,"loss":..,...}). Rows are flushed as written, so a crashed run keeps its
 * log. On a terminal (stderr is a tty) a progress bar is redrawn in place (step/total,
 * loss, rate, ETA); otherwise the same information is printed as plain lines on stdout
 * every --every steps, which is what CI logs and pipes want.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

double gr_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *gr_fmt_duration(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e8) {
    snprintf(buf, n, "--");
    return buf;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ldh%02ldm%02lds", t / 3600, t / 60 % 60, t % 60);
  else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
  else snprintf(buf, n, "%lds", t);
  return buf;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

int gr_log_open(GrLog *lg, const char *path, int append, int64_t step0, int64_t total,
                char *err, size_t nerr) {
  memset(lg, 0, sizeof *lg);
  lg->tty = isatty(2);
  lg->step0 = step0;
  lg->total = total;
  lg->t0 = gr_now();
  if (!path) return 0;
  lg->jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
  struct stat st;
  int exists = stat(path, &st) == 0 && st.st_size > 0;
  lg->f = fopen(path, append ? "a" : "w");
  if (!lg->f) {
    snprintf(err, nerr, "cannot write log %s: %s", path, strerror(errno));
    return -1;
  }
  if (!lg->jsonl && !(append && exists)) {
    fprintf(lg->f, "step,loss,lr,grad_norm,steps_per_s\n");
    fflush(lg->f);
  }
  return 0;
}

static void bar_draw(GrLog *lg, const GrLogRow *r) {
  int width = 24;
  double frac = lg->total > 0 ? (double)r->step / (double)lg->total : 1;
  if (frac > 1) frac = 1;
  int fill = (int)(frac * width);
  char bar[32], eta[32];
  for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[width] = 0;
  double left = r->steps_per_s > 0 ? (double)(lg->total - r->step) / r->steps_per_s : -1;
  fprintf(stderr, "\r%lld/%lld [%s] loss %.5g  %.1f it/s  ETA %s\033[K", (long long)r->step,
          (long long)lg->total, bar, r->loss, r->steps_per_s, gr_fmt_duration(left, eta, sizeof eta));
  fflush(stderr);
  lg->bar_drawn = 1;
}

void gr_log_progress(GrLog *lg, const GrLogRow *r) {
  if (!lg->tty || lg->quiet) return;
  double now = gr_now();
  if (now - lg->last_draw < 0.1) return;
  lg->last_draw = now;
  bar_draw(lg, r);
}

void gr_log_row(GrLog *lg, const GrLogRow *r) {
  if (lg->f) {
    if (lg->jsonl)
      fprintf(lg->f, "{\"step\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"steps_per_s\":%.6g}\n",
              (long long)r->step, r->loss, r->lr, r->grad_norm, r->steps_per_s);
    else
      fprintf(lg->f, "%lld,%.9g,%.9g,%.9g,%.6g\n", (long long)r->step, r->loss, r->lr,
              r->grad_norm, r->steps_per_s);
    fflush(lg->f);
  }
  if (lg->quiet) return;
  if (lg->tty) bar_draw(lg, r);
  else {
    char eta[32];
    double left = r->steps_per_s > 0 ? (double)(lg->total - r->step) / r->steps_per_s : -1;
    printf("step %lld/%lld  loss %.6g  lr %.4g  grad_norm %.4g  %.1f it/s  ETA %s\n",
           (long long)r->step, (long long)lg->total, r->loss, r->lr, r->grad_norm,
           r->steps_per_s, gr_fmt_duration(left, eta, sizeof eta));
    fflush(stdout);
  }
}

void gr_log_close(GrLog *lg) {
  if (lg->bar_drawn) fputc('\n', stderr);
  if (lg->f) fclose(lg->f);
  lg->f = NULL;
  lg->bar_drawn = 0;
}
