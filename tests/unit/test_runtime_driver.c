/* test_runtime_driver.c: gr_main end to end, in-process, on the hand-written fake module
 * (tests/unit/helpers/fake_module.c): train, resume, checkpoint refusal, failure paths,
 * data/info/sample/eval/gradcheck, and thread-count determinism. Every run writes into a
 * fresh temp folder. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_module.h"
#include "gradrt.h"
#include "rt.h"
#include "testutil.h"

static char *dir;

static void setup(void) { dir = tu_tmpdir(); }
static void teardown(void) {
  tu_rmtree(dir);
  free(dir);
}

/* Runs gr_main on a module variant with a NULL-terminated list of arguments; "@x" is
 * replaced by the path dir/x. stdout is silenced with --quiet where it matters. */
static int run(FakeVariant v, ...) {
  GrModuleInfo m;
  GrEntryInfo en[8];
  fake_module_make(&m, en, v);
  va_list ap;
  va_start(ap, v);
  int rc = tu_gr_main(&m, "fakeprog", dir, ap);
  va_end(ap);
  return rc;
}

static char *slurp(const char *name, size_t *len) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  *len = fread(b, 1, (size_t)n, f);
  b[*len] = 0;
  fclose(f);
  return b;
}

static int same_file(const char *a, const char *b) {
  size_t la, lb;
  char *x = slurp(a, &la), *y = slurp(b, &lb);
  int same = x && y && la == lb && memcmp(x, y, la) == 0;
  free(x), free(y);
  return same;
}

static int exists(const char *name) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

/* Redirects stderr to dir/stderr.txt for the rest of the (forked) test. */
static void capture_stderr(void) {
  char path[600];
  snprintf(path, sizeof path, "%s/stderr.txt", dir);
  ck_assert_ptr_nonnull(freopen(path, "w", stderr));
}

static char *captured(void) {
  fflush(stderr);
  size_t n;
  return slurp("stderr.txt", &n);
}

START_TEST(train_decreases_loss) {
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "60", "--every", "10", "--ckpt", "@a.safetensors",
                       "--log", "@log.csv", "--quiet", NULL), 0);
  size_t n;
  char *log = slurp("log.csv", &n);
  ck_assert_ptr_nonnull(log);
  ck_assert(strncmp(log, "step,loss,lr,grad_norm,steps_per_s\n", 35) == 0);
  double first = -1, last = -1;
  int rows = 0;
  for (char *line = strchr(log, '\n') + 1; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    long long step;
    double loss;
    ck_assert_int_eq(sscanf(line, "%lld,%lf", &step, &loss), 2);
    if (rows == 0) first = loss;
    last = loss;
    rows++;
  }
  ck_assert_int_eq(rows, 6);
  ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
  free(log);
  /* the checkpoint is readable as safetensors with the documented names and metadata */
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/a.safetensors", dir);
  GrStFile f;
  ck_assert_msg(gr_st_read(path, &f, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(gr_st_meta(&f, "step"), "60");
  ck_assert_str_eq(gr_st_meta(&f, "graph_hash"), "0123456789abcdef");
  ck_assert_str_eq(gr_st_meta(&f, "optimizer"), "adam");
  ck_assert_ptr_nonnull(gr_st_find(&f, "net.w"));
  ck_assert_ptr_nonnull(gr_st_find(&f, "ema/net.b"));
  ck_assert_ptr_nonnull(gr_st_find(&f, "adam_m/net.w"));
  ck_assert_ptr_nonnull(gr_st_find(&f, "adam_v/net.b"));
  gr_st_free(&f);
}
END_TEST

START_TEST(resume_is_bit_identical) {
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "40", "--ckpt", "@full.safetensors", "--quiet", NULL), 0);
  /* N + N with --steps N then --steps 2N --resume (constant lr) */
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "20", "--ckpt", "@half.safetensors", "--quiet", NULL), 0);
  ck_assert(!same_file("full.safetensors", "half.safetensors"));
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "40", "--resume", "--ckpt", "@half.safetensors", "--quiet", NULL), 0);
  ck_assert(same_file("full.safetensors", "half.safetensors"));
}
END_TEST

START_TEST(resume_until_cosine) {
  /* with a schedule that depends on the total, --until stops early on the same schedule */
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "30", "--warmup", "5", "--schedule", "cosine", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "30", "--warmup", "5", "--schedule", "cosine", "--until", "13", "--ckpt", "@b.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "30", "--warmup", "5", "--schedule", "cosine", "--resume", "--ckpt", "@b.safetensors", "--quiet", NULL), 0);
  ck_assert(same_file("a.safetensors", "b.safetensors"));
}
END_TEST

