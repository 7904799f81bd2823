/* gradcheck.h: checks the derivatives gradc generates against finite differences.
 *
 * `gradc gradcheck FILE --entry NAME [--seed N] [--tol T]` elaborates FILE in f64 and
 * calls gc_check_entry(). It is a product feature: a user who writes a new objective (or
 * a new extern-free helper) can verify that reverse and forward mode agree with central
 * finite differences at random points, per input and per parameter.
 */
#ifndef GRADC_GRADCHECK_H
#define GRADC_GRADCHECK_H

#include <stdint.h>
#include <stdio.h>

#include "ir.h"

#define GC_DEFAULT_TOL 1e-6

/* Checks entry g of p (elaborated with c->promote_f64 = 1 for a meaningful result):
 * draws N(0,1) inputs (integer inputs are zeros: valid indices) and the parameters'
 * initial values (interp_init_params) plus N(0, 0.1^2) noise, forms the scalar
 * L = sum_j sum(out_j * r_j) over the float outputs (r_j random cotangents; 1 for a
 * scalar output), and compares, for every float input and every parameter the entry uses:
 *   reverse: the gradient (ad_vjp) on up to 8 sampled elements and along a random
 *            direction, against central differences of L;
 *   forward: ad_jvp along the same random direction, against the same difference.
 * stop_grad values are held fixed while differencing (see GcOptions). Prints a table of
 * the worst relative error per input/parameter to `report` (may be NULL). Returns 0 when every error is <= tol, 1 when any exceeds it, -1 after a
 * diagnostic in c (no float output, an extern on the path...) or an interpreter error. */
int gc_check_entry(Ctx *c, Program *p, Graph *g, uint64_t seed, double tol, FILE *report);

/* The same with more control (tests use it to keep inputs inside an op's domain). */
typedef struct {
  uint64_t seed;
  double tol;
  /* NULL, or one [lo, hi) per entry input (nrange of them): that float input is drawn
   * uniformly from the range instead of N(0,1). */
  const double (*range)[2];
  int nrange;
  /* 0 (default): the value of every stop_grad node is held at its base-point value while
   * differencing, so the differences estimate the derivative gradc defines. 1: the
   * differences see through stop_grad (every parameter used only under stop_grad then
   * fails: a way to audit where gradients are stopped). */
  int see_through_stop_grad;
} GcOptions;
int gc_check_entry_opts(Ctx *c, Program *p, Graph *g, const GcOptions *o, FILE *report);

/* Adds two entries to p for numeric checks with stop_grad values held fixed (used by
 * `gradc build` for the executable's `gradcheck`): HELD(inputs) -> (outputs of src...,
 * "held:K"...) and FROZEN(inputs, "held:K"...) -> outputs of src, where every stop_grad
 * node of src reads its input instead. Random draws keep their streams. Returns the
 * number of stop_grad values. */
int gc_add_frozen_entries(Program *p, const Graph *src, const char *held_name,
                          const char *frozen_name);

#endif
