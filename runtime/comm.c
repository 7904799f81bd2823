/* comm.c: rank, size, fused gradient sums and job-wide stops (see comm.h).
 *
 * Two builds from this one file. Without GR_MPI (libgradrt.a) a job is one process and
 * every collective is the identity. With GR_MPI (libgradrt_mpi.a, what `gradc build
 * --mpi` links) the collectives are MPI calls on MPI_COMM_WORLD. Errors: the world
 * communicator keeps MPI's default MPI_ERRORS_ARE_FATAL handler, so a failed collective
 * (a peer that died, a broken link) ends the job with MPI's own message instead of
 * hanging; mpirun also ends the job when any rank exits early or is killed.
 *
 * Determinism: MPI_Allreduce with MPI_SUM on floats adds in an order the library picks
 * from the job size and the message size, fixed for a given library, so a run is
 * bit-identical to a rerun with the same number of ranks. The standard does not promise
 * that every rank gets the same bits (Open MPI's algorithms do give them), so the driver
 * checks at every checkpoint that the weights are identical on all ranks
 * (gr_comm_same_u64 of a checksum) and stops with a clear message if they are not.
 */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

/* Launchers export the job size to every process; a single-process build started as
 * one of several ranks must refuse rather than train N independent copies. */
static int launched_size(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v && atoi(v) > 1) return atoi(v);
  }
  return 1;
}

/* This process's rank as the launcher numbered it (0 when not launched as a job). */
static int launched_rank(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v) return atoi(v);
  }
  return 0;
}

int gr_comm_average(GrComm *c, float *fused, float *loss, float *const *g, const int64_t *n,
                    int np, int *stop) {
  if (c->size <= 1) return 0;
  int64_t k = 2;
  fused[0] = *loss;
  fused[1] = *stop ? 1.0f : 0.0f;
  for (int i = 0; i < np; k += n[i], i++) memcpy(fused + k, g[i], (size_t)n[i] * 4);
  if (gr_comm_sum_f32(c, fused, k)) return -1;
  float inv = (float)c->size;
  for (int64_t j = 0; j < k; j++) fused[j] /= inv;
  *loss = fused[0];
  *stop = fused[1] > 0;
  k = 2;
  for (int i = 0; i < np; k += n[i], i++) memcpy(g[i], fused + k, (size_t)n[i] * 4);
  return 0;
}

uint64_t gr_comm_checksum(float *const *a, const int64_t *n, int count, uint64_t h) {
  if (!h) h = 0xcbf29ce484222325ull;
  for (int i = 0; i < count; i++) {
    const unsigned char *p = (const unsigned char *)a[i];
    for (int64_t j = 0; j < n[i] * 4; j++) h = (h ^ p[j]) * 0x100000001b3ull;
  }
  return h;
}

#ifdef GR_MPI
#include <mpi.h>

int gr_comm_init(GrComm *c, int distributed, int *argc, char ***argv, char *err, size_t nerr) {
  memset(c, 0, sizeof *c);
  c->size = 1;
  if (!distributed) {
    int n = launched_size();
    if (n <= 1) return 0;
    c->rank = launched_rank();
    snprintf(err, nerr, "started as one of %d ranks, but only `train` runs distributed; run this command "
             "without mpirun", n);
    return -1;
  }
  int r = MPI_Init(argc, argv);
  if (r != MPI_SUCCESS) {
    snprintf(err, nerr, "MPI_Init failed (error %d): is this job started by mpirun?", r);
    return -1;
  }
  c->mpi = 1;
  const char *prof = getenv("GRADC_COMM_PROFILE");
  c->profile = prof && *prof && strcmp(prof, "0") != 0;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c->size);
  return 0;
}

void gr_comm_finalize(GrComm *c) {
  if (c->mpi) MPI_Finalize();
  c->mpi = 0;
}

int gr_comm_sum_f32(GrComm *c, float *buf, int64_t n) {
  if (c->size <= 1) return 0;
  double t0 = gr_now();
  if (c->profile) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t1 = gr_now();
    c->t_wait += t1 - t0;
    t0 = t1;
  }
  /* counts are int: split buffers beyond 2^30 floats (never the case for our models) */
  for (int64_t off = 0; off < n;) {
    int k = (int)(n - off > (1 << 30) ? (1 << 30) : n - off);
    MPI_Allreduce(MPI_IN_PLACE, buf + off, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    off += k;
  }
  c->t_comm += gr_now() - t0;
  c->n_comm++;
  return 0;
}

int gr_comm_all_ok(GrComm *c, int ok) {
  if (c->size <= 1) return ok != 0;
  int in = ok != 0, out = 0;
  MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return out;
}

int gr_comm_same_u64(GrComm *c, uint64_t v) {
  if (c->size <= 1) return 1;
  uint64_t lo = 0, hi = 0;
  MPI_Allreduce(&v, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&v, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

int gr_comm_root_i32(GrComm *c, int v) {
  if (c->size <= 1) return v;
  MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return v;
}

int gr_comm_abort(GrComm *c, int code) {
  if (c->mpi && c->size > 1) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  return code;
}

const char *gr_comm_engine(void) {
#ifdef OMPI_MAJOR_VERSION
#define GR_STR2(x) #x
#define GR_STR(x) GR_STR2(x)
  return "Open MPI " GR_STR(OMPI_MAJOR_VERSION) "." GR_STR(OMPI_MINOR_VERSION) "." GR_STR(OMPI_RELEASE_VERSION);
#else
  return "MPI";
#endif
}

#else /* single process */

int gr_comm_init(GrComm *c, int distributed, int *argc, char ***argv, char *err, size_t nerr) {
  (void)argc, (void)argv;
  memset(c, 0, sizeof *c);
  c->size = 1;
  int n = launched_size();
  if (n > 1) {
    c->rank = launched_rank();
    if (distributed)
      snprintf(err, nerr, "this program was built without MPI but is started as one of %d ranks; "
               "rebuild it with gradc build --mpi", n);
    else
      snprintf(err, nerr, "started as one of %d ranks, but only `train` runs distributed; run this "
               "command without mpirun", n);
    return -1;
  }
  return 0;
}

void gr_comm_finalize(GrComm *c) { (void)c; }
int gr_comm_sum_f32(GrComm *c, float *buf, int64_t n) { (void)c, (void)buf, (void)n; return 0; }
int gr_comm_all_ok(GrComm *c, int ok) { (void)c; return ok != 0; }
int gr_comm_same_u64(GrComm *c, uint64_t v) { (void)c, (void)v; return 1; }
int gr_comm_root_i32(GrComm *c, int v) { (void)c; return v; }
int gr_comm_abort(GrComm *c, int code) { (void)c; return code; }
const char *gr_comm_engine(void) { return "none (single process)"; }

#endif
