/* comm.h: the communication layer of data-parallel training (docs/distributed.md).
 *
 * Everything the driver needs from a distributed engine, and nothing more: who am I
 * (rank), how many are we (size), sum a float buffer over all ranks (one fused
 * MPI_Allreduce per step), agree on a flag, compare a checksum, stop everyone. The
 * engine is MPI (Open MPI): runtime/comm.c compiled with -DGR_MPI goes into
 * build/libgradrt_mpi.a, which `gradc build --mpi` links. Compiled without GR_MPI (the
 * default libgradrt.a) it is the trivial single-process version, so MPI appears nowhere
 * else in the runtime and the default build needs no MPI installed.
 */
#ifndef GRADC_COMM_H
#define GRADC_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int rank, size;
  int mpi;         /* 1: MPI_Init was called here (finalize at the end) */
  double t_comm;   /* seconds spent in gr_comm_sum_f32's allreduce so far */
  int64_t n_comm;  /* calls of gr_comm_sum_f32 */
  int profile;     /* $GRADC_COMM_PROFILE=1: a barrier before each allreduce, timed apart,
                      so t_comm is the transfer alone and t_wait the load imbalance */
  double t_wait;   /* seconds in that barrier (waiting for the slowest rank) */
} GrComm;

/* With `distributed` (the train command), starts the engine (MPI_Init) when the runtime
 * is the MPI variant; otherwise the job is rank 0 of size 1. A process started by a
 * launcher (mpirun) as one of several ranks where that cannot work (the single-process
 * build, or a command other than train) returns -1 with a message in err (c->rank is
 * then the launcher's rank, so only rank 0 need print it): every process would do the
 * whole work and write the same files. Also -1 when MPI_Init fails. */
int gr_comm_init(GrComm *c, int distributed, int *argc, char ***argv, char *err, size_t nerr);
void gr_comm_finalize(GrComm *c);
/* buf[0..n) = the element-wise sum over all ranks (identical bits on every rank). */
int gr_comm_sum_f32(GrComm *c, float *buf, int64_t n);
/* 1 when every rank passes ok != 0 (a collective: every rank must call it). */
int gr_comm_all_ok(GrComm *c, int ok);
/* 1 when every rank passes the same value. */
int gr_comm_same_u64(GrComm *c, uint64_t v);
/* Rank 0's v on every rank (a collective). */
int gr_comm_root_i32(GrComm *c, int v);
/* Stops the whole job with exit status `code` (MPI_Abort); a no-op returning code in a
 * single process. */
int gr_comm_abort(GrComm *c, int code);
/* The step's one collective. fused[0..2+sum n) is scratch: [loss, stop, g_0..., g_{P-1}...]
 * is summed over the ranks in ONE gr_comm_sum_f32, then the loss and every gradient
 * become the mean over ranks (each rank's loss is the mean over its local batch, so this
 * is the mean over the global batch) and *stop is 1 when any rank asked to stop (Ctrl-C
 * reaches ranks at different moments; all must stop after the same step). A no-op on a
 * single process. */
int gr_comm_average(GrComm *c, float *fused, float *loss, float *const *g, const int64_t *n,
                    int np, int *stop);
/* FNV-1a 64 of `count` float arrays: a cheap fingerprint of the training state. */
uint64_t gr_comm_checksum(float *const *a, const int64_t *n, int count, uint64_t h);

/* "Open MPI 4.1.4" or "none (single process)". */
const char *gr_comm_engine(void);

#endif