START_TEST(threads_do_not_change_results) {
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "25", "--threads", "1", "--ckpt", "@t1.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "25", "--threads", "4", "--ckpt", "@t4.safetensors", "--quiet", NULL), 0);
  ck_assert(same_file("t1.safetensors", "t4.safetensors"));
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "25", "--seed", "7", "--ckpt", "@s7.safetensors", "--quiet", NULL), 0);
  ck_assert(!same_file("t1.safetensors", "s7.safetensors"));
}
END_TEST

START_TEST(foreign_checkpoint_refused) {
  capture_stderr();
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "5", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_ne(run(FAKE_FOREIGN, "train", "--steps", "10", "--resume", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_ne(run(FAKE_FOREIGN, "sample", "--ckpt", "@a.safetensors", "-n", "4", "--out", "@s.npy", "--quiet", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "another graph"), "%s", e);
  free(e);
  ck_assert(!exists("s.npy"));
}
END_TEST

START_TEST(corrupt_checkpoint_refused) {
  capture_stderr();
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "5", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  size_t n;
  char *b = slurp("a.safetensors", &n);
  char path[600];
  snprintf(path, sizeof path, "%s/trunc.safetensors", dir);
  ck_assert_int_eq(tu_write_file(path, b, n - 9), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "sample", "--ckpt", "@trunc.safetensors", "-n", "4", "--out", "@s.npy", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "9", "--resume", "--ckpt", "@trunc.safetensors", NULL), 0);
  b[3] = 0x7f; /* header length huge */
  snprintf(path, sizeof path, "%s/lie.safetensors", dir);
  ck_assert_int_eq(tu_write_file(path, b, n), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "sample", "--ckpt", "@lie.safetensors", "-n", "4", "--out", "@s.npy", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "sample", "--ckpt", "@missing.safetensors", "-n", "4", "--out", "@s.npy", NULL), 0);
  free(b);
  char *e = captured();
  ck_assert_msg(strstr(e, "trunc.safetensors") && strstr(e, "lie.safetensors") && strstr(e, "missing.safetensors"), "%s", e);
  ck_assert_msg(strstr(e, "train first: fakeprog train --ckpt"), "%s", e);
  free(e);
}
END_TEST

START_TEST(unwritable_paths) {
  capture_stderr();
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "5", "--ckpt", "@nodir/a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "data", "-n", "10", "--out", "@nodir/d.npy", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "5", "--ckpt", "@", "--quiet", NULL), 0); /* a directory */
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "5", "--ckpt", "@a.safetensors", "--log", "@nodir/l.csv", "--quiet", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "nodir/a.safetensors") && strstr(e, "nodir/l.csv"), "%s", e);
  free(e);
  /* an existing checkpoint is not touched by a run that fails on its log */
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "5", "--ckpt", "@b.safetensors", "--quiet", NULL), 0);
  size_t n0, n1;
  char *before = slurp("b.safetensors", &n0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "9", "--ckpt", "@b.safetensors", "--log", "@nodir/l.csv", "--quiet", NULL), 0);
  char *after = slurp("b.safetensors", &n1);
  ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
  free(before), free(after);
}
END_TEST

START_TEST(nonfinite_loss_stops) {
  capture_stderr();
  ck_assert_int_ne(run(FAKE_NAN_AT_5, "train", "--steps", "20", "--ckpt-every", "2", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "non-finite loss") && strstr(e, "at step 5"), "%s", e);
  free(e);
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/a.safetensors", dir);
  GrStFile f;
  ck_assert_msg(gr_st_read(path, &f, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(gr_st_meta(&f, "step"), "4");
  gr_st_free(&f);
}
END_TEST

START_TEST(interrupt_checkpoints_and_resumes) {
  capture_stderr();
  ck_assert_int_eq(run(FAKE_SIGINT_AT_3, "train", "--steps", "20", "--ckpt", "@a.safetensors", "--quiet", NULL), 130);
  char *e = captured();
  ck_assert_msg(strstr(e, "interrupted at step 4"), "%s", e);
  free(e);
  /* resuming the interrupted run gives the uninterrupted result */
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "20", "--resume", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "20", "--ckpt", "@b.safetensors", "--quiet", NULL), 0);
  ck_assert(same_file("a.safetensors", "b.safetensors"));
}
END_TEST

