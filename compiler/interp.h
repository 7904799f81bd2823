/* interp.h: the reference interpreter.
 *
 * Runs a Graph with naive loops, one kernel per op of ops.def, in the node's own dtype
 * (f32 math in float, f64 in double). It is the oracle that codegen is tested against,
 * so clarity beats speed. Random draws use runtime/philox.h, EXTERN calls go through
 * libffi (dlopen/dlsym, the argument list built at run time).
 */
#ifndef GRADC_INTERP_H
#define GRADC_INTERP_H

#include "gradrt.h"
#include "ir.h"

/* Evaluates every output of g. inputs[i] must match g->inputs[i] (dtype and shape) and
 * params[i] Program.params[i]; outputs[j] receive newly allocated tensors (free them with
 * gr_tensor_free). Returns 0, or -1 with a message in err (shape mismatch of an input,
 * an extern that cannot be loaded, out of memory). */
int interp_run(const Graph *g, const Program *p, const GrTensor *inputs, const GrTensor *params,
               GrTensor *outputs, uint64_t seed, uint64_t step, char *err, size_t nerr);

/* interp_run as data-parallel rank `shard` (GrRunCtx.shard): a random draw of rank >= 1
 * with n elements uses counters shard*n + i, its slice of the global batch when the
 * leading axis is split evenly over ranks (docs/distributed.md). shard 0 = interp_run. */
int interp_run_shard(const Graph *g, const Program *p, const GrTensor *inputs, const GrTensor *params,
                     GrTensor *outputs, uint64_t seed, uint64_t step, uint64_t shard, char *err,
                     size_t nerr);

/* 1 if the interpreter has a kernel for op (the op-table test walks every op). */
int interp_has_kernel(Op op);

/* Allocates and initializes every parameter of p from seed (gr_init_param). */
int interp_init_params(const Program *p, uint64_t seed, GrTensor *params);

#endif
