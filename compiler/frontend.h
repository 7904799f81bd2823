/* frontend.h: .grad source -> Program (lex, parse, resolve imports, elaborate).
 *
 * Elaboration is partial evaluation: every entry point is expanded into one flat Graph;
 * calls are inlined, `for` loops unrolled, compile-time values (ints, floats, bools,
 * strings, functions) folded away, shapes checked, NumPy broadcasting made explicit.
 */
#ifndef GRADC_FRONTEND_H
#define GRADC_FRONTEND_H

#include "ir.h"

/* Compiles the file at `path` (and its imports, searched in the importing file's folder,
 * then c->incdirs in order; the CLI appends the stdlib folder found next to
 * the executable) into p: one Graph per `entry`, the parameters, externs and top-level
 * constants (after -D overrides). Returns 0, or -1 with diagnostics in c. */
int fe_compile(Ctx *c, const char *path, Program *p);

/* `gradc dump --stage=ast`: parses `path` and prints its syntax tree. 0 or -1. */
int fe_dump_ast(Ctx *c, const char *path, FILE *out);

#endif
