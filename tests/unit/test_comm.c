/* test_comm.c: the single-process build of the communication layer (runtime/comm.c).
 *
 * The MPI build is exercised end to end by tests/scripts/mpi.sh; here the default
 * libgradrt.a: a job of one rank where every collective is the identity, and the guard
 * that stops a single-process executable started by mpirun as one of several ranks
 * (every copy would train the whole batch and write the same checkpoint).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

START_TEST(single_process_is_rank_0_of_1) {
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("PMI_SIZE");
  unsetenv("PMIX_SIZE");
  unsetenv("MPI_LOCALNRANKS");
  GrComm c;
  char err[256] = "";
  ck_assert_int_eq(gr_comm_init(&c, 1, NULL, NULL, err, sizeof err), 0);
  ck_assert_int_eq(c.rank, 0);
  ck_assert_int_eq(c.size, 1);
  float g0[3] = {1, 2, 3}, g1[2] = {-1, 0.5f}, loss = 0.25f, fused[7];
  float *g[2] = {g0, g1};
  int64_t n[2] = {3, 2};
  int stop = 0;
  ck_assert_int_eq(gr_comm_average(&c, fused, &loss, g, n, 2, &stop), 0);
  ck_assert(loss == 0.25f && g0[2] == 3 && g1[1] == 0.5f && stop == 0);
  stop = 1;
  gr_comm_average(&c, fused, &loss, g, n, 2, &stop);
  ck_assert_int_eq(stop, 1);
  ck_assert_int_eq(gr_comm_all_ok(&c, 1), 1);
  ck_assert_int_eq(gr_comm_all_ok(&c, 0), 0);
  ck_assert_int_eq(gr_comm_same_u64(&c, 42), 1);
  ck_assert_int_eq(gr_comm_root_i32(&c, 7), 7);
  ck_assert_int_eq(gr_comm_abort(&c, 3), 3);
  ck_assert(strstr(gr_comm_engine(), "single process"));
  gr_comm_finalize(&c);
}
END_TEST

START_TEST(refuses_to_be_one_of_several_ranks) {
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  setenv("OMPI_COMM_WORLD_RANK", "1", 1);
  GrComm c;
  char err[256] = "";
  ck_assert_int_eq(gr_comm_init(&c, 1, NULL, NULL, err, sizeof err), -1);
  ck_assert_msg(strstr(err, "built without MPI but is started as one of 2 ranks; rebuild it with gradc build --mpi"), "%s", err);
  ck_assert_int_eq(c.rank, 1); /* so that only rank 0 prints it */
  ck_assert_int_eq(gr_comm_init(&c, 0, NULL, NULL, err, sizeof err), -1);
  ck_assert_msg(strstr(err, "only `train` runs distributed"), "%s", err);
  setenv("OMPI_COMM_WORLD_SIZE", "1", 1); /* mpirun -np 1: fine */
  ck_assert_int_eq(gr_comm_init(&c, 1, NULL, NULL, err, sizeof err), 0);
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("OMPI_COMM_WORLD_RANK");
}
END_TEST

START_TEST(checksum_sees_one_bit) {
  float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
  float *arrs[2] = {a, b};
  int64_t n[2] = {4, 2};
  uint64_t h = gr_comm_checksum(arrs, n, 2, 0);
  ck_assert(h == gr_comm_checksum(arrs, n, 2, 0));
  unsigned char *p = (unsigned char *)&b[1];
  p[0] ^= 1;
  ck_assert(h != gr_comm_checksum(arrs, n, 2, 0));
  p[0] ^= 1;
  ck_assert(h != gr_comm_checksum(arrs, n, 2, 1)); /* the chaining value matters */
}
END_TEST

int main(void) {
  Suite *s = suite_create("comm");
  TCase *tc = tcase_create("single");
  tcase_add_test(tc, single_process_is_rank_0_of_1);
  tcase_add_test(tc, refuses_to_be_one_of_several_ranks);
  tcase_add_test(tc, checksum_sees_one_bit);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf != 0;
}
