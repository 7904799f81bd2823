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
  double t_comm;   /* seconds spent in gr_comm_sum_f32 so far */
  int64_t n_comm;  /* calls of gr_comm_sum_f32 */
} GrComm;

/* Starts the engine (MPI_Init) when the runtime is the MPI variant; rank 0 of size 1
 * otherwise. The single-process build refuses to run under mpirun with several ranks
 * (every process would train the whole batch and write the same files): returns -1 with
 * a message in err. The MPI build also returns -1 when MPI_Init fails. */
int gr_comm_init(GrComm *c, int *argc, char ***argv, char *err, size_t nerr);
void gr_comm_finalize(GrComm *c);
/* buf[0..n) = the element-wise sum over all ranks (identical bits on every rank). */
int gr_comm_sum_f32(GrComm *c, float *buf, int64_t n);
/* 1 when every rank passes ok != 0 (a collective: every rank must call it). */
int gr_comm_all_ok(GrComm *c, int ok);
/* 1 when every rank passes the same value. */
int gr_comm_same_u64(GrComm *c, uint64_t v);
/* Stops the whole job with exit status `code` (MPI_Abort); a no-op returning code in a
 * single process. */
int gr_comm_abort(GrComm *c, int code);
/* "Open MPI 4.1.4" or "none (single process)". */
const char *gr_comm_engine(void);

#endif