START_TEST(optimizers_end_to_end) {
  const char *opts[4] = {"sgd", "adam", "adamw", "radam"};
  for (int k = 0; k < 4; k++) {
    char ck[64], log[64];
    snprintf(ck, sizeof ck, "@%s.safetensors", opts[k]);
    snprintf(log, sizeof log, "@%s.csv", opts[k]);
    ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "40", "--every", "40", "--optimizer", opts[k], "--lr", "0.05",
                         "--weight-decay", "0.001", "--clip", "1", "--schedule", "warmup_cosine", "--warmup", "5",
                         "--ckpt", ck, "--log", log, "--quiet", NULL), 0);
  }
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/sgd.safetensors", dir);
  GrStFile f;
  ck_assert_msg(gr_st_read(path, &f, err, sizeof err) == 0, "%s", err);
  ck_assert_ptr_nonnull(gr_st_find(&f, "momentum/net.w"));
  ck_assert_ptr_null(gr_st_find(&f, "adam_m/net.w"));
  ck_assert_str_eq(gr_st_meta(&f, "optimizer"), "sgd");
  gr_st_free(&f);
  ck_assert(!same_file("adam.safetensors", "adamw.safetensors"));
  /* resuming with another optimizer is refused: its state is missing */
  capture_stderr();
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "50", "--resume", "--optimizer", "adam", "--ckpt", "@sgd.safetensors", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--optimizer", "lion", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "trained with optimizer 'sgd'") && strstr(e, "unknown optimizer 'lion'"), "%s", e);
  free(e);
}
END_TEST

