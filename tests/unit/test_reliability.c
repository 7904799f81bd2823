/* test_reliability.c: unit checks behind docs/reliability.md that are not file corpora.
 *
 * gr_st_remove_stale: training removes the temp files a killed checkpoint write left
 * (PATH.tmp. + exactly 6 mkstemp characters) and nothing else: not another checkpoint's
 * temp files, not a longer name, not a folder, not the checkpoint itself.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"
#include "testutil.h"

static void touch(const char *dir, const char *name) {
  char p[700];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs("partial", f);
  fclose(f);
}

static int exists(const char *dir, const char *name) {
  char p[700];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

START_TEST(remove_stale_only_own_temps) {
  char *dir = tu_tmpdir(), ck[600], sub[700];
  snprintf(ck, sizeof ck, "%s/c.safetensors", dir);
  touch(dir, "c.safetensors");
  touch(dir, "c.safetensors.tmp.Ab3dEf");
  touch(dir, "c.safetensors.tmp.zzzzzz");
  touch(dir, "c.safetensors.tmp.toolong7");
  touch(dir, "d.safetensors.tmp.Ab3dEf");
  touch(dir, "xc.safetensors.tmp.Ab3dEf");
  snprintf(sub, sizeof sub, "%s/c.safetensors.tmp.folder", dir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  ck_assert_int_eq(gr_st_remove_stale(ck), 2);
  ck_assert(!exists(dir, "c.safetensors.tmp.Ab3dEf"));
  ck_assert(!exists(dir, "c.safetensors.tmp.zzzzzz"));
  ck_assert(exists(dir, "c.safetensors"));
  ck_assert(exists(dir, "c.safetensors.tmp.toolong7"));
  ck_assert(exists(dir, "d.safetensors.tmp.Ab3dEf"));
  ck_assert(exists(dir, "xc.safetensors.tmp.Ab3dEf"));
  ck_assert(exists(dir, "c.safetensors.tmp.folder"));
  ck_assert_int_eq(gr_st_remove_stale(ck), 0);
  rmdir(sub);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(remove_stale_missing_folder) {
  ck_assert_int_eq(gr_st_remove_stale("/nonexistent-gradc-dir/c.safetensors"), 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("reliability");
  TCase *tc = tcase_create("stale temp files");
  tcase_add_test(tc, remove_stale_only_own_temps);
  tcase_add_test(tc, remove_stale_missing_folder);
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