START_TEST(data_matches_training_stream) {
  ck_assert_int_eq(run(FAKE_PLAIN, "data", "-n", "100", "--out", "@d.npy", "--labels", "@l.npy", "--seed", "3", "--quiet", NULL), 0);
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/d.npy", dir);
  GrTensor t;
  ck_assert_msg(gr_npy_read(path, &t, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_int_eq(t.dims[0], 100);
  ck_assert_int_eq(t.dims[1], 2);
  GrData d;
  ck_assert_int_eq(gr_data_open(&d, "checkerboard", 3, 0, err, sizeof err), 0);
  float want[200];
  ck_assert_int_eq(gr_data_rows(&d, 0, 100, want, NULL, err, sizeof err), 0);
  ck_assert(memcmp(want, t.data, sizeof want) == 0);
  GrTensor l;
  snprintf(path, sizeof path, "%s/l.npy", dir);
  ck_assert_msg(gr_npy_read(path, &l, err, sizeof err) == 0, "%s", err);
  ck_assert(l.dtype == GR_I32 && l.rank == 1 && l.dims[0] == 100);
  int32_t wl[100];
  ck_assert_int_eq(gr_data_rows(&d, 0, 100, NULL, wl, err, sizeof err), 0);
  ck_assert(memcmp(wl, l.data, sizeof wl) == 0);
  gr_tensor_free(&l);
  gr_data_close(&d);
  gr_tensor_free(&t);
  ck_assert_int_eq(run(FAKE_PLAIN, "info", NULL), 0);
}
END_TEST

START_TEST(sample_and_eval) {
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "30", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "sample", "--ckpt", "@a.safetensors", "--steps", "2", "-n", "40",
                       "--out", "@s40.npy", "--png", "@s.png", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "sample", "--ckpt", "@a.safetensors", "--steps", "2", "-n", "7",
                       "--out", "@s7.npy", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "sample", "--ckpt", "@a.safetensors", "--steps", "3", "-n", "7", "--restart",
                       "--no-ema", "--out", "@r7.npy", "--quiet", NULL), 0);
  char path[600], err[512];
  GrTensor a, b;
  snprintf(path, sizeof path, "%s/s40.npy", dir);
  ck_assert_msg(gr_npy_read(path, &a, err, sizeof err) == 0, "%s", err);
  snprintf(path, sizeof path, "%s/s7.npy", dir);
  ck_assert_msg(gr_npy_read(path, &b, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(a.dims[0], 40);
  ck_assert_int_eq(b.dims[0], 7);
  /* samples do not depend on the chunking: the first 7 of 40 equal the 7 */
  ck_assert(memcmp(a.data, b.data, 7 * 2 * sizeof(float)) == 0);
  gr_tensor_free(&a), gr_tensor_free(&b);
  size_t n;
  char *png = slurp("s.png", &n);
  ck_assert(png && n > 100 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
  free(png);
  ck_assert(exists("r7.npy"));
  ck_assert_int_eq(run(FAKE_PLAIN, "eval", "--ckpt", "@a.safetensors", "--steps", "1,2", "-n", "64", "--json", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "eval", "--ckpt", "@a.safetensors", "-n", "32", "--png", "@ev.png", NULL), 0);
  ck_assert(exists("ev_1.png") && exists("ev_2.png") && exists("ev_4.png"));
  ck_assert_int_ne(run(FAKE_PLAIN, "eval", "--ckpt", "@a.safetensors", "--steps", "1,x", NULL), 0);
}
END_TEST

START_TEST(gradcheck_paths) {
  ck_assert_int_eq(run(FAKE_PLAIN, "gradcheck", NULL), 0);
  ck_assert_int_eq(run(FAKE_WITH_F64, "gradcheck", "-n", "8", NULL), 0);
  ck_assert_int_ne(run(FAKE_BAD_GRAD, "gradcheck", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--steps", "10", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "gradcheck", "--ckpt", "@a.safetensors", NULL), 0);
}
END_TEST

START_TEST(bad_flags) {
  capture_stderr();
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--batch", "32", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--steps", "abc", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--bogus", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "frobnicate", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--data", "nosuchset", "--ckpt", "@a.safetensors", NULL), 0);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--data", "@missing.npy", "--ckpt", "@a.safetensors", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "--help", NULL), 0);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--lr", "0.5", "--help", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "batch size is fixed at compile time (B=64): rebuild with gradc build -D B=..."), "%s", e);
  ck_assert_msg(strstr(e, "nosuchset") && strstr(e, "missing.npy"), "%s", e);
  free(e);
}
END_TEST

START_TEST(data_dimension_mismatch) {
  capture_stderr();
  /* a 3-column .npy file for a model with 2-D rows */
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/three.npy", dir);
  GrTensor t = {GR_F32, 2, {10, 3}, gr_alloc(120)};
  ck_assert_int_eq(gr_npy_write(path, &t, err, sizeof err), 0);
  gr_tensor_free(&t);
  ck_assert_int_ne(run(FAKE_PLAIN, "train", "--data", "@three.npy", "--steps", "2", "--ckpt", "@a.safetensors", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "rows of 3 values"), "%s", e);
  free(e);
  /* a matching 2-column file trains */
  GrTensor u = {GR_F32, 2, {50, 2}, gr_alloc(400)};
  for (int i = 0; i < 100; i++) ((float *)u.data)[i] = (float)(i % 7) * 0.1f;
  snprintf(path, sizeof path, "%s/two.npy", dir);
  ck_assert_int_eq(gr_npy_write(path, &u, err, sizeof err), 0);
  gr_tensor_free(&u);
  ck_assert_int_eq(run(FAKE_PLAIN, "train", "--data", "@two.npy", "--steps", "3", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
}
END_TEST

START_TEST(labels_and_jsonl_log) {
  ck_assert_int_eq(run(FAKE_LABELS, "train", "--steps", "12", "--every", "4", "--ckpt", "@a.safetensors",
                       "--log", "@log.jsonl", "--quiet", NULL), 0);
  size_t n;
  char *log = slurp("log.jsonl", &n);
  ck_assert_ptr_nonnull(log);
  int rows = 0;
  for (char *p = log; (p = strstr(p, "{\"step\":")) != NULL; p++) rows++;
  ck_assert_int_eq(rows, 3);
  ck_assert(strstr(log, "{\"step\":12,\"loss\":") && strstr(log, "\"grad_norm\":") && strstr(log, "\"steps_per_s\":"));
  free(log);
  /* a source without labels for a model that takes them */
  capture_stderr();
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/two.npy", dir);
  GrTensor u = {GR_F32, 2, {8, 2}, gr_alloc(64)};
  ck_assert_int_eq(gr_npy_write(path, &u, err, sizeof err), 0);
  gr_tensor_free(&u);
  ck_assert_int_ne(run(FAKE_LABELS, "train", "--data", "@two.npy", "--steps", "2", "--ckpt", "@b.safetensors", NULL), 0);
  char *e = captured();
  ck_assert_msg(strstr(e, "takes labels"), "%s", e);
  free(e);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runtime_driver");
  TCase *tc = tcase_create("gr_main");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, train_decreases_loss);
  tcase_add_test(tc, resume_is_bit_identical);
  tcase_add_test(tc, resume_until_cosine);
  tcase_add_test(tc, threads_do_not_change_results);
  tcase_add_test(tc, foreign_checkpoint_refused);
  tcase_add_test(tc, corrupt_checkpoint_refused);
  tcase_add_test(tc, unwritable_paths);
  tcase_add_test(tc, nonfinite_loss_stops);
  tcase_add_test(tc, interrupt_checkpoints_and_resumes);
  tcase_add_test(tc, optimizers_end_to_end);
  tcase_add_test(tc, data_matches_training_stream);
  tcase_add_test(tc, sample_and_eval);
  tcase_add_test(tc, gradcheck_paths);
  tcase_add_test(tc, bad_flags);
  tcase_add_test(tc, data_dimension_mismatch);
  tcase_add_test(tc, labels_and_jsonl_log);
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
